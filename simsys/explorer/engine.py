"""The explorer's computation, free of any user interface: settings in, plain numbers out.

Given a scenario and a dict of settings (a param, a bias strength, the population sizes, the model,
the decision threshold, which patients), :meth:`Engine.compute` does what one task of
``simsys run`` does (:func:`simsys.runner.run_task`), at classroom size: it samples a training
cohort of the train population with the biases on, its clean twin (the same patients before any
bias acted) and a test cohort (with a validation cohort after it, for a threshold policy), fits the
model on each training set, and scores it on the test patients against the truth and against the
recorded labels. It returns a :class:`Snapshot` of plain numbers: per group, who is in the
training data, the confusion matrices against the truth and the recorded labels, and the rates
with their counts ("57.7%, 15 of 26"); the model's gap between groups and the part the biases
caused (the gap of the model trained on the biased data minus that of the same model trained on
the clean twin).

**Common random numbers.** Every cohort is drawn with the same seed (replicate ``r`` of the
scenario's root seed, as in ``simsys run``), and patient ``i``'s values depend only on the seed,
the population, the node and ``i`` (``simsys.simulate``). Moving a setting therefore changes
nothing but what that setting changes: the same patients, the same noise.

**Caches.** What a change does not touch is not redone: the clean twin and its fitted model do not
depend on bias strengths, the test patients' features not on the training data, a threshold move
refits nothing. Cohorts, fits, scores and whole snapshots are kept in small LRU caches keyed by
what they depend on (a digest of the scenario data that matters, the sizes and the seed).

**Words.** :func:`describe` is the one place that turns snapshots into sentences, and it states
only what the numbers back: a rate is stated only for a group with at least :data:`MIN_CASES` true
cases (for a proportion, the NCHS data presentation standards ask for an effective sample size of
at least 30; Parker et al. 2017, Vital Health Stat 2(175)), and a difference is claimed only when a
two-sided two-proportion z-test at the 5% level tells it from sampling noise (the test
``simsys power`` simulates); otherwise it says "too few cases" or "not distinguishable at this
size". Comparisons on the same test patients (biased vs clean twin, truth vs recorded labels) use
the same test, which treats the two rates as independent: conservative, since they are positively
correlated.

Requests are untrusted: :meth:`Engine.check` validates every value against the bounds of
:func:`controls` (ranges from the experiment's sweep, or derived from the validation bounds of the
fields a param feeds), and the model is one of the built-in names only.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import importlib.util
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simsys import explain as X
from simsys.errors import ModelError, SimsysError
from simsys.scenario import (
    BIAS_FIELDS,
    NODE_FIELDS,
    ProxyLabelBias,
    Scenario,
    SelectionBias,
    get_path,
)

#: A rate is stated only for a group with at least this many cases in its denominator (NCHS).
MIN_CASES = 30
#: Two-sided 5% critical value of the standard normal.
Z_95 = 1.959963984540054
#: Default sizes of the classroom cohorts (capped by the scenario's own sizes).
TRAIN_N = 20_000
TEST_N = 20_000
#: Settings that are not scenario paths.
SPECIAL = ("train_n", "test_n", "model", "threshold", "replicate")
#: Replicates a class can step through with "new patients".
REPLICATES = 100


class SettingError(SimsysError):
    """A request value outside what :func:`controls` allows (one line: key, found, allowed)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"settings.{key}: {message}")


# --- controls ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """One setting a class can move, with its bounds.

    ``kind`` is ``number`` (a float in [lo, hi]), ``integer``, ``choice`` (one of ``choices``)
    or ``threshold`` (``"policy"`` or a float in [0, 1]). ``section`` groups controls on the page:
    ``sweep`` (what the experiment sweeps), ``bias`` (bias strengths and the params that set them),
    ``size``, ``model``, ``world`` (every other param).
    """

    key: str
    label: str
    kind: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple = ()
    section: str = "world"
    help: str = ""


def _nice_step(lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return 1.0
    return float(10 ** math.floor(math.log10(span / 200)))


def _leaf_params(expr, params) -> set[str]:
    """Params that are a possible value of a formula as a whole (the formula, or an arm of where)."""
    if expr.op == "name":
        return {expr.name} if expr.name in params else set()
    if expr.op == "where":
        return _leaf_params(expr.args[1], params) | _leaf_params(expr.args[2], params)
    return set()


def _param_range(scenario: Scenario, name: str) -> tuple[float, float]:
    """Bounds of a param: the tightest range of the fields it is a whole value of (a probability
    lies in [0, 1], an sd in [0, inf)), an open upper bound becoming max(2 |value|, 1); a param
    used only inside formulas gets [0, 1] when its value lies there, else a range around it."""
    spec = scenario.spec
    v = float(spec.params[name])
    lo, hi = -math.inf, math.inf
    ranged = False
    for key, expr in scenario.formulas.items():
        rng = _field_range(scenario, key)
        if rng is None or name not in _leaf_params(expr, spec.params):
            continue
        ranged = True
        lo, hi = max(lo, rng[0]), min(hi, rng[1])
    if ranged:
        if math.isinf(hi):
            hi = max(2 * abs(v), lo + 1.0, 1.0)
        return (min(lo, v), max(hi, v))
    if 0 <= v <= 1:
        return (0.0, 1.0)
    if v > 1:
        return (0.0, 2 * v)
    return (2 * v, -2 * v)


def _field_range(scenario: Scenario, key: str) -> tuple[float, float] | None:
    """The validation range of the field at a formula key path, if it has one."""
    parts = key.split(".")
    if parts[0] == "nodes" and len(parts) == 3:
        s = scenario.spec.nodes[parts[1]]
        if parts[2].startswith("probs["):
            return (0.0, math.inf)
        return NODE_FIELDS.get(s.kind, {}).get(parts[2])
    if parts[0].startswith("biases[") and len(parts) == 2:
        i = int(parts[0][len("biases["):-1])
        return BIAS_FIELDS[scenario.spec.biases[i].type].get(parts[1])
    return None


def _sweep_values(scenario: Scenario) -> dict[str, list]:
    exp = scenario.spec.experiment or {}
    sweep = exp.get("sweep") or {}
    out: dict[str, list] = {}
    if not isinstance(sweep, Mapping):
        return out
    for path, vals in (sweep.get("grid") or {}).items():
        out.setdefault(path, []).extend(vals if isinstance(vals, list) else [])
    for p in sweep.get("points") or []:
        if isinstance(p, Mapping):
            for path, v in p.items():
                out.setdefault(path, []).append(v)
    return {p: v for p, v in out.items() if v}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bias_params(scenario: Scenario) -> list[str]:
    """Params that set a bias: used by its formulas, or by the node it selects on / its proxy."""
    spec = scenario.spec
    out: set[str] = set()
    for i, b in enumerate(spec.biases):
        for key in X._bias_formula_keys(scenario, i):
            out |= set(X.formula_names(scenario, key)[1])
        node = b.node if isinstance(b, SelectionBias) else b.label if isinstance(b, ProxyLabelBias) else None
        if node is not None:
            for key in scenario.formulas:
                if key.startswith(f"nodes.{node}."):
                    out |= set(X.formula_names(scenario, key)[1])
    return [p for p in spec.params if p in out]


def controls(scenario: Scenario) -> list[Control]:
    """The settings of the explorer for a scenario, with their bounds and defaults.

    Swept paths get the sweep's range (numbers) or its values (anything else); bias strengths
    written as numbers and every param get ranges derived from the validation bounds; then the
    sizes of the training and test cohorts, the model (a built-in name), the threshold and which
    replicate's patients.
    """
    spec = scenario.spec
    exp = spec.experiment or {}
    out: list[Control] = []
    seen: set[str] = set()
    for path, vals in _sweep_values(scenario).items():
        if path.startswith("experiment"):
            continue
        current = get_path(scenario.data, path)
        values = [current, *vals] if current is not None else list(vals)
        if all(_is_number(v) for v in values):
            lo, hi = float(min(values)), float(max(values))
            if lo == hi:
                continue
            out.append(Control(path, X.setting_label(path), "number", float(current if current is not None else vals[0]),
                               lo, hi, _nice_step(lo, hi), section="sweep",
                               help="swept by the experiment"))
        else:
            choices = tuple(dict.fromkeys(json.dumps(v) if isinstance(v, list | dict) else v for v in values))
            if len(choices) < 2:
                continue
            cur = json.dumps(current) if isinstance(current, list | dict) else current
            out.append(Control(path, X.setting_label(path), "choice", cur if current is not None else choices[0],
                               choices=choices, section="sweep", help="swept by the experiment"))
        seen.add(path)
    for i, b in enumerate(spec.biases):
        for fld, rng in BIAS_FIELDS[b.type].items():
            path = f"biases[{i}].{fld}"
            written = get_path(scenario.data, path)
            if path in seen or not _is_number(written):
                continue
            v = float(written)
            lo, hi = rng if rng is not None else (v - max(abs(v), 1.0), v + max(abs(v), 1.0))
            if math.isinf(hi):
                hi = max(2 * abs(v), 1.0)
            out.append(Control(path, f"{X.bias_name(scenario, i)}.{fld}", "number", v, lo, hi,
                               _nice_step(lo, hi), section="bias", help=X.BIAS_WORDS[b.type]))
            seen.add(path)
    bias_params = set(_bias_params(scenario))
    for p in spec.params:
        path = f"params.{p}"
        if path in seen:
            continue
        lo, hi = _param_range(scenario, p)
        out.append(Control(path, p, "number", float(spec.params[p]), lo, hi, _nice_step(lo, hi),
                           section="bias" if p in bias_params else "world"))
        seen.add(path)
    train = exp.get("train", "train") if isinstance(exp, Mapping) else "train"
    test = exp.get("test", "test") if isinstance(exp, Mapping) else "test"
    pops = spec.populations
    train = train if train in pops else next(iter(pops))
    test = test if test in pops else train
    n_train = pops[train].n
    n_test = int(exp.get("test_n", pops[test].n)) if isinstance(exp, Mapping) else pops[test].n
    out.append(_size_control("train_n", "training patients drawn", n_train, TRAIN_N,
                             f"drawn from population {train}, before any bias drops some"))
    out.append(_size_control("test_n", "test patients", n_test, TEST_N, f"drawn from population {test}"))
    out.append(Control("model", "model", "choice", "logistic_regression", choices=tuple(model_names()),
                       section="model", help="a built-in model or mitigation"))
    policy = _policy(scenario)
    out.append(Control("threshold", "decision threshold", "threshold",
                       "policy" if policy.kind != "fixed" else float(policy.threshold),
                       0.0, 1.0, 0.01, section="model",
                       help=f"'policy': {X._threshold_words(exp.get('threshold') if isinstance(exp, Mapping) else None)}"))
    out.append(Control("replicate", "patients (replicate)", "integer", 0, 0, REPLICATES - 1, 1,
                       section="size", help="which replicate's patients, as in simsys run"))
    return out


def _size_control(key: str, label: str, n: int, default: int, help: str) -> Control:
    """A cohort size: multiples of a step (100, or 500 above 20,000) up to the population's size,
    so that a slider shows every allowed value exactly; the default is the classroom size."""
    step = 1 if n < 100 else 100 if n <= 20_000 else 500
    return Control(key, label, "integer", min(default, n), step, n, step, section="size", help=help)


def model_names() -> list[str]:
    """The built-in models and mitigations (those needing fairlearn only when it is installed)."""
    from simsys.mitigations import MITIGATIONS
    from simsys.models import BUILTIN_MODELS

    names = list(BUILTIN_MODELS)
    has_fairlearn = importlib.util.find_spec("fairlearn") is not None
    for name, cls in MITIGATIONS.items():
        if has_fairlearn or not cls.__name__.startswith("Fairlearn"):
            names.append(name)
    names.remove("logistic_regression")
    return ["logistic_regression", *names]


def _policy(scenario: Scenario):
    from simsys.models import ThresholdPolicy, parse_threshold_policy

    exp = scenario.spec.experiment or {}
    try:
        return parse_threshold_policy(exp.get("threshold") if isinstance(exp, Mapping) else None,
                                      source=scenario.source)
    except ModelError:
        return ThresholdPolicy()


# --- the snapshot ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    """A proportion with its counts: ``x`` of ``n``."""

    x: int
    n: int

    @property
    def value(self) -> float:
        return self.x / self.n if self.n else math.nan

    def __str__(self) -> str:
        return f"{pct(self.value)}, {self.x:,} of {self.n:,}"


def counted(r: Rate) -> str:
    """``57.7% (15 of 26)``."""
    return f"{pct(r.value)} ({r.x:,} of {r.n:,})"


def pct(v: float) -> str:
    """``57.7%`` (one decimal), ``-`` when undefined."""
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def rate(cm: Mapping[str, int], name: str) -> Rate:
    """A rate of a confusion matrix ``{tp, fp, fn, tn}``, with its counts (the cells of
    :data:`simsys.summary.RATE_COUNTS`, as everywhere in simsys)."""
    from simsys.summary import RATE_COUNTS

    num, den = RATE_COUNTS[name]
    return Rate(int(sum(cm[k] for k in num)), int(sum(cm[k] for k in den)))


@dataclass
class Snapshot:
    """Plain numbers of one setting (``to_dict`` gives JSON).

    ``training``: per group, patients drawn (the clean twin), kept in the biased training data,
    their true cases and recorded cases. ``test``: per group, test patients, true and recorded
    cases. ``models``: for ``biased`` and ``clean`` training, the threshold, and per group the
    confusion matrix against the truth (``truth``) and against the recorded labels
    (``recorded``), and the AUROC against the truth; ``error`` when the model could not be fitted.
    """

    settings: dict
    scenario: str
    target: str
    groups: list[str]
    training: list[dict]
    test: list[dict]
    models: dict[str, dict]
    recorded_differs: bool
    server_ms: float = 0.0
    cached: bool = False

    def gap(self, training: str, name: str = "fnr", reference: str = "truth") -> float:
        """The model's gap: largest minus smallest group value of a rate (groups where defined)."""
        m = self.models[training]
        if m.get("error"):
            return math.nan
        vals = [rate(cm, name).value for cm in m[reference]]
        vals = [v for v in vals if math.isfinite(v)]
        return max(vals) - min(vals) if len(vals) >= 2 else math.nan

    def caused(self, name: str = "fnr") -> float:
        """The part of the gap the biases caused: the biased model's gap minus the clean twin's."""
        return self.gap("biased", name) - self.gap("clean", name)

    def table(self):
        """One row per group: who is in the training data, and the model's miss and false-alarm
        rates against the truth and against the recorded labels, trained on the biased data and on
        the clean twin (a pandas DataFrame; counts beside every rate)."""
        import pandas as pd

        rows = []
        for gi, g in enumerate(self.groups):
            t = self.training[gi]
            row = {"group": g, "drawn": t["drawn"], "kept": t["kept"], "true_cases_kept": t["true_cases"],
                   "recorded_cases_kept": t["recorded_cases"], "test_cases": self.test[gi]["true_cases"]}
            for training in ("biased", "clean"):
                m = self.models[training]
                for ref in ("truth", "recorded"):
                    for k in ("fnr", "fpr"):
                        r = rate(m[ref][gi], k) if not m.get("error") else Rate(0, 0)
                        row[f"{k}_{ref}_{training}"] = r.value
                        row[f"{k}_{ref}_{training}_counts"] = f"{r.x} of {r.n}"
            rows.append(row)
        return pd.DataFrame(rows).set_index("group")

    def to_dict(self) -> dict:
        d = {k: copy.deepcopy(getattr(self, k)) for k in (
            "settings", "scenario", "target", "groups", "training", "test", "models",
            "recorded_differs", "server_ms", "cached")}
        d["gaps"] = {t: {k: _finite(self.gap(t, k)) for k in ("fnr", "fpr")} for t in ("biased", "clean")}
        d["caused"] = {k: _finite(self.caused(k)) for k in ("fnr", "fpr")}
        for m in d["models"].values():
            for gi, cm in enumerate(m.get("truth") or []):
                cm["rates"] = {k: str(rate(cm, k)) for k in ("fnr", "fpr")}
                rec = m["recorded"][gi]
                rec["rates"] = {k: str(rate(rec, k)) for k in ("fnr", "fpr")}
            m["auroc"] = [_finite(v) for v in m.get("auroc") or []]
        return d


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


# --- the engine ---------------------------------------------------------------------------------------
class _LRU(collections.OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.hits = 0
        self.misses = 0

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            self.hits += 1
            return self[key]
        self.misses += 1
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


def _digest(scenario: Scenario, *, biases: bool) -> str:
    """What a cohort depends on: the scenario data without the experiment. A clean cohort (no
    bias acts) does not depend on the bias strengths nor on the params only biases use: both are
    left out (the bias types and the variables they record stay, since they decide which
    ``_observed`` columns exist)."""
    data = scenario.data
    d = {k: v for k, v in data.items() if k != "experiment"}
    if not biases:
        d["biases"] = [{k: b.get(k) for k in ("type", "feature", "target")} for b in d.get("biases", [])]
        world = {p for key, e in scenario.formulas.items() if not key.startswith("biases")
                 for p in e.names() if p in scenario.spec.params}
        d["params"] = {p: v for p, v in (d.get("params") or {}).items() if p in world}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Engine:
    """The explorer of one scenario: validates settings, computes snapshots, keeps caches.

    Thread-safe: one computation at a time (a lock), so that a web server's worker threads and a
    notebook's callbacks can share an engine.
    """

    scenario: Scenario
    controls: list[Control] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.controls = controls(self.scenario)
        self.by_key = {c.key: c for c in self.controls}
        spec = self.scenario.spec
        exp = spec.experiment if isinstance(spec.experiment, Mapping) else {}
        pops = spec.populations
        self.train_pop = exp.get("train", "train") if exp.get("train", "train") in pops else next(iter(pops))
        self.test_pop = exp.get("test", "test") if exp.get("test", "test") in pops else self.train_pop
        self.policy = _policy(self.scenario)
        self._scenarios = _LRU(64)
        self._plans = _LRU(32)
        self._cohorts = _LRU(24)
        self._fits = _LRU(24)
        self._scores = _LRU(24)
        self._snapshots = _LRU(64)

    # settings
    def defaults(self) -> dict:
        return {c.key: c.default for c in self.controls}

    def check(self, settings: Mapping[str, Any] | None) -> dict:
        """Every value validated against its control; missing ones take their default.

        Raises :class:`SettingError` for an unknown key or a value outside what is allowed.
        """
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            raise SettingError("", f"expected a mapping of settings, got {type(settings).__name__}")
        out = self.defaults()
        for key, value in settings.items():
            c = self.by_key.get(key) if isinstance(key, str) else None
            if c is None:
                shown = key if isinstance(key, str) else repr(key)
                raise SettingError(str(shown)[:80], "unknown setting; allowed: " + ", ".join(self.by_key))
            out[key] = _check_value(c, value)
        return out

    # computing
    def compute(self, settings: Mapping[str, Any] | None = None) -> Snapshot:
        """The snapshot of a setting (validated first; see :meth:`check`)."""
        s = self.check(settings)
        key = json.dumps(s, sort_keys=True)
        with self._lock:
            t0 = time.perf_counter()
            hit = key in self._snapshots
            snap = copy.copy(self._snapshots.get_or(key, lambda: self._compute(s)))
            snap.cached = hit
            snap.server_ms = 1000 * (time.perf_counter() - t0)
            return snap

    def scenario_at(self, settings: Mapping[str, Any]) -> Scenario:
        """The scenario with the settings' scenario paths applied (validated as a scenario)."""
        updates = {}
        for k, v in settings.items():
            if k in SPECIAL:
                continue
            c = self.by_key[k]
            if c.kind == "choice" and isinstance(v, str) and v.startswith(("[", "{")):
                v = json.loads(v)
            updates[k] = v
        key = json.dumps(updates, sort_keys=True)

        def make():
            if all(get_path(self.scenario.data, k) == v for k, v in updates.items()):
                return self.scenario
            return self.scenario.with_values(updates)

        return self._scenarios.get_or(key, make)

    def _plan(self, sc: Scenario, digest: str, population: str, biased: bool):
        from simsys.simulate import build_plan

        return self._plans.get_or((digest, population, biased), lambda: build_plan(sc, population, biased=biased))

    def _cohort(self, kind: str, sc: Scenario, digest: str, n: int, seed: int, *, start: int = 0):
        from simsys.simulate import run_plan

        if kind == "train_biased":
            pop, biased, filt = self.train_pop, True, True
        elif kind == "train_clean":
            pop, biased, filt = self.train_pop, False, True
        else:  # test and validation: every patient, with the recorded labels the biases give
            pop, biased, filt = self.test_pop, True, False
        plan = self._plan(sc, digest, pop, biased)
        return self._cohorts.get_or((kind, digest, n, seed, start),
                                    lambda: run_plan(plan, n, seed, start=start, filter=filt, threads=1))

    def _compute(self, s: dict) -> Snapshot:
        from simsys.groups import GroupCoding
        from simsys.models import limit_threads
        from simsys.runner import replicate_seeds

        sc = self.scenario_at(s)
        spec = sc.spec
        target = spec.roles.target
        features = list(spec.roles.features)
        coding = GroupCoding.of(sc)
        seed = replicate_seeds(int(self.scenario.spec.seed), REPLICATES)[int(s["replicate"])]
        full, clean_d = _digest(sc, biases=True), _digest(sc, biases=False)
        n_train, n_test = int(s["train_n"]), int(s["test_n"])
        n_val = max(1000, n_test // 4)
        test_obs = spec.populations[self.test_pop].biased
        xkey = full if test_obs else clean_d

        with limit_threads(1):
            biased = self._cohort("train_biased", sc, full, n_train, seed)
            clean = self._cohort("train_clean", sc, clean_d, n_train, seed)
            test = self._cohort("test", sc, full, n_test, seed)
            val = self._cohort("test", sc, full, n_val, seed, start=n_test)
            g_b, g_c, g_t = coding.codes(biased), coding.codes(clean), coding.codes(test)
            y_b = biased.column(target).astype(np.int64)
            r_b = biased.column(target + "_observed").astype(np.int64)
            y_c = clean.column(target).astype(np.int64)
            training = []
            for gi, label in enumerate(coding.labels):
                kb, kc = g_b == gi, g_c == gi
                training.append({"group": label, "drawn": int(kc.sum()), "kept": int(kb.sum()),
                                 "true_cases": int(y_b[kb].sum()), "recorded_cases": int(r_b[kb].sum()),
                                 "drawn_cases": int(y_c[kc].sum())})
            y_t = test.column(target).astype(np.int64)
            r_t = test.column(target + "_observed").astype(np.int64)
            tests = []
            for gi, label in enumerate(coding.labels):
                k = g_t == gi
                tests.append({"group": label, "patients": int(k.sum()), "true_cases": int(y_t[k].sum()),
                              "recorded_cases": int(r_t[k].sum())})
            model = str(s["model"])
            models = {}
            for training_kind, cohort, d, obs in (("biased", biased, full, True), ("clean", clean, clean_d, False)):
                models[training_kind] = self._model_numbers(
                    model, training_kind, cohort, d, obs, n_train, seed, features, target, coding,
                    test, val, y_t, r_t, g_t, xkey, s["threshold"])
        return Snapshot(settings=dict(s), scenario=spec.name, target=target, groups=list(coding.labels),
                        training=training, test=tests, models=models,
                        recorded_differs=bool((y_t != r_t).any()))

    def _model_numbers(self, model, training_kind, cohort, digest, observed, n_train, seed, features,
                       target, coding, test, val, y_t, r_t, g_t, xkey, threshold) -> dict:
        """Fit (or take from the cache) one model on one training set; score it on the test
        patients; the confusion matrices per group against the truth and the recorded labels."""
        from simsys import metrics as M
        from simsys.models import build_model, choose_threshold
        from simsys.runner import _features as features_of  # the runner's own feature matrix
        from simsys.runner import model_seed

        G = len(coding.labels)
        fit_key = (model, training_kind, digest, n_train, seed)
        y = cohort.column(target + "_observed" if observed else target).astype(np.int64)
        try:
            def fit():
                cand = build_model({"model": model}, random_state=model_seed(seed, 0))
                X = features_of(cohort, features, observed)
                return cand.fit(X, y, group=coding.codes(cohort) if cand.receives_group else None)

            fitted = self._fits.get_or(fit_key, fit)

            def scores():
                test_observed = self.scenario.spec.populations[self.test_pop].biased
                Xt = features_of(test, features, test_observed)
                Xv = features_of(val, features, test_observed)
                g_v = coding.codes(val)
                grp = fitted.receives_group
                return (fitted.predict_score(Xt, group=g_t if grp else None),
                        fitted.predict_score(Xv, group=g_v if grp else None))

            s_test, s_val = self._scores.get_or((fit_key, xkey, test.n, val.n), scores)
            if fitted.hard_predictions_only:
                thr = 0.5
            elif threshold == "policy":
                thr = choose_threshold(self.policy, val.column(target).astype(np.int64), s_val)
            else:
                thr = float(threshold)
        except (ModelError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}", "threshold": None, "truth": None,
                    "recorded": None, "auroc": None, "n_train": len(y),
                    "positives": int(y.sum())}
        yhat = (s_test >= thr).astype(np.int64)
        out = {"error": None, "threshold": float(thr), "n_train": len(y), "positives": int(y.sum())}
        for ref, yr in (("truth", y_t), ("recorded", r_t)):
            c = M.confusion_counts(yr, yhat, g_t, G)
            out[ref] = [{k: int(c[i, g]) for i, k in enumerate(("tp", "fp", "fn", "tn"))} for g in range(G)]
        score = None if fitted.hard_predictions_only else s_test
        vals = M.binary_metrics(y_t, yhat, score, g_t, G)
        out["auroc"] = [float(v) for v in vals["auroc"][:G]]
        return out


def _check_value(c: Control, value: Any) -> Any:
    if c.kind == "choice":
        if value not in c.choices:
            raise SettingError(c.key, f"expected one of {', '.join(map(str, c.choices))}, got {_shown(value)}")
        return value
    if c.kind == "threshold" and value == "policy":
        return value
    if c.kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not (c.lo <= value <= c.hi):
            raise SettingError(c.key, f"expected an integer in [{c.lo:g}, {c.hi:g}], got {_shown(value)}")
        return int(value)
    if not _is_number(value) or not (c.lo <= value <= c.hi):
        extra = " or 'policy'" if c.kind == "threshold" else ""
        raise SettingError(c.key, f"expected a number in [{c.lo:g}, {c.hi:g}]{extra}, got {_shown(value)}")
    return float(value)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# --- what moved, and the words ------------------------------------------------------------------------
def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The settings that differ: (key, before, after), in the order of ``after``."""
    if before is None:
        return []
    return [(k, before.get(k), v) for k, v in after.items() if before.get(k) != v]


def affected(engine: Engine, key: str) -> tuple[list[int], list[str]]:
    """The biases (indices) and nodes a setting moves (``simsys.explain.affected_by``)."""
    if key in SPECIAL:
        return [], []
    return X.affected_by(engine.scenario, key)


def highlight(engine: Engine, keys: list[str]) -> set[str]:
    """The drawing elements to light for moved settings: their biases and nodes."""
    from simsys.drawing import bias_id

    out: set[str] = set()
    for k in keys:
        biases, nodes = affected(engine, k)
        out |= {bias_id(i) for i in biases} | set(nodes)
    return out


def distinguishable(x1: int, n1: int, x2: int, n2: int) -> bool:
    """Whether x1/n1 and x2/n2 differ by a two-sided pooled two-proportion z-test at the 5% level."""
    if n1 <= 0 or n2 <= 0:
        return False
    pbar = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n2))
    if se == 0:
        return False
    return abs(x1 / n1 - x2 / n2) / se > Z_95


def gap_difference_distinguishable(a: tuple[Rate, Rate], b: tuple[Rate, Rate]) -> bool:
    """Whether two gaps (p1 - p2 of two pairs of rates) differ: a Wald z-test at the 5% level with
    the four rates taken as independent (conservative for rates on the same patients)."""
    rates = [*a, *b]
    if any(r.n <= 0 for r in rates):
        return False
    var = sum(r.value * (1 - r.value) / r.n for r in rates)
    if var == 0:
        return False
    d = (a[0].value - a[1].value) - (b[0].value - b[1].value)
    return abs(d) / math.sqrt(var) > Z_95


def _extremes(snap: Snapshot, training: str, name: str, reference: str = "truth"):
    """(highest, lowest) group indices by a rate among groups with enough cases, and the rest."""
    cms = snap.models[training][reference]
    enough = [gi for gi, cm in enumerate(cms) if rate(cm, name).n >= MIN_CASES]
    few = [gi for gi, cm in enumerate(cms) if rate(cm, name).n < MIN_CASES]
    if len(enough) < 2:
        return None, None, few
    hi = max(enough, key=lambda gi: rate(cms[gi], name).value)
    lo = min(enough, key=lambda gi: rate(cms[gi], name).value)
    return hi, lo, few


def _points(v: float) -> str:
    return f"{100 * v:.1f} points"


def _setting_words(engine: Engine, key: str, before: Any, after: Any) -> str:
    if key == "train_n":
        return f"Drawing {after:,} training patients instead of {before:,}"
    if key == "test_n":
        return f"Testing on {after:,} patients instead of {before:,}"
    if key == "model":
        return f"Switching the model from {before} to {after}"
    if key == "threshold":
        show = {"policy": "the scenario's policy"}
        return (f"Moving the decision threshold from {show.get(before, X.number(before))} to "
                f"{show.get(after, X.number(after))}")
    if key == "replicate":
        return f"Drawing other patients (replicate {after} instead of {before})"
    return X.describe_change(engine.scenario, key, before, after)


def describe(engine: Engine, snap: Snapshot, before: Snapshot | None = None) -> list[str]:
    """Plain sentences about a snapshot (and what changed since ``before``), held to its numbers.

    Rates are stated with their counts; a group with fewer than :data:`MIN_CASES` true cases gets
    "too few cases" instead of a rate comparison; a gap or a change is claimed only when
    :func:`distinguishable` (or :func:`gap_difference_distinguishable`) says so, else "not
    distinguishable at this size".
    """
    out: list[str] = []
    target = snap.target
    moved = changes(before.settings if before is not None else None, snap.settings)
    if len(moved) == 1:
        out.append(_setting_words(engine, *moved[0]) + ".")
    elif moved:
        out.append(f"Changing {X.join_words([X.setting_label(k) for k, _, _ in moved])}.")

    # who is in the training data
    kept = sum(t["kept"] for t in snap.training)
    drawn = sum(t["drawn"] for t in snap.training)
    parts = [f"{g} {pct(t['kept'] / kept if kept else math.nan)} ({t['kept']:,} patients, "
             f"{t['true_cases']:,} true case{'' if t['true_cases'] == 1 else 's'})"
             for g, t in zip(snap.groups, snap.training)]
    out.append(f"Training data: {kept:,} of the {drawn:,} patients drawn are kept: {', '.join(parts)}.")
    if any(t["recorded_cases"] != t["true_cases"] for t in snap.training):
        out.append(f"Recorded labels: {target} = 1 is recorded for " + ", ".join(
            f"{t['recorded_cases']:,} patients with {g} ({t['true_cases']:,} true case{'' if t['true_cases'] == 1 else 's'})"
            for g, t in zip(snap.groups, snap.training)) + ".")

    m = snap.models["biased"]
    if m.get("error"):
        out.append(f"The model could not be trained on these data ({m['error']}).")
        return out
    out.extend(_gap_sentences(snap, "biased", "The model trained on these data misses", target))
    c = snap.models["clean"]
    hi, lo, _ = _extremes(snap, "biased", "fnr")
    if not c.get("error") and hi is not None:
        a = (rate(m["truth"][hi], "fnr"), rate(m["truth"][lo], "fnr"))
        b = (rate(c["truth"][hi], "fnr"), rate(c["truth"][lo], "fnr"))
        caused = (a[0].value - a[1].value) - (b[0].value - b[1].value)
        clean_words = (f"Trained on the clean twin (the same patients before any bias), it misses "
                       f"{counted(rate(c['truth'][hi], 'fnr'))} with {snap.groups[hi]} and "
                       f"{counted(rate(c['truth'][lo], 'fnr'))} with {snap.groups[lo]}")
        if gap_difference_distinguishable(a, b):
            out.append(f"{clean_words}: the biases {'widened' if caused > 0 else 'narrowed'} this gap "
                       f"by {_points(abs(caused))}.")
        else:
            out.append(f"{clean_words}: the part of this gap the biases caused ({caused * 100:+.1f} "
                       "points) is not distinguishable at this size.")
    if snap.recorded_differs and hi is not None:
        t, r = rate(m["truth"][hi], "fnr"), rate(m["recorded"][hi], "fnr")
        words = (f"An audit with only the recorded labels would see it miss {counted(r)} with "
                 f"{snap.groups[hi]}, against {counted(t)} in truth")
        if r.n < MIN_CASES:
            out.append(f"{words}; too few recorded cases to compare (fewer than {MIN_CASES}).")
        elif distinguishable(t.x, t.n, r.x, r.n):
            out.append(f"{words}: the recorded labels {'hide' if r.value < t.value else 'exaggerate'} "
                       f"{_points(abs(t.value - r.value))} of it.")
        else:
            out.append(f"{words}; the difference is not distinguishable at this size.")
    if before is not None and moved and not before.models["biased"].get("error"):
        out.extend(_change_sentences(snap, before))
    return out


def _gap_sentences(snap: Snapshot, training: str, lead: str, target: str) -> list[str]:
    m = snap.models[training]
    hi, lo, few = _extremes(snap, training, "fnr")
    out = []
    if few:
        out.append(f"Too few true {target} cases in the test cohort to state the miss rate with "
                   + X.join_words([f"{(snap.groups[gi])} ({rate(m['truth'][gi], 'fnr').n})" for gi in few])
                   + f" (at least {MIN_CASES} are needed; raise the test patients).")
    if hi is None:
        return out
    a, b = rate(m["truth"][hi], "fnr"), rate(m["truth"][lo], "fnr")
    words = (f"{lead} {pct(a.value)} of the true {target} cases with {snap.groups[hi]} ({a.x:,} of "
             f"{a.n:,}) and {counted(b)} with {snap.groups[lo]}")
    if distinguishable(a.x, a.n, b.x, b.n):
        out.append(f"{words}: a gap of {_points(a.value - b.value)}.")
    else:
        out.append(f"{words}; the gap ({_points(a.value - b.value)}) is not distinguishable at this size.")
    return out


def _change_sentences(snap: Snapshot, before: Snapshot) -> list[str]:
    """How the biased model's miss rate in the groups compared moved since the last setting."""
    if snap.groups != before.groups:
        return []
    hi, lo, _ = _extremes(snap, "biased", "fnr")
    if hi is None:
        return []
    m, b = snap.models["biased"], before.models["biased"]
    now = (rate(m["truth"][hi], "fnr"), rate(m["truth"][lo], "fnr"))
    then = (rate(b["truth"][hi], "fnr"), rate(b["truth"][lo], "fnr"))
    if min(r.n for r in then) < MIN_CASES:
        return []
    d_now, d_then = now[0].value - now[1].value, then[0].value - then[1].value
    if (now[0].x, now[0].n, now[1].x, now[1].n) == (then[0].x, then[0].n, then[1].x, then[1].n):
        return [f"The gap stayed at {_points(d_now)} (the same counts of missed cases)."]
    if gap_difference_distinguishable(now, then):
        verb = "widened" if abs(d_now) > abs(d_then) else "narrowed"
        return [f"This {verb} the gap from {_points(d_then)} to {_points(d_now)}."]
    return [f"The gap moved from {_points(d_then)} to {_points(d_now)}: not distinguishable at this size."]


__all__ = ["MIN_CASES", "Control", "Engine", "Rate", "SettingError", "Snapshot", "affected",
           "changes", "controls", "describe", "distinguishable", "highlight", "model_names", "rate"]
