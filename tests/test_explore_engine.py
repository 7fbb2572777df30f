"""Tests of the explorer's engine (``simsys.explorer.engine``): its numbers equal the runner's for
the same patients, only the moved setting changes anything (common random numbers), the caches
redo only what a change touches, request values are validated with one-line errors, and the
sentences state only what the numbers back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import simsys
from simsys.explorer import engine as E
from simsys.explorer.engine import Engine, SettingError, Snapshot, describe, distinguishable

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"
MELANOMA = ROOT / "scenarios" / "melanoma.yaml"


@pytest.fixture(scope="module")
def tiny():
    return Engine(simsys.load_scenario(TINY))


@pytest.fixture(scope="module")
def melanoma():
    return Engine(simsys.load_scenario(MELANOMA))


# --- numbers -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run():
    """``simsys run`` of the tiny scenario, one replicate: its first model is logistic regression,
    trained with the seed of replicate 0 on the population's 2,000 patients and tested on 3,000,
    with a fixed threshold of 0.5 -- the engine's defaults for this scenario."""
    return simsys.run(TINY, output_dir=None, replicates=1, workers=1)


@pytest.mark.parametrize("training", ["biased", "clean"])
@pytest.mark.parametrize("reference", ["truth", "observed"])
def test_the_engine_numbers_equal_the_runners(tiny, tiny_run, training, reference):
    snap = tiny.compute({})
    assert snap.settings["train_n"] == 2000 and snap.settings["test_n"] == 3000
    res = tiny_run.results
    sel = res[(res["model"] == "logistic_regression") & (res["training"] == training)
              & (res["reference"] == reference) & (res["scope"] == "group")]
    ref = "truth" if reference == "truth" else "recorded"
    for gi, g in enumerate(snap.groups):
        cm = snap.models[training][ref][gi]
        for k in ("fnr", "fpr", "selection_rate"):
            want = float(sel[(sel["group"] == g) & (sel["metric"] == k)]["value"].iloc[0])
            assert E.rate(cm, k).value == pytest.approx(want, abs=1e-12), (g, k)
        want_n = float(sel[(sel["group"] == g) & (sel["metric"] == "n")]["value"].iloc[0])
        assert sum(cm.values()) == want_n
        if reference == "truth":
            want = float(sel[(sel["group"] == g) & (sel["metric"] == "auroc")]["value"].iloc[0])
            assert snap.models[training]["auroc"][gi] == pytest.approx(want, abs=1e-12)


def test_training_counts_equal_a_pandas_twin(tiny):
    snap = tiny.compute({})
    from simsys.runner import replicate_seeds

    seed = replicate_seeds(tiny.scenario.spec.seed, E.REPLICATES)[0]
    biased = simsys.sample(tiny.scenario, 2000, seed=seed)
    clean = simsys.sample(tiny.scenario, 2000, seed=seed, biased=False)
    for gi, t in enumerate(snap.training):
        b, c = biased[biased["group"] == gi], clean[clean["group"] == gi]
        assert (t["drawn"], t["kept"], t["true_cases"], t["recorded_cases"]) == (
            len(c), len(b), int(b["disease"].sum()), int(b["disease_observed"].sum()))


# --- common random numbers and caches --------------------------------------------------------------------
def test_a_bias_strength_moves_only_the_biased_training_data(melanoma):
    a = melanoma.compute({"params.keep_dark": 1.0})
    fits = melanoma._fits.misses
    b = melanoma.compute({"params.keep_dark": 0.1})
    assert melanoma._fits.misses == fits + 1  # the biased model only: the clean twin's is cached
    assert a.models["clean"] == b.models["clean"]
    assert [t["drawn"] for t in a.training] == [t["drawn"] for t in b.training]
    light, medium, dark = range(3)
    for g in (light, medium):  # the same patients kept outside the group the setting acts on
        assert a.training[g] == b.training[g]
    assert b.training[dark]["kept"] < a.training[dark]["kept"]
    assert b.test == a.test


def test_a_threshold_move_refits_and_resamples_nothing(melanoma):
    melanoma.compute({"params.keep_dark": 0.1})
    cohorts, fits = melanoma._cohorts.misses, melanoma._fits.misses
    snap = melanoma.compute({"params.keep_dark": 0.1, "threshold": 0.2})
    assert (melanoma._cohorts.misses, melanoma._fits.misses) == (cohorts, fits)
    assert snap.models["biased"]["threshold"] == 0.2


def test_a_repeated_setting_is_answered_from_the_cache(tiny):
    tiny.compute({"biases[1].false_negative_rate": 0.5})
    again = tiny.compute({"biases[1].false_negative_rate": 0.5})
    assert again.cached


def test_replicates_draw_other_patients(tiny):
    a, b = tiny.compute({"replicate": 0}), tiny.compute({"replicate": 1})
    assert a.training != b.training


# --- validation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, message", [
    ({"params.keep_dark": 1.5}, "settings.params.keep_dark: expected a number in [0.03, 1], got 1.5"),
    ({"params.keep_dark": "0.5"}, 'settings.params.keep_dark: expected a number in [0.03, 1], got "0.5"'),
    ({"params.keep_dark": float("nan")}, "settings.params.keep_dark: expected a number in [0.03, 1], got NaN"),
    ({"model": "sklearn.svm.SVC"}, "settings.model: expected one of logistic_regression, "),
    ({"train_n": 10.5}, "settings.train_n: expected an integer in [500, 200000], got 10.5"),
    ({"threshold": 2}, "settings.threshold: expected a number in [0, 1] or 'policy', got 2"),
    ({"nodes.age.mean": 3}, "settings.nodes.age.mean: unknown setting; allowed: params.keep_dark, "),
])
def test_request_values_are_validated(melanoma, settings, message):
    with pytest.raises(SettingError) as exc:
        melanoma.compute(settings)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_controls_take_their_ranges_from_the_sweep_and_the_validation_bounds(melanoma):
    c = melanoma.by_key
    assert (c["params.keep_dark"].lo, c["params.keep_dark"].hi, c["params.keep_dark"].section) == (0.03, 1.0, "sweep")
    # label_fnr_dark is a whole value of a false-negative rate: a probability
    assert (c["params.label_fnr_dark"].lo, c["params.label_fnr_dark"].hi, c["params.label_fnr_dark"].section) == (0.0, 1.0, "bias")
    assert c["params.age_log_or"].section == "world"
    assert c["model"].choices[0] == "logistic_regression" and "reweighing" in c["model"].choices
    assert c["threshold"].default == "policy"
    egfr = Engine(simsys.load_scenario(ROOT / "scenarios" / "egfr_race.yaml"))
    label = egfr.by_key["biases[0].label"]
    assert (label.kind, label.choices) == ("choice", ("ckd3_2009", "ckd3_2021"))
    tiny = Engine(simsys.load_scenario(TINY))
    keep = tiny.by_key["biases[0].keep"]
    assert (keep.lo, keep.hi, keep.default, keep.section) == (0.0, 1.0, 0.5, "bias")


def test_a_choice_from_the_sweep_changes_the_training_label():
    egfr = Engine(simsys.load_scenario(ROOT / "scenarios" / "egfr_race.yaml"))
    a = egfr.compute({"train_n": 4000, "test_n": 4000})
    b = egfr.compute({"train_n": 4000, "test_n": 4000, "biases[0].label": "ckd3_2021"})
    assert a.models["clean"]["truth"] == b.models["clean"]["truth"]  # the same model, not refitted
    assert a.models["clean"]["recorded"] != b.models["clean"]["recorded"]  # the test's labels follow
    assert a.training != b.training  # the training labels follow the other equation too


# --- words --------------------------------------------------------------------------------------------------
def test_distinguishable_is_the_pooled_two_proportion_test_of_simsys_power():
    from simsys.power import _reject

    rng = np.random.default_rng(5)
    for _ in range(300):
        n1, n2 = rng.integers(1, 400, size=2)
        x1, x2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
        assert distinguishable(int(x1), int(n1), int(x2), int(n2)) == bool(
            _reject(np.array([x1]), np.array([n1]), np.array([x2]), np.array([n2]), 0.05)[0])
    assert distinguishable(15, 26, 30, 250) and not distinguishable(15, 26, 13, 26)


def _snap(truth, recorded=None, clean=None, training=None):
    """A snapshot from confusion matrices (fn, tp) per group; negatives fixed."""
    def cms(pairs):
        return [{"fn": fn, "tp": tp, "fp": 10, "tn": 90} for fn, tp in pairs]

    groups = ["g=0", "g=1"]
    model = {"error": None, "threshold": 0.5, "truth": cms(truth), "recorded": cms(recorded or truth),
             "auroc": [0.8, 0.7], "n_train": 100, "positives": 10}
    clean_m = {**model, "truth": cms(clean or truth), "recorded": cms(clean or truth)}
    return Snapshot(settings={"train_n": 100}, scenario="s", target="y", groups=groups,
                    training=training or [{"group": g, "drawn": 50, "kept": 50, "true_cases": 5,
                                           "recorded_cases": 5, "drawn_cases": 5} for g in groups],
                    test=[], models={"biased": model, "clean": clean_m},
                    recorded_differs=recorded is not None)


def test_too_few_cases_is_said_instead_of_a_rate(tiny):
    text = " ".join(describe(tiny, _snap([(20, 9), (10, 90)])))
    assert "Too few true y cases in the test cohort to state the miss rate with g=0 (29) (at least 30 are needed" in text
    assert "gap" not in text


def test_a_gap_within_noise_is_not_claimed(tiny):
    text = " ".join(describe(tiny, _snap([(16, 24), (14, 26)])))
    assert ("The model trained on these data misses 40.0% of the true y cases with g=0 (16 of 40) and "
            "35.0% (14 of 40) with g=1; the gap (5.0 points) is not distinguishable at this size.") in text


def test_a_clear_gap_and_what_the_biases_caused_are_stated_with_counts(tiny):
    text = " ".join(describe(tiny, _snap([(60, 40), (10, 90)], clean=[(30, 70), (10, 90)])))
    assert ("misses 60.0% of the true y cases with g=0 (60 of 100) and 10.0% (10 of 100) with g=1: "
            "a gap of 50.0 points.") in text
    assert ("Trained on the clean twin (the same patients before any bias), it misses 30.0% (30 of 100) "
            "with g=0 and 10.0% (10 of 100) with g=1: the biases widened this gap by 30.0 points.") in text


def test_what_an_audit_with_recorded_labels_would_see(tiny):
    text = " ".join(describe(tiny, _snap([(60, 40), (10, 90)], recorded=[(20, 40), (10, 90)])))
    assert ("An audit with only the recorded labels would see it miss 33.3% (20 of 60) with g=0, against "
            "60.0% (60 of 100) in truth: the recorded labels hide 26.7 points of it.") in text


def test_a_change_within_noise_is_not_called_a_change(tiny):
    before = _snap([(50, 50), (10, 90)])
    after = _snap([(55, 45), (10, 90)])
    after.settings = {"train_n": 200}
    text = " ".join(describe(tiny, after, before))
    assert text.startswith("Drawing 200 training patients instead of 100.")
    assert "The gap moved from 40.0 points to 45.0 points: not distinguishable at this size." in text
    after2 = _snap([(90, 10), (10, 90)])
    after2.settings = {"train_n": 200}
    assert "This widened the gap from 40.0 points to 80.0 points." in " ".join(describe(tiny, after2, before))


def test_sentences_of_a_real_change_name_the_setting_and_the_bias(melanoma):
    before = melanoma.compute({})
    after = melanoma.compute({"params.keep_dark": 0.03})
    words = describe(melanoma, after, before)
    assert words[0] == "Lowering keep_dark (it sets bias under_representation) from 0.3 to 0.03."
    assert words[1].startswith("Training data: ")
    assert E.highlight(melanoma, ["params.keep_dark"]) == {"bias:0"}
    assert E.highlight(melanoma, ["threshold"]) == set()


def test_snapshot_json_has_rates_with_counts(tiny):
    d = tiny.compute({}).to_dict()
    cm = d["models"]["biased"]["truth"][1]
    r = E.rate(cm, "fnr")
    assert cm["rates"]["fnr"] == f"{100 * r.x / r.n:.1f}%, {r.x} of {r.n}"
    assert math.isclose(d["caused"]["fnr"], d["gaps"]["biased"]["fnr"] - d["gaps"]["clean"]["fnr"])
