"""Scenario files: the only module that reads YAML, and the typed, immutable specs they become.

A scenario is a structural causal model (``nodes``), named numbers (``params``), the roles the
variables play for a model (``roles``), the biases injected into the data a model is trained on
(``biases``), the populations cohorts are drawn from (``populations``) and, for ``simsys run``, an
``experiment``. The format is documented, with a complete example, in ``docs/scenario-format.md``;
``simsys schema`` prints its JSON Schema (generated from the pydantic models below).

Validation happens in two layers, both reporting one-line errors that name the file, the key path,
what was found and what is allowed (:class:`simsys.errors.ScenarioError`):

1. shape (pydantic): unknown keys, wrong types, unknown node kinds or bias types;
2. meaning (this module): formulas parse and use only known names, probabilities lie in [0, 1],
   sds are non-negative, roles and bias selectors name real nodes and categories, the graph is
   acyclic (``simsys.graph``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simsys import expressions as ex
from simsys.errors import ExpressionError, ScenarioError

Number = float | str
"""A number, or a formula in the expression language (a string)."""

Selector = dict[str, int | str]
"""A group: node -> value (a 0/1 value, a category code, or a category name); several keys = AND."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_SUFFIX = "_observed"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- nodes ----------------------------------------------------------------------------------------
class _NodeBase(_Spec):
    description: str | None = Field(None, description="What the variable is, for readers.")
    unit: str | None = None


class BernoulliNode(_NodeBase):
    """A 0/1 variable: P(1) = ``p``, or logistic(``logit``)."""

    kind: Literal["bernoulli"]
    p: Number | None = Field(None, description="Probability of 1, in [0, 1] (values outside are clipped).")
    logit: Number | None = Field(None, description="Log-odds of 1 (use instead of p).")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.p is None) == (self.logit is None):
            raise ValueError("give exactly one of 'p' and 'logit'")
        return self


class CategoricalNode(_NodeBase):
    """A category, stored as its code 0..K-1 (in formulas: the code, or ``node_category`` indicators)."""

    kind: Literal["categorical"]
    categories: list[str] = Field(..., min_length=2)
    probs: list[Number] | None = Field(None, description="One weight per category (normalised).")
    logits: list[Number] | None = Field(None, description="One log-weight per category (softmax).")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.probs is None) == (self.logits is None):
            raise ValueError("give exactly one of 'probs' and 'logits'")
        given = self.probs if self.probs is not None else self.logits
        if len(given) != len(self.categories):
            raise ValueError(
                f"{len(given)} weights for {len(self.categories)} categories; give one per category"
            )
        return self


class NormalNode(_NodeBase):
    """mean + sd * standard normal noise."""

    kind: Literal["normal"]
    mean: Number = 0.0
    sd: Number = 1.0


class LognormalNode(_NodeBase):
    """exp(meanlog + sdlog * standard normal noise)."""

    kind: Literal["lognormal"]
    meanlog: Number = 0.0
    sdlog: Number = 1.0


class PoissonNode(_NodeBase):
    """A count with mean ``rate``."""

    kind: Literal["poisson"]
    rate: Number


class UniformNode(_NodeBase):
    """Uniform on [low, high)."""

    kind: Literal["uniform"]
    low: Number = 0.0
    high: Number = 1.0


class DeterministicNode(_NodeBase):
    """A formula of its parents, with no noise of its own (e.g. a score or a clinical rule)."""

    kind: Literal["deterministic"]
    value: Number


NodeSpec = Annotated[
    BernoulliNode | CategoricalNode | NormalNode | LognormalNode | PoissonNode | UniformNode
    | DeterministicNode,
    Field(discriminator="kind"),
]


# --- biases ---------------------------------------------------------------------------------------
class _BiasBase(_Spec):
    name: str | None = Field(None, description="A short name (default: type and position).")
    description: str | None = None
    populations: list[str] | None = Field(
        None, description="Populations the bias acts on (default: those marked biased: true)."
    )


class RepresentationBias(_BiasBase):
    """Under-representation: members of ``group`` are KEPT in the data with a probability.

    ``keep`` applies to every member; ``keep_positive`` / ``keep_negative`` to members whose true
    target is 1 / 0 (Blum & Stangl 2020's beta is the probability of KEEPING a positive of the
    disadvantaged group -- not of deleting it), or, with ``by: observed``, whose recorded label
    (as the biases listed before this one left it) is 1 / 0.
    """

    type: Literal["representation"]
    group: Selector = Field(default_factory=dict)
    keep: Number | None = None
    keep_positive: Number | None = None
    keep_negative: Number | None = None
    by: Literal["truth", "observed"] | None = Field(
        None, description="Which label keep_positive/keep_negative read: the true target (truth, "
        "the default) or the recorded one (observed: as the label and proxy-label biases listed "
        "before this bias left it)."
    )

    @model_validator(mode="after")
    def _some(self):
        if self.keep is None and self.keep_positive is None and self.keep_negative is None:
            raise ValueError("give 'keep', or 'keep_positive' and/or 'keep_negative'")
        if self.keep is not None and (self.keep_positive is not None or self.keep_negative is not None):
            raise ValueError("give either 'keep' or 'keep_positive'/'keep_negative', not both")
        if self.keep is not None and self.by is not None:
            raise ValueError("'by' applies to keep_positive/keep_negative only; with 'keep' leave "
                             "it out")
        return self


class LabelBias(_BiasBase):
    """Annotation bias: the observed label of ``group`` flips with the given rates.

    ``false_negative_rate`` is P(observed 0 | true 1) (underdiagnosis; Blum & Stangl's nu),
    ``false_positive_rate`` is P(observed 1 | true 0).
    """

    type: Literal["label"]
    group: Selector = Field(default_factory=dict)
    false_negative_rate: Number = 0.0
    false_positive_rate: Number = 0.0
    target: str | None = Field(None, description="The label to corrupt (default: roles.target).")


class MeasurementBias(_BiasBase):
    """Presentation / measurement disparity: observed = scale * true + offset + noise_sd * N(0, 1)."""

    type: Literal["measurement"]
    feature: str
    group: Selector = Field(default_factory=dict)
    offset: Number = 0.0
    scale: Number = 1.0
    noise_sd: Number = 0.0


class MissingnessBias(_BiasBase):
    """The feature is missing (NaN) with probability ``rate``, which may depend on any node,
    including the feature's own true value (missing not at random)."""

    type: Literal["missingness"]
    feature: str
    group: Selector = Field(default_factory=dict)
    rate: Number


class SelectionBias(_BiasBase):
    """Only patients with a non-zero value of ``node`` enter the data (e.g. biopsied lesions)."""

    type: Literal["selection"]
    node: str


class ProxyLabelBias(_BiasBase):
    """The observed label is another node (a proxy such as cost instead of health need)."""

    type: Literal["proxy_label"]
    label: str


BiasSpec = Annotated[
    RepresentationBias | LabelBias | MeasurementBias | MissingnessBias | SelectionBias
    | ProxyLabelBias,
    Field(discriminator="type"),
]


# --- roles, populations, the scenario --------------------------------------------------------------
class Roles(_Spec):
    group: str | list[str] = Field(..., description="The group attribute(s); several = intersections.")
    target: str = Field(..., description="The true outcome (0/1).")
    features: list[str] = Field(..., min_length=1, description="What a model may see.")
    reference_group: dict[str, int | str] | None = Field(
        None, description="Group that disparities 'against a reference' compare with."
    )


class Population(_Spec):
    n: int = Field(..., gt=0, description="Patients drawn (before representation/selection bias).")
    biased: bool = Field(False, description="Whether the scenario's biases act on this population.")
    params: dict[str, float] = Field(default_factory=dict, description="Param overrides (shift).")
    do: dict[str, Number] = Field(default_factory=dict, description="Interventions node -> value.")
    selection: list[str] = Field(
        default_factory=list, description="Names of representation or selection biases that decide "
        "who belongs to this population, in every cohort drawn from it (biased, clean or tested)."
    )
    description: str | None = None


class ScenarioSpec(_Spec):
    name: str
    description: str = ""
    seed: int = Field(0, ge=0)
    params: dict[str, float] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec] = Field(..., min_length=1)
    roles: Roles
    biases: list[BiasSpec] = Field(default_factory=list)
    populations: dict[str, Population] = Field(
        default_factory=lambda: {"train": Population(n=10000, biased=True), "test": Population(n=10000)}
    )
    experiment: dict[str, Any] | None = Field(None, description="What `simsys run` does (docs).")


# --- loading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """A validated scenario: the spec, where it came from, and its parsed formulas.

    ``formulas`` maps a key path (``nodes.melanoma.logit``) to its parsed :class:`Expr`;
    ``warnings`` lists problems that do not stop a run (e.g. a bias that empties a group).
    """

    spec: ScenarioSpec
    source: str
    data: dict
    formulas: dict[str, ex.Expr] = field(repr=False)
    parents: dict[str, tuple[str, ...]] = field(repr=False)
    order: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def groups(self) -> list[str]:
        g = self.spec.roles.group
        return [g] if isinstance(g, str) else list(g)

    def categories(self, node: str) -> list[str]:
        """Names of the values of a discrete node (``['0', '1']`` for a 0/1 node)."""
        spec = self.spec.nodes[node]
        if isinstance(spec, CategoricalNode):
            return list(spec.categories)
        return ["0", "1"]

    def _repr_html_(self) -> str:  # Jupyter: the graph inline, the roles, the biases
        from simsys.display import scenario_html

        return scenario_html(self)

    def digest(self) -> str:
        """SHA-256 of the resolved scenario (canonical JSON): identifies it in run outputs."""
        text = json.dumps(self.data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def with_values(self, updates: Mapping[str, Any]) -> Scenario:
        """A new scenario with values replaced at dotted paths (``biases[0].keep``, ``params.x``).

        Raises :class:`ScenarioError` if a path names nothing.
        """
        data = copy.deepcopy(self.data)
        for path, value in updates.items():
            set_path(data, path, value, source=self.source)
        return from_dict(data, source=self.source)


_PATH_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def split_path(path: str) -> list[str | int]:
    """``biases[0].keep`` -> ``['biases', 0, 'keep']``."""
    out: list[str | int] = []
    for part in path.split("."):
        pos = 0
        if not part:
            raise ValueError(path)
        while pos < len(part):
            m = _PATH_TOKEN.match(part, pos)
            if not m:
                raise ValueError(path)
            out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
            pos = m.end()
    return out


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path (``biases[0].keep``) of a scenario's data; None where unset."""
    node = data
    for key in split_path(path):
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def set_path(data: dict, path: str, value: Any, *, source: str) -> None:
    """Set ``value`` at a dotted path that must already exist (params may be added)."""
    try:
        keys = split_path(path)
    except ValueError:
        raise ScenarioError(source, path, "not a valid key path; expected e.g. 'biases[0].keep' or 'params.dark_share'") from None
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                raise ScenarioError(source, path, f"names nothing: there is no item [{key}] here")
        elif not isinstance(node, dict) or key not in node:
            if last and isinstance(node, dict) and keys[0] in ("biases", "populations", "nodes") and len(keys) > 2:
                pass  # an optional field left at its default (e.g. keep_positive) may be set
            else:
                raise ScenarioError(source, path, f"names nothing: no key {key!r} here"
                                    + _did_you_mean(key, node if isinstance(node, dict) else {}))
        if last:
            node[key] = value
        else:
            node = node[key]


def _did_you_mean(key: Any, options: Mapping) -> str:
    """``; did you mean 'fnr_female'?`` for a misspelt key, else the keys there (a few)."""
    import difflib

    names = [str(k) for k in options]
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if names:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        return f"; keys here: {shown}"
    return ""


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file simsys is given (a scenario, a battery) with the same safe loader and the
    same one-line errors as scenario files; returns the parsed data."""
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, "", f"cannot read the file ({exc.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(source, "", f"malformed YAML at {where}: {problem}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (YAML).

    Raises
    ------
    ScenarioError
        With a one-line message naming the file, the key path, what was found and what is allowed.
    """
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, "", f"cannot read the file ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(source, "", f"malformed YAML at {where}: {problem}") from None
    if not isinstance(data, dict):
        raise ScenarioError(source, "", f"expected a mapping of scenario keys, got {type(data).__name__}")
    return from_dict(data, source=source)


def from_dict(data: Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as a dict (the parsed YAML)."""
    data = copy.deepcopy(dict(data))
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise _from_pydantic(exc, source, data) from None
    return _check_meaning(spec, data, source)


def _from_pydantic(exc: ValidationError, source: str, data: Mapping | None = None) -> ScenarioError:
    err = exc.errors()[0]
    # drop the union-tag segments pydantic inserts (e.g. nodes.age.normal.sd -> nodes.age.sd)
    loc: list[str | int] = []
    for part in err["loc"]:
        if isinstance(part, str):
            is_tag = part in _TAGS and (
                (loc and isinstance(loc[-1], int)) or (len(loc) == 2 and loc[0] == "nodes")
            )
            if is_tag or part in ("float", "str", "int", "bool") or part.startswith("function-"):
                continue
        loc.append(part)
    path = _fmt_path(loc)
    found = err.get("input")
    msg = err["msg"]
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        msg = f"unknown {ctx.get('discriminator', 'kind').strip(chr(39))} {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
        return ScenarioError(source, path, msg)
    if err["type"] == "union_tag_not_found":
        return ScenarioError(source, path, f"missing '{err.get('ctx', {}).get('discriminator', 'kind').strip(chr(39))}'")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(data, loc[:-1])
        return ScenarioError(source, path, "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed
                                                            else "; check the spelling against docs/scenario-format.md"))
    if err["type"] == "missing":
        return ScenarioError(source, path, "required key is missing")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    shown = json.dumps(found, default=str) if not isinstance(found, dict | list) else type(found).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ScenarioError(source, path, f"{msg.rstrip('.')}, got {shown}")


def _allowed_keys(data: Mapping | None, parent: list) -> list[str] | None:
    """The keys allowed where an unknown key was found (``parent`` is the key path of its mapping)."""
    by_tag = {m.model_fields[f].annotation.__args__[0]: m for f, models in (
        ("kind", (BernoulliNode, CategoricalNode, NormalNode, LognormalNode, PoissonNode, UniformNode,
                  DeterministicNode)),
        ("type", (RepresentationBias, LabelBias, MeasurementBias, MissingnessBias, SelectionBias,
                  ProxyLabelBias))) for m in models}
    model = None
    if not parent:
        model = ScenarioSpec
    elif parent == ["roles"]:
        model = Roles
    elif len(parent) == 2 and parent[0] == "populations":
        model = Population
    elif len(parent) == 2 and parent[0] in ("nodes", "biases") and data is not None:
        try:
            item = data[parent[0]][parent[1]]
            model = by_tag.get(item.get("kind" if parent[0] == "nodes" else "type"))
        except (KeyError, IndexError, TypeError, AttributeError):
            model = None
    return list(model.model_fields) if model is not None else None


_TAGS = {
    "bernoulli", "categorical", "normal", "lognormal", "poisson", "uniform", "deterministic",
    "representation", "label", "measurement", "missingness", "selection", "proxy_label",
}


def _fmt_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# --- meaning ----------------------------------------------------------------------------------------
#: The expression fields of each node kind and bias type, with the range each must lie in.
NODE_FIELDS: dict[str, dict[str, tuple[float, float] | None]] = {
    "bernoulli": {"p": (0.0, 1.0), "logit": None},
    "normal": {"mean": None, "sd": (0.0, math.inf)},
    "lognormal": {"meanlog": None, "sdlog": (0.0, math.inf)},
    "poisson": {"rate": (0.0, math.inf)},
    "uniform": {"low": None, "high": None},
    "deterministic": {"value": None},
}
BIAS_FIELDS: dict[str, dict[str, tuple[float, float] | None]] = {
    "representation": {"keep": (0.0, 1.0), "keep_positive": (0.0, 1.0), "keep_negative": (0.0, 1.0)},
    "label": {"false_negative_rate": (0.0, 1.0), "false_positive_rate": (0.0, 1.0)},
    "measurement": {"offset": None, "scale": None, "noise_sd": (0.0, math.inf)},
    "missingness": {"rate": (0.0, 1.0)},
    "selection": {},
    "proxy_label": {},
}


def indicator_names(spec: ScenarioSpec) -> dict[str, tuple[str, int]]:
    """``skin_tone_dark`` -> (``skin_tone``, 2): the 0/1 indicators of categorical nodes' categories."""
    out = {}
    for node, s in spec.nodes.items():
        if isinstance(s, CategoricalNode):
            for code, cat in enumerate(s.categories):
                if _IDENT.match(cat):
                    out[f"{node}_{cat}"] = (node, code)
    return out


def _check_meaning(spec: ScenarioSpec, data: dict, source: str) -> Scenario:
    def fail(path: str, msg: str):
        raise ScenarioError(source, path, msg)

    if not _IDENT.match(spec.name):
        fail("name", f"expected an identifier (letters, digits, _), got {spec.name!r}")
    nodes = spec.nodes
    params = spec.params
    reserved = set(ex.FUNCTIONS) | {"True", "False", "None", "patient_id"}
    for kind, names in (("params", params), ("nodes", nodes)):
        for nm in names:
            if not _IDENT.match(nm) or keyword.iskeyword(nm) or nm in reserved:
                fail(f"{kind}.{nm}", f"{nm!r} is not a usable name; use letters, digits and _ "
                     f"(not a keyword or one of {', '.join(sorted(reserved))})")
            if nm.startswith("_"):  # the plan's internal steps (_keep, _u_0, ...) use this prefix
                fail(f"{kind}.{nm}", f"names starting with '_' are reserved for internal steps, got {nm!r}")
            if nm.endswith(RESERVED_SUFFIX):
                fail(f"{kind}.{nm}", f"names ending in {RESERVED_SUFFIX!r} are reserved for observed values")
    for nm in params:
        if nm in nodes:
            fail(f"params.{nm}", f"{nm!r} is both a param and a node; rename one")
    indicators = indicator_names(spec)
    for ind in indicators:
        if ind in nodes or ind in params:
            fail(f"nodes.{indicators[ind][0]}", f"category indicator {ind!r} clashes with a node or param")
    known = set(params) | set(nodes) | set(indicators)

    formulas: dict[str, ex.Expr] = {}
    parents: dict[str, set[str]] = {n: set() for n in nodes}

    def formula(path: str, value, *, allowed: set[str], rng=None, owner: str | None = None):
        try:
            e = ex.parse(value)
            ex.check_names(e, allowed, text=value if isinstance(value, str) else "")
        except ExpressionError as exc:
            fail(path, str(exc))
        formulas[path] = e
        used = e.names()
        cols = {indicators[u][0] if u in indicators else u for u in used if u not in params}
        if owner is not None:
            parents[owner] |= cols
        if rng is not None and not cols:
            for pop_name, pop in [("", None), *spec.populations.items()]:
                values = {**params, **(pop.params if pop else {})}
                v = ex.evaluate_constant(e, values)
                lo, hi = rng
                if not (lo <= v <= hi):
                    where = f" (with populations.{pop_name}.params)" if pop_name else ""
                    hi_s = "inf" if math.isinf(hi) else f"{hi:g}"
                    fail(path, f"expected a value in [{lo:g}, {hi_s}], got {v:g}{where}")
        return e

    for nm, s in nodes.items():
        allowed = known - {nm} - {i for i, (n, _) in indicators.items() if n == nm}
        if isinstance(s, CategoricalNode):
            key = "probs" if s.probs is not None else "logits"
            for i, v in enumerate(getattr(s, key)):
                formula(f"nodes.{nm}.{key}[{i}]", v, allowed=allowed, owner=nm,
                        rng=(0.0, math.inf) if key == "probs" else None)
            weights = [formulas[f"nodes.{nm}.probs[{i}]"] for i in range(len(s.probs or []))]
            if weights and not any(w.names() - set(params) for w in weights):  # constant weights
                for pop in [None, *spec.populations.values()]:  # a zero total gave no category at all
                    values = {**params, **(pop.params if pop else {})}
                    if sum(ex.evaluate_constant(w, values) for w in weights) <= 0.0:
                        fail(f"nodes.{nm}.probs", "expected at least one positive weight, got all 0")
            continue
        for fld, rng in NODE_FIELDS[s.kind].items():
            v = getattr(s, fld)
            if v is not None:
                formula(f"nodes.{nm}.{fld}", v, allowed=allowed, rng=rng, owner=nm)
        if isinstance(s, UniformNode):
            lo_e, hi_e = formulas[f"nodes.{nm}.low"], formulas[f"nodes.{nm}.high"]
            if not ((lo_e.names() | hi_e.names()) - set(params)):
                lo, hi = ex.evaluate_constant(lo_e, params), ex.evaluate_constant(hi_e, params)
                if not lo <= hi:
                    fail(f"nodes.{nm}.high", f"expected high >= low ({lo:g}), got {hi:g}")
    for pop_name, pop in spec.populations.items():
        for nm in pop.params:
            if nm not in params:
                fail(f"populations.{pop_name}.params.{nm}", f"unknown param {nm!r}; known: {', '.join(params) or '(none)'}")
        for nm, v in pop.do.items():
            if nm not in nodes:
                fail(f"populations.{pop_name}.do.{nm}", f"unknown node {nm!r}; known: {', '.join(nodes)}")
            formula(f"populations.{pop_name}.do.{nm}", v, allowed=known - {nm})

    # the graph: parents inferred from formulas; a cycle names itself
    from simsys.graph import topological_order  # local: graph imports nothing from here

    try:
        order = topological_order({n: sorted(p) for n, p in parents.items()})
    except Exception as exc:  # GraphError
        fail("nodes", str(exc))
    for pop_name, pop in spec.populations.items():  # an intervention can close a cycle too
        shifted = dict(parents)
        for nm in pop.do:
            used = formulas[f"populations.{pop_name}.do.{nm}"].names() - set(params)
            shifted[nm] = {indicators[u][0] if u in indicators else u for u in used}
        try:
            topological_order({n: sorted(p) for n, p in shifted.items()})
        except Exception as exc:  # GraphError
            fail(f"populations.{pop_name}.do", str(exc))

    # roles
    roles = spec.roles
    groups = [roles.group] if isinstance(roles.group, str) else list(roles.group)
    discrete = {n for n, s in nodes.items() if isinstance(s, BernoulliNode | CategoricalNode)}
    for i, g in enumerate(groups):
        path = "roles.group" if isinstance(roles.group, str) else f"roles.group[{i}]"
        if g not in nodes:
            fail(path, f"names a missing node {g!r}; nodes: {', '.join(nodes)}")
        if g not in discrete:
            fail(path, f"group {g!r} must be a bernoulli or categorical node, got kind {nodes[g].kind!r}")
    if roles.target not in nodes:
        fail("roles.target", f"names a missing node {roles.target!r}; nodes: {', '.join(nodes)}")
    if not _is_binary(spec, roles.target, formulas):
        fail("roles.target", f"target {roles.target!r} must be 0/1 (a bernoulli node or a comparison)")
    for i, f in enumerate(roles.features):
        if f not in nodes:
            fail(f"roles.features[{i}]", f"names a missing node {f!r}; nodes: {', '.join(nodes)}")
        if f == roles.target:
            fail(f"roles.features[{i}]", "the target cannot be a feature")
    if roles.reference_group:
        _selector(spec, roles.reference_group, "roles.reference_group", fail)

    # biases
    warnings = []
    for i, b in enumerate(spec.biases):
        base = f"biases[{i}]"
        if b.populations is not None:
            for j, p in enumerate(b.populations):
                if p not in spec.populations:
                    fail(f"{base}.populations[{j}]", f"unknown population {p!r}; known: {', '.join(spec.populations)}")
        if hasattr(b, "group"):
            _selector(spec, b.group, f"{base}.group", fail)
        for fld, rng in BIAS_FIELDS[b.type].items():
            v = getattr(b, fld)
            if v is not None:
                formula(f"{base}.{fld}", v, allowed=known, rng=rng)
        if isinstance(b, MeasurementBias | MissingnessBias) and b.feature not in nodes:
            fail(f"{base}.feature", f"names a missing node {b.feature!r}; nodes: {', '.join(nodes)}")
        if isinstance(b, LabelBias) and b.target is not None and b.target not in nodes:
            fail(f"{base}.target", f"names a missing node {b.target!r}")
        if isinstance(b, SelectionBias) and b.node not in nodes:
            fail(f"{base}.node", f"names a missing node {b.node!r}; nodes: {', '.join(nodes)}")
        if isinstance(b, ProxyLabelBias):
            if b.label not in nodes:
                fail(f"{base}.label", f"names a missing node {b.label!r}; nodes: {', '.join(nodes)}")
            if not _is_binary(spec, b.label, formulas):
                fail(f"{base}.label", f"proxy label {b.label!r} must be 0/1 (a bernoulli node or a comparison such as 'cost > 5000')")
        if isinstance(b, RepresentationBias):
            keeps = [formulas.get(f"{base}.{k}") for k in ("keep", "keep_positive", "keep_negative")]
            consts = [e for e in keeps if e is not None and not (e.names() - set(params))]
            if b.keep is not None:
                all_zero = consts and ex.evaluate_constant(consts[0], params) == 0.0
            else:
                kp = formulas.get(f"{base}.keep_positive")
                kn = formulas.get(f"{base}.keep_negative")
                all_zero = (kp is not None and not (kp.names() - set(params)) and ex.evaluate_constant(kp, params) == 0.0
                            and kn is not None and not (kn.names() - set(params)) and ex.evaluate_constant(kn, params) == 0.0)
            if all_zero:
                warnings.append(f"{source}: {base}: keeps no member of group {b.group}: the group is empty in the biased data")

    keepers = {b.name or f"{b.type}_{i}": b for i, b in enumerate(spec.biases)
               if isinstance(b, RepresentationBias | SelectionBias)}
    for pop_name, pop in spec.populations.items():
        for j, nm in enumerate(pop.selection):
            if nm not in keepers:
                fail(f"populations.{pop_name}.selection[{j}]",
                     f"names no representation or selection bias: {nm!r}; allowed: "
                     f"{', '.join(keepers) or '(none defined)'}")
    for i, b in enumerate(spec.biases):  # a recorded label read before any bias records one
        if isinstance(b, RepresentationBias) and b.by == "observed" and not any(
                isinstance(p, ProxyLabelBias) or (isinstance(p, LabelBias) and p.target in (None, roles.target))
                for p in spec.biases[:i]):
            warnings.append(f"{source}: biases[{i}]: by: observed, but no label or proxy_label bias on "
                            f"{roles.target!r} comes before it: it reads the true label")

    if not spec.populations:
        fail("populations", "define at least one population (e.g. train and test)")
    return Scenario(spec=spec, source=source, data=data, formulas=formulas,
                    parents={n: tuple(sorted(p)) for n, p in parents.items()},
                    order=tuple(order), warnings=tuple(warnings))


def _is_binary(spec: ScenarioSpec, node: str, formulas: dict[str, ex.Expr]) -> bool:
    s = spec.nodes[node]
    if isinstance(s, BernoulliNode):
        return True
    if isinstance(s, CategoricalNode):
        return len(s.categories) == 2
    if isinstance(s, DeterministicNode):
        return ex.is_boolean(formulas[f"nodes.{node}.value"])
    return False


def _selector(spec: ScenarioSpec, sel: Mapping[str, int | str], path: str, fail) -> None:
    for node, value in sel.items():
        if node not in spec.nodes:
            fail(f"{path}.{node}", f"names a missing node {node!r}; nodes: {', '.join(spec.nodes)}")
        s = spec.nodes[node]
        if isinstance(s, CategoricalNode):
            if isinstance(value, str):
                if value not in s.categories:
                    fail(f"{path}.{node}", f"unknown category {value!r}; allowed: {', '.join(s.categories)}")
            elif not (0 <= value < len(s.categories)):
                fail(f"{path}.{node}", f"category code {value} out of range 0..{len(s.categories) - 1}")
        elif isinstance(s, BernoulliNode) or (isinstance(s, DeterministicNode)):
            if value not in (0, 1):
                fail(f"{path}.{node}", f"expected 0 or 1 for a 0/1 node, got {value!r}")
        else:
            fail(f"{path}.{node}", f"a group must be a bernoulli or categorical node, got kind {s.kind!r}")


def selector_code(scenario: Scenario, node: str, value: int | str) -> int:
    """The numeric code a selector value stands for (a category name -> its index)."""
    s = scenario.spec.nodes[node]
    if isinstance(s, CategoricalNode) and isinstance(value, str):
        return s.categories.index(value)
    return int(value)


def json_schema() -> dict:
    """The JSON Schema of the scenario format (for editors; ``simsys schema`` prints it)."""
    schema = ScenarioSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "simsys scenario"
    return schema
