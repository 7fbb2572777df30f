"""Tests of simsys.metrics: every fast path against a slow, obviously correct twin.

Twins: plain NumPy loops per group, ``sklearn.metrics.roc_auc_score``, a hand-written ECE loop,
fairlearn 0.15 itself for the aggregate disparities, a transcription of Wang & Russakovsky's
released code for directional bias amplification, and explicit row resampling for the bootstrap.
All randomness comes from ``np.random.default_rng`` with fixed seeds.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from simsys import metrics as M

fairlearn_metrics = pytest.importorskip("fairlearn.metrics")


# =====================================================================================================
# twins and data
# =====================================================================================================
def _naive_ece(y: np.ndarray, s: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al. (2017) ECE, the loop of their released code: bins (lo, hi], 0 in the first."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        in_bin = (s > lo) & (s <= hi)
        if b == 0:
            in_bin |= s == 0.0
        if in_bin.any():
            total += in_bin.mean() * abs(y[in_bin].mean() - s[in_bin].mean())
    return total


def _ratio_or_nan(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _naive_one(y: np.ndarray, p: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """Every metric of binary_metrics for one set of rows, by the textbook formulas."""
    n = len(y)
    tp = float(np.sum((y == 1) & (p == 1)))
    fp = float(np.sum((y == 0) & (p == 1)))
    tn = float(np.sum((y == 0) & (p == 0)))
    fn = float(np.sum((y == 1) & (p == 0)))
    out = {"n": float(n)}
    if n == 0:
        out.update({k: math.nan for k in M.METRIC_NAMES if k != "n"})
        return out
    out["prevalence"] = float(np.mean(y))
    out["selection_rate"] = float(np.mean(p))
    out["tpr"] = _ratio_or_nan(tp, tp + fn)
    out["fpr"] = _ratio_or_nan(fp, fp + tn)
    out["fnr"] = _ratio_or_nan(fn, tp + fn)
    out["tnr"] = _ratio_or_nan(tn, fp + tn)
    out["ppv"] = _ratio_or_nan(tp, tp + fp)
    out["npv"] = _ratio_or_nan(tn, tn + fn)
    out["accuracy"] = (tp + tn) / n
    out["auroc"] = roc_auc_score(y, s) if 0 < y.sum() < n else math.nan
    out["brier"] = float(np.mean((s - y) ** 2))
    out["ece"] = _naive_ece(y, s)
    out["calibration_in_the_large"] = float(np.mean(s) - np.mean(y))
    return out


def _naive_metrics(y, p, s, g, n_groups) -> dict[str, np.ndarray]:
    per = [_naive_one(y[g == k], p[g == k], s[g == k]) for k in range(n_groups)]
    per.append(_naive_one(y, p, s))
    return {name: np.array([d[name] for d in per]) for name in M.METRIC_NAMES}


def _make_data(seed: int, n: int, n_groups: int, *, ties: bool = True,
               no_positive_group: bool = True, empty_group: bool = False):
    """Random labels, scores, predictions and groups; group 0 optionally without positives."""
    rng = np.random.default_rng(seed)
    used = n_groups - 1 if empty_group else n_groups
    g = rng.integers(0, used, n)
    g[:used] = np.arange(used)  # every used group has at least one row
    prev = rng.uniform(0.15, 0.6, n_groups)
    y = (rng.random(n) < prev[g]).astype(np.int64)
    if no_positive_group:
        y[g == 0] = 0
    s = np.clip(0.35 * y + rng.uniform(0.0, 0.7, n), 0.0, 1.0)
    if ties:
        s = np.round(s, 1)  # many ties, and scores exactly on ECE bin edges (0, 1/15 ... 1)
    p = (s >= 0.5).astype(np.int64)
    return y, p, s, g


def _assert_close(actual, expected, *, rtol=1e-12, atol=1e-12, msg=""):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=msg)


# =====================================================================================================
# per-group metrics
# =====================================================================================================
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n_groups", [1, 2, 4])
@pytest.mark.parametrize("ties", [True, False])
def test_binary_metrics_match_naive_twin(seed, n_groups, ties):
    y, p, s, g = _make_data(seed, 400, n_groups, ties=ties, no_positive_group=n_groups > 1)
    got = M.binary_metrics(y, p, s, g, n_groups)
    want = _naive_metrics(y, p, s, g, n_groups)
    assert list(got) == list(M.METRIC_NAMES)
    for name in M.METRIC_NAMES:
        assert got[name].shape == (n_groups + 1,)
        assert got[name].dtype == np.float64
        _assert_close(got[name], want[name], msg=name)


def test_binary_metrics_accept_bool_and_float_labels():
    y, p, s, g = _make_data(5, 300, 3)
    base = M.binary_metrics(y, p, s, g, 3)
    other = M.binary_metrics(y.astype(bool), p.astype(np.float32), s, g.astype(np.int32), 3)
    for name in M.METRIC_NAMES:
        np.testing.assert_array_equal(base[name], other[name])


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_sklearn_per_group(seed):
    rng = np.random.default_rng(100 + seed)
    n = 2_000
    g = rng.integers(0, 3, n)
    y = rng.random(n) < 0.3
    # Coarse scores for many ties in some seeds, continuous in others.
    s = rng.beta(2, 5, n) + 0.3 * y
    s = np.clip(np.round(s, 2) if seed % 2 else s, 0, 1)
    got = M.binary_metrics(y, y, s, g, 3)["auroc"]
    want = [roc_auc_score(y[g == k], s[g == k]) for k in range(3)] + [roc_auc_score(y, s)]
    _assert_close(got, want, rtol=1e-13)


def test_ece_against_hand_loop_with_scores_on_bin_edges():
    edges = np.linspace(0, 1, 16)
    s = np.concatenate([edges, edges, [0.5, 0.51, 0.99]])
    y = np.array([0, 1] * (len(s) // 2) + [1] * (len(s) % 2))
    g = np.zeros(len(s), dtype=np.int64)
    got = M.binary_metrics(y, y, s, g, 1)["ece"]
    _assert_close(got, [_naive_ece(y, s)] * 2)
    # A perfectly calibrated toy: every bin's mean score equals its positive rate -> ECE 0.
    s2 = np.array([0.25] * 4 + [0.75] * 4)
    y2 = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    _assert_close(M.binary_metrics(y2, y2, s2, np.zeros(8, np.int64), 1)["ece"], [0.0, 0.0])


def test_ece_known_answer():
    # One bin (scores all 0.9), positive rate 0.5: ECE = |0.5 - 0.9| = 0.4.
    y = np.array([1, 0, 1, 0])
    s = np.full(4, 0.9)
    got = M.binary_metrics(y, y, s, np.zeros(4, np.int64), 1)
    _assert_close(got["ece"], [0.4, 0.4])
    _assert_close(got["calibration_in_the_large"], [0.4, 0.4])
    _assert_close(got["brier"], [(0.01 + 0.81) / 2] * 2)


def test_undefined_metrics_are_nan_with_reasons():
    # group 0: no positives; group 1: no negatives, nothing predicted positive; group 2: empty.
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.2, 0.1, 0.3, 0.4, 0.2])
    g = np.array([0, 0, 0, 1, 1, 1])
    values, reasons = M.binary_metrics(y, p, s, g, 3, with_reasons=True)
    assert values["n"].tolist() == [3.0, 3.0, 0.0, 6.0]
    assert reasons["n"] == (None, None, None, None)
    assert np.isnan(values["tpr"][0]) and reasons["tpr"][0] == "no positives in group"
    assert np.isnan(values["fnr"][0]) and reasons["fnr"][0] == "no positives in group"
    assert np.isnan(values["auroc"][0]) and reasons["auroc"][0] == "only one class"
    assert np.isnan(values["auroc"][1]) and reasons["auroc"][1] == "only one class"
    assert np.isnan(values["fpr"][1]) and reasons["fpr"][1] == "no negatives in group"
    assert np.isnan(values["ppv"][1]) and reasons["ppv"][1] == "no predicted positives"
    assert values["npv"][1] == 0.0 and reasons["npv"][1] is None
    for name in M.METRIC_NAMES:
        if name != "n":
            assert np.isnan(values[name][2]), name
            assert reasons[name][2] == "empty group", name
    # Wherever a value is NaN a reason is recorded, and vice versa.
    for name in M.METRIC_NAMES:
        for v, why in zip(values[name], reasons[name]):
            assert np.isnan(v) == (why is not None), (name, v, why)
    assert values["auroc"][3] == roc_auc_score(y, s)


def test_no_scores_gives_nan_score_metrics():
    y, p, _, g = _make_data(7, 100, 2)
    values, reasons = M.binary_metrics(y, p, None, g, 2, with_reasons=True)
    for name in ("auroc", "brier", "ece", "calibration_in_the_large"):
        assert np.isnan(values[name]).all()
        assert set(reasons[name]) == {"no scores given"}
    _assert_close(values["tpr"], M.binary_metrics(y, p, np.zeros(100), g, 2)["tpr"])


def test_undefined_reason_direct():
    assert M.undefined_reason("tpr", n=10, n_pos=0, n_pred_pos=3) == "no positives in group"
    assert M.undefined_reason("npv", n=10, n_pos=2, n_pred_pos=10) == "no predicted negatives"
    assert M.undefined_reason("auroc", n=10, n_pos=10, n_pred_pos=3) == "only one class"
    assert M.undefined_reason("accuracy", n=0, n_pos=0, n_pred_pos=0) == "empty group"
    assert M.undefined_reason("tpr", n=10, n_pos=4, n_pred_pos=3) is None
    with pytest.raises(ValueError, match="metric: unknown metric 'recall'"):
        M.undefined_reason("recall", n=1, n_pos=1, n_pred_pos=1)


def test_metrics_table_is_tidy():
    y, p, s, g = _make_data(3, 200, 2)
    values, reasons = M.binary_metrics(y, p, s, g, 2, with_reasons=True)
    table = M.metrics_table(values, reasons, group_names=["A", "B"])
    assert list(table.columns) == ["group", "group_code", "metric", "value", "undefined_reason"]
    assert len(table) == len(M.METRIC_NAMES) * 3
    row = table[(table.group == "A") & (table.metric == "tpr")].iloc[0]
    assert np.isnan(row.value) and row.undefined_reason == "no positives in group"
    overall = table[(table.group == "overall") & (table.metric == "accuracy")].iloc[0]
    assert overall.group_code == -1 and overall.value == values["accuracy"][-1]


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"y_true": [0, 2, 1]}, ValueError, "y_true: expected only the values 0 and 1, got 2"),
        ({"y_pred": [0, 1]}, ValueError,
         "y_pred: expected 3 rows (as many as y_true), got 2"),
        ({"groups": [0, 1, 2]}, ValueError, "groups: expected group codes in [0, 1], got 2"),
        ({"groups": [0.0, 1.0, 0.0]}, TypeError,
         "groups: expected integer group codes, got dtype float64"),
        ({"y_score": [0.1, 1.2, 0.3]}, ValueError,
         "y_score: expected finite probabilities in [0, 1], got 1.2"),
        ({"y_score": [0.1, np.nan, 0.3]}, ValueError,
         "y_score: expected finite probabilities in [0, 1], got nan"),
        ({"n_groups": 0}, ValueError, "n_groups: expected a positive integer, got 0"),
        ({"y_true": [[0, 1, 1]]}, ValueError, "y_true: expected a 1-D array, got shape (1, 3)"),
        ({"y_true": []}, ValueError, "y_true: expected at least one row, got none"),
    ],
)
def test_input_errors_name_the_argument(kwargs, exc, text):
    args = {"y_true": [0, 1, 1], "y_pred": [0, 1, 0], "y_score": [0.1, 0.8, 0.3],
            "groups": [0, 1, 0], "n_groups": 2}
    args.update(kwargs)
    with pytest.raises(exc) as info:
        M.binary_metrics(**args)
    assert str(info.value) == text


def test_underdiagnosis_rate_is_fnr():
    y, p, s, g = _make_data(11, 500, 3)
    _assert_close(M.underdiagnosis_rate(y, p, g, 3), M.binary_metrics(y, p, s, g, 3)["fnr"])
    assert np.isnan(M.underdiagnosis_rate(y, p, g, 3)[0])  # group 0 has no sick rows


# =====================================================================================================
# fairlearn-identical disparities
# =====================================================================================================
def _fairlearn_case(seed: int, n_groups: int):
    """Random y/yhat over 2-4 groups with non-contiguous codes; the first group has no positives."""
    rng = np.random.default_rng(1000 + seed)
    n = 300
    codes = np.array([0, 2, 5, 7])[:n_groups]
    g = codes[rng.integers(0, n_groups, n)]
    g[:n_groups] = codes
    y = (rng.random(n) < rng.uniform(0.2, 0.7, n_groups)[np.searchsorted(codes, g)]).astype(int)
    y[g == codes[0]] = 0
    p = (rng.random(n) < 0.3 + 0.4 * y).astype(int)
    return y, p, g


def _fl_frame(metric, y, p, g):
    return fairlearn_metrics.MetricFrame(metrics=metric, y_true=y, y_pred=p, sensitive_features=g)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_groups", [2, 3, 4])
@pytest.mark.parametrize("method", ["between_groups", "to_overall"])
def test_disparities_equal_fairlearn(seed, n_groups, method):
    fl = fairlearn_metrics
    y, p, g = _fairlearn_case(seed, n_groups)
    pairs = [
        (M.demographic_parity_difference(p, g, method=method),
         fl.demographic_parity_difference(y, p, sensitive_features=g, method=method)),
        (M.demographic_parity_ratio(p, g, method=method),
         fl.demographic_parity_ratio(y, p, sensitive_features=g, method=method)),
        (M.equal_opportunity_difference(y, p, g, method=method),
         _fl_frame(fl.true_positive_rate, y, p, g).difference(method=method)),
        (M.equal_opportunity_difference(y, p, g, method=method),
         fl.equal_opportunity_difference(y, p, sensitive_features=g, method=method)),
        (M.underdiagnosis_gap(y, p, g, method=method),
         _fl_frame(fl.false_negative_rate, y, p, g).difference(method=method)),
    ]
    for agg in ("worst_case", "mean"):
        pairs.append((M.equalized_odds_difference(y, p, g, agg=agg, method=method),
                      fl.equalized_odds_difference(y, p, sensitive_features=g, method=method,
                                                   agg=agg)))
        pairs.append((M.equalized_odds_ratio(y, p, g, agg=agg, method=method),
                      fl.equalized_odds_ratio(y, p, sensitive_features=g, method=method,
                                              agg=agg)))
    for i, (ours, theirs) in enumerate(pairs):
        assert isinstance(ours, float)
        _assert_close(ours, float(theirs), rtol=0, atol=1e-12, msg=f"pair {i}")


@pytest.mark.parametrize("method", ["between_groups", "to_overall"])
@pytest.mark.parametrize(
    "case",
    [
        # nothing predicted positive: every rate 0, every ratio 0/0
        ([0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]),
        # positives only among negatives: TPR all 0 (ratio NaN), FPR defined
        ([0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1]),
        # a group with no negatives and a group with no positives
        ([1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 1, 1]),
        # one group only
        ([0, 1, 1, 0], [0, 1, 0, 0], [3, 3, 3, 3]),
        # selection rate 0 in one group, positive in the other
        ([0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1]),
    ],
)
def test_disparities_equal_fairlearn_degenerate(case, method):
    fl = fairlearn_metrics
    y, p, g = (np.array(a) for a in case)
    pairs = [
        (M.demographic_parity_difference(p, g, method=method),
         fl.demographic_parity_difference(y, p, sensitive_features=g, method=method)),
        (M.demographic_parity_ratio(p, g, method=method),
         fl.demographic_parity_ratio(y, p, sensitive_features=g, method=method)),
        (M.equal_opportunity_difference(y, p, g, method=method),
         fl.equal_opportunity_difference(y, p, sensitive_features=g, method=method)),
        (M.underdiagnosis_gap(y, p, g, method=method),
         _fl_frame(fl.false_negative_rate, y, p, g).difference(method=method)),
    ]
    for agg in ("worst_case", "mean"):
        pairs.append((M.equalized_odds_difference(y, p, g, agg=agg, method=method),
                      fl.equalized_odds_difference(y, p, sensitive_features=g, method=method,
                                                   agg=agg)))
        pairs.append((M.equalized_odds_ratio(y, p, g, agg=agg, method=method),
                      fl.equalized_odds_ratio(y, p, sensitive_features=g, method=method,
                                              agg=agg)))
    for i, (ours, theirs) in enumerate(pairs):
        _assert_close(ours, float(theirs), rtol=0, atol=1e-12, msg=f"pair {i}")


def test_undefined_nan_leaves_the_group_out():
    y, p, g = _fairlearn_case(0, 3)
    has_pos = g != 0  # code 0 is the group without positives
    for method in ("between_groups", "to_overall"):
        ours = M.equal_opportunity_difference(y, p, g, method=method, undefined="nan")
        if method == "between_groups":
            theirs = fairlearn_metrics.equal_opportunity_difference(
                y[has_pos], p[has_pos], sensitive_features=g[has_pos], method=method)
            _assert_close(ours, theirs, rtol=0, atol=1e-12)
        gap = M.underdiagnosis_gap(y, p, g, method=method, undefined="nan")
        fnr = M.underdiagnosis_rate(y, p, np.searchsorted([0, 2, 5], g), 3)
        want = (M.difference(fnr[:-1]) if method == "between_groups"
                else np.nanmax(np.abs(M.difference_to_reference(fnr, -1)[:-1])))
        _assert_close(gap, want, rtol=0, atol=1e-12)
    # the default is fairlearn's 0 for the group without positives, so the gap is wider
    assert M.underdiagnosis_gap(y, p, g) >= M.underdiagnosis_gap(y, p, g, undefined="nan")


def test_disparity_argument_errors():
    with pytest.raises(ValueError) as info:
        M.demographic_parity_difference([0, 1], [0, 1], method="overall")
    assert str(info.value) == "method: expected 'between_groups' or 'to_overall', got 'overall'"
    with pytest.raises(ValueError) as info:
        M.equalized_odds_difference([0, 1], [0, 1], [0, 1], agg="max")
    assert str(info.value) == "agg: expected 'worst_case' or 'mean', got 'max'"
    with pytest.raises(ValueError) as info:
        M.equal_opportunity_difference([0, 1], [0, 1], [0, 1], undefined="skip")
    assert str(info.value) == "undefined: expected 'zero' or 'nan', got 'skip'"
    with pytest.raises(ValueError) as info:
        M.demographic_parity_difference([0, 1], [0, -1])
    assert str(info.value) == "groups: expected group codes in [0, inf], got -1"


# =====================================================================================================
# generic aggregates
# =====================================================================================================
def test_difference_and_ratio_are_nan_aware():
    assert M.difference([0.2, np.nan, 0.5]) == pytest.approx(0.3)
    assert M.ratio([0.2, np.nan, 0.5]) == pytest.approx(0.4)
    assert np.isnan(M.difference([np.nan, np.nan]))
    assert np.isnan(M.ratio([np.nan, np.nan]))
    assert np.isnan(M.ratio([0.0, 0.0]))
    assert M.ratio([0.0, 0.5]) == 0.0
    _assert_close(M.difference_to_reference([0.1, 0.4, np.nan], 1), [-0.3, 0.0, np.nan])
    _assert_close(M.difference_to_reference([0.1, 0.4, 0.2], -1), [-0.1, 0.2, 0.0])
    with pytest.raises(ValueError) as info:
        M.difference_to_reference([0.1, 0.2], 2)
    assert str(info.value) == "reference_index: expected an integer index into 2 values, got 2"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=1, max_size=8))
def test_difference_ratio_properties(values):
    d, r = M.difference(values), M.ratio(values)
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:  # a gap needs two groups where the metric is defined
        assert math.isnan(d) and math.isnan(r)
        return
    assert d == max(finite) - min(finite) and d >= 0
    if max(finite) > 0:
        assert 0 <= r <= 1
    else:
        assert math.isnan(r)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_auroc_property_matches_sklearn(data):
    n = data.draw(st.integers(2, 40))
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    s = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0]),
                                    min_size=n, max_size=n)))
    got = M.binary_metrics(y, y, s, np.zeros(n, np.int64), 1)["auroc"][0]
    if 0 < y.sum() < n:
        assert got == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    else:
        assert math.isnan(got)


# =====================================================================================================
# directional bias amplification
# =====================================================================================================
def _released_biasamp_attribute_to_task(task_test, attr_test, task_preds, task_train, attr_train):
    """Transcription of ``biasamp_attribute_to_task`` (princetonvisualai/directional-bias-amp,
    first release, without the later keep-rows filter), on one-hot matrices."""
    num_t, num_a = task_test.shape[1], attr_test.shape[1]
    p_at = np.zeros((num_a, num_t))
    p_a_p_t = np.zeros((num_a, num_t))
    num_train = len(task_train)
    for a in range(num_a):
        for t in range(num_t):
            t_idx = np.where(task_train[:, t] == 1)[0]
            a_idx = np.where(attr_train[:, a] == 1)[0]
            at_idx = set(t_idx) & set(a_idx)
            p_a_p_t[a][t] = (len(t_idx) / num_train) * (len(a_idx) / num_train)
            p_at[a][t] = len(at_idx) / num_train
    y_at = np.sign(p_at - p_a_p_t)
    t_cond_a = np.zeros((num_a, num_t))
    that_cond_a = np.zeros((num_a, num_t))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an empty group: NaN, on purpose
        for a in range(num_a):
            for t in range(num_t):
                rows = np.where(attr_test[:, a] == 1)[0]
                t_cond_a[a][t] = np.mean(task_test[:, t][rows])
                that_cond_a[a][t] = np.mean(task_preds[:, t][rows])
    return np.nanmean(y_at * (that_cond_a - t_cond_a))


def test_directional_bias_amplification_hand_example():
    # Training: group 0 is sick 3/4, group 1 1/4 -> y_0 = +1, y_1 = -1.
    a_train = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t_train = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    # Test: both groups sick 1/2; the model flags all of group 0 and none of group 1:
    # D_0 = 1 - 1/2 = +1/2, D_1 = 0 - 1/2 = -1/2; BiasAmp = (1/2)(+1/2 + 1/2) = 1/2.
    a_test = np.array([0, 0, 1, 1])
    t_test = np.array([1, 0, 1, 0])
    t_pred = np.array([1, 1, 0, 0])
    assert M.directional_bias_amplification(a_train, t_train, a_test, t_pred, t_test) == 0.5
    # The opposite predictions de-amplify: -1/2.
    assert M.directional_bias_amplification(a_train, t_train, a_test, 1 - t_pred, t_test) == -0.5


def test_directional_bias_amplification_zero_when_predictions_match_truth_rates():
    rng = np.random.default_rng(21)
    a_train, a_test = rng.integers(0, 3, 500), rng.integers(0, 3, 400)
    t_train = (rng.random(500) < np.array([0.2, 0.5, 0.7])[a_train]).astype(int)
    t_test = (rng.random(400) < np.array([0.2, 0.5, 0.7])[a_test]).astype(int)
    # Shuffle the truth within each group: same positive rate per group, wrong rows.
    t_pred = t_test.copy()
    for a in range(3):
        idx = np.flatnonzero(a_test == a)
        t_pred[idx] = rng.permutation(t_test[idx])
    assert M.directional_bias_amplification(a_train, t_train, a_test, t_pred, t_test) == 0.0
    assert M.directional_bias_amplification(a_train, t_train, a_test, t_test, t_test) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_directional_bias_amplification_equals_released_code(seed):
    rng = np.random.default_rng(300 + seed)
    k = 4
    a_train, a_test = rng.integers(0, k, 200), rng.integers(0, k - 1, 150)  # group 3 not in test
    t_train = (rng.random(200) < rng.uniform(0.1, 0.9, k)[a_train]).astype(int)
    t_test = (rng.random(150) < 0.4).astype(int)
    t_pred = (rng.random(150) < 0.5).astype(int)
    onehot = np.eye(k, dtype=int)
    ours = M.directional_bias_amplification(a_train, t_train, a_test, t_pred, t_test, n_groups=k)
    single = _released_biasamp_attribute_to_task(
        t_test[:, None], onehot[a_test], t_pred[:, None], t_train[:, None], onehot[a_train])
    # |T| = 2 (positive and negative class as two tasks) gives the same number.
    both = _released_biasamp_attribute_to_task(
        np.eye(2, dtype=int)[1 - t_test], onehot[a_test], np.eye(2, dtype=int)[1 - t_pred],
        np.eye(2, dtype=int)[1 - t_train], onehot[a_train])
    _assert_close(ours, single, rtol=0, atol=1e-15)
    _assert_close(ours, both, rtol=0, atol=1e-15)


# =====================================================================================================
# bootstrap
# =====================================================================================================
def test_bootstrap_is_deterministic_and_seed_dependent():
    y, p, s, g = _make_data(31, 3_000, 3, ties=False, no_positive_group=False)
    names = ("selection_rate", "tpr", "fpr", "auroc", "ece")
    a = M.bootstrap_metrics(y, p, s, g, 3, n_resamples=20, seed=7, metrics=names)
    b = M.bootstrap_metrics(y, p, s, g, 3, n_resamples=20, seed=7, metrics=names)
    c = M.bootstrap_metrics(y, p, s, g, 3, n_resamples=20, seed=8, metrics=names)
    assert a.shape == (20, len(names), 4) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # A SeedSequence is not advanced by the call; int 7 and SeedSequence(7) are the same seed.
    ss = np.random.SeedSequence(7)
    np.testing.assert_array_equal(a, M.bootstrap_metrics(y, p, s, g, 3, n_resamples=20, seed=ss,
                                                         metrics=names))
    np.testing.assert_array_equal(a, M.bootstrap_metrics(y, p, s, g, 3, n_resamples=20, seed=ss,
                                                         metrics=names))
    # Resample r does not depend on how many resamples were asked for.
    longer = M.bootstrap_metrics(y, p, s, g, 3, n_resamples=35, seed=7, metrics=names)
    np.testing.assert_array_equal(a, longer[:20])
    # Each resample differs from the others.
    assert len({row.tobytes() for row in a}) == 20


def test_bootstrap_counts_are_resamples():
    counts = M.bootstrap_counts(1_000, n_resamples=50, seed=3)
    assert counts.shape == (50, 1_000) and counts.dtype == np.int64
    assert (counts.sum(axis=1) == 1_000).all() and (counts >= 0).all()
    # Share of rows never drawn ~ (1 - 1/n)^n -> e^-1 = 0.368; sd over 50 x 1000 rows is ~0.0022.
    assert abs((counts == 0).mean() - (1 - 1 / 1_000) ** 1_000) < 0.01
    np.testing.assert_array_equal(counts, M.bootstrap_counts(1_000, n_resamples=50, seed=3))


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_resamples_equal_naive_recomputation(seed):
    n_groups = 3
    y, p, s, g = _make_data(40 + seed, 600, n_groups, ties=True, no_positive_group=False)
    boot = M.bootstrap_metrics(y, p, s, g, n_groups, n_resamples=4, seed=seed,
                               metrics=M.BOOTSTRAP_METRICS)
    counts = M.bootstrap_counts(len(y), n_resamples=4, seed=seed)
    for r in range(4):
        rows = np.repeat(np.arange(len(y)), counts[r])
        want = _naive_metrics(y[rows], p[rows], s[rows], g[rows], n_groups)
        for m, name in enumerate(M.BOOTSTRAP_METRICS):
            _assert_close(boot[r, m], want[name], rtol=1e-11, atol=1e-12, msg=f"{r} {name}")


def test_bootstrap_resample_equals_point_estimate_on_resampled_rows():
    # Weights (resample counts) in the kernel must equal repeating the rows: compare the weighted
    # path with the unit-weight path of binary_metrics on the explicitly repeated rows.
    y, p, s, g = _make_data(50, 500, 2, ties=False, no_positive_group=False)
    counts = M.bootstrap_counts(len(y), n_resamples=1, seed=9)[0]
    rows = np.repeat(np.arange(len(y)), counts)
    boot = M.bootstrap_metrics(y, p, s, g, 2, n_resamples=1, seed=9, metrics=M.METRIC_NAMES)[0]
    point = M.binary_metrics(y[rows], p[rows], s[rows], g[rows], 2)
    for m, name in enumerate(M.METRIC_NAMES):
        _assert_close(boot[m], point[name], rtol=1e-11, msg=name)


def test_bootstrap_sd_of_selection_rate_matches_binomial_theory():
    # The bootstrap sd of a proportion estimates sqrt(p(1-p)/n). With R resamples, the sd of
    # the bootstrap sd is about sd / sqrt(2(R-1)) (normal approximation); allow 5 of those.
    rng = np.random.default_rng(77)
    n, n_res = 4_000, 2_000
    g = rng.integers(0, 2, n)
    p = (rng.random(n) < np.where(g == 0, 0.3, 0.6)).astype(int)
    y = p.copy()
    boot = M.bootstrap_metrics(y, p, None, g, 2, n_resamples=n_res, seed=5,
                               metrics=("selection_rate",))
    sd = boot[:, 0, :].std(axis=0, ddof=1)
    # Overall: n fixed; the per-group sd also includes the variation of the group size, but the
    # ratio estimator's sd is still sqrt(p(1-p)/n_g) to first order.
    sizes = np.append(np.bincount(g), n)
    rate = np.append(np.bincount(g, weights=p) / np.bincount(g), p.mean())
    theory = np.sqrt(rate * (1 - rate) / sizes)
    se = theory / np.sqrt(2 * (n_res - 1))
    assert (np.abs(sd - theory) < 5 * se).all(), (sd, theory, se)
    # and the bootstrap mean is close to the estimate (within 5 Monte-Carlo standard errors)
    assert (np.abs(boot[:, 0, :].mean(axis=0) - rate) < 5 * theory / np.sqrt(n_res)).all()


def test_bootstrap_argument_errors():
    y, p, s, g = _make_data(1, 50, 2)
    with pytest.raises(ValueError) as info:
        M.bootstrap_metrics(y, p, s, g, 2, seed=1, metrics=("recall",))
    assert str(info.value).startswith("metrics: unknown metric 'recall'; allowed: n, prevalence")
    with pytest.raises(ValueError) as info:
        M.bootstrap_metrics(y, p, None, g, 2, seed=1, metrics=("auroc",))
    assert str(info.value) == "metrics: 'auroc' needs y_score, got y_score=None"
    with pytest.raises(TypeError) as info:
        M.bootstrap_metrics(y, p, s, g, 2, seed=None)
    assert str(info.value) == (
        "seed: expected an int >= 0 or a numpy.random.SeedSequence, got None")
    with pytest.raises(ValueError) as info:
        M.bootstrap_metrics(y, p, s, g, 2, seed=1, n_resamples=0)
    assert str(info.value) == "n_resamples: expected a positive integer, got 0"


def test_bootstrap_interval():
    rng = np.random.default_rng(2)
    samples = rng.normal(size=(1_000, 2, 3))
    samples[:, 1, 2] = np.nan
    samples[:500, 0, 0] = np.nan
    lo, hi = M.bootstrap_interval(samples, level=0.9)
    assert lo.shape == hi.shape == (2, 3)
    _assert_close(lo[1, 1], np.quantile(samples[:, 1, 1], 0.05), rtol=1e-14)
    _assert_close(hi[1, 1], np.quantile(samples[:, 1, 1], 0.95), rtol=1e-14)
    _assert_close(lo[0, 0], np.quantile(samples[500:, 0, 0], 0.05), rtol=1e-14)
    assert np.isnan(lo[1, 2]) and np.isnan(hi[1, 2])
    with pytest.raises(ValueError) as info:
        M.bootstrap_interval(samples, level=95)
    assert str(info.value) == "level: expected a number in (0, 1), got 95"


@pytest.mark.slow
def test_bootstrap_interval_coverage():
    # Percentile intervals for a proportion with n = 400 cover the true p about 95% of the time.
    rng = np.random.default_rng(123)
    p_true, n, trials = 0.3, 400, 300
    hits = 0
    for t in range(trials):
        y = (rng.random(n) < p_true).astype(int)
        boot = M.bootstrap_metrics(y, y, None, np.zeros(n, np.int64), 1, n_resamples=500,
                                   seed=t, metrics=("selection_rate",))
        lo, hi = M.bootstrap_interval(boot[:, 0, 0])
        hits += lo <= p_true <= hi
    # binomial sd of the coverage over 300 trials ~ 0.0126; allow 4 sd around 0.95
    assert abs(hits / trials - 0.95) < 0.05


def test_sort_orders_are_reused_only_for_the_same_read_only_arrays():
    """Scoring the same read-only scores against two label sets reuses their sort orders; the
    results equal a fresh computation, and a writable array is never taken from the cache."""
    rng = np.random.default_rng(5)
    n = 2000
    s = rng.random(n)
    g = rng.integers(0, 3, n)
    s.flags.writeable = False
    g.flags.writeable = False
    y1, y2 = rng.integers(0, 2, n), rng.integers(0, 2, n)
    p = (s >= 0.5).astype(int)
    a1 = M.binary_metrics(y1, p, s, g, 3)
    a2 = M.binary_metrics(y2, p, s, g, 3)  # from the cache
    assert M._ORDER_CACHE.get(s, g, 3) is not None
    fresh2 = M.binary_metrics(y2, p, s.copy(), g.copy(), 3)
    for k in a2:
        np.testing.assert_array_equal(a2[k], fresh2[k])
    assert not np.array_equal(a1["auroc"], a2["auroc"])
    w = s.copy()  # writable: never cached
    M.binary_metrics(y1, p, w, g, 3)
    assert M._ORDER_CACHE.get(w, g, 3) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fairness_differences_equal_the_single_functions(seed):
    rng = np.random.default_rng(seed)
    n = 500
    y = rng.integers(0, 2, n)
    p = rng.integers(0, 2, n)
    g = rng.integers(0, 4, n)
    y[g == 3] = 0  # a group without positives: fairlearn's TPR of 0 must be reproduced
    got = M.fairness_differences(y, p, g)
    assert got == {
        "demographic_parity_difference": M.demographic_parity_difference(p, g),
        "equal_opportunity_difference": M.equal_opportunity_difference(y, p, g),
        "equalized_odds_difference": M.equalized_odds_difference(y, p, g),
        "underdiagnosis_gap": M.underdiagnosis_gap(y, p, g),
    }


def test_confusion_counts_equal_a_loop_over_rows():
    rng = np.random.default_rng(5)
    y, p, g = rng.integers(0, 2, 500), rng.integers(0, 2, 500), rng.integers(0, 3, 500)
    c = M.confusion_counts(y, p, g, 4)  # group 3 is empty
    for gi in range(4):
        sel = g == gi
        want = [np.sum(sel & (y == 1) & (p == 1)), np.sum(sel & (y == 0) & (p == 1)),
                np.sum(sel & (y == 1) & (p == 0)), np.sum(sel & (y == 0) & (p == 0))]
        assert c[:, gi].tolist() == want
    assert c[:, 4].tolist() == c[:, :4].sum(axis=1).tolist()
