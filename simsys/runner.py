"""The scenario runner: sweeps, replicates, candidate models, metrics against the truth.

It owns the experiment: parsing a scenario's ``experiment`` block, expanding its sweep, seeding
(one root seed per run; one child seed per replicate from ``numpy.random.SeedSequence``; every cell
of a sweep within a replicate shares that seed, hence the same patients: common random numbers),
running the cells on local processes or Dask, writing each finished cell atomically, resuming an
interrupted run, and collecting tidy results.

One task = one (sweep point, replicate). It samples, once, the biased training cohort, its clean
twin (the same patients before any bias acted), a size-matched clean twin (as many clean patients
as the biased cohort kept: who is in the data vs how much data; Chen, Johansson & Sontag 2018), a
validation cohort and a test cohort from the deployment population; then, for every model, fits
on each training set, chooses the threshold on validation, and measures on test against the truth
and against the observed (biased) labels -- and, when ``experiment.references`` names other 0/1
nodes (e.g. a Bayes-optimal label ``bayes: logistic(...) > 0.5``), against each of those too, with
the node's name in the ``reference`` column. Metric definitions: ``docs/metrics.md``.

For bias-mitigation methods (when a model receives the group, or ``experiment.baseline`` /
``experiment.method_checks`` is set) it adds rows of scope ``method``: each method's
*recovery* of the baseline's biased-to-clean gap (:func:`recovery`) and a flag for methods that
look fair against the observed labels but not against the truth (``docs/methods.md``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import json
import logging
import math
import os
import platform
import secrets
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: run folders are not locked
    fcntl = None

import numpy as np
import pandas as pd

from simsys import metrics as M
from simsys.errors import ModelError, RunError, ScenarioError
from simsys.groups import GroupCoding
from simsys.io import (
    MAX_PATIENTS,
    atomic_write,
    available_memory,
    format_bytes,
    os_error_path,
    os_error_text,
    raise_if_interrupted,
)
from simsys.models import (
    ThresholdPolicy,
    build_model,
    choose_threshold,
    limit_threads,
    model_label,
    parse_threshold_policy,
)
from simsys.scenario import Scenario, from_dict, get_path, load_scenario, split_path
from simsys.simulate import build_plan, node_store, run_plan
from simsys.summary import summarise

log = logging.getLogger("simsys.run")

#: Per-group metrics reported by default (see docs/metrics.md).
DEFAULT_METRICS = ("n", "prevalence", "selection_rate", "tpr", "fpr", "fnr", "tnr", "ppv", "npv",
                   "accuracy", "auroc", "brier", "ece", "calibration_in_the_large")
#: Disparities whose amplification is reported (difference between groups, max - min).
AMPLIFIED = ("fnr", "tpr", "fpr", "selection_rate", "accuracy", "auroc")
TRAININGS = ("biased", "clean", "size_matched")
RESULT_COLUMNS = ["point", "replicate", "model", "training", "reference", "scope", "group",
                  "metric", "value", "reason"]


@dataclass(frozen=True)
class Experiment:
    """A parsed ``experiment`` block."""

    train: str
    test: str
    validation_n: int
    test_n: int
    models: tuple[dict, ...]
    threshold: ThresholdPolicy
    points: tuple[dict, ...]
    replicates: int
    metrics: tuple[str, ...]
    bootstrap: int = 0
    #: Extra 0/1 nodes the test predictions are also measured against (``reference`` = node name).
    references: tuple[str, ...] = ()
    #: The plain model that recovery is measured against (``experiment.baseline``).
    baseline: str | None = None
    #: Whether rows of scope ``method`` (recovery, fairness check) are reported.
    methods: bool = False
    method_checks: MethodChecks = field(default_factory=lambda: MethodChecks())
    #: ``experiment.precision``: add replicates until the headline intervals are this narrow.
    precision: Precision | None = None


@dataclass(frozen=True)
class Precision:
    """``experiment.precision`` (or ``--precision``): add replicates in batches of ``batch`` until
    every headline interval (the gap and the part the training data's biases caused, per
    headline metric and plain model at the most-biased sweep point) has a half-width of at most
    ``half_width`` (in the quantity's own units: 0.02 is 2 percentage points for a rate, 0.02 of
    AUROC), and none is withheld for too few cases, or until ``max_replicates``."""

    half_width: float
    max_replicates: int = 30
    batch: int | None = None  # default: the experiment's replicates


@dataclass(frozen=True)
class MethodChecks:
    """``experiment.method_checks``: thresholds of the recovery and of the fairness check.

    ``min_gap``: recovery is NaN when |m(baseline, clean) - m(baseline, biased)| < min_gap.
    ``metric`` / ``tolerance``: a method is flagged when its ``metric`` (a disparity) is below
    ``tolerance`` against the observed labels but above it against the truth.
    """

    min_gap: float = 0.01
    metric: str = M.DEFAULT_CHECK_METRIC
    tolerance: float = M.DEFAULT_CHECK_TOLERANCE


#: Group metrics and disparities whose recovery is reported (those present in the results).
RECOVERY_GROUP_METRICS = ("accuracy", "auroc", "tpr", "fpr")
RECOVERY_DISPARITIES = ("equal_opportunity_difference", "equalized_odds_difference",
                        "demographic_parity_difference", "accuracy_difference", "auroc_difference",
                        "fnr_difference")
_FAIRNESS_AGGREGATES = ("demographic_parity_difference", "equal_opportunity_difference",
                        "equalized_odds_difference", "underdiagnosis_gap")

_EXPERIMENT_KEYS = {"train", "test", "validation_n", "test_n", "models", "threshold", "sweep",
                    "replicates", "metrics", "bootstrap", "references", "description",
                    "baseline", "method_checks", "headline", "precision"}
#: Per-group metrics a scenario may choose as its headline (``experiment.headline``): the ones the
#: findings speak about first (default: fnr and auroc).
HEADLINE_CHOICES = ("fnr", "fpr", "tpr", "tnr", "ppv", "npv", "selection_rate", "accuracy", "auroc")


def parse_experiment(scenario: Scenario, *, allow_imports: bool = False,
                     models: list | None = None) -> Experiment:
    """Validate ``scenario.spec.experiment`` (defaults: both built-in models, fixed 0.5, 3 replicates).

    ``models``, when given, replaces ``experiment.models``: a list of model specs (dicts or
    strings, as in YAML) and/or estimator objects / classes from Python (see :func:`run`).

    Raises :class:`ScenarioError` / :class:`ModelError` with the key path, what was found and what is
    allowed; every sweep point is applied once here so that a bad path fails before any work.
    """
    src = scenario.source
    exp = dict(scenario.spec.experiment or {})

    def fail(path, msg):
        raise ScenarioError(src, f"experiment.{path}" if path else "experiment", msg)

    for k in exp:
        if k not in _EXPERIMENT_KEYS:
            fail(k, f"unknown key; allowed: {', '.join(sorted(_EXPERIMENT_KEYS))}")
    pops = scenario.spec.populations
    train = exp.get("train", "train")
    test = exp.get("test", "test")
    for key, pop in (("train", train), ("test", test)):
        if pop not in pops:
            fail(key, f"unknown population {pop!r}; defined: {', '.join(pops)}")
    test_n = _int(exp.get("test_n", pops[test].n), "test_n", fail, lo=1)
    validation_n = _int(exp.get("validation_n", max(1000, test_n // 4)), "validation_n", fail, lo=10)
    replicates = _int(exp.get("replicates", 3), "replicates", fail, lo=1)
    bootstrap = _int(exp.get("bootstrap", 0), "bootstrap", fail, lo=0)
    if models is None:
        models = exp.get("models", [{"model": "logistic_regression"}, {"model": "gradient_boosting"}])
    if not isinstance(models, list | tuple) or not models:
        fail("models", f"expected a non-empty list of models, got {models!r}")
    models = list(models)  # a copy: the scenario's own list stays as written
    names = set()
    cands = []
    for i, spec in enumerate(models):
        if isinstance(spec, str) or not isinstance(spec, Mapping):
            models[i] = spec = {"model": spec}  # a name, or an estimator object / class
        cands.append(build_model(spec, random_state=0, allow_imports=allow_imports, source=src,
                                 key=f"experiment.models[{i}]"))
        nm = cands[-1].name
        if nm in names:
            fail(f"models[{i}].name", f"duplicate model name {nm!r}; give each model a distinct name")
        names.add(nm)
    baseline = exp.get("baseline")
    if baseline is not None and baseline not in names:
        fail("baseline", f"expected the name of a model, got {baseline!r}; "
             f"models: {', '.join(c.name for c in cands)}")
    # rows of scope "method" when asked for, or when some model is a method (sees the group)
    methods = baseline is not None or "method_checks" in exp or any(c.receives_group for c in cands)
    if baseline is None and methods:
        plain = [c.name for c in cands if not c.receives_group]
        baseline = plain[0] if plain else None
    method_checks = _parse_method_checks(exp.get("method_checks"), fail)
    threshold = parse_threshold_policy(exp.get("threshold"), source=src, key="experiment.threshold")
    metrics = exp.get("metrics", list(DEFAULT_METRICS))
    if not isinstance(metrics, list) or not metrics:
        fail("metrics", "expected a non-empty list of metric names")
    for i, m in enumerate(metrics):
        if m not in M.METRIC_NAMES:
            fail(f"metrics[{i}]", f"unknown metric {m!r}; allowed: {', '.join(M.METRIC_NAMES)}")
    references = exp.get("references", [])
    if not isinstance(references, list):
        fail("references", f"expected a list of 0/1 node names, got {references!r}")
    for i, r in enumerate(references):
        # a reference is a true 0/1 node of the test cohort, e.g. a Bayes-optimal label
        if not isinstance(r, str) or r not in scenario.spec.nodes or r in ("truth", "observed"):
            fail(f"references[{i}]", f"expected the name of a node, got {r!r}; nodes: {', '.join(scenario.spec.nodes)}")
        if node_store(scenario, r) != "u" or len(scenario.categories(r)) != 2 or r == scenario.spec.roles.target:
            fail(f"references[{i}]", f"node {r!r} is not a 0/1 node other than the target; "
                 "allowed: a bernoulli node, a two-category node or a comparison such as 'risk > 0.5'")
    headline = exp.get("headline")
    if headline is not None:
        if not isinstance(headline, list) or not headline or len(set(map(str, headline))) != len(headline):
            fail("headline", f"expected a non-empty list of distinct metric names, got {headline!r}")
        for i, k in enumerate(headline):
            if k not in HEADLINE_CHOICES:
                fail(f"headline[{i}]", f"unknown headline metric {k!r}; allowed: {', '.join(HEADLINE_CHOICES)}")
            if k not in metrics:
                fail(f"headline[{i}]", f"{k!r} is not among experiment.metrics; add it there")
    points = expand_sweep(scenario, exp.get("sweep"))
    precision = _parse_precision(exp.get("precision"), replicates, fail)
    return Experiment(train, test, validation_n, test_n, tuple(models), threshold, tuple(points),
                      replicates, tuple(metrics), bootstrap, tuple(references), baseline, methods,
                      method_checks, precision)


def _parse_precision(d, replicates: int, fail) -> Precision | None:
    """``experiment.precision``: a half-width, or ``{half_width, max_replicates, batch}``."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        d = {"half_width": d}
    for k in d:
        if k not in ("half_width", "max_replicates", "batch"):
            fail(f"precision.{k}", "unknown key; allowed: batch, half_width, max_replicates")
    hw = d.get("half_width")
    if isinstance(hw, bool) or not isinstance(hw, int | float) or not 0 < hw < 1:
        fail("precision.half_width", f"expected a number in (0, 1), got {hw!r}")
    mx = _int(d.get("max_replicates", max(30, replicates)), "precision.max_replicates", fail, lo=replicates)
    batch = _int(d.get("batch", replicates), "precision.batch", fail, lo=1)
    return Precision(float(hw), mx, batch)


def _parse_method_checks(d, fail) -> MethodChecks:
    """``experiment.method_checks: {min_gap, metric, tolerance}`` (every key optional)."""
    if d is None:
        return MethodChecks()
    if not isinstance(d, Mapping):
        fail("method_checks", f"expected a mapping with min_gap, metric, tolerance, got {d!r}")
    for k in d:
        if k not in ("min_gap", "metric", "tolerance"):
            fail(f"method_checks.{k}", "unknown key; allowed: metric, min_gap, tolerance")
    out = {}
    for k in ("min_gap", "tolerance"):
        if k in d:
            v = d[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < float("inf"):
                fail(f"method_checks.{k}", f"expected a number >= 0, got {v!r}")
            out[k] = float(v)
    if "metric" in d:
        allowed = (*_FAIRNESS_AGGREGATES, *(f"{k}_difference" for k in M.METRIC_NAMES))
        if d["metric"] not in allowed:
            fail("method_checks.metric", f"unknown disparity {d['metric']!r}; allowed: "
                 f"{', '.join(_FAIRNESS_AGGREGATES)} or <metric>_difference")
        out["metric"] = d["metric"]
    return MethodChecks(**out)


def _int(v, key, fail, lo):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        fail(key, f"expected an integer >= {lo}, got {v!r}")
    return v


def expand_sweep(scenario: Scenario, sweep: Mapping | None) -> list[dict]:
    """The sweep's points: every combination of ``grid`` values, then the explicit ``points``.

    ``grid`` maps dotted paths (``biases[0].keep``, ``params.dark_share``) to lists of values; an
    empty list is an error naming the path, and so is a path that names nothing.
    """
    src = scenario.source
    if not sweep:
        return [{}]
    if not isinstance(sweep, Mapping):
        raise ScenarioError(src, "experiment.sweep", "expected a mapping with 'grid' and/or 'points'")
    extra = set(sweep) - {"grid", "points"}
    if extra:
        raise ScenarioError(src, f"experiment.sweep.{sorted(extra)[0]}", "unknown key; allowed: grid, points")
    grid = sweep.get("grid") or {}
    points: list[dict] = []
    if grid:
        if not isinstance(grid, Mapping):
            raise ScenarioError(src, "experiment.sweep.grid", "expected a mapping path -> list of values")
        for path, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ScenarioError(src, f"experiment.sweep.grid.{path}",
                                    f"expected a non-empty list of values, got {values!r}")
        keys = list(grid)
        points += [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    for i, p in enumerate(sweep.get("points") or []):
        if not isinstance(p, Mapping) or not p:
            raise ScenarioError(src, f"experiment.sweep.points[{i}]", "expected a mapping path -> value")
        points.append(dict(p))
    if not points:
        raise ScenarioError(src, "experiment.sweep", "the sweep has no points; give a grid or points")
    for p in points:
        for path in p:
            try:
                split_path(path)
            except ValueError:
                raise ScenarioError(src, "experiment.sweep", f"{path!r} is not a key path such as 'biases[0].keep'") from None
            if path.startswith("experiment"):
                raise ScenarioError(src, f"experiment.sweep.{path}", "cannot sweep the experiment itself")
        try:
            scenario.with_values(p)
        except ScenarioError as exc:
            raise ScenarioError(src, f"experiment.sweep ({exc.path})", exc.message) from None
    _check_sweep_types(scenario, points)
    return points


def _value_kind(v) -> str | None:
    """The column type a swept value becomes in the results table (None: a missing value)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    return "string"  # a string, or a list / mapping written as JSON text


def _check_sweep_types(scenario: Scenario, points: list[dict]) -> None:
    """Every value of a swept path (and the scenario's own, where a point leaves it) has one type:
    a column of the results table holds one type (Parquet cannot store 0.3 beside '0.5')."""
    for path in dict.fromkeys(k for p in points for k in p):
        values = [p[path] if path in p else get_path(scenario.data, path) for p in points]
        kinds = dict.fromkeys(k for k in map(_value_kind, values) if k is not None)
        if len(kinds) > 1:
            shown = ", ".join(dict.fromkeys(f"{v!r} ({_value_kind(v)})" for v in values
                                            if v is not None))
            raise ScenarioError(scenario.source, f"experiment.sweep ({path})",
                                f"values of different types: {shown}; give every value of a "
                                "swept path the same type (all numbers, all strings or all booleans)")


# --- seeds ------------------------------------------------------------------------------------------
def replicate_seeds(root_seed: int, replicates: int) -> list[int]:
    """One 63-bit seed per replicate: ``SeedSequence(root).spawn(replicates)``, in order."""
    children = np.random.SeedSequence(int(root_seed)).spawn(replicates)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


def model_seed(replicate_seed: int, model_index: int) -> int:
    """The random_state of a model in a replicate (same for every cell: common random numbers)."""
    ss = np.random.SeedSequence(replicate_seed, spawn_key=(7, model_index))
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)


# --- one task ------------------------------------------------------------------------------------
def _features(cohort, names: list[str], observed: bool) -> np.ndarray:
    cols = []
    obs = cohort.plan.observation.observed
    for f in names:
        cols.append(cohort.column(obs[f] if observed and f in obs else f).astype(np.float64))
    return np.ascontiguousarray(np.column_stack(cols))


class ReuseCache:
    """What common random numbers make identical across the sweep points of one replicate.

    Within a replicate every sweep point draws the same patients, so a cohort whose sampling plan
    a sweep point does not change (the clean twin when only biases move; the test and validation
    cohorts) is the same cohort, and a model fitted with the same seed on the same data and scored
    on the same data gives the same scores. This cache computes each once per task:

    - cohorts are keyed by their plan's fingerprint (:func:`simsys.simulate.plan_fingerprint`:
      bytecode, constants, stream keys, layout), the patients' numbers and the seed;
    - fits are keyed by a hash of everything that determines their output: the model spec, the
      model's seed, the training arrays (features, labels, groups when the model receives them),
      the validation and test arrays and the threshold policy. A fit that failed fails again from
      the cache with the same error.

    Nothing is reused across replicates or processes, and nothing is stored on disk (a cache file
    would be untrusted input). Results are bit-identical with and without it (a test checks).
    """

    def __init__(self) -> None:
        self.cohorts: dict = {}
        self.fits: dict = {}
        self.hits = {"cohorts": 0, "fits": 0}

    def cohort(self, plan, n: int, seed: int, *, start: int = 0):
        from simsys.simulate import plan_fingerprint

        key = (plan_fingerprint(plan, seed), n, start)
        got = self.cohorts.get(key)
        if got is None:
            got = self.cohorts[key] = run_plan(plan, n, seed, start=start, threads=1)
        else:
            self.hits["cohorts"] += 1
        return got

    def fit(self, key, compute):
        if key is None:
            return compute()
        got = self.fits.get(key)
        if got is None:
            try:
                got = ("ok", compute())
            except (ModelError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
                got = ("error", exc)
            self.fits[key] = got
        else:
            self.hits["fits"] += 1
        if got[0] == "error":
            raise got[1]
        return got[1]


def _fit_key(mspec: Mapping, seed: int, receives_group: bool, policy, arrays) -> str | None:
    """A hash of what determines a fit's scores and threshold, or None when the spec holds a
    Python object (its state cannot be told from its text, so it is not reused)."""
    import hashlib

    try:
        text = json.dumps(mspec, sort_keys=True)
    except TypeError:
        return None
    h = hashlib.blake2b(digest_size=20)
    h.update(text.encode())
    h.update(repr((int(seed), bool(receives_group), policy)).encode())
    for a in arrays:
        if a is None:
            h.update(b"-")
            continue
        a = np.ascontiguousarray(a)
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    return h.hexdigest()


def run_task(scenario: Scenario, experiment: Experiment, point_index: int, replicate: int,
             seed: int, *, allow_imports: bool = False, save_predictions: bool = False,
             cache: ReuseCache | None = None) -> dict:
    """Run one (sweep point, replicate) for every model; return rows, errors and timings.

    ``cache`` (a :class:`ReuseCache` shared by the points of one replicate) reuses the cohorts and
    fits the point shares with other points; the results are the same with or without it.
    """
    cache = cache if cache is not None else ReuseCache()
    t_sample = t_fit = t_metrics = 0.0
    rows: list[tuple] = []
    errors: list[dict] = []
    predictions: list[pd.DataFrame] = []
    point = experiment.points[point_index]
    sc = scenario.with_values(point) if point else scenario
    spec = sc.spec
    target = spec.roles.target
    features = list(spec.roles.features)
    coding = GroupCoding.of(sc)
    G = len(coding.labels)
    with limit_threads(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        n_train = spec.populations[experiment.train].n
        biased = cache.cohort(build_plan(sc, experiment.train, biased=True), n_train, seed)
        clean = cache.cohort(build_plan(sc, experiment.train, biased=False), n_train, seed)
        # the test population as tested (simsys.simulate.experiment_view): recorded labels beside
        # the truth, and only its own `selection` drops patients; validation follows the test rows
        test_plan = build_plan(sc, experiment.test, view="tested")
        test = cache.cohort(test_plan, experiment.test_n, seed)
        val = cache.cohort(test_plan, experiment.validation_n, seed, start=experiment.test_n)
        test_obs_features = spec.populations[experiment.test].biased
        g_test = coding.codes(test)
        g_test.flags.writeable = False
        g_val = coding.codes(val)
        y_test = test.column(target).astype(np.int64)
        y_test_obs = test.column(target + "_observed").astype(np.int64)
        y_test_extra = [(r, test.column(r).astype(np.int64)) for r in experiment.references]
        # the recorded test labels against the truth: what an audit's labels miss, per group
        _count_rows(rows, "data", "test", "truth", coding, y_test, y_test_obs, g_test)
        X_test = _features(test, features, test_obs_features)
        X_val = _features(val, features, test_obs_features)
        y_val = val.column(target).astype(np.int64)
        m = biased.n
        sets = {
            "biased": (_features(biased, features, True), biased.column(target + "_observed").astype(np.int64), coding.codes(biased)),
            "clean": (_features(clean, features, False), clean.column(target).astype(np.int64), coding.codes(clean)),
        }
        sets["size_matched"] = tuple(a[:m] for a in sets["clean"])
        t_sample += time.perf_counter() - t0

        # what the training labels already carry, relative to the truth (D_data)
        t0 = time.perf_counter()
        g_b = sets["biased"][2]
        y_true_b = biased.column(target).astype(np.int64)
        data_vals, data_reasons = M.binary_metrics(y_true_b, sets["biased"][1], None, g_b, G, with_reasons=True)
        data_disp = {k: M.difference(data_vals[k][:G]) for k in AMPLIFIED if k not in ("auroc",)}
        for k in ("n", "prevalence", "selection_rate", "fnr", "fpr"):
            for gi in range(G + 1):
                rows.append(("data", "biased", "truth", "group", _glabel(coding, gi), f"label_{k}", float(data_vals[k][gi]), data_reasons[k][gi]))
        # the recorded training labels as a "prediction" of the truth, and the clean twin's make-up:
        # the counts behind every rate the findings state about the data
        _count_rows(rows, "data", "biased", "truth", coding, y_true_b, sets["biased"][1], g_b)
        _count_rows(rows, "data", "clean", "truth", coding, sets["clean"][1], sets["clean"][1], sets["clean"][2])
        t_metrics += time.perf_counter() - t0

        method_vals: dict = {}  # model -> training -> reference -> (per-group values, aggregates)
        for mi, mspec in enumerate(experiment.models):
            name = mspec.get("name", model_label(mspec["model"]))
            cand = build_model(mspec, random_state=model_seed(seed, mi), allow_imports=allow_imports,
                               source=sc.source, key=f"experiment.models[{mi}]")
            dmodel: dict[str, dict[str, float]] = {}
            preds_biased = None
            for training in TRAININGS:
                X, y, g = sets[training]

                def fit_and_score(X=X, y=y, g=g, cand=cand):
                    fitted = cand.fit(X, y, group=g if cand.receives_group else None)
                    s_val = fitted.predict_score(X_val, group=g_val if cand.receives_group else None)
                    s_test = fitted.predict_score(X_test, group=g_test if cand.receives_group else None)
                    hard = fitted.hard_predictions_only
                    thr = 0.5 if hard else choose_threshold(experiment.threshold, y_val, s_val, scored=s_test)
                    s_test.flags.writeable = False  # read-only: metrics may reuse its sort orders
                    return s_test, thr, hard

                rg = cand.receives_group
                key = _fit_key(mspec, model_seed(seed, mi), rg, experiment.threshold,
                               (X, y, g if rg else None, X_val, y_val, g_val if rg else None, X_test,
                                g_test if rg else None))
                try:
                    t0 = time.perf_counter()
                    s_test, thr, hard = cache.fit(key, fit_and_score)
                    t_fit += time.perf_counter() - t0
                except (ModelError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
                    errors.append({"point": point_index, "replicate": replicate, "model": name,
                                   "training": training, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                t0 = time.perf_counter()
                yhat = (s_test >= thr).astype(np.int64)
                score = None if hard else s_test
                rows.append((name, training, "truth", "threshold", "overall", "threshold", float(thr),
                             OWN_OPERATING_POINT if hard else None))
                for reference, y_ref in (("truth", y_test), ("observed", y_test_obs), *y_test_extra):
                    vals, reasons = M.binary_metrics(y_ref, yhat, score, g_test, G, with_reasons=True)
                    _count_rows(rows, name, training, reference, coding, y_ref, yhat, g_test)
                    for k in experiment.metrics:
                        for gi in range(G + 1):
                            rows.append((name, training, reference, "group", _glabel(coding, gi), k,
                                         float(vals[k][gi]), reasons[k][gi]))
                        v = vals[k][:G]
                        diff, rat = M.difference(v), M.ratio(v)
                        rows.append((name, training, reference, "disparity", "", f"{k}_difference", diff, _disparity_reason(diff, v)))
                        rows.append((name, training, reference, "disparity", "", f"{k}_ratio", rat, _disparity_reason(rat, v)))
                        if coding.reference is not None:
                            d = M.difference_to_reference(v, coding.reference)
                            for gi in range(G):
                                if gi != coding.reference:
                                    rows.append((name, training, reference, "disparity", coding.labels[gi],
                                                 f"{k}_minus_reference", float(d[gi]), None))
                    fair = M.fairness_differences(y_ref, yhat, g_test)
                    for k, v in fair.items():
                        rows.append((name, training, reference, "disparity", "", k, float(v), None))
                    if experiment.methods and training in ("biased", "clean"):
                        method_vals.setdefault(name, {}).setdefault(training, {})[reference] = (vals, fair)
                    if reference == "truth" and training == "biased" and experiment.bootstrap:
                        # within-cohort uncertainty: percentile intervals over resampled test rows
                        boot = M.bootstrap_metrics(
                            y_ref, yhat, score, g_test, G, n_resamples=experiment.bootstrap,
                            seed=np.random.SeedSequence(seed, spawn_key=(11, mi)),
                            metrics=tuple(experiment.metrics))
                        lo, hi = M.bootstrap_interval(boot)
                        for j, k in enumerate(experiment.metrics):
                            for gi in range(G + 1):
                                rows.append((name, training, reference, "bootstrap", _glabel(coding, gi),
                                             f"{k}.lo", float(lo[j, gi]), None))
                                rows.append((name, training, reference, "bootstrap", _glabel(coding, gi),
                                             f"{k}.hi", float(hi[j, gi]), None))
                    if reference == "truth":
                        dmodel[training] = {k: M.difference(vals[k][:G]) for k in AMPLIFIED}
                        dmodel[training]["directional_bias_amplification"] = M.directional_bias_amplification(
                            g_b, sets["biased"][1], g_test, yhat, y_test, n_groups=G)
                if training == "biased":
                    preds_biased = (s_test, yhat)
                t_metrics += time.perf_counter() - t0
            if "biased" in dmodel:
                t0 = time.perf_counter()
                for k in AMPLIFIED:
                    dm = dmodel["biased"][k]
                    amp = {"d_model": dm}
                    if k in data_disp:
                        dd = data_disp[k]
                        amp.update(d_data=dd, addition=dm - dd, ratio=(dm / dd) if dd != 0 else np.nan)
                    if "clean" in dmodel:
                        amp["caused"] = dm - dmodel["clean"][k]
                    if "size_matched" in dmodel:
                        amp["caused_size_matched"] = dm - dmodel["size_matched"][k]
                    for part, v in amp.items():
                        why = _amplification_reason(part, v, amp.get("d_data"))
                        rows.append((name, "biased", "truth", "amplification", "", f"{k}_difference.{part}", float(v), why))
                rows.append((name, "biased", "truth", "amplification", "", "directional_bias_amplification",
                             float(dmodel["biased"]["directional_bias_amplification"]), None))
                t_metrics += time.perf_counter() - t0
            if save_predictions and preds_biased is not None:
                predictions.append(pd.DataFrame({
                    "point": point_index, "replicate": replicate, "model": name,
                    "patient_id": test.patient_id, "group": g_test, "y_true": y_test,
                    "y_observed": y_test_obs, "score": preds_biased[0], "y_pred": preds_biased[1]}))
    if experiment.methods:
        rows.extend(_method_rows(experiment, coding, method_vals))
    frame = pd.DataFrame(rows, columns=["model", "training", "reference", "scope", "group", "metric", "value", "reason"])
    frame.insert(0, "replicate", replicate)
    frame.insert(0, "point", point_index)
    # one column per path swept anywhere; a point that does not set a path (a grid point beside
    # explicit points) has the scenario's own value there, not a missing value
    for path in dict.fromkeys(p for pt in experiment.points for p in pt):
        value = point[path] if path in point else get_path(scenario.data, path)
        if isinstance(value, list | dict):  # e.g. a swept roles.group: one cell, shown as text
            value = json.dumps(value)
        frame[path] = value
    return {"rows": frame, "errors": errors, "predictions": predictions,
            "timings": {"sampling": t_sample, "fitting": t_fit, "metrics": t_metrics},
            "n_train_biased": int(m), "n_train_clean": int(clean.n),
            "warnings": _distinct_warnings(caught)}


def _distinct_warnings(caught) -> list[str]:
    """The library warnings a cell raised (e.g. a fit that did not converge), once each: they go
    to ``run.log`` rather than scattered over the terminal between progress and results."""
    out = []
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).strip()}"
        if text not in out:
            out.append(_clip(text, 300))
    return out[:20]


#: Reason recorded on the threshold row of a method that makes hard predictions: the experiment's
#: threshold policy does not apply to it (it chose its own operating point).
OWN_OPERATING_POINT = "hard predictions: the method sets its own operating point"
#: The confusion counts recorded per group (scope ``counts``): the support behind every rate.
COUNTS = ("tp", "fp", "fn", "tn")


def _count_rows(rows: list, model: str, training: str, reference: str, coding: GroupCoding,
                y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> None:
    c = M.confusion_counts(y_true, y_pred, groups, len(coding.labels))
    for ci, k in enumerate(COUNTS):
        for gi in range(c.shape[1]):
            rows.append((model, training, reference, "counts", _glabel(coding, gi), k, float(c[ci, gi]), None))


def recovery(method: float, baseline_biased: float, baseline_clean: float, *,
             min_gap: float = 0.01) -> tuple[float, str | None]:
    """How much of the baseline's biased-to-clean gap in a metric a method closes.

    recovery = (m(method on biased) - m(baseline on biased)) / (m(baseline on clean) - m(baseline
    on biased)): 0 = no better than the baseline trained on the biased data, 1 = as good as the
    baseline trained on the clean twin, above 1 = better, below 0 = worse. It works for metrics
    where higher is better (accuracy) and for disparities (lower is better) alike, since the sign
    of the denominator follows. Returns ``(value, reason)``; NaN with a reason when a value is
    undefined or the gap is below ``min_gap`` (the ratio would then amplify noise).
    """
    for v, who in ((method, "method"), (baseline_biased, "baseline on biased"),
                   (baseline_clean, "baseline on clean")):
        if not np.isfinite(v):
            return np.nan, f"metric undefined ({who})"
    gap = baseline_clean - baseline_biased
    if abs(gap) < min_gap:
        return np.nan, f"baseline gap below min_gap ({abs(gap):.3g} < {min_gap:g})"
    return float((method - baseline_biased) / gap), None


def _method_rows(experiment: Experiment, coding: GroupCoding, method_vals: dict) -> list[tuple]:
    """Rows of scope ``method`` for every model trained on the biased data (docs/metrics.md).

    ``recovery.<metric>`` for the group metrics in :data:`RECOVERY_GROUP_METRICS` (per group and
    overall) and the disparities in :data:`RECOVERY_DISPARITIES`, against the truth and each
    extra reference; and ``fair_only_against_observed.<metric>``: 1 when the method's disparity is
    below the tolerance against the observed labels but above it against the truth, else 0.
    """
    rows: list[tuple] = []
    G = len(coding.labels)
    checks = experiment.method_checks
    base = method_vals.get(experiment.baseline, {}) if experiment.baseline else {}

    def disparity(entry, k):
        vals, fair = entry
        if k in fair:
            return float(fair[k])
        return M.difference(vals[k[: -len("_difference")]][:G])

    for name, by_training in method_vals.items():
        if "biased" not in by_training:
            continue
        for reference in ("truth", *experiment.references):
            mine = by_training["biased"].get(reference)
            b_biased = base.get("biased", {}).get(reference)
            b_clean = base.get("clean", {}).get(reference)
            if mine is None or b_biased is None or b_clean is None:
                continue
            for k in RECOVERY_GROUP_METRICS:
                if k not in experiment.metrics:
                    continue
                for gi in range(G + 1):
                    v, why = recovery(mine[0][k][gi], b_biased[0][k][gi], b_clean[0][k][gi],
                                      min_gap=checks.min_gap)
                    rows.append((name, "biased", reference, "method", _glabel(coding, gi),
                                 f"recovery.{k}", v, why))
            for k in RECOVERY_DISPARITIES:
                v, why = recovery(disparity(mine, k), disparity(b_biased, k),
                                  disparity(b_clean, k), min_gap=checks.min_gap)
                rows.append((name, "biased", reference, "method", "", f"recovery.{k}", v, why))
        observed = by_training["biased"].get("observed")
        truth = by_training["biased"].get("truth")
        k = checks.metric
        if observed is None or truth is None:
            continue
        d_obs, d_true = abs(disparity(observed, k)), abs(disparity(truth, k))
        if np.isnan(d_obs) or np.isnan(d_true):
            flag, why = np.nan, "disparity undefined"
        else:
            flag, why = float(d_obs < checks.tolerance and d_true > checks.tolerance), None
        rows.append((name, "biased", "truth", "method", "", f"fair_only_against_observed.{k}",
                     flag, why))
    return rows


def _disparity_reason(value: float, per_group: np.ndarray) -> str | None:
    """Why a difference (max - min) or ratio (min / max) over groups is NaN, else None."""
    if not np.isnan(value):
        return None
    if np.isnan(per_group).all():
        return "undefined in every group"
    return "max over groups is 0"  # only a ratio can be NaN with a defined group


def _amplification_reason(part: str, value: float, d_data: float | None) -> str | None:
    """Why an amplification part is NaN, else None."""
    if not np.isnan(value):
        return None
    if part == "ratio" and d_data == 0:
        return "d_data is 0"
    return "disparity undefined"


def _glabel(coding: GroupCoding, gi: int) -> str:
    return coding.labels[gi] if gi < len(coding.labels) else "overall"


def _task_entry(args):
    """Process-pool entry point (module level so it pickles): the cells of one task, all of one
    replicate, sharing a :class:`ReuseCache`; returns ``[((point, replicate), result), ...]``."""
    scenario_data, source, experiment, cells, seed, allow_imports, save_predictions = args
    scenario = from_dict(scenario_data, source=source)
    cache = ReuseCache()
    out = []
    for pi, rep in cells:
        try:
            res = run_task(scenario, experiment, pi, rep, seed, allow_imports=allow_imports,
                           save_predictions=save_predictions, cache=cache)
        except Exception as exc:  # a failing cell is recorded, the run goes on
            res = {"rows": None, "errors": [{"point": pi, "replicate": rep, "model": "", "training": "",
                                             "error": f"{type(exc).__name__}: {exc}",
                                             "traceback": traceback.format_exc()}],
                   "predictions": [], "timings": {}, "n_train_biased": 0, "n_train_clean": 0}
        out.append(((pi, rep), res))
    return out


def task_groups(cells: list[tuple[int, int]], workers: int, *, reuse: bool = True) -> list[list[tuple[int, int]]]:
    """The cells to run, grouped into tasks: with ``reuse``, the cells of one replicate go
    together (they share cohorts and fits, :class:`ReuseCache`), and replicates are split in two
    (or more) where that keeps every worker busy: the number of tasks is brought to a multiple of
    the number of workers. Larger tasks come first (they are submitted first). Without ``reuse``,
    one cell per task. The results do not depend on the grouping."""
    if not reuse:
        return [[c] for c in cells]
    by_rep: dict[int, list[tuple[int, int]]] = {}
    for c in cells:
        by_rep.setdefault(c[1], []).append(c)
    groups = [by_rep[r] for r in sorted(by_rep)]
    n = max(1, int(workers))
    if n > 1 and len(groups) % n:
        extra = n - len(groups) % n
        # split the last replicates (the ones the pool would start last) into halves, and further
        # while more tasks are needed and a task has more than one cell
        while extra > 0:
            i = max(range(len(groups)), key=lambda k: (len(groups[k]), k))
            g = groups[i]
            if len(g) < 2:
                break
            half = (len(g) + 1) // 2
            groups[i:i + 1] = [g[:half], g[half:]]
            extra -= 1
    return sorted(groups, key=lambda g: -len(g))


def _init_worker():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ["SIMSYS_THREADS"] = "1"


def _init_local_worker(parent_pid: int) -> None:
    """Initializer of the local worker processes: one thread each, and they die with the run.

    A worker outlives a run killed with SIGKILL unless told otherwise (it waits for work forever,
    holding its memory and the resource tracker alive): on Linux the kernel kills it when its
    parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere, a thread checks the parent's pid.
    Ctrl-C reaches every process of the terminal; the workers leave it to the run, which stops them.
    """
    _init_worker()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - the watcher below still works
            pass
    # the worker's parent is the run itself (spawn) or the fork server, which ends with the run
    forked_by = os.getppid()
    if not _alive(parent_pid):  # the run died before the lines above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, forked_by), daemon=True,
                     name="simsys-parent-watch").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a pid reused by another user's process
        return True
    return True


def _watch_parent(run_pid: int, forked_by: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != forked_by or not _alive(run_pid):
            os._exit(1)


def _worker_context(mp):
    """Where local workers come from: fresh interpreters (``spawn``).

    Not a fork server, although one that imported simsys once would start workers in
    milliseconds: Python 3.11's fork server ignores the run's ``sys.path``, so its workers would
    import ``simsys`` from the current working directory when one is there -- another copy than
    the run's, and code from a folder the user did not ask to run. ``spawn`` gives each worker the
    run's own ``sys.path`` before it imports anything of simsys.
    """
    return mp.get_context("spawn")


# --- the run ---------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run produced: the tidy results, the summary with intervals, errors, and where."""

    results: pd.DataFrame
    summary: pd.DataFrame
    errors: pd.DataFrame
    run_dir: Path | None
    manifest: dict = field(default_factory=dict)
    #: Every statement about the run, with its numbers and verdict (:mod:`simsys.findings`).
    findings: list = field(default_factory=list)
    view: object = field(default=None, repr=False)

    def findings_frame(self) -> pd.DataFrame:
        """The findings as a table (one row each)."""
        from simsys.findings import findings_frame

        return findings_frame(self.findings)

    def _repr_html_(self) -> str:  # Jupyter: the headline rows and figure
        from simsys.display import run_result_html

        return run_result_html(self)


class _ExecutorError(RunError):
    """The executor failed (no scheduler, no workers, a worker died): the run stops, resumable."""


def nothing_succeeded(result: RunResult) -> bool:
    """Whether no model produced a result in any cell (every fit or every cell failed).

    Rows of model ``data`` (what the training labels carry) are written before any model is fitted,
    so they do not count.
    """
    r = result.results
    return r.empty or "model" not in r or bool(r["model"].eq("data").all())


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(data, indent=2, default=str)))


def _versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("simsys", "numpy", "numba", "pandas", "scikit-learn", "networkx", "pyarrow", "fairlearn"):
        try:
            from importlib.metadata import version

            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = None
    return out


# --- the run folder: untrusted when read, created atomically, locked while in use ------------------
_LOCK = ".lock"
_MISSING = object()


def _is_int(v, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _short(value, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters (a damaged value may be huge)."""
    return _clip(repr(value), width)


def _clip(text: str, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters."""
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= width else text[: width - 3] + "..."


def read_manifest(run_dir: str | os.PathLike) -> dict:
    """A run folder's ``manifest.json``, with the type of every value that resuming or reporting
    reads checked (a run folder is untrusted input: it may be damaged, or crafted).

    Optional keys get their defaults. ``allow_imports`` is returned as recorded but grants
    nothing: resuming checks it against the caller's own flag.

    Raises
    ------
    RunError
        One line naming the manifest and the key: not a run folder, unreadable, not JSON, a
        missing key or a value of the wrong type.
    """
    run_dir = Path(run_dir)
    mpath = run_dir / "manifest.json"
    if not mpath.is_file():
        raise RunError(f"{run_dir}: not a run folder (no manifest.json)")
    damaged = "the run folder is damaged"
    try:
        text = mpath.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = os_error_text(exc) if isinstance(exc, OSError) else "not UTF-8 text"
        raise RunError(f"{mpath}: cannot be read ({why}); {damaged}") from None
    try:
        m = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{mpath}: not valid JSON ({exc.msg} at line {exc.lineno}, column "
                       f"{exc.colno}); {damaged}") from None
    except (ValueError, RecursionError) as exc:
        raise RunError(f"{mpath}: not valid JSON ({type(exc).__name__}); {damaged}") from None
    if not isinstance(m, dict):
        raise RunError(f"{mpath}: expected a JSON object, got {type(m).__name__}; {damaged}")

    def need(key, ok, what, default=_MISSING):
        if key not in m:
            if default is not _MISSING:
                m[key] = default
                return
            raise RunError(f"{mpath}: {key}: missing; expected {what} ({damaged})")
        if not ok(m[key]):
            raise RunError(f"{mpath}: {key}: got {_short(m[key])}; expected {what} ({damaged})")

    def cell_ok(c):
        return (isinstance(c, dict) and _is_int(c.get("point")) and _is_int(c.get("replicate"))
                and isinstance(c.get("settings", {}), dict | None))

    need("scenario", lambda v: isinstance(v, dict), "a mapping (the scenario)")
    need("source", lambda v: isinstance(v, str), "a string (the scenario's file name)")
    need("seed", _is_int, "an integer >= 0")
    need("replicate_seeds", lambda v: isinstance(v, list) and len(v) > 0 and all(map(_is_int, v)),
         "a non-empty list of integers >= 0")
    need("status", lambda v: isinstance(v, str), "a string", "running")
    need("save_predictions", lambda v: isinstance(v, bool), "true or false", False)
    need("allow_imports", lambda v: isinstance(v, bool), "true or false", False)
    need("python_models", lambda v: isinstance(v, bool), "true or false", False)
    need("replicates_override", lambda v: v is None or _is_int(v, 1), "null or an integer >= 1", None)
    need("cells", lambda v: isinstance(v, list) and all(map(cell_ok, v)),
         "a list of {point, replicate, settings} with integers >= 0", [])
    need("models", lambda v: isinstance(v, list) and all(
        isinstance(x, str) or (isinstance(x, dict) and isinstance(x.get("name", x.get("model")), str))
        for x in v), "a list of model names or specs", [])
    need("started", lambda v: v is None or isinstance(v, str), "null or a date-time string", None)
    return m


def _default_run_id(seed: int) -> str:
    """Date-time, a random part (two runs started in the same second differ) and the seed."""
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}-s{seed}"


def _new_run_folder(parent: Path, run_id: str | None, seed: int) -> tuple[Path, int | None]:
    """Create the run folder atomically and lock it; return it with the lock.

    ``os.mkdir`` either creates the folder or fails: of two runs started with the same id, one
    gets it, the other is refused. An existing empty folder is taken (under the lock, so that
    only one run can take it).
    """
    if run_id is not None and (not run_id or run_id in (".", "..") or "/" in run_id or "\0" in run_id):
        raise RunError(f"--run-id: expected a folder name (no '/'), got {run_id!r}")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{os_error_path(exc, parent)}: cannot create the output folder "
                       f"({os_error_text(exc)}); choose another --output-dir") from None
    for _ in range(100):
        path = parent / (run_id or _default_run_id(seed))
        fresh = True
        try:
            os.mkdir(path)
        except FileExistsError:
            if run_id is None:
                continue  # a default id just taken by another run: draw another
            if not path.is_dir():
                raise RunError(f"{path}: exists and is not a folder; choose another --run-id") from None
            fresh = False
        except OSError as exc:
            raise RunError(f"{path}: cannot create the run folder ({os_error_text(exc)}); "
                           "choose another --output-dir or --run-id") from None
        lock = _lock_run_folder(path)
        if not fresh and any(p.name != _LOCK for p in path.iterdir()):
            _unlock(lock)
            raise RunError(f"{path}: run folder exists and is not empty; use --resume to finish it")
        return path, lock
    raise RunError(f"{parent}: no unused run id found; give one with --run-id")  # pragma: no cover


def _lock_run_folder(path: Path) -> int | None:
    """Hold ``path/.lock`` (``flock``) for the run's lifetime: a second run or resume of the same
    folder is refused while this one runs. The kernel releases the lock when the process ends,
    however it ends; the file stays (removing it would race with a process about to lock it)."""
    if fcntl is None:  # pragma: no cover - not on POSIX
        return None
    try:
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunError(f"{path}: cannot lock the run folder ({os_error_text(exc)}); "
                       "it must be a writable folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise RunError(f"{path}: the run folder is in use by another simsys run{who}; "
                       "wait for it to finish") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # the pid is only shown to a refused second run
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def _resume_hint(run_dir: Path, allow_imports: bool) -> str:
    flag = " --allow-import" if allow_imports else ""
    return f"the finished cells are kept; finish the run with: simsys run --resume {run_dir}{flag}"


@contextmanager
def _writing(run_dir: Path, allow_imports: bool):
    """An OSError while writing into the run folder (disk full, read-only) as one line."""
    try:
        yield
    except OSError as exc:
        raise RunError(f"{os_error_path(exc, run_dir)}: cannot write ({os_error_text(exc)}); "
                       f"{_resume_hint(run_dir, allow_imports)}") from None


# --- what the machine holds ------------------------------------------------------------------------
def _patient_bytes(scenario: Scenario, population: str) -> int:
    """Bytes a sampled patient takes: its float64 and uint8 columns and its int64 id."""
    p = build_plan(scenario, population, biased=True).program
    return 8 * len(p.columns_f) + len(p.columns_u) + 8


def _check_memory(scenario: Scenario, experiment: Experiment, workers: int | None,
                  executor: str, scheduler: str | None) -> tuple[int | None, str | None]:
    """Refuse cells that cannot fit in memory; return the local workers that fit, and why fewer.

    A cell holds at once the biased training cohort and its clean twin (as many rows as the
    training population's ``n``), the validation and the test cohorts, and their feature
    matrices; model fitting needs more on top, so this is a lower bound.
    """
    if executor == "dask" and scheduler:
        return workers, None  # a remote cluster's machines are not this one
    avail = available_memory()
    f = 8 * len(scenario.spec.roles.features) + 16  # features, label and group codes
    per_train = _patient_bytes(scenario, experiment.train) + f
    per_test = _patient_bytes(scenario, experiment.test) + f
    worst, worst_key, worst_n = 0, "", 0
    for point in experiment.points:
        sc = scenario.with_values(point) if point else scenario
        n_train = sc.spec.populations[experiment.train].n
        key = f"populations.{experiment.train}.n"
        if key in point:
            key = f"experiment.sweep ({key})"
        parts = [(2 * n_train * per_train, key, n_train),
                 (experiment.test_n * per_test, "experiment.test_n", experiment.test_n),
                 (experiment.validation_n * per_test, "experiment.validation_n", experiment.validation_n)]
        need = sum(p[0] for p in parts)
        if need > worst:
            worst = need
            _, worst_key, worst_n = max(parts)
    if worst_n > MAX_PATIENTS:
        raise ScenarioError(scenario.source, worst_key, f"{worst_n} patients: more than "
                            f"{MAX_PATIENTS} patients cannot be numbered; allowed: fewer")
    if avail is not None and worst > avail:
        raise ScenarioError(
            scenario.source, worst_key,
            f"{worst_n} patients: a cell holds the training cohort, its clean twin, the validation "
            f"and the test cohorts in memory at once, at least {format_bytes(worst)}, but "
            f"{format_bytes(avail)} is available; allowed: sizes whose cells fit in memory")
    if executor != "local" or avail is None:
        return workers, None
    fit = max(1, avail // max(worst, 1))
    wanted = workers or _cores()
    if wanted > fit:
        return fit, (f"{fit} worker(s) instead of {wanted}: a cell needs at least "
                     f"{format_bytes(worst)} and {format_bytes(avail)} is available")
    return workers, None


def run(scenario: Scenario | str | os.PathLike, *, seed: int | None = None, workers: int | None = None,
        executor: str = "local", scheduler: str | None = None, output_dir: str | os.PathLike | None = "outputs",
        run_id: str | None = None, resume: str | os.PathLike | None = None, allow_imports: bool = False,
        save_predictions: bool = False, progress: bool = False, replicates: int | None = None,
        models: list | None = None, timeout: float = 10.0, reuse: bool = True,
        precision: float | None = None) -> RunResult:
    """Run a scenario's experiment and return its results as DataFrames.

    Parameters
    ----------
    scenario : Scenario or path
    seed : int, optional
        Root seed (default: the scenario's). Every replicate's seed derives from it.
    workers : int, optional
        Local worker processes (default: the cores available, fewer if their cells would not fit
        in memory). Results do not depend on it.
    executor : {"local", "dask"}
        ``dask`` sends tasks to a Dask scheduler (``scheduler`` address, or a local cluster).
    output_dir : path or None
        Writes ``<output_dir>/<scenario>/<run_id>/`` (created atomically, locked while the run
        lasts); None keeps everything in memory.
    resume : path, optional
        A run folder to finish: its manifest gives the scenario, seed and replicates (``seed``
        and ``replicates`` must not be given); finished cells are kept, cells that failed or
        are damaged are redone. The folder is untrusted input: ``allow_imports`` is not taken
        from it, so a run whose models need it needs ``allow_imports=True`` again. A run started
        with ``models=`` needs the same ``models=`` again.
    timeout : float
        Dask: seconds to wait for the scheduler to answer, and for a worker while the cluster
        has none; then the run stops with an error (and can be resumed).
    progress : bool or a progress bar
        Show a progress bar of the cells on stderr; a tqdm-like object (with ``update``) is used
        instead of a new bar and left open (``simsys stress`` passes one bar for its battery).
    precision : float, optional
        Add replicates in batches until every headline interval is at most this half-width
        (``experiment.precision``, whose ``max_replicates`` and ``batch`` apply); the manifest
        records the precision reached. The same seed gives the same number of replicates.
    reuse : bool
        Run the sweep points of a replicate together and compute once what they share (the clean
        twin, the test cohorts, the fits on them: :class:`ReuseCache`). The results are
        bit-identical either way; ``False`` runs every cell on its own (one cell per task).
    models : list, optional
        Replaces ``experiment.models``. Entries are model specs as in YAML (dicts or names) or
        estimator objects (cloned with ``sklearn.base.clone`` for every fit) or classes; a dict
        ``{"name": ..., "model": <estimator>, "receives_group": ...}`` names an object. An object
        whose ``fit`` takes ``sensitive_features`` receives the group by default. With several
        workers the objects are pickled to them: define their class in an importable module
        (not in a notebook), or use ``workers=1``. See ``docs/methods.md``.

    Raises
    ------
    RunError, ScenarioError, ModelError
        One line each: a bad experiment, a damaged or busy run folder, cells that cannot fit in
        memory, a folder that cannot be written, an executor that fails. Cells already written
        are kept, and the message says how to resume.
    """
    if executor not in ("local", "dask"):  # before any folder is made
        raise RunError(f"unknown executor {executor!r}; allowed: local, dask")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
        raise RunError(f"timeout: expected a number of seconds > 0, got {timeout!r}")
    recorded = None
    run_dir = None
    if resume is not None:
        if seed is not None or replicates is not None:
            raise RunError("a resumed run takes its seed and replicates from its run folder; "
                           "do not give seed or replicates")
        run_dir = Path(resume)
        recorded = read_manifest(run_dir)
        try:
            scenario = from_dict(recorded["scenario"], source=recorded["source"])
        except ScenarioError as exc:
            raise RunError(f"{run_dir / 'manifest.json'}: scenario: {exc}") from None
        seed = recorded["seed"]
        save_predictions = recorded["save_predictions"]
        replicates = recorded["replicates_override"]
        if recorded["python_models"] and models is None:
            raise RunError(f"{run_dir}: this run was started with model objects passed from Python; "
                           "pass the same models= to resume it")
        if recorded["allow_imports"] and not allow_imports:
            raise RunError(f"{run_dir}: this run was started with --allow-import (its models run "
                           "code from outside sklearn., simsys. and fairlearn.); pass --allow-import "
                           "again to resume it")
    elif not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    if replicates is not None:
        data = dict(scenario.data)
        data["experiment"] = {**(data.get("experiment") or {}), "replicates": int(replicates)}
        scenario = from_dict(data, source=scenario.source)
    if precision is not None:
        if resume is not None:
            raise RunError("a resumed run takes its precision from its run folder; do not give precision")
        data = dict(scenario.data)
        exp = dict(data.get("experiment") or {})
        prec = exp.get("precision")
        exp["precision"] = {**(prec if isinstance(prec, Mapping) else {}), "half_width": precision}
        data["experiment"] = exp
        scenario = from_dict(data, source=scenario.source)
    experiment = parse_experiment(scenario, allow_imports=allow_imports, models=models)
    root_seed = int(scenario.spec.seed if seed is None else seed)
    n_reps = experiment.replicates
    if recorded is not None and experiment.precision is not None:
        # the batch the interrupted run had reached (its seeds are a prefix-stable list)
        n_reps = max(n_reps, min(len(recorded["replicate_seeds"]), experiment.precision.max_replicates))
    seeds = replicate_seeds(root_seed, n_reps)
    tasks = [(pi, rep) for rep in range(n_reps) for pi in range(len(experiment.points))]
    workers, fewer = _check_memory(scenario, experiment, workers, executor, scheduler)

    lock = handler = None
    if run_dir is not None:
        lock = _lock_run_folder(run_dir)
    elif output_dir is not None:
        run_dir, lock = _new_run_folder(Path(output_dir) / scenario.name, run_id, root_seed)
    try:
        if run_dir is not None:
            with _writing(run_dir, allow_imports):
                (run_dir / "cells").mkdir(exist_ok=True)
                handler = _attach_log(run_dir)
        manifest = {
            "simsys_run": 1, "scenario_name": scenario.name, "source": scenario.source,
            "scenario": scenario.data, "scenario_sha256": scenario.digest(), "seed": root_seed,
            "replicate_seeds": seeds, "cells": [
                {"point": pi, "replicate": rep, "seed": seeds[rep], "settings": experiment.points[pi]}
                for pi, rep in tasks],
            "models": list(experiment.models), "python_models": models is not None,
            "baseline": experiment.baseline, "method_checks": dataclasses.asdict(experiment.method_checks),
            "allow_imports": allow_imports,
            "save_predictions": save_predictions, "replicates_override": replicates,
            "versions": _versions(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
            "status": "running",
        }
        t_start = time.perf_counter()
        done: dict[tuple[int, int], dict] = {}
        if run_dir is not None:
            if recorded is not None:
                manifest["started"] = recorded["started"]
                manifest["resumed"] = _dt.datetime.now().isoformat(timespec="seconds")
                # temporary files of writes the interruption cut short (atomic_write's .part files)
                with _writing(run_dir, allow_imports):
                    for stray in [*run_dir.glob(".*.part"), *run_dir.glob("*/.*.part")]:
                        stray.unlink(missing_ok=True)
            with _writing(run_dir, allow_imports):
                _write_json(run_dir / "manifest.json", manifest)
            log.info("run %s: %d tasks (%d points x %d replicates), seed %d", run_dir.name, len(tasks),
                     len(experiment.points), experiment.replicates, root_seed)
            if fewer:
                log.info("running %s", fewer)
            done = _finished_cells(run_dir, tasks)
        n_workers = (workers or _cores()) if executor == "local" else max(workers or _cores(), 2)

        def finished(key, res):
            done[key] = res
            if run_dir is not None:
                with _writing(run_dir, allow_imports):
                    _write_cell(run_dir, key, res)
                for e in res["errors"]:
                    log.warning("cell point=%s replicate=%s model=%s training=%s failed: %s",
                                e["point"], e["replicate"], e.get("model"), e.get("training"), e["error"])
                for w in res.get("warnings") or []:
                    log.info("cell point=%s replicate=%s: %s", key[0], key[1], w)

        warmed = False
        while True:  # one pass per batch of replicates (one pass without experiment.precision)
            todo = [t for t in tasks if t not in done]
            payload = [(scenario.data, scenario.source, experiment, group, seeds[group[0][1]], allow_imports,
                        save_predictions) for group in task_groups(todo, n_workers, reuse=reuse)]
            if not warmed and len(payload) > 1 and (executor == "dask" or (workers or _cores()) > 1):
                _warm_kernels(scenario, experiment, root_seed)
                warmed = True
            bar = _progress(len(tasks), len(done), progress)
            stream = _execute(payload, workers=workers, executor=executor, scheduler=scheduler,
                              timeout=timeout)
            try:
                for key, res in stream:
                    raise_if_interrupted()
                    finished(key, res)
                    bar.update(1)
                raise_if_interrupted()
            finally:
                # now, not when the generator is collected: a write error or an interruption stops
                # the workers at once and cancels the queued cells (the written ones stay)
                stream.close()
                bar.close()
            if experiment.precision is None:
                break
            more = _more_replicates(experiment.precision, scenario, manifest, done, tasks, n_reps)
            if not more:
                break
            n_reps = more
            seeds = replicate_seeds(root_seed, n_reps)
            tasks = [(pi, rep) for rep in range(n_reps) for pi in range(len(experiment.points))]
            manifest.update(replicate_seeds=seeds, cells=[
                {"point": pi, "replicate": rep, "seed": seeds[rep], "settings": experiment.points[pi]}
                for pi, rep in tasks])
            if run_dir is not None:
                with _writing(run_dir, allow_imports):
                    _write_json(run_dir / "manifest.json", manifest)
                log.info("precision: %s; adding replicates up to %d", manifest["precision"]["note"], n_reps)

        frames = [done[t]["rows"] for t in tasks if done[t]["rows"] is not None]
        results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
        errs = [e for t in tasks for e in done[t]["errors"]]
        errors = pd.DataFrame(errs, columns=["point", "replicate", "model", "training", "error"])
        summary = summarise(results, experiment)
        timings = {k: float(sum(done[t]["timings"].get(k, 0.0) for t in tasks)) for k in ("sampling", "fitting", "metrics")}
        timings["wall"] = time.perf_counter() - t_start
        manifest.update(status="finished", finished=_dt.datetime.now().isoformat(timespec="seconds"),
                        timings=timings, errors=len(errs),
                        train_sizes={f"{pi}/{rep}": [done[(pi, rep)].get("n_train_biased"), done[(pi, rep)].get("n_train_clean")] for pi, rep in tasks})
        from simsys.findings import RunView, build_findings

        view = RunView(results, scenario, manifest)
        findings = build_findings(view)
        result = RunResult(results, summary, errors, run_dir, manifest, findings, view)
        if run_dir is not None:
            with _writing(run_dir, allow_imports):
                _write_outputs(run_dir, results, summary, errors, done, tasks, save_predictions)
                atomic_write(run_dir / "summary.md",
                             lambda t: Path(t).write_text(summary_markdown(result), encoding="utf-8"))
                atomic_write(run_dir / "findings.csv", lambda t: result.findings_frame().to_csv(t, index=False))
                _write_json(run_dir / "manifest.json", manifest)
            log.info("finished: %d result rows, %d errors, %.1f s", len(results), len(errs), timings["wall"])
        return result
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM turned into it by the CLI
        if run_dir is not None:
            log.warning("interrupted; %s", _resume_hint(run_dir, allow_imports))
            exc.simsys_detail = _resume_hint(run_dir, allow_imports)
        raise
    except _ExecutorError as exc:
        if run_dir is None:
            raise RunError(str(exc)) from None
        log.error("%s", exc)
        raise RunError(f"{exc}; {_resume_hint(run_dir, allow_imports)}") from None
    except RunError as exc:
        if run_dir is not None:
            log.error("%s", exc)
        raise
    finally:
        if handler is not None:
            log.removeHandler(handler)  # only ours: handlers a user attached stay
            handler.close()
        _unlock(lock)


class _RunLog(logging.FileHandler):
    """``run.log``. A log line that cannot be written (a full disk) is dropped: logging would print
    a traceback, and the error that matters is reported on its own, in one line."""

    def handleError(self, record):
        pass


def _attach_log(run_dir: Path) -> logging.Handler:
    """The run's ``run.log``; handlers of earlier runs of this process are detached first."""
    for stale in [h for h in log.handlers if getattr(h, "simsys_run_log", False)]:
        log.removeHandler(stale)
        stale.close()
    handler = _RunLog(run_dir / "run.log")
    handler.simsys_run_log = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _finished_cells(run_dir: Path, tasks: list[tuple[int, int]]) -> dict[tuple[int, int], dict]:
    """The cells a resumed run keeps: readable, of the right cell, and without errors. A damaged
    cell file is redone, and so is a cell with errors (a failure may be transient); both logged."""
    done = {}
    for pi, rep in tasks:
        path = _cell_path(run_dir, pi, rep)
        if not path.is_file():
            continue
        try:
            res = _read_cell(path, pi, rep)
        except Exception as exc:  # any damage: the cell is simply computed again
            log.warning("cell point=%d replicate=%d: %s is damaged (%s); redoing it", pi, rep,
                        path.name, _clip(f"{type(exc).__name__}: {exc}", 200))
            continue
        if res["errors"]:
            log.info("cell point=%d replicate=%d had %d error(s); retrying it", pi, rep, len(res["errors"]))
            continue
        done[(pi, rep)] = res
    return done


def _more_replicates(precision: Precision, scenario: Scenario, manifest: dict, done: dict,
                     tasks: list[tuple[int, int]], n_reps: int) -> int | None:
    """How many replicates the next batch brings the run to, or None when the headline intervals
    are precise enough (or the cap is reached); records what was reached in the manifest."""
    from simsys.findings import RunView, build_findings, precision_reached

    frames = [done[t]["rows"] for t in tasks if t in done and done[t]["rows"] is not None]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    reached, withheld = precision_reached(build_findings(RunView(results, scenario, manifest))) \
        if frames else (math.inf, 0)
    met = reached <= precision.half_width and not withheld
    batch = precision.batch or n_reps
    nxt = None if met or n_reps >= precision.max_replicates else min(precision.max_replicates, n_reps + batch)
    note = (f"widest headline half-width {reached:.4g} (target {precision.half_width:g})"
            + (f", {withheld} headline finding(s) with too few cases" if withheld else ""))
    manifest["precision"] = {"half_width": precision.half_width, "max_replicates": precision.max_replicates,
                             "batch": batch, "replicates": n_reps, "reached": reached if math.isfinite(reached) else None,
                             "withheld": withheld, "met": bool(met), "note": note}
    return nxt


def _warm_kernels(scenario: Scenario, experiment: Experiment, seed: int) -> None:
    """Compile (first use on this machine) or load numba's cached kernels once, in this process,
    before workers start: otherwise every worker would compile them at the same time, each saying so.
    """
    cohort = run_plan(build_plan(scenario, experiment.train, biased=True), 64, seed, threads=1)
    y = cohort.column(scenario.spec.roles.target).astype(np.int64)
    M.binary_metrics(y, y, np.full(y.shape, 0.5), np.zeros(y.shape, np.int64), 1)


class _SharedBar:
    """A progress bar owned by the caller (``simsys stress``: one bar over the whole battery): the
    run adds its cells to it and leaves it open."""

    def __init__(self, bar, initial: int) -> None:
        self.bar = bar
        if initial:
            bar.update(initial)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        pass


def _progress(total, initial, enabled):
    if hasattr(enabled, "update"):
        return _SharedBar(enabled, initial)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="cells", unit="cell", file=sys.stderr)


def _failed_cell(key, exc: BaseException) -> dict:
    """The result of a cell whose task the executor could not run or return (it is retried on
    resume, as every cell with errors is)."""
    pi, rep = key
    return {"rows": None, "errors": [{"point": pi, "replicate": rep, "model": "", "training": "",
                                      "error": f"{type(exc).__name__}: {exc}"}],
            "predictions": [], "timings": {}, "n_train_biased": 0, "n_train_clean": 0}


def _execute(payload, *, workers, executor, scheduler, timeout=10.0):
    """Yield ((point, replicate), result) as cells finish, on the chosen executor (a task runs
    one or more cells of a replicate, see :func:`task_groups`).

    Closing the generator early (an error while writing, an interruption) stops the work at once:
    queued tasks are cancelled and worker processes terminated.
    """
    for keys, results in _execute_tasks(payload, workers=workers, executor=executor,
                                        scheduler=scheduler, timeout=timeout):
        yield from results if results is not None else ((k, None) for k in keys)


def _execute_tasks(payload, *, workers, executor, scheduler, timeout=10.0):
    """Yield (cells of the task, [(cell, result), ...]) as tasks finish."""
    if not payload:
        return
    keys = [tuple(p[3]) for p in payload]
    if executor == "dask":
        yield from _execute_dask(payload, keys, workers=workers, scheduler=scheduler, timeout=timeout)
        return
    if executor != "local":
        raise RunError(f"unknown executor {executor!r}; allowed: local, dask")
    n = workers or _cores()
    if n <= 1 or len(payload) == 1:
        for p, k in zip(payload, keys):
            raise_if_interrupted()
            yield k, _task_entry(p)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = _worker_context(mp)
    pool = ProcessPoolExecutor(max_workers=min(n, len(payload)), mp_context=ctx,
                               initializer=_init_local_worker, initargs=(os.getpid(),))
    completed = False
    futs = {}
    try:
        futs = {pool.submit(_task_entry, p): k for p, k in zip(payload, keys)}
        for fut in as_completed(futs):
            try:
                res = fut.result()
            except BrokenProcessPool:
                raise _ExecutorError("a worker process died unexpectedly (killed, or out of "
                                     "memory?)") from None
            except Exception as exc:  # the result could not come back (e.g. not picklable)
                res = [(k, _failed_cell(k, exc)) for k in futs[fut]]
            yield futs[fut], res
        completed = True
    finally:
        if completed:
            pool.shutdown(wait=True)
        else:
            _stop_pool(pool, futs)


def _stop_pool(pool, futures) -> None:
    """Cancel what is queued and terminate the workers (running cells are abandoned)."""
    for f in futures:
        f.cancel()
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():  # pragma: no cover - SIGTERM ignored
            p.kill()
            p.join(5)


def _execute_dask(payload, keys, *, workers, scheduler, timeout):
    """The Dask executor: a connect timeout, and an error (not a wait forever) when the cluster
    has had no worker for ``timeout`` seconds."""
    try:
        from dask.distributed import Client, LocalCluster, wait
    except ImportError:
        raise RunError("the dask executor needs the optional extra: pip install 'simsys[dask]'") from None
    cluster = client = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout=timeout)
            except Exception as exc:  # OSError after the timeout, ValueError for a bad address
                raise _ExecutorError(f"dask scheduler {scheduler}: no answer within {timeout:g} s "
                                     f"({type(exc).__name__}: {_clip(str(exc), 160)}); check "
                                     "--scheduler, or give a longer --timeout") from None
        else:
            cluster = LocalCluster(n_workers=workers or _cores(), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        client.run(_init_worker)
        futs = {client.submit(_task_entry, p, pure=False): k for p, k in zip(payload, keys)}
        pending = set(futs)
        idle_since = None
        while pending:
            try:
                done, pending = wait(pending, timeout=min(1.0, timeout), return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for fut in done:
                try:
                    res = fut.result()
                except Exception as exc:  # KilledWorker: the cells are retried on resume
                    res = [(k, _failed_cell(k, exc)) for k in futs[fut]]
                yield futs[fut], res
            if done:
                idle_since = None
                continue
            try:
                has_workers = bool(client.nthreads())
            except Exception as exc:
                raise _ExecutorError(f"lost the Dask scheduler ({type(exc).__name__}: "
                                     f"{_clip(str(exc), 160)})") from None
            if has_workers:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > timeout:
                address = scheduler or "of the local cluster"
                raise _ExecutorError(f"dask scheduler {address}: no workers for {timeout:g} s, "
                                     f"{len(pending)} of {len(futs)} cells not run; start workers, "
                                     "or give a longer --timeout")
    finally:
        if client is not None:
            try:
                client.close(timeout=timeout)
            except Exception:  # pragma: no cover - closing a lost connection
                pass
        if cluster is not None:
            cluster.close()


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _cell_path(run_dir: Path, pi: int, rep: int) -> Path:
    return run_dir / "cells" / f"point{pi:04d}_rep{rep:03d}.parquet"


def _write_cell(run_dir: Path, key, res) -> None:
    """A finished cell, atomically: its rows, with its errors and timings in the file metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = res["rows"] if res["rows"] is not None else pd.DataFrame(columns=RESULT_COLUMNS)
    table = pa.Table.from_pandas(_arrow_safe(rows.astype({"reason": "object"})), preserve_index=False)
    meta = {b"simsys": json.dumps({k: res[k] for k in ("errors", "timings", "n_train_biased", "n_train_clean")},
                                  default=str).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    # predictions first: the cell file marks the cell finished, so a run killed in between redoes
    # the cell on --resume instead of leaving it without its predictions
    for i, pred in enumerate(res.get("predictions") or []):
        pdir = run_dir / "predictions"
        pdir.mkdir(exist_ok=True)
        atomic_write(pdir / f"point{key[0]:04d}_rep{key[1]:03d}_{i}.parquet",
                      lambda t, pred=pred: pred.to_parquet(t, index=False))
    atomic_write(_cell_path(run_dir, *key), lambda t: pq.write_table(table, t))


def _read_cell(path: Path, pi: int, rep: int) -> dict:
    """A cell file, checked: a cell file is untrusted (a resumed folder may be damaged or
    crafted). Raises ValueError (or pyarrow's errors) for anything but a cell of (pi, rep)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"simsys")
    if raw is None:
        raise ValueError("no simsys metadata")
    meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a mapping")
    errors, timings = meta.get("errors"), meta.get("timings")
    if not isinstance(errors, list) or not all(
            isinstance(e, dict) and isinstance(e.get("error"), str) for e in errors):
        raise ValueError("errors: expected a list of {error: text}")
    if not isinstance(timings, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in timings.values()):
        raise ValueError("timings: expected a mapping of numbers")
    sizes = {k: meta.get(k) for k in ("n_train_biased", "n_train_clean")}
    if not all(v is None or _is_int(v) for v in sizes.values()):
        raise ValueError("n_train_*: expected integers >= 0")
    for e in errors:
        if e.get("point") != pi or e.get("replicate") != rep:
            raise ValueError("an error of another cell")
    rows = table.to_pandas()
    missing = [c for c in RESULT_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    if len(rows):
        if not ((rows["point"] == pi).all() and (rows["replicate"] == rep).all()):
            raise ValueError("rows of another cell")
        if not pd.api.types.is_float_dtype(rows["value"]):
            raise ValueError(f"value column of type {rows['value'].dtype}")
    return {"rows": rows if len(rows) else None, "predictions": [], "errors": errors,
            "timings": timings, **sizes}


def _arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every object column that mixes types written as text (Parquet columns hold
    one type); :func:`expand_sweep` refuses such sweeps, this keeps a run finishable anyway."""
    out = frame
    for col in frame.columns:
        if frame[col].dtype != object:
            continue
        values = frame[col].tolist()
        kinds = {_value_kind(v) for v in values if not _missing(v)}
        if len(kinds) > 1:
            if out is frame:
                out = frame.copy()
            out[col] = [None if _missing(v) else v if isinstance(v, str)
                        else json.dumps(v) if isinstance(v, list | dict) else str(v) for v in values]
    return out


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _write_outputs(run_dir, results, summary, errors, done, tasks, save_predictions) -> None:
    results, summary = _arrow_safe(results), _arrow_safe(summary)
    atomic_write(run_dir / "results.parquet", lambda t: results.to_parquet(t, index=False))
    atomic_write(run_dir / "results.csv", lambda t: results.to_csv(t, index=False))
    atomic_write(run_dir / "summary.parquet", lambda t: summary.to_parquet(t, index=False))
    atomic_write(run_dir / "summary.csv", lambda t: summary.to_csv(t, index=False))
    atomic_write(run_dir / "errors.csv", lambda t: errors.to_csv(t, index=False))


# --- summaries -------------------------------------------------------------------------------------
def format_summary(result: RunResult) -> str:
    """What ``simsys run`` prints: the findings (:func:`simsys.render.console`) and where the run is.

    Times: the wall-clock time of the run, and the time its cells spent sampling, fitting and
    measuring, summed over the worker processes (so it can exceed the wall time).
    """
    from simsys import render
    from simsys.findings import headline_metrics

    if result.view is None or not result.findings:
        text = "no results (every cell failed; see errors.csv)"
    else:
        text = render.console(result.view, result.findings, metrics=headline_metrics(result.view))
    if len(result.errors):
        n = len(result.errors)
        text += f"\n{n} failure{'s' if n != 1 else ''} recorded in errors.csv (each a model fit or a whole cell)"
    t = result.manifest.get("timings", {})
    if t:
        where = f"results in {result.run_dir}: summary.md, report.html, results.parquet; " if result.run_dir else ""
        text += (f"\n{where}wall time {t.get('wall', 0):.1f} s; CPU time summed over worker processes: "
                 f"sampling {t.get('sampling', 0):.1f} s, fitting {t.get('fitting', 0):.1f} s, "
                 f"metrics {t.get('metrics', 0):.1f} s")
    return text


def summary_markdown(result: RunResult) -> str:
    """``summary.md``: the run's headline tables and findings (:func:`simsys.render.markdown`)."""
    from simsys import render
    from simsys.findings import headline_metrics

    m = result.manifest
    view = result.view
    facts = [("scenario", f"{m.get('scenario_name')} (from {m.get('source')}, SHA-256 {str(m.get('scenario_sha256'))[:12]})"),
             ("root seed", str(m.get("seed"))),
             ("replicates", str(len(m.get("replicate_seeds", [])))),
             ("models", ", ".join(view.models) if view is not None else "")]
    if view is not None and view.varying:
        facts.append(("sweep", "; ".join(f"point {p}: {view.setting(p)}" for p in range(len(view.points)))))
    title = f"simsys run: {m.get('scenario_name')}"
    if view is None or not result.findings:
        return f"# {title}\n\nNo results: every cell failed (see errors.csv).\n"
    return render.markdown(view, result.findings, metrics=headline_metrics(view), title=title, facts=facts)


__all__ = ["Experiment", "RunResult", "expand_sweep", "format_summary", "nothing_succeeded",
           "parse_experiment", "read_manifest", "run", "summarise"]
