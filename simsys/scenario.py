"""Scenario files: the only module that reads YAML, and the typed, immutable specs they become.

A scenario is a structural causal model (``nodes``), named numbers (``params``), the roles the
variables play for a model (``roles``), the biases injected into the data a model is trained on
(``biases``), the populations cohorts are drawn from (``populations``) and, for ``simsys run``, an
``experiment``. The format is documented, with a complete example, in ``docs/scenario-format.md``;
``simsys schema`` prints its JSON Schema (generated from the pydantic models below).

Validation happens in three layers, each reporting one-line errors that name the file, the key
path (or line), what was found and what is allowed (:class:`simsys.errors.ScenarioError`):

0. the file (a scenario file is untrusted input): at most :data:`MAX_FILE_BYTES` bytes, UTF-8, YAML
   read by :class:`_ScenarioLoader`, which refuses anchors and aliases (a few hundred bytes of them
   expand into gigabytes: the "billion laughs"), merge keys, duplicate keys, tags beyond plain
   data, and nesting deeper than :data:`MAX_YAML_DEPTH`;
1. shape (pydantic): unknown keys, wrong types, unknown node kinds or bias types;
2. meaning (this module): names are ASCII identifiers of at most :data:`MAX_NAME_LENGTH`
   characters; formulas parse and use only known names; constants are finite, probabilities lie in
   [0, 1], sds are non-negative, Poisson rates at most ``POISSON_MAX_RATE``; a categorical node has
   at most :data:`MAX_CATEGORIES` distinct categories; roles and bias selectors name real nodes and
   categories; the graph is acyclic (``simsys.graph``). Every check is linear in the size of the
   scenario (25,000 nodes validate in about a second).
"""

from __future__ import annotations

import copy
import hashlib
import json
import keyword
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simsys import expressions as ex
from simsys.errors import ExpressionError, ScenarioError
from simsys.kernels.interpreter import POISSON_MAX_RATE

Number = float | str
"""A number, or a formula in the expression language (a string)."""

Selector = dict[str, int | str]
"""A group: node -> value (a 0/1 value, a category code, or a category name); several keys = AND."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)  # used with fullmatch: no "$", no "\n"
MAX_NAME_LENGTH = 64
"""Longest name (scenario, node, param, population, bias): names become file and column names."""
MAX_CATEGORIES = 256
"""Most categories of a categorical node (codes are stored in one byte)."""
MAX_FILE_BYTES = 1 << 20
"""Largest scenario file read (1 MiB; a scenario is a few kB)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of YAML mappings and lists in a scenario file."""
RESERVED_SUFFIX = "_observed"


def is_identifier(name: object) -> bool:
    """Whether ``name`` is a usable name: ASCII letters, digits and ``_``, not starting with a digit,
    at most :data:`MAX_NAME_LENGTH` characters (checked on the raw text: no trailing newline, no
    Unicode look-alike)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _IDENT.fullmatch(name) is not None


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
    categories: list[str] = Field(..., min_length=2, max_length=MAX_CATEGORIES,
                                  description=f"2 to {MAX_CATEGORIES} distinct names.")
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


class _YamlRefused(Exception):
    """Something the scenario loader refuses, at a place in the file (a mark) or a key path."""

    def __init__(self, message: str, mark=None, path: str = ""):
        super().__init__(message)
        self.message, self.mark, self.path = message, mark, path


class _ScenarioLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, stricter: plain data only, and nothing that multiplies in memory.

    Refused, each with the line where it occurs: anchors and aliases (``&a`` / ``*a``: the "billion
    laughs" expansion), merge keys (``<<``), a key given twice in one mapping (YAML's own rule is
    that the last wins, silently), non-scalar keys, nesting deeper than :data:`MAX_YAML_DEPTH`, and
    the tags that build anything but strings, numbers, booleans, null, lists and mappings
    (``!!binary``, ``!!set``, ...). Timestamps stay text (``2024-05-01`` is not a date here).
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _YamlRefused(f"YAML alias '*{event.anchor}' is not allowed; write the value out "
                               "(anchors and aliases are refused)", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _YamlRefused(f"YAML anchor '&{event.anchor}' is not allowed; write the value out "
                               "(anchors and aliases are refused)", event.start_mark)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlRefused(f"nested more than {MAX_YAML_DEPTH} levels deep; a scenario needs "
                               "far fewer", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_keys(self, node)
        return self.construct_document(node)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses to convert integers of more than 4300 digits
            raise _YamlRefused(f"integer of {len(node.value)} characters; numbers must be finite "
                               "(at most about 1.8e308)", node.start_mark) from None

    def _refuse_tag(self, node):
        raise _YamlRefused(f"YAML tag {node.tag!r} is not allowed; a scenario holds plain text, "
                           "numbers, booleans, lists and mappings", node.start_mark)


_ScenarioLoader.add_constructor("tag:yaml.org,2002:int", _ScenarioLoader.construct_yaml_int)
_ScenarioLoader.add_constructor("tag:yaml.org,2002:timestamp", _ScenarioLoader.construct_scalar)
for _tag in ("binary", "set", "omap", "pairs"):
    _ScenarioLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _ScenarioLoader._refuse_tag)
del _tag


def _key_text(key) -> str:
    return key if isinstance(key, str) and _IDENT.fullmatch(key) else repr(key)


def _check_keys(loader: yaml.SafeLoader, root) -> None:
    """Refuse merge keys, non-scalar keys and duplicate keys (with the key path), iteratively."""
    stack = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node.value))
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        seen: dict = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise _YamlRefused("YAML merge key '<<' is not allowed; write the keys out",
                                   knode.start_mark)
            if not isinstance(knode, yaml.ScalarNode):
                raise _YamlRefused("a key must be a plain name or number, not a list or mapping",
                                   knode.start_mark)
            key = loader.construct_object(knode)
            try:
                first = seen.setdefault(key, knode)
            except TypeError:  # pragma: no cover - scalars construct to hashable values
                first = knode
            sub = f"{path}.{_key_text(key)}" if path else _key_text(key)
            if first is not knode:
                raise _YamlRefused(
                    f"duplicate key at line {knode.start_mark.line + 1} (first at line "
                    f"{first.start_mark.line + 1}); give each key once", path=sub)
            stack.append((vnode, sub))


def _read_text(path: str | Path) -> str:
    """The text of a file simsys is given to read (a scenario, a battery): a regular file of at
    most 1 MiB, in UTF-8; one-line errors otherwise."""
    p = Path(path)
    source = str(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise ScenarioError(source, "", "not a regular file; expected a YAML scenario file")
        if st.st_size > MAX_FILE_BYTES:
            raise ScenarioError(source, "", f"the file is {st.st_size:,} bytes; a scenario file may "
                                f"be at most {MAX_FILE_BYTES:,} bytes (1 MiB)")
        with open(p, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(source, "", "file not found") from None
    except (OSError, ValueError) as exc:
        raise ScenarioError(source, "", f"cannot read the file ({exc.__class__.__name__})") from None
    if len(raw) > MAX_FILE_BYTES:  # it grew since stat
        raise ScenarioError(source, "", f"the file is more than {MAX_FILE_BYTES:,} bytes; a scenario "
                            f"file may be at most {MAX_FILE_BYTES:,} bytes (1 MiB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(source, "", f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (YAML).

    Raises
    ------
    ScenarioError
        With a one-line message naming the file, the key path (or line), what was found and what
        is allowed.
    """
    source = str(path)
    return from_dict(parse_yaml(_read_text(path), source), source=source)


def read_yaml(path: str | Path) -> Any:
    """Read another YAML file simsys is given (a battery) with the scenario files' checks and
    strict loader (:class:`_ScenarioLoader`); a list or a mapping at the top."""
    source = str(path)
    return parse_yaml(_read_text(path), source, top=(dict, list))


def parse_yaml(text: str, source: str = "<scenario>", *, top: tuple = (dict,)) -> Any:
    """The mapping a scenario's YAML text holds, read by :class:`_ScenarioLoader` (see there);
    ``top`` the types allowed at the top of the document."""
    loader = None
    try:
        loader = _ScenarioLoader(text)  # the reader refuses control characters already here
        data = loader.get_single_data()
    except _YamlRefused as exc:
        if exc.path:
            raise ScenarioError(source, exc.path, exc.message) from None
        m = exc.mark
        raise ScenarioError(source, f"line {m.line + 1}, column {m.column + 1}", exc.message) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(source, "", f"malformed YAML at {where}: {problem}") from None
    except RecursionError:  # pragma: no cover - nesting is limited above
        raise ScenarioError(source, "", f"nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, top):
        what = "a mapping of scenario keys" if top == (dict,) else "a list or a mapping"
        raise ScenarioError(source, "", f"expected {what}, got {type(data).__name__}")
    return data


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
    if err["type"] == "too_long":
        ctx = err.get("ctx", {})
        what = "categories" if loc and loc[-1] == "categories" else "items"
        why = " (a category is stored as a one-byte code)" if what == "categories" else ""
        return ScenarioError(source, path, f"{ctx.get('actual_length')} {what}; at most "
                                           f"{ctx.get('max_length')} allowed{why}")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    try:
        shown = json.dumps(found, default=str) if not isinstance(found, dict | list) else type(found).__name__
    except ValueError:  # an integer too long to print
        shown = type(found).__name__
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
            out += ("." if out else "") + _path_key(str(part))
    return out


# --- meaning ----------------------------------------------------------------------------------------
#: The expression fields of each node kind and bias type, with the range each must lie in.
NODE_FIELDS: dict[str, dict[str, tuple[float, float] | None]] = {
    "bernoulli": {"p": (0.0, 1.0), "logit": None},
    "normal": {"mean": None, "sd": (0.0, math.inf)},
    "lognormal": {"meanlog": None, "sdlog": (0.0, math.inf)},
    "poisson": {"rate": (0.0, POISSON_MAX_RATE)},
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
    """``skin_tone_dark`` -> (``skin_tone``, 2): the 0/1 indicators of categorical nodes' categories
    (those whose name is an identifier, see :func:`is_identifier`)."""
    out = {}
    for node, s in spec.nodes.items():
        if isinstance(s, CategoricalNode):
            for code, cat in enumerate(s.categories):
                if is_identifier(cat):
                    out.setdefault(f"{node}_{cat}", (node, code))
    return out


def _shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, shortened for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path_key(name: object) -> str:
    """A name as a segment of a key path: itself when it is an identifier, else quoted (and short)."""
    return name if is_identifier(name) else _shown(name, 40)


class _Allowed:
    """The names a formula may use: ``known`` minus ``exclude``, without copying ``known`` (a
    20,000-node scenario would otherwise copy 20,000 names per formula: quadratic)."""

    def __init__(self, known: set[str], exclude: frozenset[str] | set[str] = frozenset()):
        self.known, self.exclude = known, exclude

    def __contains__(self, name: str) -> bool:
        return name in self.known and name not in self.exclude

    def __iter__(self):
        return (n for n in self.known if n not in self.exclude)


def _check_meaning(spec: ScenarioSpec, data: dict, source: str) -> Scenario:
    def fail(path: str, msg: str):
        raise ScenarioError(source, path, msg)

    ident_rule = f"ASCII letters, digits and _, not starting with a digit, at most {MAX_NAME_LENGTH} characters"
    if not is_identifier(spec.name):
        fail("name", f"expected a name of {ident_rule}, got {_shown(spec.name)}")
    nodes = spec.nodes
    params = spec.params
    reserved = set(ex.FUNCTIONS) | {"True", "False", "None", "patient_id"}
    for kind, names in (("params", params), ("nodes", nodes)):
        for nm in names:
            if not is_identifier(nm) or keyword.iskeyword(nm) or nm in reserved:
                fail(f"{kind}.{_path_key(nm)}", f"{_shown(nm)} is not a usable name; use {ident_rule} "
                     f"(not a keyword or one of {', '.join(sorted(reserved))})")
            if nm.startswith("_"):  # the plan's internal steps (_keep, _u_0, ...) use this prefix
                fail(f"{kind}.{nm}", f"names starting with '_' are reserved for internal steps, got {nm!r}")
            if nm.endswith(RESERVED_SUFFIX):
                fail(f"{kind}.{nm}", f"names ending in {RESERVED_SUFFIX!r} are reserved for observed values")
    for nm, v in params.items():
        if nm in nodes:
            fail(f"params.{nm}", f"{nm!r} is both a param and a node; rename one")
        if not math.isfinite(v):
            fail(f"params.{nm}", f"expected a finite number, got {v}")
    for pop_name, pop in spec.populations.items():
        if not is_identifier(pop_name):
            fail(f"populations.{_path_key(pop_name)}", f"expected a population name of {ident_rule}, "
                 f"got {_shown(pop_name)}")
        for nm, v in pop.params.items():
            if not math.isfinite(v):
                fail(f"populations.{pop_name}.params.{_path_key(nm)}", f"expected a finite number, got {v}")
    for i, b in enumerate(spec.biases):
        if b.name is not None and not is_identifier(b.name):
            fail(f"biases[{i}].name", f"expected a name of {ident_rule}, got {_shown(b.name)}")
    by_name = {}
    for i, b in enumerate(spec.biases):  # a bias's name names its random stream: one stream each
        nm = b.name or f"{b.type}_{i}"
        if nm in by_name:
            fail(f"biases[{i}].name", f"{nm!r} is also the name of biases[{by_name[nm]}]; "
                 "give each bias its own name")
        by_name[nm] = i
    indicators: dict[str, tuple[str, int]] = {}
    own_indicators: dict[str, set[str]] = {}
    for nm, s in nodes.items():
        if not isinstance(s, CategoricalNode):
            continue
        first: dict[str, int] = {}
        for code, cat in enumerate(s.categories):
            if cat in first:
                fail(f"nodes.{nm}.categories[{code}]", f"{_shown(cat)} is also categories[{first[cat]}]; "
                     "categories must be distinct")
            first[cat] = code
            if not is_identifier(cat):
                continue
            ind = f"{nm}_{cat}"
            if ind in indicators:
                other = indicators[ind][0]
                fail(f"nodes.{nm}.categories[{code}]", f"category indicator {ind!r} is also an "
                     f"indicator of nodes.{other}; rename a category")
            indicators[ind] = (nm, code)
            own_indicators.setdefault(nm, set()).add(ind)
    for ind in indicators:
        if ind in nodes or ind in params:
            fail(f"nodes.{indicators[ind][0]}", f"category indicator {ind!r} clashes with a node or param")
    known = set(params) | set(nodes) | set(indicators)
    param_names = set(params)
    # the param values of the scenario and of each population that overrides some
    param_sets = [("", dict(params))] + [(pn, {**params, **pop.params})
                                         for pn, pop in spec.populations.items() if pop.params]

    formulas: dict[str, ex.Expr] = {}
    parents: dict[str, set[str]] = {n: set() for n in nodes}

    def formula(path: str, value, *, allowed, rng=None, owner: str | None = None,
                sets=param_sets):
        text = value if isinstance(value, str) else ""
        try:
            e = ex.parse(value)
            ex.check_names(e, allowed, text=text)
        except ExpressionError as exc:
            fail(path, str(exc))
        formulas[path] = e
        used = e.names()
        cols = {indicators[u][0] if u in indicators else u for u in used if u not in param_names}
        if owner is not None:
            parents[owner] |= cols
        for part in _constant_parts(e, param_names):
            for pop_name, values in sets:
                v = ex.evaluate_constant(part, values)
                where = f" (with populations.{pop_name}.params)" if pop_name else ""
                if not math.isfinite(v):
                    what = f"the value is {v}" if part is e else f"its constant part {_shown(str(part), 50)} is {v}"
                    fail(path, f"{what}{where}; constants must be finite")
                if rng is not None and part is e:
                    lo, hi = rng
                    if not (lo <= v <= hi):
                        hi_s = "inf" if math.isinf(hi) else f"{hi:g}"
                        fail(path, f"expected a value in [{lo:g}, {hi_s}], got {v:g}{where}")
        return e

    for nm, s in nodes.items():
        allowed = _Allowed(known, own_indicators.get(nm, set()) | {nm})
        if isinstance(s, CategoricalNode):
            key = "probs" if s.probs is not None else "logits"
            for i, v in enumerate(getattr(s, key)):
                formula(f"nodes.{nm}.{key}[{i}]", v, allowed=allowed, owner=nm,
                        rng=(0.0, math.inf) if key == "probs" else None)
            weights = [formulas[f"nodes.{nm}.probs[{i}]"] for i in range(len(s.probs or []))]
            if weights and not any(w.names() - param_names for w in weights):  # constant weights
                for _, values in param_sets:  # a zero total gave no category at all
                    if sum(ex.evaluate_constant(w, values) for w in weights) <= 0.0:
                        fail(f"nodes.{nm}.probs", "expected at least one positive weight, got all 0")
            continue
        for fld, rng in NODE_FIELDS[s.kind].items():
            v = getattr(s, fld)
            if v is not None:
                formula(f"nodes.{nm}.{fld}", v, allowed=allowed, rng=rng, owner=nm)
        if isinstance(s, UniformNode):
            lo_e, hi_e = formulas[f"nodes.{nm}.low"], formulas[f"nodes.{nm}.high"]
            if not ((lo_e.names() | hi_e.names()) - param_names):
                for pop_name, values in param_sets:
                    lo, hi = ex.evaluate_constant(lo_e, values), ex.evaluate_constant(hi_e, values)
                    if not lo <= hi:
                        where = f" (with populations.{pop_name}.params)" if pop_name else ""
                        fail(f"nodes.{nm}.high", f"expected high >= low ({lo:g}), got {hi:g}{where}")
    for pop_name, pop in spec.populations.items():
        for nm in pop.params:
            if nm not in params:
                fail(f"populations.{pop_name}.params.{_path_key(nm)}",
                     f"unknown param {_shown(nm)}; known: {_names_list(params)}")
        values = {**params, **pop.params}
        for nm, v in pop.do.items():
            if nm not in nodes:
                fail(f"populations.{pop_name}.do.{_path_key(nm)}", f"unknown node {_shown(nm)}; known: {_names_list(nodes)}")
            e = formula(f"populations.{pop_name}.do.{nm}", v, allowed=_Allowed(known, {nm}),
                        sets=[(pop_name, values)])
            problem = intervention_problem(spec, nm, e, values)
            if problem:
                fail(f"populations.{pop_name}.do.{nm}", problem)

    # the graph: parents inferred from formulas; a cycle names itself
    from simsys.graph import topological_order  # local: graph imports nothing from here

    try:
        order = topological_order({n: sorted(p) for n, p in parents.items()})
    except Exception as exc:  # GraphError
        fail("nodes", str(exc))
    for pop_name, pop in spec.populations.items():  # an intervention can close a cycle too
        if not pop.do:
            continue
        shifted = dict(parents)
        for nm in pop.do:
            used = formulas[f"populations.{pop_name}.do.{nm}"].names() - param_names
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
            fail(path, f"names a missing node {g!r}; nodes: {_names_list(nodes)}")
        if g not in discrete:
            fail(path, f"group {g!r} must be a bernoulli or categorical node, got kind {nodes[g].kind!r}")
    if roles.target not in nodes:
        fail("roles.target", f"names a missing node {roles.target!r}; nodes: {_names_list(nodes)}")
    if not _is_binary(spec, roles.target, formulas):
        fail("roles.target", f"target {roles.target!r} must be 0/1 (a bernoulli node or a comparison)")
    for i, f in enumerate(roles.features):
        if f not in nodes:
            fail(f"roles.features[{i}]", f"names a missing node {f!r}; nodes: {_names_list(nodes)}")
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
                    fail(f"{base}.populations[{j}]", f"unknown population {p!r}; known: {_names_list(spec.populations)}")
        if hasattr(b, "group"):
            _selector(spec, b.group, f"{base}.group", fail)
        for fld, rng in BIAS_FIELDS[b.type].items():
            v = getattr(b, fld)
            if v is not None:
                formula(f"{base}.{fld}", v, allowed=_Allowed(known), rng=rng)
        if isinstance(b, MeasurementBias | MissingnessBias) and b.feature not in nodes:
            fail(f"{base}.feature", f"names a missing node {b.feature!r}; nodes: {_names_list(nodes)}")
        if isinstance(b, LabelBias) and b.target is not None and b.target not in nodes:
            fail(f"{base}.target", f"names a missing node {b.target!r}")
        if isinstance(b, SelectionBias) and b.node not in nodes:
            fail(f"{base}.node", f"names a missing node {b.node!r}; nodes: {_names_list(nodes)}")
        if isinstance(b, ProxyLabelBias):
            if b.label not in nodes:
                fail(f"{base}.label", f"names a missing node {b.label!r}; nodes: {_names_list(nodes)}")
            if not _is_binary(spec, b.label, formulas):
                fail(f"{base}.label", f"proxy label {b.label!r} must be 0/1 (a bernoulli node or a comparison such as 'cost > 5000')")
        if isinstance(b, RepresentationBias):
            keeps = [formulas.get(f"{base}.{k}") for k in ("keep", "keep_positive", "keep_negative")]
            consts = [e for e in keeps if e is not None and not (e.names() - param_names)]
            if b.keep is not None:
                all_zero = consts and ex.evaluate_constant(consts[0], params) == 0.0
            else:
                kp = formulas.get(f"{base}.keep_positive")
                kn = formulas.get(f"{base}.keep_negative")
                all_zero = (kp is not None and not (kp.names() - param_names) and ex.evaluate_constant(kp, params) == 0.0
                            and kn is not None and not (kn.names() - param_names) and ex.evaluate_constant(kn, params) == 0.0)
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


def _constant_parts(e: ex.Expr, params: set[str]) -> list[ex.Expr]:
    """The largest sub-expressions of ``e`` that use no node (numbers and params only), other than
    bare numbers and params (which are finite already); ``[e]`` when ``e`` is constant itself."""
    if not (e.names() - params):
        return [e]
    out, stack = [], [e]
    while stack:
        x = stack.pop()
        for a in x.args:
            if a.names() - params:
                stack.append(a)
            elif a.op not in ("const", "name"):
                out.append(a)
    return out


def _names_list(names, limit: int = 40) -> str:
    """``a, b, c`` (the first ``limit`` of them, then how many more), or ``(none)``."""
    names = list(names)
    if not names:
        return "(none)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def intervention_problem(spec: ScenarioSpec, node: str, e: ex.Expr, params: Mapping[str, float]) -> str | None:
    """What is wrong with intervening ``do(node = e)``, or None.

    A 0/1 node (bernoulli, or deterministic with a 0/1 formula) takes 0, 1 or a 0/1 formula (a
    comparison or a logical formula); a categorical node takes a constant category code. Anything
    else would be stored as a one-byte code it does not fit (0.5 would read as 0).
    """
    s = spec.nodes[node]
    if isinstance(s, CategoricalNode):
        k = len(s.categories)
        if e.names() - set(params):
            return f"an intervention on a categorical node must be a category code 0..{k - 1}, not a formula of other nodes"
        v = ex.evaluate_constant(e, dict(params))
        if not (v == int(v) if math.isfinite(v) else False) or not 0 <= v < k:
            return f"expected a category code 0..{k - 1} of {s.categories[0]!r}..{s.categories[-1]!r}, got {v:g}"
        return None
    binary = isinstance(s, BernoulliNode) or (
        isinstance(s, DeterministicNode) and ex.is_boolean(ex.parse(s.value)))
    if not binary:
        return None
    if e.names() - set(params):
        if ex.is_boolean(e):
            return None
        return "an intervention on a 0/1 node must be 0, 1 or a comparison or logical formula (e.g. 'age > 50')"
    v = ex.evaluate_constant(e, dict(params))
    if v not in (0.0, 1.0):
        return f"expected 0 or 1 for a 0/1 node, got {v:g}"
    return None


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
        where = f"{path}.{_path_key(node)}"
        if node not in spec.nodes:
            fail(where, f"names a missing node {_shown(node)}; nodes: {_names_list(spec.nodes)}")
        s = spec.nodes[node]
        if isinstance(s, CategoricalNode):
            if isinstance(value, str):
                if value not in s.categories:
                    fail(where, f"unknown category {_shown(value)}; allowed: "
                         f"{', '.join(_plain(c) for c in s.categories[:40])}")
            elif not (0 <= value < len(s.categories)):
                fail(where, f"category code {value} out of range 0..{len(s.categories) - 1}")
        elif isinstance(s, BernoulliNode) or (isinstance(s, DeterministicNode)):
            if value not in (0, 1):
                fail(where, f"expected 0 or 1 for a 0/1 node, got {_shown(value)}")
        else:
            fail(where, f"a group must be a bernoulli or categorical node, got kind {s.kind!r}")


def _plain(text: str) -> str:
    """A category name as written, or quoted when it would not read well in a one-line message."""
    return text if text.isprintable() and 0 < len(text) <= 40 else _shown(text, 40)


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
