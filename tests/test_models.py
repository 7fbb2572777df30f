"""Tests of simsys.models: building, fitting, scoring, thresholds, thread limits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_info

from simsys.errors import ModelError
from simsys.models import (
    BUILTIN_MODELS,
    FAIRLEARN_CONSTRAINTS,
    CandidateModel,
    FittedModel,
    ThresholdPolicy,
    build_model,
    choose_threshold,
    limit_threads,
    parse_threshold_policy,
)

SRC = "scenarios/x.yaml"
KEY = "experiment.models[1]"
EG = "fairlearn.reductions.ExponentiatedGradient"
TO = "fairlearn.postprocessing.ThresholdOptimizer"


# fairlearn 0.15 enlarges Series with ``.at``, which pandas 3 deprecates; not ours to fix.
quiet_fairlearn = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def _logistic_data(n: int, seed: int = 0, *, missing: float = 0.0, group_effect: float = 2.5):
    """Features, labels and groups from a known logistic model (true AUROC about 0.93)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    group = rng.integers(0, 2, size=n)
    logit = 3.0 * X[:, 0] - 2.0 * X[:, 1] + 1.0 * X[:, 2] + group_effect * group - 1.25
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
    return X, y, group


def _build(spec, **kw):
    return build_model(spec, random_state=kw.pop("random_state", 0), **kw)


def _error(spec, **kw) -> str:
    with pytest.raises(ModelError) as info:
        _build(spec, source=SRC, key=KEY, **kw)
    return str(info.value)


def _eo_gap(y, score, group) -> float:
    """Largest between-group gap of the expected TPR or FPR (scores read as P(predict 1))."""
    gaps = []
    for label in (0, 1):
        rates = [score[(y == label) & (group == g)].mean() for g in (0, 1)]
        gaps.append(abs(rates[0] - rates[1]))
    return max(gaps)


# ------------------------------------------------------------------------------------------
# Built-ins
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_builtin_fits_and_ranks_well(name):
    X, y, _ = _logistic_data(1500, seed=0, missing=0.05)
    cm = _build({"model": name})
    assert isinstance(cm, CandidateModel)
    assert cm.name == name
    fitted = cm.fit(X[:1000], y[:1000])
    assert isinstance(fitted, FittedModel)
    assert fitted.score_method == "predict_proba"
    assert not fitted.hard_predictions_only
    score = fitted.predict_score(X[1000:])
    assert score.dtype == np.float64
    assert score.shape == (500,)
    assert np.all((score >= 0) & (score <= 1))
    assert roc_auc_score(y[1000:], score) > 0.8


def test_builtin_defaults_and_random_state():
    lr = _build({"model": "logistic_regression"}, random_state=7).make_estimator()
    assert [s for s, _ in lr.steps] == ["impute", "scale", "model"]
    imputer = lr.named_steps["impute"]
    assert (imputer.strategy, imputer.add_indicator, imputer.keep_empty_features) == (
        "mean",
        True,
        True,
    )
    assert lr.get_params()["model__max_iter"] == 1000
    assert lr.get_params()["model__random_state"] == 7
    rf = _build({"model": "random_forest"}, random_state=3).make_estimator().named_steps["model"]
    assert (rf.n_estimators, rf.min_samples_leaf, rf.n_jobs, rf.random_state) == (100, 5, 1, 3)
    mlp = _build({"model": "mlp"}).make_estimator().named_steps["model"]
    assert mlp.early_stopping
    assert _build({"model": "gradient_boosting"}, random_state=5).make_estimator().random_state == 5


def test_params_override_final_estimator():
    lr = _build({"model": "logistic_regression", "params": {"C": 0.1}}).make_estimator()
    assert lr.get_params()["model__C"] == 0.1
    assert lr.get_params()["model__max_iter"] == 1000  # untouched defaults stay
    gb = _build(
        {"model": "gradient_boosting", "params": {"learning_rate": 0.05, "random_state": 11}},
        random_state=0,
    ).make_estimator()
    assert gb.get_params()["learning_rate"] == 0.05
    assert gb.get_params()["random_state"] == 11  # the user's seed wins over the runner's


def test_factory_returns_fresh_estimators():
    cm = _build({"model": "mlp", "params": {"hidden_layer_sizes": [4, 3]}})
    a, b = cm.make_estimator(), cm.make_estimator()
    assert a is not b
    assert (
        a.named_steps["model"].hidden_layer_sizes is not b.named_steps["model"].hidden_layer_sizes
    )


def test_unknown_param_lists_allowed():
    allowed = ", ".join(sorted(LogisticRegression().get_params()))
    assert _error({"model": "logistic_regression", "params": {"foo": 1}}) == (
        f"{SRC}: {KEY}.params.foo: unknown parameter of logistic_regression "
        f"(LogisticRegression); allowed parameters are {allowed}"
    )


def test_invalid_param_value_is_caught_at_build_time():
    assert _error({"model": "logistic_regression", "params": {"C": -1}}) == (
        f"{SRC}: {KEY}.params.C: The 'C' parameter of LogisticRegression must be a float in "
        "the range (0.0, inf]. Got -1 instead."
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"model": "logistic_regression", "colour": "red"},
            f"{SRC}: {KEY}: unknown key 'colour'; allowed keys are model, name, params, receives_group",
        ),
        (
            {"name": "lr"},
            f"{SRC}: {KEY}: missing key 'model'; allowed keys are model, name, params, receives_group",
        ),
        (
            {"model": 3},
            f"{SRC}: {KEY}.model: expected a string (a built-in name or an import path), got 3",
        ),
        (
            {"model": "mlp", "receives_group": "yes"},
            f"{SRC}: {KEY}.receives_group: expected true or false, got 'yes'",
        ),
        (
            {"model": "mlp", "params": [1, 2]},
            f"{SRC}: {KEY}.params: expected a mapping of parameter names to values, got list",
        ),
        (
            {"model": "mlp", "name": ""},
            f"{SRC}: {KEY}.name: expected a non-empty string, got ''",
        ),
    ],
)
def test_malformed_spec(spec, message):
    assert _error(spec) == message


def test_name_defaults_to_model_string():
    assert _build({"model": "mlp"}).name == "mlp"
    assert _build({"model": "mlp", "name": "net"}).name == "net"


# ------------------------------------------------------------------------------------------
# Import paths
# ------------------------------------------------------------------------------------------


def test_allowed_import_path_builds_and_fits():
    X, y, _ = _logistic_data(400)
    cm = _build({"model": "sklearn.linear_model.LogisticRegression", "params": {"C": 2.0}})
    assert cm.name == "sklearn.linear_model.LogisticRegression"
    est = cm.make_estimator()
    assert isinstance(est, LogisticRegression)
    assert est.get_params()["C"] == 2.0
    assert est.get_params()["random_state"] == 0
    assert roc_auc_score(y, cm.fit(X, y).predict_score(X)) > 0.8


def test_disallowed_import_path_exact_message():
    assert _error({"model": "os.path.join"}) == (
        f"{SRC}: {KEY}.model: import path 'os.path.join' is not allowed; allowed prefixes are "
        "sklearn., simsys., fairlearn. (pass --allow-import to allow others)"
    )
    # A prefix is a whole package name, not a string prefix.
    assert "is not allowed" in _error({"model": "sklearnx.Foo"})


def test_allow_imports_still_requires_a_class_with_fit():
    assert _error({"model": "collections.OrderedDict"}, allow_imports=True) == (
        f"{SRC}: {KEY}.model: class 'collections.OrderedDict' has no fit method; "
        "an import path must name an estimator class with a fit method"
    )
    assert _error({"model": "os.path.join"}, allow_imports=True) == (
        f"{SRC}: {KEY}.model: 'os.path.join' is a function, not a class; "
        "an import path must name an estimator class with a fit method"
    )


@pytest.mark.parametrize(
    "path", ["sklearn..x", "a;b", "svm", "sklearn.svm.SVC()", ".sklearn.X", ""]
)
def test_malformed_import_path(path):
    assert _error({"model": path}, allow_imports=True) == (
        f"{SRC}: {KEY}.model: '{path}' is neither a built-in model nor a dotted import path; "
        "allowed are the built-ins gradient_boosting, logistic_regression, mlp, random_forest "
        "or a path such as sklearn.svm.SVC"
    )


def test_missing_attribute_and_module():
    assert _error({"model": "sklearn.linear_model.LogisticRegresion"}) == (
        f"{SRC}: {KEY}.model: module 'sklearn.linear_model' has no attribute "
        "'LogisticRegresion' (import path 'sklearn.linear_model.LogisticRegresion'); "
        "did you mean LogisticRegression, LogisticRegressionCV, LinearRegression?"
    )
    assert _error({"model": "sklearn.nonexistent.Foo"}) == (
        f"{SRC}: {KEY}.model: cannot import module 'sklearn.nonexistent' of import path "
        "'sklearn.nonexistent.Foo' (No module named 'sklearn.nonexistent'); "
        "an import path is module.Class with an importable module"
    )


def test_missing_required_param_of_imported_class():
    assert _error({"model": EG, "receives_group": True}) == (
        f"{SRC}: {KEY}.params: missing required parameter(s) estimator, constraints "
        "of ExponentiatedGradient"
    )


# ------------------------------------------------------------------------------------------
# Fitting
# ------------------------------------------------------------------------------------------


def test_single_class_raises_before_sklearn():
    X, _, _ = _logistic_data(50)
    cm = _build({"model": "logistic_regression", "name": "lr"})
    with pytest.raises(ModelError) as info:
        cm.fit(X, np.ones(50, dtype=np.int64))
    assert str(info.value) == (
        "model 'lr': training labels contain a single class (all 50 labels are 1); "
        "fitting needs both 0 and 1"
    )


def test_bad_labels_and_shapes():
    X, y, _ = _logistic_data(50)
    cm = _build({"model": "logistic_regression"})
    with pytest.raises(ValueError, match="only 0 and 1"):
        cm.fit(X, y * 2)
    with pytest.raises(ValueError, match=r"y must have shape \(50,\)"):
        cm.fit(X, y[:-1])
    with pytest.raises(ValueError, match="2-D"):
        cm.fit(X[:, 0], y)


def test_sample_weight_zero_equals_dropping_rows():
    X, y, _ = _logistic_data(600, seed=1)
    w = np.r_[np.ones(300), np.zeros(300)]
    cm = _build({"model": "sklearn.linear_model.LogisticRegression", "params": {"tol": 1e-10}})
    weighted = cm.fit(X, y, sample_weight=w).estimator
    half = cm.fit(X[:300], y[:300]).estimator
    full = cm.fit(X, y).estimator
    np.testing.assert_allclose(weighted.coef_, half.coef_, rtol=1e-4, atol=1e-6)
    assert not np.allclose(weighted.coef_, full.coef_, rtol=1e-2)


def test_sample_weight_reaches_builtin_pipeline():
    X, y, _ = _logistic_data(600, seed=2, missing=0.05)
    cm = _build({"model": "logistic_regression"})
    w = np.r_[np.ones(300), np.zeros(300)]
    weighted = cm.fit(X, y, sample_weight=w).estimator.named_steps["model"].coef_
    plain = cm.fit(X, y).estimator.named_steps["model"].coef_
    assert not np.allclose(weighted, plain, rtol=1e-2)


@quiet_fairlearn
def test_sample_weight_refused_by_estimator_without_it():
    X, y, g = _logistic_data(200)
    cm = _build(
        {
            "model": EG,
            "name": "eg",
            "params": {
                "estimator": {"model": "logistic_regression"},
                "constraints": "equalized_odds",
            },
            "receives_group": True,
        }
    )
    with pytest.raises(ModelError) as info:
        cm.fit(X, y, group=g, sample_weight=np.ones(200))
    assert str(info.value) == (
        "model 'eg': ExponentiatedGradient.fit does not accept sample_weight; "
        "use a model whose fit takes sample_weight or do not weight"
    )


def test_candidate_model_pickles():
    X, y, _ = _logistic_data(300)
    cm = _build({"model": "random_forest", "params": {"n_estimators": 20}}, random_state=4)
    clone = pickle.loads(pickle.dumps(cm))
    np.testing.assert_array_equal(cm.fit(X, y).predict_score(X), clone.fit(X, y).predict_score(X))


# ------------------------------------------------------------------------------------------
# Groups and fairlearn
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("constraint", sorted(FAIRLEARN_CONSTRAINTS))
def test_constraint_names_become_moments(constraint):
    import fairlearn.reductions as red

    est = _build(
        {
            "model": EG,
            "params": {"estimator": {"model": "logistic_regression"}, "constraints": constraint},
            "receives_group": True,
        }
    ).make_estimator()
    assert type(est.constraints) is getattr(red, FAIRLEARN_CONSTRAINTS[constraint])


def test_unknown_constraint_name():
    spec = {
        "model": EG,
        "params": {"estimator": {"model": "logistic_regression"}, "constraints": "fairness"},
        "receives_group": True,
    }
    assert _error(spec) == (
        f"{SRC}: {KEY}.params.constraints: unknown fairlearn constraint 'fairness'; allowed are "
        "demographic_parity, equalized_odds, error_rate_parity, false_positive_rate_parity, "
        "true_positive_rate_parity"
    )


def test_nested_spec_errors_name_the_nested_path():
    spec = {
        "model": EG,
        "params": {"estimator": {"model": "os.system"}, "constraints": "equalized_odds"},
        "receives_group": True,
    }
    assert _error(spec).startswith(
        f"{SRC}: {KEY}.params.estimator.model: import path 'os.system' is not allowed"
    )


@quiet_fairlearn
def test_exponentiated_gradient_receives_group_and_reduces_gap():
    X, y, g = _logistic_data(1000, seed=3, group_effect=4.0)
    Xg = np.c_[X, g]  # the group as a feature makes the unconstrained model unfair
    spec = {
        "model": EG,
        "params": {
            "estimator": {"model": "logistic_regression", "params": {"C": 1.0}},
            "constraints": "equalized_odds",
        },
        "receives_group": True,
    }
    cm = _build(spec, random_state=9)
    est = cm.make_estimator()
    assert isinstance(est.estimator, Pipeline)
    assert est.estimator.get_params()["model__random_state"] == 9
    assert est.sample_weight_name == "model__sample_weight"
    with pytest.raises(ValueError, match="pass group="):
        cm.fit(Xg, y)
    fitted = cm.fit(Xg, y, group=g)
    assert fitted.score_method == "pmf_predict"
    assert not fitted.hard_predictions_only
    score = fitted.predict_score(Xg)
    assert np.all((score >= 0) & (score <= 1))
    assert roc_auc_score(y, score) > 0.7

    plain = _build({"model": "logistic_regression"}).fit(Xg, y).predict_score(Xg)
    assert _eo_gap(y, (plain >= 0.5).astype(float), g) > 0.1
    assert _eo_gap(y, score, g) < 0.04


@quiet_fairlearn
def test_threshold_optimizer_gives_hard_predictions():
    X, y, g = _logistic_data(800, seed=4)
    spec = {
        "model": TO,
        "params": {
            "estimator": {"model": "logistic_regression"},
            "constraints": "equalized_odds",  # ThresholdOptimizer takes the string itself
            "predict_method": "predict_proba",
        },
        "receives_group": True,
    }
    cm = _build(spec, random_state=2)
    assert cm.make_estimator().constraints == "equalized_odds"
    fitted = cm.fit(X, y, group=g)
    assert fitted.hard_predictions_only
    assert fitted.score_method == "predict_with_groups"
    score = fitted.predict_score(X, group=g)
    assert set(np.unique(score)) <= {0.0, 1.0}
    np.testing.assert_array_equal(score, fitted.predict_score(X, group=g))  # seeded
    with pytest.raises(ValueError, match="pass group="):
        fitted.predict_score(X)


def test_receives_group_must_match_the_estimator():
    assert _error(
        {
            "model": EG,
            "params": {
                "estimator": {"model": "logistic_regression"},
                "constraints": "equalized_odds",
            },
        }
    ) == (
        f"{SRC}: {KEY}.receives_group: ExponentiatedGradient needs the group in fit "
        "(sensitive_features); set receives_group: true"
    )
    assert _error({"model": "logistic_regression", "receives_group": True}) == (
        f"{SRC}: {KEY}.receives_group: Pipeline.fit does not take sensitive_features; "
        "set receives_group: false (add the group to the features if the model should see it)"
    )


def test_decision_function_fallback_is_squashed():
    X, y, _ = _logistic_data(300)
    fitted = _build({"model": "sklearn.svm.LinearSVC"}).fit(X, y)
    assert fitted.score_method == "decision_function"
    score = fitted.predict_score(X)
    d = fitted.estimator.decision_function(X)
    np.testing.assert_allclose(score, 1 / (1 + np.exp(-d)))
    np.testing.assert_array_equal(score >= 0.5, d >= 0)


# ------------------------------------------------------------------------------------------
# Threads
# ------------------------------------------------------------------------------------------


def test_limit_threads_caps_pools_and_restores():
    before = [p["num_threads"] for p in threadpool_info()]
    with limit_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert [p["num_threads"] for p in threadpool_info()] == before
    with pytest.raises(ValueError, match="integer >= 1"):
        with limit_threads(0):
            pass


# ------------------------------------------------------------------------------------------
# Threshold policies
# ------------------------------------------------------------------------------------------


def test_parse_threshold_policy_forms():
    assert parse_threshold_policy(None) == ThresholdPolicy("fixed", 0.5, None)
    assert parse_threshold_policy({"kind": "fixed"}) == ThresholdPolicy("fixed", 0.5, None)
    assert parse_threshold_policy({"kind": "fixed", "threshold": 0.3}).threshold == 0.3
    assert parse_threshold_policy({"kind": "sensitivity", "target": 0.9}) == ThresholdPolicy(
        "sensitivity", None, 0.9
    )
    assert parse_threshold_policy({"kind": "specificity", "target": 1}).target == 1.0
    assert parse_threshold_policy({"kind": "max_f1"}).kind == "max_f1"
    assert parse_threshold_policy({"kind": "top_fraction", "fraction": 0.03}) == ThresholdPolicy(
        "top_fraction", None, None, 0.03
    )


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (
            {"kind": "youden"},
            "s.yaml: experiment.threshold.kind: unknown threshold policy 'youden'; "
            "allowed kinds are fixed, sensitivity, specificity, max_f1, top_fraction",
        ),
        (
            {"threshold": 0.5},
            "s.yaml: experiment.threshold: missing key 'kind'; "
            "allowed kinds are fixed, sensitivity, specificity, max_f1, top_fraction",
        ),
        (
            {"kind": "fixed", "threshold": 1.5},
            "s.yaml: experiment.threshold.threshold: expected a number in [0, 1], got 1.5",
        ),
        (
            {"kind": "fixed", "threshold": True},
            "s.yaml: experiment.threshold.threshold: expected a number in [0, 1], got True",
        ),
        (
            {"kind": "sensitivity", "target": 0},
            "s.yaml: experiment.threshold.target: expected a number in (0, 1], got 0",
        ),
        (
            {"kind": "sensitivity"},
            "s.yaml: experiment.threshold: missing key 'target' for kind sensitivity; "
            "expected a number in (0, 1]",
        ),
        (
            {"kind": "max_f1", "target": 0.9},
            "s.yaml: experiment.threshold: unknown key 'target' for kind max_f1; "
            "allowed keys are kind",
        ),
        (
            "fixed",
            "s.yaml: experiment.threshold: expected a mapping like {kind: fixed, threshold: 0.5}, "
            "got 'fixed'",
        ),
        (
            {"kind": "top_fraction"},
            "s.yaml: experiment.threshold: missing key 'fraction' for kind top_fraction; "
            "expected a number in (0, 1]",
        ),
        (
            {"kind": "top_fraction", "fraction": 0},
            "s.yaml: experiment.threshold.fraction: expected a number in (0, 1], got 0",
        ),
        (
            {"kind": "top_fraction", "fraction": 3},
            "s.yaml: experiment.threshold.fraction: expected a number in (0, 1], got 3",
        ),
        (
            {"kind": "top_fraction", "target": 0.03},
            "s.yaml: experiment.threshold: unknown key 'target' for kind top_fraction; "
            "allowed keys are kind, fraction",
        ),
    ],
)
def test_parse_threshold_policy_errors(d, message):
    with pytest.raises(ModelError) as info:
        parse_threshold_policy(d, source="s.yaml")
    assert str(info.value) == message


# Positives at 0.9, 0.8, 0.8, 0.3; negatives at 0.8 (tied with two positives), 0.5, 0.2, 0.1.
Y_TIES = np.array([1, 1, 1, 1, 0, 0, 0, 0])
S_TIES = np.array([0.9, 0.8, 0.8, 0.3, 0.8, 0.5, 0.2, 0.1])


def _sens(t, y=Y_TIES, s=S_TIES):
    return np.mean(s[y == 1] >= t)


def _spec(t, y=Y_TIES, s=S_TIES):
    return np.mean(s[y == 0] < t)


@pytest.mark.parametrize(
    ("target", "expected"),
    # 0.5 needs 2 of 4 positives: the 2nd highest positive score is 0.8, where the tie lifts
    # sensitivity to 3/4; any higher threshold leaves only 0.9 (1/4).
    [(0.25, 0.9), (0.5, 0.8), (0.75, 0.8), (0.76, 0.3), (1.0, 0.3)],
)
def test_sensitivity_rule_on_ties(target, expected):
    t = choose_threshold(ThresholdPolicy("sensitivity", None, target), Y_TIES, S_TIES)
    assert t == expected
    assert _sens(t) >= target
    assert _sens(np.nextafter(t, np.inf)) < target  # no higher threshold would do


@pytest.mark.parametrize(
    ("target", "expected"),
    # 1.0 needs every negative below the threshold, including the one tied with positives at
    # 0.8, so 0.8 itself fails and the next score up (0.9) is chosen.
    [(0.25, 0.2), (0.5, 0.3), (0.75, 0.8), (1.0, 0.9)],
)
def test_specificity_rule_on_ties(target, expected):
    t = choose_threshold(ThresholdPolicy("specificity", None, target), Y_TIES, S_TIES)
    assert t == expected
    assert _spec(t) >= target
    lower = S_TIES[S_TIES < t]
    assert lower.size == 0 or _spec(lower.max()) < target  # no lower candidate would do


def test_sensitivity_target_is_compared_as_a_fraction():
    # 0.7 * 10 is 7.000000000000001 in floating point; a ceil(target * P) rule would ask for 8.
    y = np.r_[np.ones(10, dtype=int), np.zeros(3, dtype=int)]
    s = np.r_[np.linspace(1.0, 0.1, 10), [0.05, 0.5, 0.95]]
    t = choose_threshold(ThresholdPolicy("sensitivity", None, 0.7), y, s)
    assert t == s[6]  # the 7th highest positive
    assert np.sum(s[y == 1] >= t) == 7


def test_specificity_top_candidate_predicts_no_positive():
    y = np.array([0, 0, 1])
    s = np.array([0.2, 0.9, 0.9])
    t = choose_threshold(ThresholdPolicy("specificity", None, 1.0), y, s)
    assert t == np.nextafter(0.9, np.inf)
    assert not np.any(s >= t)


def test_fixed_policy_ignores_data():
    assert choose_threshold(ThresholdPolicy("fixed", 0.3), np.array([1]), np.array([0.9])) == 0.3


def _top(fraction):
    return ThresholdPolicy("top_fraction", None, None, fraction)


@pytest.mark.parametrize(("fraction", "expected", "flagged"),
                         # 0.07 * 100 is 7.000000000000001: a ceil(f * n) rule would flag 8
                         [(0.03, 0.97, 3), (0.07, 0.93, 7), (0.005, 0.99, 1), (1.0, 0.0, 100)])
def test_top_fraction_flags_the_top_k_percent_of_distinct_scores(fraction, expected, flagged):
    s = np.random.default_rng(0).permutation(np.arange(100) / 100)
    t = choose_threshold(_top(fraction), None, s)
    assert t == expected
    assert np.sum(s >= t) == flagged


def test_top_fraction_flags_every_row_tied_at_the_boundary():
    # 20% of 10 rows is 2; the 2nd highest score, 0.8, is shared by three rows: all are flagged
    s = np.array([0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    t = choose_threshold(_top(0.2), None, s)
    assert t == 0.8 and np.sum(s >= t) == 4
    # 10% is the single top row, above the tie
    assert choose_threshold(_top(0.1), None, s) == 0.9


def test_top_fraction_ranks_the_scored_population_not_the_validation_set():
    s_val = np.linspace(0.0, 1.0, 50)
    s_test = np.linspace(0.0, 0.5, 200)
    t = choose_threshold(_top(0.05), np.zeros(50, dtype=int), s_val, scored=s_test)
    assert np.sum(s_test >= t) == 10  # 5% of the 200 scored rows
    assert t == np.sort(s_test)[-10]
    # other policies ignore the scored population
    sens = ThresholdPolicy("sensitivity", None, 0.5)
    y = (s_val > 0.5).astype(int)
    assert choose_threshold(sens, y, s_val, scored=s_test) == choose_threshold(sens, y, s_val)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), levels=st.sampled_from([2, 5, 1000]),
       fraction=st.sampled_from([0.01, 0.03, 0.1, 0.25, 0.5, 0.7, 0.97, 1.0]))
def test_top_fraction_is_the_highest_score_flagging_at_least_the_fraction(seed, n, levels, fraction):
    rng = np.random.default_rng(seed)
    s = np.round(rng.random(n) * (levels - 1)) / (levels - 1)
    want = max(t for t in np.unique(s) if np.sum(s >= t) / n >= fraction)
    assert choose_threshold(_top(fraction), None, s) == want


@pytest.mark.parametrize(("scores", "message"), [
    ([0.2, np.nan], "threshold policy 'top_fraction': scores contain NaN"),
    ([], "threshold policy 'top_fraction': no scores to rank"),
])
def test_top_fraction_needs_scores(scores, message):
    with pytest.raises(ModelError) as info:
        choose_threshold(_top(0.1), None, np.array(scores, dtype=float))
    assert str(info.value) == message


def _brute_force(kind, target, y, s):
    candidates = np.r_[np.unique(s), np.nextafter(s.max(), np.inf)]
    if kind == "sensitivity":
        return max(t for t in candidates if np.sum(s[y == 1] >= t) / np.sum(y) >= target)
    if kind == "specificity":
        return min(t for t in candidates if np.sum(s[y == 0] < t) / np.sum(y == 0) >= target)
    f1 = [f1_score(y, (s >= t).astype(int), zero_division=0.0) for t in candidates]
    best = max(f1)
    return max(t for t, f in zip(candidates, f1) if f == best)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 40),
    levels=st.sampled_from([3, 10, 1000]),  # few levels give many ties
    kind=st.sampled_from(["sensitivity", "specificity", "max_f1"]),
    target=st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0]),
)
def test_policies_match_brute_force(seed, n, levels, kind, target):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    y[:2] = [0, 1]  # both classes present
    s = np.round(rng.random(n) * (levels - 1)) / (levels - 1)
    policy = ThresholdPolicy(kind, None, None if kind == "max_f1" else target)
    assert choose_threshold(policy, y, s) == _brute_force(kind, target, y, s)


@pytest.mark.parametrize(
    ("kind", "y", "message"),
    [
        (
            "sensitivity",
            [0, 0],
            "threshold policy 'sensitivity': validation labels contain no positives; "
            "the policy needs at least one",
        ),
        (
            "max_f1",
            [0, 0],
            "threshold policy 'max_f1': validation labels contain no positives; "
            "the policy needs at least one",
        ),
        (
            "specificity",
            [1, 1],
            "threshold policy 'specificity': validation labels contain no negatives; "
            "the policy needs at least one",
        ),
    ],
)
def test_policy_needs_the_right_class(kind, y, message):
    policy = ThresholdPolicy(kind, None, None if kind == "max_f1" else 0.9)
    with pytest.raises(ModelError) as info:
        choose_threshold(policy, np.array(y), np.array([0.2, 0.7]))
    assert str(info.value) == message


class _FixedScores:
    """An estimator whose predict_proba returns the scores it was built with."""

    def __init__(self, scores=None):
        self.scores = scores

    def get_params(self, deep=True):
        return {"scores": self.scores}

    def set_params(self, **p):
        self.__dict__.update(p)
        return self

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        s = np.asarray(self.scores, dtype=np.float64)
        return np.column_stack([1 - s, s])


def test_scores_off_by_rounding_are_clipped_and_others_are_the_models_error():
    from simsys.models import FittedModel

    X = np.zeros((3, 1))
    ok = FittedModel("m", _FixedScores([1.0000000000000007, -1e-12, 0.5]).fit(X, None), False,
                     "predict_proba", 0)
    np.testing.assert_array_equal(ok.predict_score(X), [1.0, 0.0, 0.5])
    bad = FittedModel("m", _FixedScores([0.2, 1.5, 0.5]).fit(X, None), False, "predict_proba", 0)
    with pytest.raises(ModelError) as info:
        bad.predict_score(X)
    assert str(info.value) == "model 'm': scores must be finite probabilities in [0, 1], got 1.5"
