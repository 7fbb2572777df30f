"""The scenario library: every file validates, and each scenario reproduces its source's finding.

One test (or two) per shipped scenario runs it at a reduced size and asserts the published
direction, and the published size where the source gives one (the figures, and which of them
were checked in the primary source, are in ``docs/references.md#scenario-calibration``;
``scenarios/README.md`` lists which test pins which figure):

- ``pulse_oximetry``: SaO2 < 88% among SpO2 92-96% in 11.7% of Black vs 3.6% of White readings
  (Sjoding et al. 2020); a triage rule on SpO2 misses hypoxemia more often in Black patients.
- ``cost_proxy``: Black share of the top 3% of the cost-trained risk scores, 17.7%, and 46.5% after
  the paper's remedy simulation; chronic conditions at the 97th percentile, 4.8 (Black) vs 3.8
  (White); mean chronic conditions 1.20 vs 1.90 (Obermeyer et al. 2019).
- ``blum_stangl``: minority agreement with the Bayes-optimal labels 0.973 -> 0.852 -> 0.796 as
  beta goes 1 -> 0.1 -> 0.05, majority 0.95-0.97 (Akpinar et al. 2022); an equal-opportunity-
  constrained model recovers the minority's Bayes-optimal labels (Blum & Stangl 2020).
- ``chest_xray_underdiagnosis``: the shape of Seyyed-Kalantari et al. 2021's underdiagnosis rates
  and the size of the gaps it reproduces.
- ``egfr_race``: the CKD-EPI formulas against a NumPy twin; who crosses eGFR < 60 under each.
- ``bias_on_demand``: the generator's distribution against a NumPy twin of Baumann et al.'s code,
  at several settings of its parameters; label measurement bias raises the false-negative rate of
  the group it hits.
- ``methods_blum_stangl``: which mitigations recover the Bayes-optimal labels, as the theorems say.

Tolerances are 5 standard errors derived from the reduced sample sizes (of a proportion, or of a
difference of proportions). Where a fitted model's own variability matters as much as the test
sample's, the test says how its standard error is obtained. The runner scores predictions
against the Bayes-optimal labels too (``experiment.references``) and flags a top fraction of the
scores (``top_fraction``); the figures it does not compute (Obermeyer's remedy simulation and
conditions at a percentile, the single-fit comparisons of Blum & Stangl's equal-opportunity
model) come from cohorts sampled and models fitted directly, as the runner would.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simsys
from simsys.models import build_model
from simsys.runner import parse_experiment, run
from simsys.scenario import from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
OURS = ("chest_xray_underdiagnosis", "pulse_oximetry", "cost_proxy", "egfr_race", "blum_stangl",
        "bias_on_demand")
K = 5  # standard errors

# fairlearn 0.15 enlarges Series with ``.at``, which pandas 3 deprecates; not ours to fix.
quiet_fairlearn = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def _load(name: str) -> simsys.Scenario:
    return simsys.load_scenario(SCENARIOS / f"{name}.yaml")


def _se(p: float, n: float) -> float:
    """Standard error of a proportion ``p`` estimated from ``n`` draws."""
    return math.sqrt(p * (1 - p) / n)


def _reduced(name: str, *, train_n: int, test_n: int, validation_n: int, models=None,
             points=None, replicates: int = 1) -> simsys.Scenario:
    """The scenario with a smaller experiment (fewer patients, models, points or replicates)."""
    sc = _load(name)
    data = copy.deepcopy(sc.data)
    data["populations"][data["experiment"].get("train", "train")]["n"] = train_n
    exp = data["experiment"]
    exp.update(test_n=test_n, validation_n=validation_n, replicates=replicates)
    if models is not None:
        exp["models"] = [m for m in exp["models"] if m.get("name", m["model"]) in models]
    if points is not None:
        exp["sweep"] = {"points": points}
    return from_dict(data, source=sc.source)


def _run(sc: simsys.Scenario) -> pd.DataFrame:
    """Run a (reduced) scenario in this process; every cell must succeed."""
    result = run(sc, output_dir=None, workers=1)
    assert result.errors.empty, result.errors.to_dict("records")
    return result.results


def _group_rows(results: pd.DataFrame, metric: str, *, training: str = "biased") -> pd.DataFrame:
    r = results
    return r[(r["training"] == training) & (r["reference"] == "truth") & (r["scope"] == "group")
             & (r["metric"] == metric)]


def _per_group(results: pd.DataFrame, metric: str, point: int = 0, **kw) -> pd.Series:
    rows = _group_rows(results, metric, **kw)
    rows = rows[rows["point"] == point]
    return rows.groupby("group")["value"].mean()


def _fit_predict(spec: dict, train: pd.DataFrame, test: pd.DataFrame, features: list[str],
                 label: str, group: str | None = None, seed: int = 0) -> np.ndarray:
    """Fit a model of a scenario's experiment as the runner does; return its test scores."""
    model = build_model(spec, random_state=seed)
    g_train = train[group].to_numpy(np.int64) if model.receives_group else None
    g_test = test[group].to_numpy(np.int64) if model.receives_group else None
    fitted = model.fit(train[features].to_numpy(np.float64), train[label].to_numpy(np.int64),
                       group=g_train)
    return fitted.predict_score(test[features].to_numpy(np.float64), group=g_test)


# --- the library as a whole ---------------------------------------------------------------------
ALL_FILES = sorted(SCENARIOS.glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.stem for p in ALL_FILES])
def test_every_scenario_file_validates_with_its_experiment(path):
    sc = simsys.load_scenario(path)
    assert sc.name == path.stem
    assert sc.spec.description.strip(), "every scenario says what it models"
    exp = parse_experiment(sc)
    assert exp.points and exp.models


def test_our_scenarios_are_all_here_and_in_the_readme():
    present = {p.stem for p in ALL_FILES}
    assert set(OURS) <= present
    readme = (SCENARIOS / "README.md").read_text(encoding="utf-8")
    for name in present:
        assert f"{name}.yaml" in readme, f"scenarios/README.md does not list {name}.yaml"


# --- pulse oximetry (Sjoding et al. 2020) --------------------------------------------------------
def test_pulse_oximetry_occult_hypoxemia_rates_match_sjoding():
    sc = _load("pulse_oximetry")
    n = 300_000
    cohort = simsys.sample(sc, n, population="test", seed=11)
    # SpO2 is reported in whole percent: readings 92..96 are the continuous values in [91.5, 96.5)
    spo2 = cohort["spo2_observed"]
    band = (spo2 >= 91.5) & (spo2 < 96.5)
    for black, published in ((1, 0.117), (0, 0.036)):
        in_band = band & (cohort["black"] == black)
        rate = cohort.loc[in_band, "hypoxemia"].mean()
        assert abs(rate - published) < K * _se(published, in_band.sum()), (black, rate, published)
    # the clean twin (a race-neutral oximeter) shows no such gap
    clean = simsys.sample(sc, n, population="test", biased=False, seed=11)
    band = (clean["spo2"] >= 91.5) & (clean["spo2"] < 96.5)
    rates = clean[band].groupby("black")["hypoxemia"].agg(["mean", "size"])
    se = math.hypot(_se(rates.loc[0, "mean"], rates.loc[0, "size"]),
                    _se(rates.loc[1, "mean"], rates.loc[1, "size"]))
    assert abs(rates.loc[1, "mean"] - rates.loc[0, "mean"]) < K * se


def test_pulse_oximetry_triage_rule_misses_hypoxemia_in_black_patients():
    # At the calibrated extra over-reading (2.75) the rule misses more of Black patients'
    # hypoxemia; with no extra over-reading (0) it misses as much in both groups.
    sc = _reduced("pulse_oximetry", train_n=10_000, test_n=40_000, validation_n=10_000,
                  points=[{"params.black_extra_offset": 2.75}, {"params.black_extra_offset": 0.0}])
    res = _run(sc)
    white, black = "black=0", "black=1"
    for point in (0, 1):
        fnr = _per_group(res, "fnr", point)
        pos = _per_group(res, "n", point) * _per_group(res, "prevalence", point)
        se = math.hypot(_se(fnr[white], pos[white]), _se(fnr[black], pos[black]))
        if point == 0:
            assert fnr[black] - fnr[white] > K * se, (fnr.to_dict(), se)
        else:
            assert abs(fnr[black] - fnr[white]) < K * se, (fnr.to_dict(), se)


# --- cost as a proxy for need (Obermeyer et al. 2019) ---------------------------------------------
OB_COST_SHARE = 0.177   # Black share of the patients the cost-trained algorithm auto-enrols
OB_REMEDY_SHARE = 0.465  # ... after the paper's remedy simulation (swaps by chronic conditions)
OB_AT_97TH = {"white": 3.8, "black": 4.8}  # chronic conditions at the 97th percentile [secondary]
# The published figures are estimates too: 49,618 patients (6,079 Black, 43,539 White), so 1,489
# at or above the 97th percentile and about 496 in the percentile at it. Comparing our estimate
# with theirs, the standard error is that of the difference of the two estimates.
OB_STUDY_N = 49_618


def _se_vs_published(p: float, n_ours: float, n_study: float) -> float:
    """Standard error of (our proportion - the published one), from both sample sizes."""
    return math.hypot(_se(p, n_ours), _se(p, n_study))


def _remedy_share(flagged: np.ndarray, black: np.ndarray, conditions: np.ndarray) -> float:
    """Obermeyer et al.'s simulation of an unbiased programme: while the healthiest White patient
    at or above the threshold has fewer active chronic conditions than the sickest Black patient
    below it, swap the two; return the Black share of those flagged at the end. Sorting both lists
    gives the same swaps: the k-th swap pairs the k-th healthiest White patient with the k-th
    sickest Black patient, and the condition only gets harder as k grows."""
    white_in = np.sort(conditions[flagged & ~black])
    black_out = np.sort(conditions[~flagged & black])[::-1]
    k = min(white_in.size, black_out.size)
    swaps = int(np.sum(black_out[:k] > white_in[:k]))
    return (int((flagged & black).sum()) + swaps) / int(flagged.sum())


def test_cost_proxy_runner_flags_the_top_3_percent_and_matches_obermeyers_black_share():
    # The scenario's own experiment, run by the runner: the cost-trained model (training "biased")
    # flags exactly 3% of the test cohort; the Black share of those flagged is published as 17.7%.
    sc = _reduced("cost_proxy", train_n=40_000, test_n=40_000, validation_n=1_000, replicates=3)
    res = _run(sc)
    flagged = {}
    for training in ("biased", "clean"):
        n = _group_rows(res, "n", training=training).set_index(["replicate", "group"])["value"]
        rate = _group_rows(res, "selection_rate", training=training).set_index(["replicate", "group"])["value"]
        flagged[training] = (n * rate).round().unstack("group")
    for training, f in flagged.items():
        assert (f["overall"] == 1_200).all(), (training, f["overall"])  # 3% of 40,000, every time
    total = flagged["biased"]["overall"].sum()
    share = flagged["biased"]["black=1"].sum() / total
    se = _se_vs_published(OB_COST_SHARE, total, 0.03 * OB_STUDY_N)
    assert abs(share - OB_COST_SHARE) < K * se, (share, se)
    # trained on the need label instead, the model flags more Black patients
    need = flagged["clean"]["black=1"].sum() / total
    assert need - share > K * math.hypot(_se(share, total), _se(need, total)), (share, need)


def test_cost_proxy_remedy_and_chronic_conditions_match_obermeyer():
    from simsys.models import ThresholdPolicy, choose_threshold

    sc = _load("cost_proxy")
    features = list(sc.spec.roles.features)
    spec = sc.spec.experiment["models"][0]
    n = 200_000
    train = simsys.sample(sc, n // 2, population="train", seed=3)  # no row is dropped here
    test = simsys.sample(sc, n, population="test", view="experiment", seed=4)
    black = test["black"].to_numpy() == 1
    cond = test["chronic_conditions"].to_numpy()

    # whole-sample means of active chronic conditions: 1.20 (White) vs 1.90 (Black)
    for is_black, published in ((False, 1.20), (True, 1.90)):
        c = cond[black == is_black]
        assert abs(c.mean() - published) < K * c.std() / math.sqrt(c.size), (is_black, c.mean())

    score = _fit_predict(spec, train, test, features, "high_need_observed")  # the cost label
    top = score >= choose_threshold(ThresholdPolicy("top_fraction", None, None, 0.03), None, score)
    assert top.sum() == n * 3 // 100
    # the remedy simulation: 17.7% -> 46.5% Black among those flagged
    remedy = _remedy_share(top, black, cond)
    se = _se_vs_published(OB_REMEDY_SHARE, top.sum(), 0.03 * OB_STUDY_N)
    assert abs(remedy - OB_REMEDY_SHARE) < K * se, (remedy, se)
    # at the 97th percentile (the patients ranked 96.5% to 97.5%), Black patients are sicker:
    # 4.8 vs 3.8 active chronic conditions (the study had about 1% of its patients there)
    rank = np.argsort(np.argsort(score)) / n
    band = (rank >= 0.965) & (rank < 0.975)
    for who, sel in (("white", band & ~black), ("black", band & black)):
        c = cond[sel]
        in_study = 0.01 * OB_STUDY_N * sel.sum() / band.sum()
        se = c.std() * math.hypot(1 / math.sqrt(c.size), 1 / math.sqrt(in_study))
        assert abs(c.mean() - OB_AT_97TH[who]) < K * se, (who, c.mean(), se)
    b, w = cond[band & black], cond[band & ~black]
    assert b.mean() - w.mean() > K * math.hypot(b.std() / math.sqrt(b.size), w.std() / math.sqrt(w.size))


# --- Blum & Stangl, as replicated by Akpinar et al. -----------------------------------------------
# The agreement of one fitted model varies with its training sample as much as with the test
# sample: over 10 training seeds at n = 30,000 its sd was 0.010 (beta = 0.1, ~500 minority positives
# kept) and 0.017 (beta = 0.05, ~250 kept), i.e. about 0.25 / sqrt(minority positives kept). The
# standard error of a mean over R fits adds that to the test sample's binomial error.
FIT_SD_PER_ROOT_POSITIVE = 0.25
BS_PUBLISHED = {1.0: 0.973, 0.1: 0.852, 0.05: 0.796}
BS_MAJORITY_LOW = 0.95  # "the majority stayed at 0.95-0.97"


def _bs_agreement(sc, spec, *, beta, nu=0.0, seeds=(1, 2, 3), test=None):
    features = list(sc.spec.roles.features)
    biased = sc.with_values({"biases[0].keep_positive": beta, "biases[1].false_negative_rate": nu})
    out = []
    for seed in seeds:
        train = simsys.sample(biased, population="train", seed=seed)
        kept = int(((train["minority"] == 1) & (train["outcome"] == 1)).sum())
        score = _fit_predict(spec, train, test, features, "outcome_observed", group="minority",
                             seed=seed)
        agree = (score >= 0.5) == (test["bayes"].to_numpy() == 1)
        minority = test["minority"].to_numpy() == 1
        out.append((agree[minority].mean(), agree[~minority].mean(), kept))
    return np.array(out)


def test_blum_stangl_minority_agreement_falls_as_beta_falls():
    # The runner scores predictions against the Bayes-optimal labels (experiment.references).
    points = [{"biases[0].keep_positive": b, "biases[1].false_negative_rate": 0.0}
              for b in BS_PUBLISHED]
    sc = _reduced("blum_stangl", train_n=30_000, test_n=60_000, validation_n=1_000,
                  models=["logreg"], points=points, replicates=3)
    res = _run(sc)
    acc = res[(res["training"] == "biased") & (res["reference"] == "bayes")
              & (res["scope"] == "group") & (res["metric"] == "accuracy")]
    n_test = _per_group(res, "n")
    labels = res[(res["model"] == "data") & (res["group"] == "minority=1") & (res["scope"] == "group")]
    means = {}
    for point, (beta, published) in enumerate(BS_PUBLISHED.items()):
        here = acc[acc["point"] == point].groupby("group")["value"]
        minority, majority = here.mean()["minority=1"], here.mean()["minority=0"]
        reps = here.count()["minority=1"]
        lab = labels[labels["point"] == point].pivot(index="replicate", columns="metric", values="value")
        kept = (lab["label_n"] * lab["label_prevalence"]).mean()  # minority positives kept
        se = math.sqrt(_se(published, n_test["minority=1"]) ** 2
                       + FIT_SD_PER_ROOT_POSITIVE ** 2 / kept) / math.sqrt(reps)
        if beta == 1.0:
            # the model class contains h*, so without bias it agrees at least as well as published
            assert minority > published - K * se, (beta, minority)
        else:
            assert abs(minority - published) < K * se, (beta, minority, published, se)
        assert majority > BS_MAJORITY_LOW, (beta, majority)
        means[beta] = minority
    assert means[1.0] > means[0.1] > means[0.05]


@quiet_fairlearn
def test_blum_stangl_equal_opportunity_recovers_the_bayes_optimal_labels():
    sc = _load("blum_stangl")
    test = simsys.sample(sc, 30_000, population="test", seed=98)
    n_min = int((test["minority"] == 1).sum())
    logreg, eo = sc.spec.experiment["models"][:2]
    for beta, nu in ((0.05, 0.0), (1.0, 0.3)):  # under-representation; labelling bias
        plain = _bs_agreement(sc, logreg, beta=beta, nu=nu, seeds=(1,), test=test)[0]
        fair = _bs_agreement(sc, eo, beta=beta, nu=nu, seeds=(1,), test=test)[0]
        se = math.hypot(_se(plain[0], n_min), _se(fair[0], n_min))
        assert fair[0] - plain[0] > K * se, (beta, nu, plain, fair)
        assert fair[0] > BS_MAJORITY_LOW, (beta, nu, fair)


# --- chest X-ray underdiagnosis (Seyyed-Kalantari et al. 2021) ------------------------------------
SK_PUBLISHED = {
    "race=White": 0.170, "race=Black": 0.276, "race=Hispanic": 0.275, "race=Asian": 0.217,
    "sex=M": 0.219, "sex=F": 0.250, "insurance=Medicare": 0.162, "insurance=Medicaid": 0.274,
    "age_group=age_0_20": 0.486, "age_group=age_20_40": 0.390, "age_group=age_40_60": 0.274,
    "age_group=age_60_80": 0.163, "age_group=age_80_up": 0.114,
    "race_sex=Hispanic_F": 0.356, "race_sex=Hispanic_M": 0.206,
    "race_sex=Black_F": 0.289, "race_sex=Black_M": 0.256,
}


@pytest.fixture(scope="module")
def chest_xray_rates():
    """Underdiagnosis rate and number of sick patients per group, from one reduced run.

    The target is "No Finding" (as in the paper, whose threshold maximises its F1), so the
    underdiagnosis rate P(No Finding predicted | sick) is the runner's false-positive rate.
    """
    sc = _load("chest_xray_underdiagnosis")
    points = sc.spec.experiment["sweep"]["points"]
    sc = _reduced("chest_xray_underdiagnosis", train_n=60_000, test_n=150_000,
                  validation_n=20_000, points=points)
    res = _run(sc)
    rates, sick = {}, {}
    for point in range(len(points)):
        fpr = _per_group(res, "fpr", point)
        n = _per_group(res, "n", point)
        prev = _per_group(res, "prevalence", point)
        for g in fpr.index:
            rates[g] = fpr[g]
            sick[g] = n[g] * (1 - prev[g])
    return rates, sick


def test_chest_xray_underdiagnosis_has_the_published_shape(chest_xray_rates):
    rates, sick = chest_xray_rates

    def gap_exceeds_noise(high, low):
        se = math.hypot(_se(rates[high], sick[high]), _se(rates[low], sick[low]))
        return rates[high] - rates[low] > K * se

    assert gap_exceeds_noise("race=Black", "race=White")
    assert gap_exceeds_noise("race=Hispanic", "race=White")
    assert gap_exceeds_noise("sex=F", "sex=M")
    assert gap_exceeds_noise("insurance=Medicaid", "insurance=Medicare")
    ages = [f"age_group={a}" for a in ("age_0_20", "age_20_40", "age_40_60", "age_60_80", "age_80_up")]
    for younger, older in itertools.pairwise(ages):
        assert gap_exceeds_noise(younger, older), (younger, older)
    intersections = [g for g in rates if g.startswith("race_sex=")]
    assert len(intersections) == 8
    assert max(intersections, key=rates.get) == "race_sex=Hispanic_F", {g: rates[g] for g in intersections}
    assert gap_exceeds_noise("race_sex=Hispanic_F", "race_sex=Hispanic_M")


@pytest.mark.parametrize(("high", "low"), [
    ("race=Black", "race=White"),          # published 0.276 - 0.170 = 0.106
    ("sex=F", "sex=M"),                    # 0.250 - 0.219 = 0.031
    ("race_sex=Hispanic_F", "race_sex=Hispanic_M"),  # 0.356 - 0.206 = 0.150
    ("race_sex=Black_F", "race_sex=Black_M"),        # 0.289 - 0.256 = 0.033
])
def test_chest_xray_underdiagnosis_gaps_have_the_published_size(chest_xray_rates, high, low):
    # The published rates are means over 5 training seeds on MIMIC-CXR; every rate moves with the
    # F1-maximising threshold, the gaps between groups much less. Not pinned, because not
    # reproduced to 5 standard errors (scenarios/README.md): Hispanic - White (0.08-0.09 here,
    # published 0.105), Asian - White (0.08, published 0.047), Medicaid - Medicare and the age
    # gradient (both steeper here).
    rates, sick = chest_xray_rates
    gap = rates[high] - rates[low]
    se = math.hypot(_se(rates[high], sick[high]), _se(rates[low], sick[low]))
    assert abs(gap - (SK_PUBLISHED[high] - SK_PUBLISHED[low])) < K * se, (gap, se)


# --- eGFR race coefficient (CKD-EPI 2009 vs 2021) -------------------------------------------------
def _ckd_epi_2009(scr, age, female, black):
    k = np.where(female, 0.7, 0.9)
    a = np.where(female, -0.329, -0.411)
    return (141 * np.minimum(scr / k, 1) ** a * np.maximum(scr / k, 1) ** -1.209 * 0.993 ** age
            * np.where(female, 1.018, 1) * np.where(black, 1.159, 1))


def _ckd_epi_2021(scr, age, female):
    k = np.where(female, 0.7, 0.9)
    a = np.where(female, -0.241, -0.302)
    return (142 * np.minimum(scr / k, 1) ** a * np.maximum(scr / k, 1) ** -1.200 * 0.9938 ** age
            * np.where(female, 1.012, 1))


@pytest.fixture(scope="module")
def egfr_cohort():
    return simsys.sample(_load("egfr_race"), 200_000, population="test", seed=5)


def test_egfr_nodes_are_the_ckd_epi_equations(egfr_cohort):
    c = egfr_cohort
    scr, age = c["scr"].to_numpy(), c["age"].to_numpy()
    female, black = c["female"].to_numpy() == 1, c["black"].to_numpy() == 1
    np.testing.assert_allclose(c["egfr_2009"], _ckd_epi_2009(scr, age, female, black), rtol=1e-10)
    np.testing.assert_allclose(c["egfr_2021"], _ckd_epi_2021(scr, age, female), rtol=1e-10)
    # creatinine is the 2021 equation solved for it: eGFR_2021 returns the GFR it encodes, except
    # where creatinine sits at its floor of 0.3 mg/dL (all far above eGFR 60)
    floor = c["scr"] <= 0.3
    np.testing.assert_allclose(c.loc[~floor, "egfr_2021"],
                               (c["mgfr"] * np.exp(c["creatinine_noise"]))[~floor], rtol=1e-9)
    assert (c.loc[floor, "egfr_2021"] > 90).all() and floor.mean() < 0.05


def test_egfr_race_coefficient_keeps_black_patients_above_60(egfr_cohort):
    c = egfr_cohort
    for black in (0, 1):
        g = c[c["black"] == black]
        p09, p21 = g["ckd3_2009"].mean(), g["ckd3_2021"].mean()
        # paired difference of two flags on the same patients: its SE comes from the discordant pairs
        d = g["ckd3_2021"].astype(int) - g["ckd3_2009"].astype(int)
        se = d.std() / math.sqrt(len(d))
        if black:
            assert p21 - p09 > K * se, (p09, p21)  # 2009 flags fewer Black patients
            truth = g["ckd3"].mean()
            se_t = (g["ckd3"].astype(int) - g["ckd3_2009"].astype(int)).std() / math.sqrt(len(g))
            assert truth - p09 > K * se_t, (truth, p09)
            crossed_back = (g["egfr_2009"] >= 60) & (g["egfr_2021"] < 60)
            assert crossed_back.mean() > 0.02
        else:
            assert p09 - p21 > K * se, (p09, p21)  # 2021 gives others slightly higher eGFRs


def test_egfr_models_trained_on_2009_labels_miss_ckd_in_black_patients():
    sc = _reduced("egfr_race", train_n=20_000, test_n=40_000, validation_n=2_000,
                  models=["logreg"],
                  points=[{"biases[0].label": "ckd3_2009"}, {"biases[0].label": "ckd3_2021"}])
    res = _run(sc)
    gaps, ses = [], []
    for point in (0, 1):
        fnr = _per_group(res, "fnr", point)
        n = _per_group(res, "n", point) * _per_group(res, "prevalence", point)
        gaps.append(fnr["black=1"] - fnr["black=0"])
        ses.append(math.hypot(_se(fnr["black=1"], n["black=1"]), _se(fnr["black=0"], n["black=0"])))
    assert gaps[0] > K * ses[0], gaps
    assert gaps[0] - gaps[1] > K * math.hypot(*ses), gaps


# --- Bias on Demand (Baumann et al. 2023) ---------------------------------------------------------
def _bias_on_demand_twin(n: int, seed: int, *, l_y=4.0, l_m_y=0.0, l_h_r=1.5, l_h_q=1.0, l_m=1.0,
                         p_u=1.0, l_r=False, l_y_b=0.0, l_q=2.0, sy=5.0, l_r_q=0.0,
                         cut: str = "after") -> pd.DataFrame:
    """BiasOnDemand's ``create_synth`` (generate_dataset.py), line by line in NumPy, without its
    train/test split. ``cut="after"`` binarises at the mean of Y over the rows kept by
    under-sampling, as the generator does; ``cut="before"`` at the mean over all rows (the
    scenario's default reading, with cut_after_undersampling: 0)."""
    rng = np.random.default_rng(seed)
    n1 = rng.gamma(2.0, 3.0, n)
    n_p = rng.normal(0.0, 2.0, n)
    n_y = rng.normal(0.0, sy, n)
    a = rng.binomial(1, 0.5, n)
    r = n1 - l_h_r * a
    q = rng.binomial(3, 1 / (1 + np.exp(l_r_q * r - l_h_q * a)))
    y = r - l_q * q - l_y * a - l_m_y * a + n_y + l_y_b * r * a
    y_real = r - l_q * q - l_y * a + n_y + l_y_b * r * a
    p = r - a * l_m + n_p if l_m != 0 else r
    keep = np.ones(n, dtype=bool)
    ones = np.flatnonzero(a == 1)
    k = int(len(ones) * p_u)
    if k > 0:  # the first k rows of A = 1, or with l_r the k with the lowest R
        order = ones[np.argsort(r[ones], kind="stable")] if l_r else ones
        keep[order[k:]] = False
    thres = y[keep].mean() if cut == "after" else y.mean()
    out = pd.DataFrame({"A": a, "N1": n1, "Q": q, "P": p, "Y": (y > thres).astype(int),
                        "Y_real": (y_real > thres).astype(int)})
    return out[keep]


def _close(a: pd.Series, b: pd.Series) -> bool:
    se = math.hypot(a.std() / math.sqrt(len(a)), b.std() / math.sqrt(len(b)))
    return abs(a.mean() - b.mean()) < K * se


# Settings of the generator's parameters (the scenario's params of the same names), with the cut
# the twin uses: "after" under-sampling as the generator, or "before" (the scenario's default).
BOD_SETTINGS = [
    ({}, "after"),
    ({"l_r_q": 0.3}, "after"),  # issue 11: P(Y=1) 0.491; 0.680 (A=0) vs 0.302 (A=1)
    ({"l_r_q": -0.5, "l_h_q": 2.0, "l_q": 1.0}, "after"),
    ({"l_y_b": 0.5, "l_m_y": 2.0, "sy": 2.0, "l_h_r": 3.0, "l_m": 0.0}, "after"),
    ({"l_r_q": 0.2, "p_u": 0.3, "cut_after_undersampling": 1}, "after"),
    ({"l_r_q": 0.2, "p_u": 0.3}, "before"),
    ({"p_u": 0.4, "l_r": 1, "l_m": 0.0}, "before"),  # the generator's l_r needs l_m = 0
    ({"l_m": 2.0, "l_y": 1.0, "l_h_q": 0.0}, "after"),
]


@pytest.mark.parametrize(("params", "cut"), BOD_SETTINGS,
                         ids=[",".join(f"{k}={v}" for k, v in p.items()) or "defaults"
                              for p, _ in BOD_SETTINGS])
def test_bias_on_demand_matches_the_generator(params, cut):
    # The scenario's training population (under-sampling acts there) against the generator's
    # rows, per group: positive rates of Y and Y_real, the means of Q and of the measured R (P),
    # and the share of A = 1 among the rows kept. The twin draws 2,000,000 rows, so the noise of
    # its own cut (a sample mean: sd about 7 / sqrt(2e6)) moves its rates by about 2e-4, a tenth
    # of a standard error here.
    sc = _load("bias_on_demand").with_values({f"params.{k}": v for k, v in params.items()})
    ours = simsys.sample(sc, 200_000, population="train", seed=7)
    twin_params = {k: v for k, v in params.items() if k != "cut_after_undersampling"}
    twin = _bias_on_demand_twin(2_000_000, seed=8, cut=cut, **twin_params)
    for a in (0, 1):
        o, t = ours[ours["A"] == a], twin[twin["A"] == a]
        for col, tcol in (("Y_real", "Y_real"), ("Y_real_observed", "Y"), ("Q", "Q"), ("R_observed", "P")):
            assert _close(o[col].astype(float), t[tcol].astype(float)), (a, col, o[col].mean(), t[tcol].mean())
    share, n = (ours["A"] == 1).mean(), len(ours)
    assert abs(share - (twin["A"] == 1).mean()) < K * _se(share, n), share


def test_bias_on_demand_gamma_and_mean_of_q_are_exact():
    from scipy import integrate
    from scipy.special import expit

    sc = _load("bias_on_demand")
    n = 200_000
    ours = simsys.sample(sc, n, population="test", seed=7)
    assert abs(ours["N1"].mean() - 6.0) < K * math.sqrt(18.0 / n)  # Gamma(2, 3): mean 6, var 18
    assert abs(ours["N1"].var() - 18.0) < K * math.sqrt(2 * 18.0**2 * 3 / n)
    # E[Q | A] by the scenario's quadrature, against adaptive integration over the Gamma(2, 3) law
    for l_r_q, l_h_q, l_h_r in ((0.0, 1.0, 1.5), (0.3, 1.0, 1.5), (-1.0, 2.0, 0.0), (2.0, 0.5, 3.0)):
        s = sc.with_values({"params.l_r_q": l_r_q, "params.l_h_q": l_h_q, "params.l_h_r": l_h_r})
        row = simsys.sample(s, 1, population="test")
        for a, col in ((0, "mean_Q_A0"), (1, "mean_Q_A1")):
            c = l_h_q * a + l_r_q * l_h_r * a  # Q's logit is c - l_r_q * N1

            def density(x, c=c, k=l_r_q):
                return x * np.exp(-x / 3) / 9 * expit(c - k * x)
            kink = [max(0.0, c / l_r_q)] if l_r_q > 0 else None
            exact = 3 * integrate.quad(density, 0, 400, points=kink, limit=500, epsabs=1e-12)[0]
            assert abs(row[col].iloc[0] - exact) < 1e-4, (l_r_q, a, row[col].iloc[0], exact)


def test_bias_on_demand_label_measurement_bias_raises_misses_in_group_a1():
    sc = _reduced("bias_on_demand", train_n=10_050, test_n=40_000, validation_n=2_000,
                  models=["logreg"], points=[{"params.l_m_y": 0}, {"params.l_m_y": 2}])
    res = _run(sc)
    fnr0, fnr2 = _per_group(res, "fnr", 0)["A=1"], _per_group(res, "fnr", 1)["A=1"]
    pos = (_per_group(res, "n", 0) * _per_group(res, "prevalence", 0))["A=1"]
    assert fnr2 - fnr0 > K * math.hypot(_se(fnr0, pos), _se(fnr2, pos)), (fnr0, fnr2)


# --- methods on Blum & Stangl's model (theorems, not published rates) ------------------------------
@quiet_fairlearn
def test_methods_blum_stangl_recovery_follows_the_theorems():
    # Recovery of the minority's agreement with h* (reference `bayes`): 1 = as good as the plain
    # model trained on the clean twin, 0 = no better than trained on the biased data. Its standard
    # error is that of the difference of two agreement rates on the minority's test patients,
    # divided by the gap it is measured against.
    points = [{"biases[0].keep_negative": 1.0}, {"biases[0].keep_negative": 0.1}]
    sc = _reduced("methods_blum_stangl", train_n=20_000, test_n=20_000, validation_n=1_000,
                  models=["erm", "reweighing", "resampling", "eo_thresholds", "dp_thresholds"],
                  points=points)
    res = _run(sc)
    agree = res[(res["scope"] == "group") & (res["reference"] == "bayes") & (res["metric"] == "accuracy")
                & (res["group"] == "B=1")].set_index(["point", "model", "training"])["value"]
    rec = res[(res["scope"] == "method") & (res["reference"] == "bayes")
              & (res["metric"] == "recovery.accuracy") & (res["group"] == "B=1")
              ].set_index(["point", "model"])["value"]
    n_b = _per_group(res, "n")["B=1"]
    for point in (0, 1):
        biased, clean = agree[(point, "erm", "biased")], agree[(point, "erm", "clean")]
        # (a rate of exactly 1 counts as 1 - 0.5 / n, so that its standard error is not 0)
        se = math.hypot(_se(biased, n_b), _se(min(clean, 1 - 0.5 / n_b), n_b)) / (clean - biased)
        recovered = {m: rec[(point, m)] for m in ("reweighing", "resampling", "eo_thresholds", "dp_thresholds")}
        # equal opportunity recovers h* with or without the under-representation of B's negatives
        assert recovered["eo_thresholds"] > 1 - K * se, (point, recovered, se)
        if point == 0:  # labeling bias only: reweighing and resampling recover h* too
            assert recovered["reweighing"] > 1 - K * se and recovered["resampling"] > 1 - K * se, recovered
        else:  # B's negatives missing as well: they no longer correct anything; DP about half
            assert abs(recovered["reweighing"]) < K * se and abs(recovered["resampling"]) < K * se, recovered
            assert K * se < recovered["dp_thresholds"] < 1 - K * se, (recovered, se)
