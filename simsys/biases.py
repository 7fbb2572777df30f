"""Bias mechanisms: how each injected bias becomes observation steps of the sampling plan.

Every bias acts by a known amount and keeps the truth beside what it corrupts: the true node keeps
its value, and the corrupted version is a separate column ``<name>_observed``. Representation and
selection biases decide who is *kept* in the data (a ``keep`` flag); the others change what is
*observed* about the patients kept. Each mechanism draws from its own named random stream, so the
draws do not move when a bias strength changes (common random numbers across a sweep: lowering a
keep probability drops a superset of the patients dropped before).

Mechanisms and their sources (full citations: ``docs/references.md#bias-mechanisms``):

- representation (Blum & Stangl 2020, FORC; Suresh & Guttag 2021): a member of the group is kept
  with probability ``keep``; or, outcome-dependent, a member with TRUE target 1 is kept with
  probability ``keep_positive`` (Blum & Stangl's beta, the probability of KEEPING) and one with
  target 0 with ``keep_negative`` -- or, with ``by: observed``, by the RECORDED label (the target's
  observed value left by the label and proxy-label biases listed before it);
- label (annotation; Blum & Stangl's nu; Jones et al. 2024): the observed label of a group member
  flips 1 -> 0 with probability ``false_negative_rate`` and 0 -> 1 with ``false_positive_rate``;
- measurement (presentation disparity): ``observed = scale * true + offset + noise_sd * N(0, 1)``;
- missingness: the feature is NaN with probability ``rate`` (a formula, so it may depend on the
  feature's own value: missing not at random);
- selection: only patients with a non-zero value of a node enter the data;
- proxy_label (Obermeyer et al. 2019): the observed label is another node.

Biases apply in the order written; two label biases on the same target compose, and a
representation bias ``by: observed`` reads the label as the biases before it left it.

Views. The same population is sampled in three ways (:data:`VIEWS`), and :func:`bias_effects` says
which biases act in each: ``biased`` (every bias that acts on the population, keep decisions
included: the training data), ``clean`` (none: the clean twin) and ``tested`` (the experiment's
test and validation cohorts: the label and proxy-label biases always act, so that the audit has the
recorded labels; measurement and missingness biases act only if the population is ``biased``; and
no representation or selection bias drops anyone). In every view, a population's own ``selection``
(biases named there) decides who belongs to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simsys import expressions as ex
from simsys.program import Step
from simsys.scenario import (
    LabelBias,
    MeasurementBias,
    MissingnessBias,
    ProxyLabelBias,
    RepresentationBias,
    Scenario,
    SelectionBias,
    selector_code,
)

KEEP = "_keep"
"""Name of the step holding the keep flag (1 = the patient enters the biased data)."""

VIEWS = ("biased", "clean", "tested")
"""How a population can be sampled; see the module docstring and :func:`bias_effects`."""

_PROBABILITIES = {"keep", "keep_positive", "keep_negative", "false_negative_rate", "false_positive_rate", "rate"}
"""Bias fields that are probabilities: where one is NaN for a patient, sampling fails."""


@dataclass(frozen=True)
class ObservationPlan:
    """The observation steps of a plan, and which variables have an ``_observed`` column."""

    steps: list[Step]
    observed: dict[str, str]  # variable -> its observed column name
    keep: str | None  # name of the keep step, if any representation/selection bias acts


def bias_name(scenario: Scenario, index: int) -> str:
    """A bias's name: the one given, else ``<type>_<position>``; it also names its random stream."""
    b = scenario.spec.biases[index]
    return b.name or f"{b.type}_{index}"


def acts_on(scenario: Scenario, index: int, population: str, biased: bool) -> bool:
    """Whether bias ``index`` acts on a population (given whether that population is biased)."""
    b = scenario.spec.biases[index]
    return biased and (b.populations is None or population in b.populations)


def bias_index(scenario: Scenario, name: str) -> int | None:
    """The position of the bias called ``name`` (see :func:`bias_name`), or None."""
    for i in range(len(scenario.spec.biases)):
        if bias_name(scenario, i) == name:
            return i
    return None


def bias_effects(scenario: Scenario, population: str, view: str) -> tuple[frozenset[int], frozenset[int]]:
    """Which biases act on a population in a view: (those that change observed values, those that
    decide who is kept).

    ``biased``: every bias that acts on the population (:func:`acts_on`); ``clean``: none;
    ``tested``: the label and proxy-label biases that would act if the population were biased,
    the measurement and missingness biases only if it is, and no keep decision. In every view the
    population's ``selection`` biases decide who is kept, whatever their ``populations``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; allowed: {', '.join(VIEWS)}")
    spec = scenario.spec
    pop = spec.populations[population]
    observe: set[int] = set()
    keep = {bias_index(scenario, name) for name in pop.selection}
    for i, b in enumerate(spec.biases):
        if view == "clean" or not acts_on(scenario, i, population, True):
            continue
        decides_who = isinstance(b, RepresentationBias | SelectionBias)
        if view == "biased":
            (keep if decides_who else observe).add(i)
        elif not decides_who and (pop.biased or isinstance(b, LabelBias | ProxyLabelBias)):
            observe.add(i)
    return frozenset(observe), frozenset(k for k in keep if k is not None)


def observed_variables(scenario: Scenario) -> dict[str, bool]:
    """Variables that get an ``_observed`` column -> whether that column may hold non-0/1 values.

    The target always has one (equal to the truth where no bias acts), so that every cohort of a
    scenario has the same columns whatever population it comes from.
    """
    target = scenario.spec.roles.target
    out = {target: False}
    for b in scenario.spec.biases:
        if isinstance(b, MeasurementBias | MissingnessBias):
            out[b.feature] = True
        elif isinstance(b, LabelBias) and b.target:
            out.setdefault(b.target, False)
    return out


def group_indicator(scenario: Scenario, selector: dict) -> ex.Expr:
    """The 0/1 formula for membership of a group ``{node: value, ...}`` (AND over keys)."""
    terms = [ex.call("==", ex.name(node), ex.const(selector_code(scenario, node, v)))
             for node, v in selector.items()]
    if not terms:
        return ex.const(1.0)
    return terms[0] if len(terms) == 1 else ex.call("and", *terms)


def observation_steps(scenario: Scenario, population: str, view: str,
                      stores: dict[str, str]) -> ObservationPlan:
    """Steps that compute the observed columns and the keep flag of one population in a view
    (``biased``, ``clean`` or ``tested``; see :func:`bias_effects`).

    ``stores`` gives the output kind (``"f"``/``"u"``) of each true node, so that an observed copy
    of a 0/1 variable stays compact unless a bias can make it non-binary (noise, NaN).
    """
    spec = scenario.spec
    target = spec.roles.target
    current = {v: v for v in observed_variables(scenario)}
    steps: list[Step] = []
    flags: list[ex.Expr] = []
    observe, keeps = bias_effects(scenario, population, view)
    params = set(spec.params)

    made: set[str] = set()

    def f(key: str, default: ex.Expr | None = None) -> ex.Expr | None:
        """The formula at ``key``; a bias probability that depends on nodes is computed once in a
        step of its own, which fails the sampling where it is NaN (compared with a uniform, a NaN
        would silently mean 'never')."""
        e = scenario.formulas.get(key)
        if e is None:
            return default
        if key.rsplit(".", 1)[-1] not in _PROBABILITIES or not (e.names() - params):
            return e
        name = "_p_" + key.replace("[", "").replace("]", "").replace(".", "_")
        if name not in made:
            made.add(name)
            steps.append(Step(name, "probability", {"value": e, "path": key}, store=None))
        return ex.name(name)

    for i, b in enumerate(spec.biases):
        if i not in observe and i not in keeps:
            continue
        name = bias_name(scenario, i)
        stream = f"bias:{name}"
        base = f"biases[{i}]"
        u = f"_u_{i}"
        if isinstance(b, RepresentationBias):
            g = group_indicator(scenario, b.group)
            if b.keep is not None:
                keep = f(f"{base}.keep")
            else:
                kp = f(f"{base}.keep_positive", ex.const(1.0))
                kn = f(f"{base}.keep_negative", ex.const(1.0))
                # by: observed reads the label as the biases listed before this one left it
                label = ex.name(current[target] if b.by == "observed" else target)
                keep = ex.call("where", ex.call("==", label, ex.const(1.0)), kp, kn)
            steps.append(Step(u, "uniform01", stream=stream, store=None))
            flags.append(ex.call("or", ex.call("not", g), ex.call("<", ex.name(u), keep)))
        elif isinstance(b, SelectionBias):
            flags.append(ex.call("!=", ex.name(b.node), ex.const(0.0)))
        elif isinstance(b, LabelBias):
            t = b.target or target
            prev = ex.name(current[t])
            g = group_indicator(scenario, b.group)
            fnr, fpr = f(f"{base}.false_negative_rate"), f(f"{base}.false_positive_rate")
            steps.append(Step(u, "uniform01", stream=stream, store=None))
            flipped = ex.call("where", ex.call("==", prev, ex.const(1.0)),
                              ex.call(">=", ex.name(u), fnr), ex.call("<", ex.name(u), fpr))
            out = f"_{t}_{i}"
            steps.append(Step(out, "deterministic", {"value": ex.call("where", g, flipped, prev)}, store=None))
            current[t] = out
        elif isinstance(b, ProxyLabelBias):
            out = f"_{target}_{i}"
            steps.append(Step(out, "deterministic", {"value": ex.name(b.label)}, store=None))
            current[target] = out
        elif isinstance(b, MeasurementBias):
            prev = ex.name(current[b.feature])
            g = group_indicator(scenario, b.group)
            scale, offset, sd = (f(f"{base}.scale"), f(f"{base}.offset"), f(f"{base}.noise_sd"))
            distorted = ex.call("+", ex.call("*", scale, prev), offset)
            if not (sd.op == "const" and sd.value == 0.0):
                z = f"_z_{i}"
                steps.append(Step(z, "normal", {"mean": ex.const(0.0), "sd": ex.const(1.0)},
                                  stream=stream, store=None))
                distorted = ex.call("+", distorted, ex.call("*", sd, ex.name(z)))
            out = f"_{b.feature}_{i}"
            steps.append(Step(out, "deterministic", {"value": ex.call("where", g, distorted, prev)}, store=None))
            current[b.feature] = out
        elif isinstance(b, MissingnessBias):
            prev = ex.name(current[b.feature])
            g = group_indicator(scenario, b.group)
            steps.append(Step(u, "uniform01", stream=stream, store=None))
            missing = ex.call("and", g, ex.call("<", ex.name(u), f(f"{base}.rate")))
            out = f"_{b.feature}_{i}"
            steps.append(Step(out, "deterministic",
                              {"value": ex.call("where", missing, ex.const(math.nan), prev)}, store=None))
            current[b.feature] = out
    observed = {}
    for v, may_be_continuous in observed_variables(scenario).items():
        col = v + "_observed"
        store = "f" if may_be_continuous else stores.get(v, "u")
        steps.append(Step(col, "deterministic", {"value": ex.name(current[v])}, store=store))
        observed[v] = col
    keep = None
    if flags:
        value = flags[0] if len(flags) == 1 else ex.call("and", *flags)
        steps.append(Step(KEEP, "deterministic", {"value": value}, store="u"))
        keep = KEEP
    return ObservationPlan(steps=steps, observed=observed, keep=keep)
