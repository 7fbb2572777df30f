"""The melanoma scenario reproduces the published direction of Daneshjou et al. 2022 (DDI).

DDI found melanoma classifiers less accurate on dark skin (AUROC 0.72 on Fitzpatrick I-II vs 0.57
on V-VI for one published model), a gap that closes when training includes diverse skin tones.
The scenario's sampling test checks the calibration inputs (Fitzpatrick17k shares, prevalence by
skin tone). The run test checks that a model trained on the most skewed training set ranks
melanomas worse on dark skin than on light skin, against the truth. It also checks that this gap
is larger there than when training is diverse.

Tolerances come from the sample size (5 standard errors of a proportion) or from the run's own
replicate intervals (Student's t over the replicates, as ``simsys.runner.summarise`` computes
them). There are no hand-picked margins. The scenario's seed is fixed, so the run is repeatable.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import simsys
from simsys.runner import run

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "melanoma.yaml"
TONES = ("light", "medium", "dark")
LIGHT, DARK = "skin_tone=light", "skin_tone=dark"
DIVERSE, SKEWED = 1.0, 0.03  # the ends of the scenario's sweep of params.keep_dark


@pytest.fixture(scope="module")
def scenario():
    return simsys.load_scenario(SCENARIO)


def test_default_sweep_spans_diverse_to_skewed(scenario):
    # The test below runs only the two ends of the sweep; they must be the shipped scenario's ends.
    keeps = scenario.spec.experiment["sweep"]["grid"]["params.keep_dark"]
    assert max(keeps) == DIVERSE and min(keeps) == SKEWED


def test_skin_tone_shares_and_prevalence(scenario):
    n = 40_000
    cohort = simsys.sample(scenario, n, population="train", biased=False)
    params = scenario.spec.params
    weights = np.array([params[f"share_{t}"] for t in TONES])
    expected = weights / weights.sum()  # the categorical node normalises its weights
    counts = cohort["skin_tone"].astype(str).value_counts().reindex(TONES, fill_value=0)
    observed = counts.to_numpy() / n
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) < 5 * se), (observed, expected)

    prev = cohort.groupby(cohort["skin_tone"].astype(str))["melanoma"].agg(["mean", "size"])
    p_light, n_light = prev.loc["light"]
    p_dark, n_dark = prev.loc["dark"]
    se_diff = math.sqrt(p_light * (1 - p_light) / n_light + p_dark * (1 - p_dark) / n_dark)
    # lower on dark skin, by more than 5 standard errors of the difference ...
    assert p_light - p_dark > 5 * se_diff, (p_light, p_dark, se_diff)
    # ... but not zero: more than 5 standard errors of its own above 0
    assert p_dark > 5 * math.sqrt(p_dark * (1 - p_dark) / n_dark), (p_dark, n_dark)


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval over replicates (as in the summary)."""
    r = len(values)
    half = stats.t.ppf(0.975, r - 1) * values.std(ddof=1) / math.sqrt(r)
    return float(values.mean()), float(half)


@pytest.mark.slow
def test_auroc_gap_on_dark_skin_grows_as_it_becomes_rarer_in_training(scenario):
    # Reduced size: a smaller clinic pool and test set and one model (logistic regression, the
    # faster of the two and the more stable across replicates). Only the two ends of the sweep
    # are run, with 3 replicates.
    small = scenario.with_values({
        "populations.train.n": 120_000,
        "experiment.test_n": 30_000,
        "experiment.validation_n": 5_000,
        "experiment.models": [{"name": "logreg", "model": "logistic_regression"}],
        "experiment.sweep.grid": {"params.keep_dark": [DIVERSE, SKEWED]},
    })
    result = run(small, output_dir=None, replicates=3)
    assert result.errors.empty, result.errors

    res = result.results
    auroc = res[(res["scope"] == "group") & (res["metric"] == "auroc")
                & (res["reference"] == "truth") & (res["training"] == "biased")
                & res["group"].isin([LIGHT, DARK])]
    wide = auroc.pivot_table(index=["params.keep_dark", "replicate"], columns="group",
                             values="value")
    gap = (wide[LIGHT] - wide[DARK]).unstack("params.keep_dark")  # a row per replicate
    assert len(gap) == 3

    # 1. trained on the most skewed set, the model is worse on dark skin than on light skin
    mean, half = _t_interval(gap[SKEWED].to_numpy())
    assert mean - half > 0, f"AUROC light - dark at keep_dark={SKEWED}: {mean:+.3f} +- {half:.3f}"

    # 2. the gap is larger there than with diverse training (the same patients in both cells of a
    # replicate: common random numbers, so the difference is compared replicate by replicate)
    growth = (gap[SKEWED] - gap[DIVERSE]).to_numpy()
    mean, half = _t_interval(growth)
    assert mean - half > 0, f"gap growth {DIVERSE} -> {SKEWED}: {mean:+.3f} +- {half:.3f}"

    # 3. the runner's own decomposition agrees: at the skewed end the biases cause a positive part
    # of the max-min AUROC gap (biased training minus the clean twin), its interval above 0
    s = result.summary
    caused = s[(s["scope"] == "amplification") & (s["metric"] == "auroc_difference.caused")
               & (s["params.keep_dark"] == SKEWED)]
    assert len(caused) == 1
    assert float(caused["lo"].iloc[0]) > 0, caused


@pytest.mark.slow
def test_the_default_run_supports_every_claim_of_the_description(scenario):
    """``simsys run scenarios/melanoma.yaml`` as a user runs it: every claim of the scenario's
    description is a finding whose paired 95% interval supports it (simsys.findings)."""
    from simsys.findings import SUPPORTED

    result = run(scenario, output_dir=None, workers=2)
    assert result.errors.empty, result.errors
    f = {x.key: x for x in result.findings}
    P = len(result.view.points)
    for m in ("logreg", "gbm"):
        for p in range(P):
            # AUROC lower on dark than on light skin, at every setting
            gap = f[f"gap/auroc/{p}/{m}/biased"]
            assert gap.verdict == SUPPORTED and gap.quantities["gap"].hi < 0, gap.text
            assert gap.subject["groups"] == (DARK, LIGHT)
            # with an 85% sensitivity target, the FNR on dark skin far above light skin's
            fnr = f[f"gap/fnr/{p}/{m}/biased"]
            assert fnr.verdict == SUPPORTED and fnr.quantities["gap"].lo > 0.2, fnr.text
        # the gap grows as dark skin becomes rarer in training
        trend = f[f"trend/auroc/{m}"]
        assert trend.verdict == SUPPORTED and trend.quantities["change"].hi < 0, trend.text
        # the part caused by the biases is clearly there at the low end (AUROC gap widened)
        caused = f[f"caused/auroc/{P - 1}/{m}"]
        assert caused.verdict == SUPPORTED and caused.quantities["caused"].hi < 0, caused.text
    # logistic regression keeps a larger AUROC gap than gradient boosting at every setting
    cmp_ = f["compare/auroc/logreg/gbm"]
    assert cmp_.verdict == SUPPORTED and cmp_.subject["larger"] == list(range(P)), cmp_.text
