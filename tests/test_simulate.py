"""Tests of the sampler (simsys.simulate, simsys.biases, the compiled interpreter).

Three layers:

- the NumPy twin (``tests/naive.py``): the kernel's uniforms, normals, Poisson and categorical draws
  and a bias's flips equal a slow re-derivation bit for bit;
- statistics, with fixed seeds and tolerances of 5 standard errors derived from the sample size:
  every node kind's distribution, regression coefficients, logistic rates by group, and the rate of
  every bias mechanism;
- determinism and causal structure: interventions change only descendants, counterfactual twins,
  chunks, threads and block sizes, seeds, common random numbers, clean twins.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import naive
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import simsys
from simsys import graph
from simsys.program import ZIGGURAT, stream_key
from simsys.simulate import build_plan, run_plan

N = 200_000
Z = 5.0  # tolerance in standard errors
ROOT = Path(__file__).parent.parent
MELANOMA = simsys.load_scenario(ROOT / "tests" / "data" / "core.yaml")  # frozen 5-node melanoma


def logistic(x):
    return 1.0 / (1.0 + math.exp(-x))


def assert_rate(hits, p: float, what: str = "rate"):
    """The mean of 0/1 ``hits`` is p, within Z binomial standard errors."""
    hits = np.asarray(hits, dtype=np.float64)
    n = hits.size
    se = math.sqrt(p * (1.0 - p) / n)
    assert n > 1000, f"{what}: only {n} rows"
    assert abs(hits.mean() - p) <= Z * se, f"{what}: {hits.mean():.5f} vs {p} (se {se:.5f}, n {n})"


def assert_mean(x, mu: float, sd: float, what: str = "mean"):
    """The mean of ``x`` is mu, within Z standard errors sd / sqrt(n)."""
    se = sd / math.sqrt(len(x))
    assert abs(np.mean(x) - mu) <= Z * se, f"{what}: {np.mean(x):.5f} vs {mu} (se {se:.5f})"


def assert_sd(x, sd: float, what: str = "sd"):
    """The sd of normal-ish ``x`` is sd, within Z standard errors sd / sqrt(2 (n - 1))."""
    se = sd / math.sqrt(2 * (len(x) - 1))
    assert abs(np.std(x, ddof=1) - sd) <= Z * se, f"{what}: {np.std(x, ddof=1):.5f} vs {sd}"


# =====================================================================================================
# scenarios
# =====================================================================================================
KINDS = {
    "name": "kinds", "seed": 101, "params": {"share": 0.3},
    "nodes": {
        "b_p": {"kind": "bernoulli", "p": "share"},
        "b_logit": {"kind": "bernoulli", "logit": -1.0},
        "cat_p": {"kind": "categorical", "categories": ["a", "b", "c"], "probs": [1, 2, 7]},
        "cat_l": {"kind": "categorical", "categories": ["lo", "mid", "hi"],
                  "logits": ["0", "1", "-1 + 2*b_p"]},
        "nrm": {"kind": "normal", "mean": 2.0, "sd": 3.0},
        "lnrm": {"kind": "lognormal", "meanlog": 0.5, "sdlog": 0.4},
        "pois3": {"kind": "poisson", "rate": 3},
        "pois50": {"kind": "poisson", "rate": 50},
        "unif": {"kind": "uniform", "low": -1, "high": 3},
        "det": {"kind": "deterministic", "value": "nrm > 2"},
    },
    "roles": {"group": "b_p", "target": "b_logit", "features": ["nrm"]},
    "populations": {"all": {"n": N}},
}

LINEAR = {
    "name": "linear", "seed": 7,
    "nodes": {
        "g": {"kind": "bernoulli", "p": 0.4},
        "x1": {"kind": "normal", "mean": 0, "sd": 1},
        "x2": {"kind": "normal", "mean": "1 + 0.5*x1", "sd": 1},
        "y": {"kind": "normal", "mean": "2 - 1.5*x1 + 0.8*x2 + 0.3*g", "sd": 0.7},
        "d": {"kind": "bernoulli", "logit": "-1 + 1.2*g"},
    },
    "roles": {"group": "g", "target": "d", "features": ["x1", "x2", "y"]},
    "populations": {"all": {"n": N}},
}


def _bias_scenario() -> dict:
    """One bias per population, so that each mechanism's rate is measured alone."""
    biases = [
        {"type": "label", "group": {"g": 1}, "false_negative_rate": 0.3,
         "false_positive_rate": 0.1, "populations": ["label"]},
        {"type": "representation", "group": {"g": 1}, "keep": 0.25, "populations": ["keep"]},
        {"type": "representation", "group": {"g": 1}, "keep_positive": 0.2,
         "keep_negative": 0.6, "populations": ["beta"]},
        {"type": "missingness", "feature": "x", "group": {"g": 1}, "rate": 0.2,
         "populations": ["missing"]},
        {"type": "missingness", "feature": "w", "rate": "where(w > 0, 0.5, 0.1)",
         "populations": ["missing"]},
        {"type": "measurement", "feature": "x", "group": {"g": 1}, "offset": 0.5, "noise_sd": 0.3,
         "populations": ["measure"]},
        {"type": "measurement", "feature": "w", "group": {"g": 0}, "scale": 0.6,
         "populations": ["measure"]},
        {"type": "selection", "node": "s", "populations": ["select"]},
        {"type": "proxy_label", "label": "cost_high", "populations": ["proxy"]},
    ]
    pops = ["label", "keep", "beta", "missing", "measure", "select", "proxy"]
    return {
        "name": "biases", "seed": 2024,
        "nodes": {
            "g": {"kind": "bernoulli", "p": 0.4},
            "y": {"kind": "bernoulli", "logit": "-0.5 + g"},
            "x": {"kind": "normal", "mean": "y", "sd": 1},
            "w": {"kind": "normal", "mean": 0, "sd": 2},
            "s": {"kind": "bernoulli", "logit": "-1 + 2*y"},
            "cost": {"kind": "normal", "mean": "10 + 5*y - 3*g", "sd": 4},
            "cost_high": {"kind": "deterministic", "value": "cost > 12"},
        },
        "roles": {"group": "g", "target": "y", "features": ["x", "w"]},
        "biases": biases,
        "populations": {p: {"n": N, "biased": True} for p in pops},
    }


BIASES = simsys.from_dict(_bias_scenario())


@pytest.fixture(scope="module")
def kinds():
    sc = simsys.from_dict(KINDS)
    return sc, simsys.sample(sc, population="all")


@pytest.fixture(scope="module")
def melanoma_train():
    return simsys.sample(MELANOMA, n=N, population="train")


# =====================================================================================================
# the NumPy twin: bit for bit
# =====================================================================================================
def _key(sc, node: str, population: str = "all", seed: int | None = None) -> int:
    return stream_key(sc.spec.seed if seed is None else seed, population, f"node:{node}")


def test_twin_uniform_node_equals_kernel_bit_for_bit(kinds):
    sc, df = kinds
    u = naive.uniform(_key(sc, "unif"), np.arange(N))
    assert np.array_equal(df["unif"].to_numpy(), -1.0 + (3.0 - -1.0) * u)


def test_twin_bernoulli_is_u_below_p(kinds):
    sc, df = kinds
    u = naive.uniform(_key(sc, "b_p"), np.arange(N))
    assert np.array_equal(df["b_p"].to_numpy(), (u < 0.3).astype(np.uint8))


def test_twin_normal_ziggurat_equals_kernel_bit_for_bit(kinds):
    sc, df = kinds
    n = 20_000  # about 1.5% take the slow path (wedges, tail): a Python loop over those
    h = naive.hash64(_key(sc, "nrm"), np.arange(n))
    layer = (h & np.uint64(0xFF)).astype(np.int64)
    rejected = ((h >> np.uint64(9)) & np.uint64(2**52 - 1)).astype(np.int64) >= ZIGGURAT[0][layer]
    assert (rejected & (layer == 0)).sum() > 0 and (rejected & (layer > 0)).sum() > 100  # both paths
    z = naive.standard_normal(_key(sc, "nrm"), np.arange(n, dtype=np.uint64), ZIGGURAT)
    assert np.array_equal(df["nrm"].to_numpy()[:n], 2.0 + 3.0 * z)


def test_twin_poisson_and_categorical_equal_kernel(kinds):
    sc, df = kinds
    n = 5000
    want = naive.poisson_small(_key(sc, "pois3"), np.arange(n), 3.0)
    assert np.array_equal(df["pois3"].to_numpy()[:n], want)
    codes = naive.categorical(_key(sc, "cat_p"), np.arange(N), [1.0, 2.0, 7.0])
    assert np.array_equal(df["cat_p"].cat.codes.to_numpy(), codes)


def test_twin_label_flips_come_from_the_bias_stream():
    df = simsys.sample(BIASES, population="label", n=50_000)
    u = naive.uniform(stream_key(2024, "label", "bias:label_0"), df["patient_id"].to_numpy())
    y, g = df["y"].to_numpy(), df["g"].to_numpy()
    flipped = np.where(y == 1, u >= 0.3, u < 0.1).astype(np.uint8)
    assert np.array_equal(df["y_observed"].to_numpy(), np.where(g == 1, flipped, y))


def test_keys_depend_on_seed_population_and_stream():
    k = stream_key(1, "train", "node:a")
    assert k == stream_key(1, "train", "node:a")
    assert len({k, stream_key(2, "train", "node:a"), stream_key(1, "test", "node:a"),
                stream_key(1, "train", "node:b")}) == 4


# =====================================================================================================
# node kinds
# =====================================================================================================
def test_bernoulli_p_and_logit_rates(kinds):
    _, df = kinds
    assert_rate(df["b_p"], 0.3, "bernoulli p")
    assert_rate(df["b_logit"], logistic(-1.0), "bernoulli logit")
    assert set(np.unique(df["b_p"])) == {0, 1}


def test_categorical_probs_and_logits(kinds):
    _, df = kinds
    assert list(df["cat_p"].cat.categories) == ["a", "b", "c"]
    for cat, p in zip(["a", "b", "c"], [0.1, 0.2, 0.7]):
        assert_rate(df["cat_p"] == cat, p, f"categorical {cat}")
    for b in (0, 1):  # logits depend on a parent: softmax(0, 1, -1 + 2b)
        w = np.exp([0.0, 1.0, -1.0 + 2 * b])
        sub = df.loc[df["b_p"] == b, "cat_l"]
        for cat, p in zip(["lo", "mid", "hi"], w / w.sum()):
            assert_rate(sub == cat, p, f"categorical logits {cat} | b={b}")


def test_normal_mean_sd_and_kolmogorov_smirnov(kinds):
    _, df = kinds
    x = df["nrm"].to_numpy()
    assert_mean(x, 2.0, 3.0, "normal mean")
    assert_sd(x, 3.0, "normal sd")
    assert stats.kstest((x - 2.0) / 3.0, "norm").pvalue > 1e-4
    # the tail beyond the ziggurat's base (|z| > 3.654) has its share of the mass
    tail = np.abs(x - 2.0) / 3.0 > 3.6541528853610088
    assert_rate(tail, 2 * stats.norm.sf(3.6541528853610088), "ziggurat tail")


def test_normal_kolmogorov_smirnov_large_sample():
    x = simsys.sample(simsys.from_dict(KINDS), n=2_000_000, population="all", seed=99)["nrm"].to_numpy()
    assert stats.kstest((x - 2.0) / 3.0, "norm").pvalue > 1e-4
    assert abs(stats.skew(x)) < Z * math.sqrt(6 / len(x))
    assert abs(stats.kurtosis(x)) < Z * math.sqrt(24 / len(x))


def test_lognormal(kinds):
    _, df = kinds
    x = df["lnrm"].to_numpy()
    assert (x > 0).all()
    assert_mean(np.log(x), 0.5, 0.4, "log mean")
    assert_sd(np.log(x), 0.4, "log sd")
    s2 = 0.4**2
    assert_mean(x, math.exp(0.5 + s2 / 2), math.sqrt((math.exp(s2) - 1) * math.exp(1 + s2)), "mean")


@pytest.mark.parametrize("lam", [3, 50])
def test_poisson_mean_and_variance(kinds, lam):
    _, df = kinds
    x = df[f"pois{lam}"].to_numpy()
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    assert_mean(x, lam, math.sqrt(lam), "poisson mean")
    # Var(sample variance) ~ (mu4 - sigma^4) / n, with mu4 = lam (1 + 3 lam) for a Poisson
    se_var = math.sqrt((lam * (1 + 3 * lam) - lam**2) / len(x))
    assert abs(np.var(x, ddof=1) - lam) <= Z * se_var, f"poisson variance {np.var(x, ddof=1)}"
    # and the whole distribution: chi-square over the central counts
    ks = np.arange(max(0, lam - 3 * int(math.sqrt(lam))), lam + 3 * int(math.sqrt(lam)) + 1)
    observed = np.array([(x == k).sum() for k in ks])
    expected = stats.poisson.pmf(ks, lam) * len(x)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, len(ks) - 1) > 1e-4


def test_uniform_bounds_and_mean(kinds):
    _, df = kinds
    x = df["unif"].to_numpy()
    assert x.min() >= -1.0 and x.max() < 3.0
    assert x.min() < -1.0 + 1e-3 and x.max() > 3.0 - 1e-3
    assert_mean(x, 1.0, 4.0 / math.sqrt(12.0), "uniform mean")
    assert stats.kstest((x + 1.0) / 4.0, "uniform").pvalue > 1e-4


def test_deterministic_node_is_its_formula(kinds):
    _, df = kinds
    assert df["det"].dtype == np.uint8
    assert np.array_equal(df["det"].to_numpy(), (df["nrm"].to_numpy() > 2).astype(np.uint8))


def test_linear_gaussian_coefficients_recovered_by_least_squares():
    df = simsys.sample(simsys.from_dict(LINEAR), population="all")
    X = np.column_stack([np.ones(len(df)), df["x1"], df["x2"], df["g"]])
    beta, *_ = np.linalg.lstsq(X, df["y"].to_numpy(), rcond=None)
    se = 0.7 * np.sqrt(np.diag(np.linalg.inv(X.T @ X)))
    truth = np.array([2.0, -1.5, 0.8, 0.3])
    assert np.all(np.abs(beta - truth) <= Z * se), (beta, se)
    X2 = np.column_stack([np.ones(len(df)), df["x1"]])
    b2, *_ = np.linalg.lstsq(X2, df["x2"].to_numpy(), rcond=None)
    se2 = 1.0 * np.sqrt(np.diag(np.linalg.inv(X2.T @ X2)))
    assert np.all(np.abs(b2 - [1.0, 0.5]) <= Z * se2), (b2, se2)


def test_logistic_rates_by_group():
    df = simsys.sample(simsys.from_dict(LINEAR), population="all")
    for g, logit in ((0, -1.0), (1, 0.2)):
        assert_rate(df.loc[df["g"] == g, "d"], logistic(logit), f"P(d | g={g})")


# =====================================================================================================
# bias mechanisms
# =====================================================================================================
def test_label_bias_flip_rates_by_group_and_true_label():
    df = simsys.sample(BIASES, population="label")
    assert len(df) == N  # a label bias drops nobody
    g, y, obs = df["g"], df["y"], df["y_observed"]
    assert_rate(obs[(g == 1) & (y == 1)] == 0, 0.3, "false negative rate")
    assert_rate(obs[(g == 1) & (y == 0)] == 1, 0.1, "false positive rate")
    assert (obs[g == 0] == y[g == 0]).all()  # the other group is untouched


def _clean_and_biased(population: str):
    biased = simsys.sample(BIASES, population=population)
    clean = simsys.sample(BIASES, population=population, biased=False)
    assert len(clean) == N
    kept = clean["patient_id"].isin(biased["patient_id"])
    return clean, biased, kept


def test_representation_keep_probability_by_group():
    clean, biased, kept = _clean_and_biased("keep")
    assert_rate(kept[clean["g"] == 1], 0.25, "keep | g=1")
    assert kept[clean["g"] == 0].all()
    assert_rate(biased["g"], 0.4 * 0.25 / (0.4 * 0.25 + 0.6), "share of g=1 after keeping")


def test_blum_stangl_keep_positive_and_negative():
    clean, _, kept = _clean_and_biased("beta")
    g, y = clean["g"], clean["y"]
    assert_rate(kept[(g == 1) & (y == 1)], 0.2, "keep_positive (beta)")
    assert_rate(kept[(g == 1) & (y == 0)], 0.6, "keep_negative")
    assert kept[g == 0].all()


def test_missingness_rates_by_group_and_not_at_random():
    df = simsys.sample(BIASES, population="missing")
    g, x_obs = df["g"], df["x_observed"]
    assert_rate(x_obs[g == 1].isna(), 0.2, "missing | g=1")
    assert not x_obs[g == 0].isna().any()
    present = x_obs.notna()
    assert (x_obs[present] == df["x"][present]).all()
    w, w_obs = df["w"], df["w_observed"]
    assert_rate(w_obs[w > 0].isna(), 0.5, "missing | w > 0 (MNAR)")
    assert_rate(w_obs[w <= 0].isna(), 0.1, "missing | w <= 0 (MNAR)")


def test_measurement_offset_noise_and_scale():
    df = simsys.sample(BIASES, population="measure")
    g = df["g"].to_numpy()
    diff = (df["x_observed"] - df["x"]).to_numpy()
    assert_mean(diff[g == 1], 0.5, 0.3, "measurement offset")
    assert_sd(diff[g == 1], 0.3, "measurement noise sd")
    assert (diff[g == 0] == 0).all()
    w, w_obs = df["w"].to_numpy(), df["w_observed"].to_numpy()
    assert np.array_equal(w_obs[g == 0], 0.6 * w[g == 0])
    assert np.array_equal(w_obs[g == 1], w[g == 1])


def test_selection_keeps_exactly_the_selected_patients():
    clean, biased, kept = _clean_and_biased("select")
    assert (biased["s"] == 1).all()
    assert np.array_equal(kept.to_numpy(), (clean["s"] == 1).to_numpy())
    py1 = 0.6 * logistic(-0.5) + 0.4 * logistic(0.5)
    p_s = py1 * logistic(1.0) + (1 - py1) * logistic(-1.0)
    assert_rate(kept, p_s, "selected share")


def test_proxy_label_is_the_proxy_node():
    df = simsys.sample(BIASES, population="proxy")
    assert np.array_equal(df["y_observed"].to_numpy(), df["cost_high"].to_numpy())
    assert (df["y_observed"] != df["y"]).any()


def test_unbiased_population_observes_the_truth(melanoma_train):
    test = simsys.sample(MELANOMA, n=50_000, population="test")
    assert len(test) == 50_000
    assert (test["melanoma_observed"] == test["melanoma"]).all()


def test_melanoma_biases_act_by_their_amounts(melanoma_train):
    clean = simsys.sample(MELANOMA, n=N, population="train", biased=False)
    kept = clean["patient_id"].isin(melanoma_train["patient_id"])
    assert_rate(kept[clean["dark_skin"] == 1], 0.1, "keep of dark skin")
    assert kept[clean["dark_skin"] == 0].all()
    # dark-skinned melanomas are rare: count them before the keep step drops 90% of them
    unfiltered = simsys.sample(MELANOMA, n=10 * N, population="train", filter=False)
    dark_pos = unfiltered[(unfiltered["dark_skin"] == 1) & (unfiltered["melanoma"] == 1)]
    assert_rate(dark_pos["melanoma_observed"] == 0, 0.3, "underdiagnosis of dark skin")
    light_pos = unfiltered[(unfiltered["dark_skin"] == 0) & (unfiltered["melanoma"] == 1)]
    assert (light_pos["melanoma_observed"] == 1).all()


# =====================================================================================================
# interventions and counterfactuals
# =====================================================================================================
def test_intervention_changes_only_descendants(melanoma_train):
    do = simsys.sample(MELANOMA, n=N, population="test", do={"uv": 3.0})
    base = simsys.sample(MELANOMA, n=N, population="test")
    below = graph.descendants(MELANOMA.parents, ["uv"])
    assert below == {"melanoma", "contrast"}
    assert (do["uv"] == 3.0).all()
    for col in ("patient_id", "dark_skin", "age"):
        assert np.array_equal(do[col].to_numpy(), base[col].to_numpy()), col
    for col in below:
        assert not np.array_equal(do[col].to_numpy(), base[col].to_numpy()), col
    # and by the intended amount: higher uv raises melanoma's rate
    assert do["melanoma"].mean() > base["melanoma"].mean()


def test_counterfactual_with_factual_group_reproduces_the_cohort(melanoma_train):
    cf = simsys.counterfactual(MELANOMA, melanoma_train,
                               {"dark_skin": melanoma_train["dark_skin"].to_numpy()})
    pd.testing.assert_frame_equal(cf, melanoma_train)


def test_counterfactual_with_other_group_changes_only_descendants(melanoma_train):
    other = 1 - melanoma_train["dark_skin"].to_numpy()
    cf = simsys.counterfactual(MELANOMA, melanoma_train, {"dark_skin": other})
    assert np.array_equal(cf["dark_skin"].to_numpy(), other)
    below = graph.descendants(MELANOMA.parents, ["dark_skin"])
    for col in MELANOMA.spec.nodes:
        same = np.array_equal(cf[col].to_numpy(), melanoma_train[col].to_numpy())
        assert same == (col not in below and col != "dark_skin"), col
    assert np.array_equal(cf["patient_id"].to_numpy(), melanoma_train["patient_id"].to_numpy())
    # uv's noise is shared: uv moves by exactly the coefficient of dark_skin (0.6)
    shift = (cf["uv"] - melanoma_train["uv"]).to_numpy()
    assert np.allclose(shift, 0.6 * (melanoma_train["dark_skin"].to_numpy() * 2.0 - 1.0), atol=1e-12)


# =====================================================================================================
# determinism: chunks, threads, blocks, seeds, common random numbers, clean twin
# =====================================================================================================
def test_chunked_equals_unchunked(melanoma_train):
    chunks = list(simsys.iter_chunks(MELANOMA, N, population="train", chunk_size=7777))
    assert len(chunks) == math.ceil(N / 7777)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), melanoma_train)


def test_threads_and_block_size_do_not_change_the_result():
    plan = build_plan(BIASES, "measure")
    ref = run_plan(plan, N, 5, threads=1, block=2048)
    for threads, block in ((2, 2048), (2, 64), (1, 64), (2, 1000)):
        other = run_plan(plan, N, 5, threads=threads, block=block)
        assert np.array_equal(ref.values_f, other.values_f, equal_nan=True), (threads, block)
        assert np.array_equal(ref.values_u, other.values_u), (threads, block)
    plan = build_plan(BIASES, "beta")  # with filtering
    a = run_plan(plan, N, 5, threads=1).to_frame()
    b = run_plan(plan, N, 5, threads=2, block=64).to_frame()
    pd.testing.assert_frame_equal(a, b)


def test_same_seed_same_cohort_different_seed_different_cohort(melanoma_train):
    again = simsys.sample(MELANOMA, n=N, population="train")
    pd.testing.assert_frame_equal(again, melanoma_train)
    other = simsys.sample(MELANOMA, n=N, population="train", seed=MELANOMA.spec.seed + 1)
    a = melanoma_train.set_index("patient_id")
    b = other.set_index("patient_id")
    common = a.index.intersection(b.index)
    assert (a.loc[common, "age"] != b.loc[common, "age"]).mean() > 0.999
    # and a SeedSequence is accepted and recorded as one integer
    ss = simsys.sample(MELANOMA, n=1000, seed=np.random.SeedSequence(5))
    assert ss.equals(simsys.sample(MELANOMA, n=1000, seed=np.random.SeedSequence(5)))


def test_populations_draw_different_patients():
    a = simsys.sample(MELANOMA, n=10_000, population="test")
    b = simsys.sample(MELANOMA, n=10_000, population="train", biased=False)
    assert (a["age"].to_numpy() != b["age"].to_numpy()).mean() > 0.999


def test_adding_an_unrelated_node_leaves_every_other_value_unchanged(melanoma_train):
    d = copy.deepcopy(MELANOMA.data)
    d["nodes"] = {"weight": {"kind": "normal", "mean": 70, "sd": 12}, **d["nodes"]}
    d["nodes"]["bmi_high"] = {"kind": "bernoulli", "logit": "0.05*(weight - 70)"}
    df = simsys.sample(simsys.from_dict(d), n=N, population="train")
    pd.testing.assert_frame_equal(df[melanoma_train.columns], melanoma_train)


def test_changing_a_param_leaves_nodes_not_using_it_unchanged(melanoma_train):
    changed = MELANOMA.with_values({"params.contrast_gap": 0.1})
    df = simsys.sample(changed, n=N, population="train")
    for col in melanoma_train.columns:
        same = np.array_equal(df[col].to_numpy(), melanoma_train[col].to_numpy())
        assert same == (col != "contrast"), col
    # a bias strength changes only who is observed how, not the draws of kept patients
    weaker = simsys.sample(MELANOMA.with_values({"biases[0].keep": 0.5}), n=N, population="train")
    assert set(melanoma_train["patient_id"]) <= set(weaker["patient_id"])
    j = weaker.set_index("patient_id").loc[melanoma_train["patient_id"]].reset_index()
    pd.testing.assert_frame_equal(j[melanoma_train.columns], melanoma_train, check_like=True)


def test_clean_twin_contains_every_biased_patient_with_the_same_truth(melanoma_train):
    clean = simsys.sample(MELANOMA, n=N, population="train", biased=False)
    assert len(clean) == N and len(melanoma_train) < N
    joined = melanoma_train.merge(clean, on="patient_id", how="left", suffixes=("", "_clean"),
                                  indicator=True)
    assert (joined["_merge"] == "both").all()
    for col in MELANOMA.spec.nodes:
        assert np.array_equal(joined[col].to_numpy(), joined[f"{col}_clean"].to_numpy()), col
    assert (clean["melanoma_observed"] == clean["melanoma"]).all()


# =====================================================================================================
# the API
# =====================================================================================================
def test_sample_returns_true_and_observed_columns(melanoma_train):
    assert list(melanoma_train.columns) == [
        "patient_id", "dark_skin", "age", "uv", "melanoma", "contrast", "melanoma_observed"]
    assert melanoma_train["patient_id"].is_monotonic_increasing
    assert melanoma_train.attrs["seed"] == MELANOMA.spec.seed
    assert melanoma_train.attrs["population"] == "train" and melanoma_train.attrs["biased"]


def test_default_n_is_the_population_size():
    assert len(simsys.sample(MELANOMA, population="test")) == 50_000


def test_categorical_nodes_come_out_as_pandas_categoricals(kinds):
    _, df = kinds
    assert isinstance(df["cat_p"].dtype, pd.CategoricalDtype)
    assert list(df["cat_l"].cat.categories) == ["lo", "mid", "hi"]
    assert df["cat_l"].notna().all()
    assert list(df.columns) == ["patient_id", *KINDS["nodes"], "b_logit_observed"]


def test_categorical_target_and_category_indicator_in_formulas():
    d = {
        "name": "cats", "seed": 3,
        "nodes": {
            "site": {"kind": "categorical", "categories": ["north", "south"], "probs": [0.5, 0.5]},
            "tone": {"kind": "categorical", "categories": ["light", "dark"], "probs": [0.7, 0.3]},
            "x": {"kind": "normal", "mean": "2*tone_dark + 10*site_south", "sd": 0},
        },
        "roles": {"group": "site", "target": "tone", "features": ["x"]},
        "biases": [{"type": "label", "group": {"site": "south"}, "false_positive_rate": 1.0}],
        "populations": {"train": {"n": 4000, "biased": True}},
    }
    df = simsys.sample(simsys.from_dict(d))
    assert isinstance(df["tone_observed"].dtype, pd.CategoricalDtype)
    south = df["site"] == "south"
    assert (df.loc[south, "tone_observed"] == "dark").all()
    assert (df.loc[~south, "tone_observed"] == df.loc[~south, "tone"]).all()
    want = 2.0 * (df["tone"] == "dark") + 10.0 * south
    assert np.array_equal(df["x"].to_numpy(), want.to_numpy())


def test_population_params_and_do_shift_the_distribution():
    d = copy.deepcopy(MELANOMA.data)
    d["populations"]["site_b"] = {"n": N, "params": {"dark_share": 0.6}, "do": {"age": "60"}}
    sc = simsys.from_dict(d)
    df = simsys.sample(sc, population="site_b")
    assert_rate(df["dark_skin"], 0.6, "shifted share")
    assert (df["age"] == 60).all()


def test_bad_api_arguments_raise():
    src = MELANOMA.source
    with pytest.raises(simsys.SimsysError) as info:
        simsys.sample(MELANOMA, n=10, population="nope")
    assert str(info.value) == f"{src}: populations: unknown population 'nope'; defined: train, test"
    with pytest.raises(simsys.SimsysError) as info:
        simsys.sample(MELANOMA, n=10, do={"height": 1.0})
    assert str(info.value) == f"{src}: do.height: unknown node 'height'; nodes: {', '.join(MELANOMA.spec.nodes)}"
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simsys.sample(MELANOMA, n=10, seed=-1)


def test_flagship_melanoma_scenario_samples_with_true_and_observed_columns():
    sc = simsys.load_scenario(ROOT / "scenarios" / "melanoma.yaml")
    df = simsys.sample(sc, n=20_000, population="train", seed=1)
    target = sc.spec.roles.target
    assert list(df.columns[: 1 + len(sc.spec.nodes)]) == ["patient_id", *sc.spec.nodes]
    assert f"{target}_observed" in df.columns
    assert 0 < len(df) <= 20_000
    for node, spec in sc.spec.nodes.items():
        if spec.kind == "categorical":
            assert list(df[node].cat.categories) == spec.categories
    clean = simsys.sample(sc, n=20_000, population="train", seed=1, biased=False)
    assert len(clean) == 20_000
    assert df["patient_id"].isin(clean["patient_id"]).all()
