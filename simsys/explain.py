"""Plain-language descriptions of a scenario: what ``simsys explain`` prints, for a class.

This module owns the words: it walks a validated scenario and says, in sentences, what each node is
and what it depends on, what each bias does to whom, and what the experiment measures. It also owns
the small structural facts those sentences and the drawing need -- which nodes a bias reads and what
it writes (:func:`bias_reads`, :func:`bias_writes`), and which biases and nodes a swept setting
moves (:func:`affected_by`) -- so that the picture (``simsys.drawing``), the report
(``simsys.report``) and the text agree. It imports nothing heavier than the scenario module.

Two lengths: :func:`brief` is what ``simsys explain`` prints, one screen for a class -- who the
patients are, what the model sees, and each bias in one sentence with its numbers per group
("melanoma = 1 recorded as 0: 5% light, 10% medium, 20% dark"). Formulas are evaluated per group
rather than printed (:class:`GroupFacts`): exactly where a formula depends only on params and the
group, and otherwise as the average over a small simulated sample of the clean population (marked
``≈`` and said so), which is why :func:`brief` imports the sampler when called. :func:`explain` is
the full walk that ``simsys explain --full`` prints: every variable, formula and population.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simsys.biases import bias_name, observed_variables
from simsys.scenario import (
    BIAS_FIELDS,
    NODE_FIELDS,
    CategoricalNode,
    LabelBias,
    MeasurementBias,
    MissingnessBias,
    ProxyLabelBias,
    RepresentationBias,
    Scenario,
    SelectionBias,
    indicator_names,
    split_path,
)

WIDTH = 96
"""Line width of the text ``simsys explain`` prints."""

KIND_WORDS = {
    "bernoulli": "a yes/no (0/1) variable",
    "categorical": "a category",
    "normal": "a normally distributed number",
    "lognormal": "a positive, right-skewed number (log-normal)",
    "poisson": "a count (Poisson)",
    "uniform": "a number spread evenly over a range",
    "deterministic": "computed from other variables, with no randomness of its own",
}

BIAS_WORDS = {
    "representation": "under-representation",
    "selection": "selection",
    "label": "label (annotation) bias",
    "measurement": "measurement bias",
    "missingness": "missing values",
    "proxy_label": "proxy label",
}


# --- structure ----------------------------------------------------------------------------------------
def formula_names(scenario: Scenario, key: str) -> tuple[list[str], list[str]]:
    """The nodes and the params a formula (by key path, e.g. ``biases[0].keep``) uses.

    Category indicators (``skin_tone_dark``) count as their node (``skin_tone``). Both lists keep the
    order of the scenario's declarations, so that sentences built from them are stable.
    """
    expr = scenario.formulas.get(key)
    if expr is None:
        return [], []
    spec = scenario.spec
    indicators = indicator_names(spec)
    used = expr.names()
    nodes = {indicators[u][0] if u in indicators else u for u in used if u not in spec.params}
    return [n for n in spec.nodes if n in nodes], [p for p in spec.params if p in used]


def _bias_formula_keys(scenario: Scenario, index: int) -> list[str]:
    b = scenario.spec.biases[index]
    return [f"biases[{index}].{f}" for f in BIAS_FIELDS[b.type] if f"biases[{index}].{f}" in scenario.formulas]


def bias_reads(scenario: Scenario, index: int) -> list[str]:
    """The nodes a bias reads: its group's nodes, the nodes its formulas use, and what it corrupts."""
    spec = scenario.spec
    b = spec.biases[index]
    out: set[str] = set(getattr(b, "group", {}) or {})
    for key in _bias_formula_keys(scenario, index):
        out |= set(formula_names(scenario, key)[0])
    if isinstance(b, RepresentationBias) and b.keep is None:
        out.add(spec.roles.target)  # outcome-dependent: who is kept depends on the true target
    elif isinstance(b, SelectionBias):
        out.add(b.node)
    elif isinstance(b, LabelBias):
        out.add(b.target or spec.roles.target)
    elif isinstance(b, MeasurementBias | MissingnessBias):
        out.add(b.feature)
    elif isinstance(b, ProxyLabelBias):
        out.add(b.label)
    return [n for n in spec.nodes if n in out]


KEPT = "in training data"
"""Name of the drawing's selection node (who is kept by representation and selection biases)."""


def bias_writes(scenario: Scenario, index: int) -> str:
    """What a bias changes: ``<variable>_observed``, or :data:`KEPT` for who enters the data."""
    b = scenario.spec.biases[index]
    if isinstance(b, RepresentationBias | SelectionBias):
        return KEPT
    if isinstance(b, LabelBias):
        return (b.target or scenario.spec.roles.target) + "_observed"
    if isinstance(b, MeasurementBias | MissingnessBias):
        return b.feature + "_observed"
    return scenario.spec.roles.target + "_observed"  # proxy_label


def observed_nodes(scenario: Scenario) -> list[str]:
    """The ``_observed`` variables of the scenario (the target's always exists)."""
    return [v + "_observed" for v in observed_variables(scenario)]


def affected_by(scenario: Scenario, path: str) -> tuple[list[int], list[str]]:
    """The biases (indices) and nodes a swept setting moves.

    ``biases[2].keep`` moves bias 2; ``nodes.age.sd`` moves node ``age``; ``params.keep_dark``
    moves every bias and node whose formulas use that param. Anything else moves nothing drawn.
    """
    try:
        keys = split_path(path)
    except ValueError:
        return [], []
    spec = scenario.spec
    if keys[0] == "biases" and len(keys) > 1 and isinstance(keys[1], int) and keys[1] < len(spec.biases):
        return [keys[1]], []
    if keys[0] == "nodes" and len(keys) > 1 and keys[1] in spec.nodes:
        return [], [str(keys[1])]
    if keys[0] == "params" and len(keys) == 2:
        p = keys[1]
        biases = [i for i in range(len(spec.biases))
                  if any(p in formula_names(scenario, k)[1] for k in _bias_formula_keys(scenario, i))]
        nodes = sorted({k.split(".")[1] for k in scenario.formulas
                        if k.startswith("nodes.") and p in formula_names(scenario, k)[1]},
                       key=list(spec.nodes).index)
        return biases, nodes
    return [], []


# --- words ------------------------------------------------------------------------------------------
def number(value: Any) -> str:
    """A setting as a reader would write it: ``0.3``, ``1``, ``300,000``; formulas unchanged."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:g}"
    return " ".join(str(value).split())


def _written(scenario: Scenario, key: str) -> str:
    """A field's value as the scenario file wrote it (whitespace collapsed)."""
    node: Any = scenario.data
    for k in split_path(key):
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            return ""
    return number(node)


def _params_text(scenario: Scenario, params: list[str]) -> str:
    if not params:
        return ""
    vals = ", ".join(f"{p} = {number(scenario.spec.params[p])}" for p in params)
    return f" (with {vals})"


def _value_text(scenario: Scenario, key: str) -> str:
    """``where(...) (with keep_dark = 0.3, ...)`` or ``0.2`` (a field left out: its default)."""
    text = _written(scenario, key)
    if not text:
        keys = split_path(key)
        obj: Any = scenario.spec
        for k in keys:
            obj = obj[k] if isinstance(k, int) else getattr(obj, str(k), None)
        text = number(obj)
    return text + _params_text(scenario, formula_names(scenario, key)[1])


def _subject(scenario: Scenario, selector: Mapping[str, Any] | None) -> str:
    """``each patient is`` / ``patients with g = 1 are``."""
    return "each patient is" if not selector else who(scenario, selector) + " are"


def who(scenario: Scenario, selector: Mapping[str, Any] | None, *, plural: bool = False) -> str:
    """``every patient`` (``all patients``) / ``patients with skin_tone = dark and sex = F``."""
    if not selector:
        return "all patients" if plural else "every patient"
    return "patients with " + " and ".join(f"{n} = {v}" for n, v in selector.items())


def join_words(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def roles_of(scenario: Scenario, node: str) -> list[str]:
    """The roles a node plays: ``group``, ``target``, ``feature``, ``reference`` (an extra label)."""
    spec = scenario.spec
    out = []
    if node in scenario.groups:
        out.append("group")
    if node == spec.roles.target:
        out.append("target")
    if node in spec.roles.features:
        out.append("feature")
    refs = (spec.experiment or {}).get("references") or []
    if isinstance(refs, list) and node in refs:
        out.append("reference")
    return out


ROLE_SENTENCES = {
    "group": "the group attribute: every metric is compared between its values",
    "target": "the target: the true outcome the models should predict",
    "feature": "a feature: the models see it (as observed)",
    "reference": "an extra reference label the predictions are also scored against",
}


def describe_node(scenario: Scenario, node: str) -> list[str]:
    """Sentences about one node: what it is, how it is drawn, what it depends on, its role."""
    spec = scenario.spec
    s = spec.nodes[node]
    what = KIND_WORDS[s.kind]
    if isinstance(s, CategoricalNode):
        key = "probs" if s.probs is not None else "logits"
        params = sorted({p for i in range(len(s.categories))
                         for p in formula_names(scenario, f"nodes.{node}.{key}[{i}]")[1]},
                        key=list(spec.params).index)
        weights = ", ".join(_written(scenario, f"nodes.{node}.{key}[{i}]") for i in range(len(s.categories)))
        what += (f" ({', '.join(s.categories)}), drawn with {'weights' if key == 'probs' else 'log-weights'} "
                 f"{weights}{_params_text(scenario, params)}")
    else:
        parts = []
        for fld in NODE_FIELDS[s.kind]:
            if f"nodes.{node}.{fld}" in scenario.formulas:
                parts.append(f"{fld.replace('_', ' ')} {_value_text(scenario, f'nodes.{node}.{fld}')}")
        if parts:
            what += ": " + "; ".join(parts)
    if s.unit:
        what += f" (in {s.unit})"
    if s.description:
        lines = [f"{node} -- " + " ".join(s.description.split()).rstrip(".") + ".", f"It is {what}."]
    else:
        lines = [f"{node} is {what}."]
    parents = list(scenario.parents.get(node, ()))
    if parents:
        lines.append(f"It depends on {join_words(parents)}.")
    else:
        lines.append("It depends on nothing else in the graph: a root cause.")
    children = [n for n in scenario.order if node in scenario.parents.get(n, ())]
    if children:
        lines.append(f"It affects {join_words(children)}.")
    for r in roles_of(scenario, node):
        lines.append(f"Role: {ROLE_SENTENCES[r]}.")
    return lines


def bias_populations(scenario: Scenario, index: int) -> list[str]:
    """The populations a bias acts on (its own list, else those marked ``biased: true``)."""
    b = scenario.spec.biases[index]
    pops = scenario.spec.populations
    if b.populations is not None:
        return [p for p in b.populations if pops[p].biased]
    return [p for p, spec in pops.items() if spec.biased]


def describe_bias(scenario: Scenario, index: int) -> list[str]:
    """Sentences about one bias: what it does, to whom, driven by what, in which populations."""
    spec = scenario.spec
    b = spec.biases[index]
    name = bias_name(scenario, index)
    base = f"biases[{index}]"
    target = spec.roles.target
    head = f"{name} ({BIAS_WORDS[b.type]})"
    head += (" -- " + " ".join(b.description.split()).rstrip(".") + ".") if b.description else "."
    lines = [head]
    if isinstance(b, RepresentationBias):
        if b.keep is not None:
            lines.append(f"Who is in the training data: {_subject(scenario, b.group)} kept with probability "
                         f"{_value_text(scenario, base + '.keep')}; the others are dropped, so the model "
                         "never sees them.")
        else:
            parts = []
            label = f"recorded {target}" if b.by == "observed" else target
            if b.keep_positive is not None:
                parts.append(f"those with {label} = 1 with probability {_value_text(scenario, base + '.keep_positive')}")
            if b.keep_negative is not None:
                parts.append(f"those with {label} = 0 with probability {_value_text(scenario, base + '.keep_negative')}")
            lines.append(f"Who is in the training data: among {who(scenario, b.group, plural=True)}, it keeps "
                         f"{' and '.join(parts)}; the others are dropped, so the model never sees them.")
    elif isinstance(b, SelectionBias):
        lines.append(f"Who is in the training data: only patients with {b.node} = 1 (non-zero) enter it; "
                     "the others are never seen by the model.")
    elif isinstance(b, LabelBias):
        t = b.target or target
        parts = []
        if _written(scenario, base + ".false_negative_rate") not in ("", "0"):
            parts.append(f"a true {t} = 1 is recorded as 0 (a missed case) with probability "
                         f"{_value_text(scenario, base + '.false_negative_rate')}")
        if _written(scenario, base + ".false_positive_rate") not in ("", "0"):
            parts.append(f"a true {t} = 0 is recorded as 1 (a false alarm) with probability "
                         f"{_value_text(scenario, base + '.false_positive_rate')}")
        action = "; ".join(parts) if parts else "labels are left unchanged at these settings"
        lines.append(f"What the label says: among {who(scenario, b.group, plural=True)}, {action}. The model is "
                     f"trained on the recorded label {t}_observed; the truth {t} is kept beside it.")
    elif isinstance(b, MeasurementBias):
        lines.append(f"What the model sees: for {who(scenario, b.group, plural=True)}, {b.feature} is "
                     f"recorded as {_value_text(scenario, base + '.scale')} times the true value, plus "
                     f"{_value_text(scenario, base + '.offset')}, plus noise with sd "
                     f"{_value_text(scenario, base + '.noise_sd')}.")
    elif isinstance(b, MissingnessBias):
        lines.append(f"What the model sees: for {who(scenario, b.group, plural=True)}, {b.feature} is missing with "
                     f"probability {_value_text(scenario, base + '.rate')}.")
    elif isinstance(b, ProxyLabelBias):
        lines.append(f"What the label says: the training label is {b.label}, not the true {target}: "
                     f"the model learns to predict {b.label}.")
    reads = bias_reads(scenario, index)
    if reads:
        lines.append(f"It depends on {join_words(reads)}.")
    pops = bias_populations(scenario, index)
    if pops:
        lines.append(f"It acts on the population{'s' if len(pops) > 1 else ''} {join_words(pops)}; "
                     "the clean twin is the same patients without it.")
    else:
        lines.append("It acts on no population (none is marked biased).")
    if isinstance(b, LabelBias | ProxyLabelBias):
        from simsys.biases import acts_on

        test = (scenario.spec.experiment or {}).get("test", "test")
        if test in scenario.spec.populations and test not in pops and acts_on(scenario, index, test, True):
            lines.append(f"In simsys run it also acts on the recorded labels of the {test} population (an "
                         "audit's labels are recorded the same way), where nobody is dropped.")
    return lines


def describe_change(scenario: Scenario, path: str, before: Any, after: Any) -> str:
    """``Lowering keep_dark from 1 to 0.03 (it sets the bias under_representation)``."""
    verb = "Changing"
    if isinstance(before, int | float) and isinstance(after, int | float) and not isinstance(before, bool):
        verb = "Raising" if after > before else "Lowering" if after < before else "Keeping"
    try:
        keys = split_path(path)
    except ValueError:
        keys = [path]
    spec = scenario.spec
    what = path
    if keys[0] == "biases" and len(keys) == 3 and isinstance(keys[1], int) and keys[1] < len(spec.biases):
        b = spec.biases[keys[1]]
        sel = getattr(b, "group", None)
        g = who(scenario, sel, plural=True)
        one = "a patient" + (" with " + " and ".join(f"{n} = {v}" for n, v in sel.items()) if sel else "")
        t = spec.roles.target
        what = {
            "keep": f"the probability that {one} stays in the training data",
            "keep_positive": f"the probability that {one} and {t} = 1 stays in the training data",
            "keep_negative": f"the probability that {one} and {t} = 0 stays in the training data",
            "false_negative_rate": f"the share of true {t} = 1 labelled 0 among {g}",
            "false_positive_rate": f"the share of true {t} = 0 labelled 1 among {g}",
            "offset": f"the offset added to {getattr(b, 'feature', '')} for {g}",
            "scale": f"the scale of {getattr(b, 'feature', '')} for {g}",
            "noise_sd": f"the measurement noise of {getattr(b, 'feature', '')} for {g}",
            "rate": f"the share of {g} whose {getattr(b, 'feature', '')} is missing",
        }.get(str(keys[2]), path)
        what += f" (bias {bias_name(scenario, keys[1])})"
    elif keys[0] == "params" and len(keys) == 2:
        what = str(keys[1])
        biases, nodes = affected_by(scenario, path)
        used = [f"bias {bias_name(scenario, i)}" for i in biases] + nodes
        if used:
            what += f" (it sets {join_words(used)})"
    return f"{verb} {what} from {number(before)} to {number(after)}"


def setting_label(path: str) -> str:
    """A short name for a swept path: ``params.keep_dark`` -> ``keep_dark``."""
    return path[len("params."):] if path.startswith("params.") else path


def describe_experiment(scenario: Scenario) -> list[str]:
    """Sentences about the experiment block: models, sweep, replicates, what is measured."""
    spec = scenario.spec
    exp = dict(spec.experiment or {})
    target = spec.roles.target
    groups = join_words(scenario.groups)
    models = exp.get("models") or [{"model": "logistic_regression"}, {"model": "gradient_boosting"}]
    names = []
    for m in models:
        m = {"model": m} if isinstance(m, str) else m
        nm, kind = m.get("name", m.get("model")), m.get("model")
        names.append(nm if nm == kind else f"{nm} ({kind})")
    train = exp.get("train", "train")
    test = exp.get("test", "test")
    lines = [f"Models: {join_words(names)}."]
    sweep = exp.get("sweep") or {}
    grid = sweep.get("grid") or {}
    points = sweep.get("points") or []
    if grid or points:
        parts = [f"{p} over {', '.join(number(v) for v in vals)}" for p, vals in grid.items()]
        s = "The sweep moves " + join_words(parts) if parts else "The sweep"
        if grid and len(grid) > 1:
            s += " (every combination)"
        if points:
            s += (" plus " if parts else " runs ") + f"{len(points)} explicit setting{'s' if len(points) > 1 else ''}"
        lines.append(s + ".")
    else:
        lines.append("There is no sweep: one setting, the scenario's own.")
    lines.append(
        f"For every setting and each of {exp.get('replicates', 3)} replicates (fresh patients, a "
        f"seed each), simsys draws from the {train} population the biased training set (biases on) "
        f"and its clean twin (the same patients before any bias acted), fits every model on each, "
        f"chooses the decision threshold on a validation set ({_threshold_words(exp.get('threshold'))}), "
        f"and scores the predictions on the {test} population against the true {target}, and against "
        f"its recorded label {target}_observed (what an audit with only those labels would see).")
    lines.append(
        f"What it measures: per-group metrics (false-negative rate, false-positive rate, AUROC, "
        f"calibration, ...) for each group of {groups}, with the cases behind each rate; each "
        f"metric's signed gap between the worst-off group and a reference group; and how much of "
        f"that gap the injected biases caused: the gap of the model trained on the biased data minus "
        f"the gap of the same model trained on the clean twin. Every number comes with a 95% interval "
        f"that accounts for both the patients drawn and the replicates (docs/metrics.md), and a "
        f"statement is made only when its interval supports it.")
    return lines


def _threshold_words(policy: Any) -> str:
    if not isinstance(policy, Mapping) or policy.get("kind", "fixed") == "fixed":
        t = policy.get("threshold", 0.5) if isinstance(policy, Mapping) else 0.5
        return f"fixed at {number(t)}"
    if policy["kind"] == "max_f1":
        return "the one with the best F1 score"
    return f"the one giving {policy['kind']} {number(policy.get('target'))}"


def sections(scenario: Scenario) -> list[tuple[str, list[list[str]]]]:
    """The walk-through as (title, paragraphs), each paragraph a list of sentences."""
    spec = scenario.spec
    out: list[tuple[str, list[list[str]]]] = []
    intro = [" ".join(spec.description.split())] if spec.description else []
    intro.append(f"It has {len(spec.nodes)} variables and {len(spec.biases)} injected "
                 f"bias{'es' if len(spec.biases) != 1 else ''}; the root seed is {spec.seed}.")
    out.append((f"Scenario {spec.name}", [intro]))
    out.append(("The variables, in causal order (each after what it depends on)",
                [describe_node(scenario, n) for n in scenario.order]))
    obs = observed_nodes(scenario)
    roles = spec.roles
    out.append(("Roles", [[
        f"Group: {join_words(scenario.groups)}. Target (the truth): {roles.target}. "
        f"Features the models see: {join_words(list(roles.features))}.",
        f"Observed (recorded) versions that may differ from the truth: {join_words(obs)}."
        + (" Reference group for comparisons: " + who(scenario, roles.reference_group).removeprefix("patients with ")
           + "." if roles.reference_group else "")]]))
    if spec.biases:
        out.append(("The injected biases (in the order they act)",
                    [describe_bias(scenario, i) for i in range(len(spec.biases))]))
    else:
        out.append(("The injected biases", [["None: the data are the truth."]]))
    pops = []
    for name, p in spec.populations.items():
        s = (f"{name}: {number(p.n)} patients drawn, "
             + ("biased" if p.biased else "not biased (nobody is dropped; as a test population its "
                "recorded labels still carry the label biases that act on it)"))
        if p.params:
            s += "; with " + ", ".join(f"{k} = {number(v)}" for k, v in p.params.items())
        if p.do:
            s += "; setting " + ", ".join(f"{k} := {number(v)}" for k, v in p.do.items())
        if p.description:
            s += " -- " + " ".join(p.description.split())
        pops.append([s + "."])
    out.append(("Populations", pops))
    if spec.experiment is not None:
        out.append(("The experiment", [describe_experiment(scenario)]))
    return out


def explain(scenario: Scenario, *, width: int = WIDTH) -> str:
    """The full plain-text walk-through that ``simsys explain --full`` prints (:func:`brief` is
    the one-screen version)."""
    lines: list[str] = []
    for title, paragraphs in sections(scenario):
        lines += [title, "=" * len(title) if not lines else "-" * len(title)]
        numbered = len(paragraphs) > 1
        for i, para in enumerate(paragraphs, 1):
            text = " ".join(para)
            prefix = f"{i}. " if numbered else ""
            lines += textwrap.wrap(text, width=width, initial_indent=prefix,
                                   subsequent_indent=" " * len(prefix), break_on_hyphens=False)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- the one-screen version ------------------------------------------------------------------------
BRIEF_SAMPLE = 20_000
"""Patients simulated by :func:`brief` to evaluate formulas that depend on more than the group."""

BRIEF_WORDS = {"representation": "under-representation", "selection": "selection",
               "label": "label bias", "measurement": "measurement bias", "missingness": "missing values",
               "proxy_label": "proxy label"}

_NEUTRAL = {"keep": 1.0, "keep_positive": 1.0, "keep_negative": 1.0, "false_negative_rate": 0.0,
            "false_positive_rate": 0.0, "offset": 0.0, "scale": 1.0, "noise_sd": 0.0, "rate": 0.0}
"""The value of each bias field that leaves a patient unchanged (for patients outside its group)."""


@dataclass
class _Coding:
    """The groups (intersections of the group attributes), coded as ``simsys.groups.GroupCoding``
    codes them (first attribute slowest); kept here so that explaining does not import the runner
    and scikit-learn with it."""

    nodes: list[str]
    cards: list[int]
    labels: list[str]

    @classmethod
    def of(cls, scenario: Scenario) -> _Coding:
        import itertools

        nodes = scenario.groups
        cats = [scenario.categories(g) for g in nodes]
        labels = [" & ".join(f"{g}={c[i]}" for g, c, i in zip(nodes, cats, idx))
                  for idx in itertools.product(*(range(len(c)) for c in cats))]
        return cls(nodes, [len(c) for c in cats], labels)

    def codes(self, cohort) -> Any:
        import numpy as np

        code = np.zeros(cohort.n, dtype=np.int64)
        for g, k in zip(self.nodes, self.cards):
            code = code * k + cohort.column(g).astype(np.int64)
        return code


@dataclass
class GroupFacts:
    """Per-group values of a scenario's formulas in one population.

    A formula that uses only params and the group's own nodes is evaluated exactly, once per group.
    Any other is evaluated on every patient of a simulated sample of the clean population (the
    truth; ``n`` patients, the scenario's seed) and averaged within each group: :meth:`values`
    then says the value is estimated. The sample is drawn on first need only.
    """

    scenario: Scenario
    population: str
    n: int = BRIEF_SAMPLE
    _env: dict | None = field(default=None, repr=False)
    _codes: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        spec = self.scenario.spec
        self.coding = _Coding.of(self.scenario)
        self.params = {**spec.params, **spec.populations[self.population].params}
        # a single categorical group reads best by its category names; otherwise full labels
        g = self.scenario.groups
        named = len(g) == 1 and isinstance(spec.nodes[g[0]], CategoricalNode)
        self.names = ([lab.split("=", 1)[1] for lab in self.coding.labels] if named
                      else list(self.coding.labels))
        self.by = f"{g[0]}" if named else join_words(g)

    # the sample (truth) and each patient's group
    def _sample(self) -> tuple[dict, Any]:
        if self._env is None:
            import numpy as np

            from simsys.simulate import build_plan, run_plan

            plan = build_plan(self.scenario, self.population, biased=False)
            cohort = run_plan(plan, self.n, int(self.scenario.spec.seed), threads=1)
            env: dict[str, Any] = dict(self.params)
            for node in self.scenario.spec.nodes:
                env[node] = cohort.column(node).astype(np.float64)
            for ind, (node, code) in indicator_names(self.scenario.spec).items():
                env[ind] = (env[node] == code).astype(np.float64)
            self._env = env
            self._codes = self.coding.codes(cohort)
        return self._env, self._codes

    def _group_env(self, gi: int) -> dict[str, float]:
        """Params plus the group's node codes and category indicators (for exact evaluation)."""
        env: dict[str, float] = dict(self.params)
        idx, rest = [], gi
        for k in reversed(self.coding.cards):
            idx.append(rest % k)
            rest //= k
        idx.reverse()
        ind = indicator_names(self.scenario.spec)
        for node, code in zip(self.coding.nodes, idx):
            env[node] = float(code)
            for name, (n2, c2) in ind.items():
                if n2 == node:
                    env[name] = float(c2 == code)
        return env

    def _exact(self, exprs) -> bool:
        ind = indicator_names(self.scenario.spec)
        allowed = set(self.params) | set(self.coding.nodes) | {
            i for i, (n, _) in ind.items() if n in self.coding.nodes}
        return all(e.names() <= allowed for e in exprs if e is not None)

    def values(self, expr, *, member=None, neutral: float = 0.0, among=None) -> tuple[list[float], bool]:
        """Per-group values of ``where(member, expr, neutral)``, and whether they are exact.

        ``among`` (a 0/1 formula) averages over those patients only (e.g. the true cases, for a
        false-negative rate); a group with none of them gets NaN.
        """
        import numpy as np

        from simsys import expressions as ex

        G = len(self.coding.labels)
        if self._exact([expr, member]):  # constant within each group: ``among`` changes nothing
            out = []
            for gi in range(G):
                env = self._group_env(gi)
                v = ex.evaluate_constant(expr, env)
                if member is not None and not ex.evaluate_constant(member, env):
                    v = neutral
                out.append(v)
            return out, True
        env, codes = self._sample()
        n = len(codes)
        v = np.broadcast_to(np.asarray(ex.evaluate(expr, env), dtype=np.float64), (n,))
        if member is not None:
            m = np.broadcast_to(np.asarray(ex.evaluate(member, env), dtype=np.float64), (n,))
            v = np.where(m != 0, v, neutral)
        w = np.ones(n) if among is None else np.broadcast_to(
            np.asarray(ex.evaluate(among, env), dtype=np.float64) != 0, (n,)).astype(np.float64)
        num = np.bincount(codes, weights=v * w, minlength=G)
        den = np.bincount(codes, weights=w, minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            return list(num / den), False

    def shares(self) -> tuple[list[float], bool]:
        """Each group's share of the population."""
        import numpy as np

        from simsys import expressions as ex

        spec = self.scenario.spec
        nodes = self.coding.nodes
        if len(nodes) == 1 and not spec.populations[self.population].do:
            s = spec.nodes[nodes[0]]
            f = self.scenario.formulas
            if isinstance(s, CategoricalNode) and s.probs is not None:
                w = [f[f"nodes.{nodes[0]}.probs[{i}]"] for i in range(len(s.probs))]
                if self._exact(w) and all(not e.names() - set(self.params) for e in w):
                    vals = [ex.evaluate_constant(e, self.params) for e in w]
                    return [v / sum(vals) for v in vals], True
            if s.kind == "bernoulli" and s.p is not None:
                e = f[f"nodes.{nodes[0]}.p"]
                if not e.names() - set(self.params):
                    p = min(1.0, max(0.0, ex.evaluate_constant(e, self.params)))
                    return [1 - p, p], True
        _, codes = self._sample()
        counts = np.bincount(codes, minlength=len(self.coding.labels))
        return list(counts / counts.sum()), False

    def prevalence(self, node: str) -> tuple[list[float], bool]:
        """The share of each group with ``node`` = 1 (exact for a bernoulli ``p`` / ``logit`` of
        params and the group only)."""
        from simsys import expressions as ex

        s = self.scenario.spec.nodes[node]
        f = self.scenario.formulas
        if s.kind == "bernoulli" and not self.scenario.spec.populations[self.population].do:
            key = f"nodes.{node}.p" if s.p is not None else f"nodes.{node}.logit"
            e = f[key]
            if self._exact([e]):
                vals, _ = self.values(e)
                if s.p is None:
                    vals = [1 / (1 + math.exp(-v)) if math.isfinite(v) else float(v > 0) for v in vals]
                return [min(1.0, max(0.0, v)) for v in vals], True
        return self.values(ex.call("!=", ex.name(node), ex.const(0.0)))

    def per_group(self, vals: list[float], exact: bool, fmt=None, *, same: str = "in every group") -> str:
        """``5% light, 10% medium, 20% dark`` (``≈`` before estimates); ``5% in every group``."""
        fmt = fmt or percent
        shown = [("" if exact else "≈") + fmt(v) for v in vals]
        if len(set(shown)) == 1 and len(shown) > 1:
            return f"{shown[0]} {same}"
        return ", ".join(f"{v} {n}" for v, n in zip(shown, self.names))


def percent(x: float) -> str:
    """A share as a reader writes it: ``5%``, ``2.5%``, ``48%``, ``0.33%``, ``100%``."""
    if x is None or not math.isfinite(x):
        return "n/a"
    v = 100 * x
    if v == 0 or abs(v) >= 9.95:
        return f"{v:.0f}%"
    return f"{v:.2g}%"


def signed(x: float) -> str:
    """A shift as a reader writes it: ``+2.8``, ``-0.3``, ``0``."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return "0" if x == 0 else f"{x:+.2g}"


def _field_values(facts: GroupFacts, index: int, fld: str, *, among=None) -> tuple[list[float], bool] | None:
    """Per-group values of a bias field (patients outside the bias's group get the neutral value)."""
    from simsys.biases import group_indicator

    sc = facts.scenario
    b = sc.spec.biases[index]
    e = sc.formulas.get(f"biases[{index}].{fld}")
    if e is None:
        return None
    sel = getattr(b, "group", None) or {}
    member = group_indicator(sc, sel) if sel else None
    return facts.values(e, member=member, neutral=_NEUTRAL[fld], among=among)


def bias_lines(scenario: Scenario, facts: GroupFacts | None = None) -> list[str]:
    """One sentence per bias with its numbers per group (``missed_melanomas (label): ...``)."""
    from simsys import expressions as ex

    spec = scenario.spec
    if facts is None:
        facts = GroupFacts(scenario, _train_population(scenario))
    target = spec.roles.target
    out = []
    for i, b in enumerate(spec.biases):
        head = f"{bias_name(scenario, i)} ({BRIEF_WORDS[b.type]}): "
        if isinstance(b, RepresentationBias):
            if b.keep is not None:
                vals, exact = _field_values(facts, i, "keep")
                text = f"kept in the training data: {facts.per_group(vals, exact)}"
            else:
                parts = []
                for fld, v in (("keep_positive", 1), ("keep_negative", 0)):
                    got = _field_values(facts, i, fld)
                    if got is not None:
                        parts.append(f"with {target} = {v}, {facts.per_group(*got)}")
                text = "kept in the training data: " + "; ".join(parts)
        elif isinstance(b, SelectionBias):
            vals, exact = facts.values(ex.call("!=", ex.name(b.node), ex.const(0.0)))
            text = f"only patients with {b.node} = 1 enter the training data: {facts.per_group(vals, exact)}"
        elif isinstance(b, LabelBias):
            t = b.target or target
            parts = []
            for fld, v, words in (("false_negative_rate", 1, "recorded as 0 (missed)"),
                                  ("false_positive_rate", 0, "recorded as 1 (false alarm)")):
                among = ex.call("==", ex.name(t), ex.const(float(v)))
                vals, exact = _field_values(facts, i, fld, among=among)
                if any(x != 0 for x in vals if math.isfinite(x)):
                    parts.append(f"a true {t} = {v} is {words}: {facts.per_group(vals, exact)}")
            text = "; ".join(parts) if parts else "labels are left unchanged at these settings"
        elif isinstance(b, MeasurementBias):
            parts = []
            for fld, words, fmt in (("scale", "times", lambda v: f"{v:.3g}"),
                                    ("offset", "plus", signed),
                                    ("noise_sd", "plus noise with sd", lambda v: f"{v:.3g}")):
                vals, exact = _field_values(facts, i, fld)
                if any(x != _NEUTRAL[fld] for x in vals if math.isfinite(x)):
                    parts.append(f"{words} {facts.per_group(vals, exact, fmt)}")
            text = (f"{b.feature} is recorded as the true value " + "; ".join(parts) if parts
                    else f"{b.feature} is recorded as it is at these settings")
        elif isinstance(b, MissingnessBias):
            vals, exact = _field_values(facts, i, "rate")
            text = f"{b.feature} is missing for {facts.per_group(vals, exact)}"
        else:  # proxy label
            miss, e1 = facts.values(ex.call("==", ex.name(b.label), ex.const(0.0)),
                                    among=ex.call("==", ex.name(target), ex.const(1.0)))
            alarm, e2 = facts.values(ex.call("!=", ex.name(b.label), ex.const(0.0)),
                                     among=ex.call("==", ex.name(target), ex.const(0.0)))
            text = (f"the model learns {b.label} instead of {target}: {b.label} = 0 for true "
                    f"{target} = 1 in {facts.per_group(miss, e1)}; {b.label} = 1 for true {target} = 0 "
                    f"in {facts.per_group(alarm, e2)}")
        out.append(head + text + ".")
    return out


def _train_population(scenario: Scenario) -> str:
    exp = scenario.spec.experiment or {}
    pop = exp.get("train", "train") if isinstance(exp, Mapping) else "train"
    pops = scenario.spec.populations
    if pop not in pops:
        pop = next((p for p, s in pops.items() if s.biased), next(iter(pops)))
    return pop


def _test_population(scenario: Scenario) -> str | None:
    exp = scenario.spec.experiment or {}
    pop = exp.get("test", "test") if isinstance(exp, Mapping) else "test"
    return pop if pop in scenario.spec.populations else None


_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bcf)\.\s+(?=[A-Z])")


def _first_sentence(text: str, limit: int = 160) -> str:
    """The description's first sentence ("et al." and "e.g." do not end one), at most ``limit``
    characters (cut at a word, with "...")."""
    text = " ".join(text.split())
    m = _SENTENCE_END.search(text)
    first = text[: m.start() + 1] if m else text
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return first


def _who(facts: GroupFacts, scenario: Scenario, pop: str) -> str:
    spec = scenario.spec
    p = spec.populations[pop]
    shares, e1 = facts.shares()
    prev, e2 = facts.prevalence(spec.roles.target)
    what = (" -- " + " ".join(p.description.split()).rstrip(".")) if p.description else ""
    return (f"population {pop}, {number(p.n)} patients drawn{what}. By {facts.by}: "
            f"{facts.per_group(shares, e1, same='each')}. The truth, {spec.roles.target} = 1: "
            f"{facts.per_group(prev, e2)}.")


def brief(scenario: Scenario, *, width: int = WIDTH, sample_n: int = BRIEF_SAMPLE) -> str:
    """The one-screen explanation ``simsys explain`` prints, for a class.

    Who the patients are (group shares and the target's prevalence per group), what the model
    sees, each bias in one sentence with its numbers per group, the experiment in one sentence.
    Formula values are evaluated per group (:class:`GroupFacts`); an estimate from the simulated
    sample is marked ``≈``.
    """
    spec = scenario.spec
    train = _train_population(scenario)
    facts = GroupFacts(scenario, train, n=sample_n)
    out: list[str] = []

    def para(text: str, indent: str = "") -> None:
        out.extend(textwrap.wrap(text, width=width, initial_indent=indent,
                                 subsequent_indent=" " * len(indent), break_on_hyphens=False))

    title = f"Scenario {spec.name}" + (f": {_first_sentence(spec.description)}" if spec.description else "")
    para(title)
    out.append("")
    para("Who the patients are: " + _who(facts, scenario, train))
    test = _test_population(scenario)
    if test is not None and test != train:
        tfacts = GroupFacts(scenario, test, n=sample_n)
        para(f"Tested on: {_who(tfacts, scenario, test)}")
    obs = {v: f"{v}_observed" for v in observed_variables(scenario)}
    feats = [f + (" (as recorded)" if f in obs else "") for f in spec.roles.features]
    label = next((b.label for b in spec.biases if isinstance(b, ProxyLabelBias)), None)
    learns = (f"{label} instead of {spec.roles.target}" if label else
              f"{spec.roles.target}_observed, the recorded {spec.roles.target}")
    para(f"What the model sees: {join_words(feats)}. It learns {learns}; it is scored against the "
         f"true {spec.roles.target}.")
    audit = audit_sentence(scenario, test or train)
    if audit:
        para(audit)
    out.append("")
    if spec.biases:
        para("The injected biases, in the order they act on the training data:")
        for i, line in enumerate(bias_lines(scenario, facts), 1):
            para(line, f"{i}. ")
    else:
        para("The injected biases: none; the data are the truth.")
    if spec.experiment is not None:
        out.append("")
        para(_experiment_brief(scenario))
    out.append("")
    para(f"≈ marks an average over {number(sample_n)} simulated patients (seed {spec.seed}); the "
         "others are exact. `simsys explain --full` walks through every variable and formula.")
    return "\n".join(out).rstrip() + "\n"


def audit_sentence(scenario: Scenario, test: str) -> str:
    """What the test population's recorded labels are (docs/metrics.md, "The audit's labels")."""
    from simsys.biases import acts_on

    label_biases = [bias_name(scenario, i) for i, b in enumerate(scenario.spec.biases)
                    if isinstance(b, LabelBias | ProxyLabelBias) and acts_on(scenario, i, test, True)]
    if not label_biases:
        return (f"An audit's view: the recorded labels of the {test} population are the truth (no label "
                "bias acts on it).")
    return (f"An audit's view: the recorded labels of the {test} population carry "
            f"{join_words(label_biases)} too (labels are recorded the same way in deployment); nobody is "
            "dropped from it. simsys reports what an audit with those labels would measure beside the truth.")


def _experiment_brief(scenario: Scenario) -> str:
    exp = dict(scenario.spec.experiment or {})
    models = exp.get("models") or [{"model": "logistic_regression"}, {"model": "gradient_boosting"}]
    names = []
    for m in models:
        m = {"model": m} if isinstance(m, str) else m
        names.append(str(m.get("name", m.get("model"))))
    sweep = exp.get("sweep") or {}
    grid = sweep.get("grid") or {}
    points = sweep.get("points") or []
    parts = [f"{setting_label(p)} over {', '.join(number(v) for v in vals)}" for p, vals in grid.items()]
    if points:
        parts.append(f"{len(points)} explicit setting{'s' if len(points) > 1 else ''}")
    moves = f"it moves {join_words(parts)}" if parts else "it has no sweep"
    return (f"The experiment (simsys run): models {join_words(names)}; {moves}; "
            f"{exp.get('replicates', 3)} replicates; decision threshold {_threshold_words(exp.get('threshold'))}.")


__all__ = ["GroupFacts", "affected_by", "bias_lines", "bias_reads", "bias_writes", "brief",
           "describe_bias", "describe_change", "describe_experiment", "describe_node", "explain",
           "percent", "sections"]
