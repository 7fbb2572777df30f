"""How the experiment sees a population, a population's own selection, and representation bias by
the recorded label.

- A population's ``selection`` (names of representation or selection biases) decides who belongs to
  it in every cohort drawn from it; a test population can thus be a biopsied-only, DDI-style set,
  with the truth beside every recorded label.
- The experiment's test and validation cohorts are the population's ``tested`` view: recorded labels
  carry the label biases, features carry measurement biases only if the population is biased, and
  nobody is dropped except by the population's selection. ``simsys sample --population test``
  writes the same cohort the runner tests on, and validation comes from the same view after the
  test rows.
- ``by: observed`` makes a representation bias keep patients by their recorded label, as the label
  biases listed before it left it.

Rates are compared with their known values within 5 standard errors of the sample size.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import simsys
from simsys.cli import main
from simsys.errors import ScenarioError
from simsys.runner import run
from simsys.scenario import from_dict

K = 5  # standard errors

# A checked-only test set: only patients whose `checked` node is 1 enter it (and the training
# data, where the same selection acts as a bias); the training data also lose half of group 1.
BASE = {
    "name": "views",
    "seed": 7,
    "nodes": {
        "g": {"kind": "bernoulli", "p": 0.3},
        "x": {"kind": "normal", "mean": 0.0, "sd": 1.0},
        "y": {"kind": "bernoulli", "logit": "2*x - 1 + g"},
        "checked": {"kind": "bernoulli", "logit": "x"},
    },
    "roles": {"group": "g", "target": "y", "features": ["x"]},
    "biases": [
        {"name": "checked_only", "type": "selection", "node": "checked"},
        {"name": "missed", "type": "label", "group": {"g": 1}, "false_negative_rate": 0.4},
        {"name": "shift", "type": "measurement", "feature": "x", "group": {"g": 1}, "offset": 1.0},
        {"name": "fewer_g", "type": "representation", "group": {"g": 1}, "keep": 0.5},
    ],
    "populations": {
        "train": {"n": 20_000, "biased": True},
        "test": {"n": 20_000, "selection": ["checked_only"]},
    },
    "experiment": {"models": [{"name": "logreg", "model": "logistic_regression"}],
                   "threshold": {"kind": "fixed", "threshold": 0.5}, "replicates": 1,
                   "test_n": 20_000, "validation_n": 4_000},
}


def _scenario(**changes) -> simsys.Scenario:
    d = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = d
        *head, last = path.split(".")
        for key in head:
            node = node[key]
        node[last] = value
    return from_dict(d, source="views.yaml")


def _se(p: float, n: float) -> float:
    return math.sqrt(p * (1 - p) / n)


# --- a population's selection ------------------------------------------------------------------
def test_selected_test_population_keeps_exactly_the_selected_patients_with_their_truth():
    sc = _scenario()
    tested = simsys.sample(sc, population="test", view="experiment", seed=3)
    everyone = simsys.sample(sc, population="test", biased=False, filter=False, seed=3)
    assert len(everyone) == 20_000
    # exactly the checked patients (fewer_g drops nobody here), with the same true values
    want = everyone[everyone["checked"] == 1]
    assert tested["patient_id"].tolist() == want["patient_id"].tolist()
    for col in ("g", "x", "y", "checked"):
        assert np.array_equal(tested[col].to_numpy(), want[col].to_numpy()), col
    # the recorded label beside the truth: only group 1's positives are missed, at rate 0.4
    pos1 = tested[(tested["g"] == 1) & (tested["y"] == 1)]
    missed = (pos1["y_observed"] == 0).mean()
    assert abs(missed - 0.4) < K * _se(0.4, len(pos1)), missed
    others = tested[(tested["g"] == 0) | (tested["y"] == 0)]
    assert (others["y_observed"] == others["y"]).all()
    # an unbiased test population is measured without the measurement bias
    assert np.array_equal(tested["x_observed"].to_numpy(), tested["x"].to_numpy())


def test_a_biased_test_population_is_measured_with_bias_but_not_thinned():
    sc = _scenario(**{"populations.test.biased": True})
    tested = simsys.sample(sc, population="test", view="experiment", seed=3)
    g1 = tested["g"] == 1
    np.testing.assert_allclose(tested.loc[g1, "x_observed"], tested.loc[g1, "x"] + 1.0)
    assert (tested.loc[~g1, "x_observed"] == tested.loc[~g1, "x"]).all()
    # still only the population's own selection drops patients (not fewer_g)
    everyone = simsys.sample(sc, population="test", biased=False, filter=False, seed=3)
    assert tested["patient_id"].tolist() == everyone.loc[everyone["checked"] == 1, "patient_id"].tolist()


def test_the_clean_twin_keeps_the_population_selection_and_biased_adds_the_biases():
    sc = _scenario()
    clean = simsys.sample(sc, population="test", biased=False, seed=3)
    assert (clean["checked"] == 1).all()
    assert (clean["y_observed"] == clean["y"]).all()
    biased = simsys.sample(sc, population="test", biased=True, seed=3)
    assert set(biased["patient_id"]) <= set(clean["patient_id"])
    assert biased["patient_id"][biased["g"] == 0].tolist() == clean["patient_id"][clean["g"] == 0].tolist()
    n1 = int((clean["g"] == 1).sum())
    rate = (biased["g"] == 1).sum() / n1  # fewer_g keeps half of group 1
    assert abs(rate - 0.5) < K * _se(0.5, n1), rate


def test_selection_may_name_a_representation_bias_and_biases_acting_nowhere():
    # populations: [] keeps the bias out of every biased cohort; the test population names it
    sc = _scenario(**{"biases": [*BASE["biases"][:3],
                                 {"name": "half", "type": "representation", "keep": 0.5,
                                  "populations": []}],
                      "populations.test.selection": ["half"]})
    train = simsys.sample(sc, population="train", seed=4)
    train_clean = simsys.sample(sc, population="train", biased=False, seed=4)
    assert (train["checked"] == 1).all()  # checked_only still acts on the training data
    checked = int((train_clean["checked"] == 1).sum())
    assert len(train) == checked  # ... and "half" does not
    test = simsys.sample(sc, population="test", view="experiment", seed=4)
    assert abs(len(test) / 20_000 - 0.5) < K * _se(0.5, 20_000)


@pytest.mark.parametrize(("selection", "message"), [
    (["nope"], "views.yaml: populations.test.selection[0]: names no representation or selection "
               "bias: 'nope'; allowed: checked_only, fewer_g"),
    (["missed"], "views.yaml: populations.test.selection[0]: names no representation or selection "
                 "bias: 'missed'; allowed: checked_only, fewer_g"),
])
def test_selection_must_name_a_representation_or_selection_bias(selection, message):
    with pytest.raises(ScenarioError) as info:
        _scenario(**{"populations.test.selection": selection})
    assert str(info.value) == message


# --- the experiment's test cohort is the sampled one ---------------------------------------------
def test_sample_command_writes_the_cohort_the_runner_tests_on(tmp_path):
    path = tmp_path / "views.yaml"
    path.write_text(json.dumps(BASE))  # JSON is YAML
    sc = simsys.load_scenario(path)
    result = run(sc, output_dir=tmp_path / "out", workers=1, save_predictions=True)
    assert result.errors.empty, result.errors
    seed = result.manifest["replicate_seeds"][0]
    (pred_file,) = sorted((result.run_dir / "predictions").glob("*.parquet"))
    pred = pd.read_parquet(pred_file)

    out = tmp_path / "test.parquet"
    r = CliRunner().invoke(main, ["sample", str(path), "--population", "test", "-n", "20000",
                                  "--seed", str(seed), "-o", str(out)])
    assert r.exit_code == 0, r.output
    cohort = pd.read_parquet(out)
    assert cohort["patient_id"].tolist() == pred["patient_id"].tolist()
    assert np.array_equal(cohort["y"].to_numpy(), pred["y_true"].to_numpy())
    assert np.array_equal(cohort["y_observed"].to_numpy(), pred["y_observed"].to_numpy())
    assert (cohort["checked"] == 1).all() and (cohort["y"] != cohort["y_observed"]).any()
    # and the Python API's experiment view is the same cohort
    same = simsys.sample(sc, 20_000, population="test", view="experiment", seed=seed)
    assert same["patient_id"].tolist() == cohort["patient_id"].tolist()


def test_validation_is_drawn_through_the_test_population_selection():
    # The test population holds only true positives; so must validation, and a specificity
    # threshold then has no negative to work with: the cell reports exactly that error. Without
    # the selection on validation it would find thousands of negatives and succeed.
    sc = _scenario(**{"biases": [*BASE["biases"],
                                 {"name": "sick_only", "type": "selection", "node": "y",
                                  "populations": []}],
                      "populations.test.selection": ["sick_only"],
                      "experiment.threshold": {"kind": "specificity", "target": 0.9}})
    result = run(sc, output_dir=None, workers=1)
    assert len(result.errors) == 3  # biased, clean, size-matched training
    assert set(result.errors["error"]) == {
        "ModelError: threshold policy 'specificity': validation labels contain no negatives; "
        "the policy needs at least one"}
    ok = run(_scenario(**{"experiment.threshold": {"kind": "specificity", "target": 0.9}}),
             output_dir=None, workers=1)
    assert ok.errors.empty


def test_experiment_view_of_each_population():
    from simsys.simulate import experiment_view

    d = copy.deepcopy(BASE)
    d["populations"]["audit"] = {"n": 100}
    d["populations"]["site_b"] = {"n": 100, "biased": True}
    d["experiment"]["test"] = "audit"
    sc = from_dict(d)
    assert [experiment_view(sc, p) for p in ("train", "test", "audit", "site_b")] == [
        "biased", "clean", "tested", "biased"]


# --- representation bias by the recorded label ----------------------------------------------------
BY_OBSERVED = {
    "name": "by_observed",
    "seed": 11,
    "nodes": {
        "g": {"kind": "bernoulli", "p": 0.5},
        "y": {"kind": "bernoulli", "p": 0.4},
        "x": {"kind": "normal", "mean": "y", "sd": 1.0},
    },
    "roles": {"group": "g", "target": "y", "features": ["x"]},
    "biases": [
        {"name": "labels", "type": "label", "group": {"g": 1}, "false_negative_rate": 0.3,
         "false_positive_rate": 0.1},
        {"name": "no_recorded_positives", "type": "representation", "group": {"g": 1},
         "keep_positive": 0.0, "by": "observed"},
    ],
    "populations": {"train": {"n": 200_000, "biased": True}},
}


def test_representation_by_observed_keeps_by_the_recorded_label():
    sc = from_dict(BY_OBSERVED)
    assert sc.warnings == ()
    biased = simsys.sample(sc, seed=2)
    clean = simsys.sample(sc, seed=2, biased=False)
    kept = clean["patient_id"].isin(biased["patient_id"]).to_numpy()
    g1 = clean["g"].to_numpy() == 1
    y = clean["y"].to_numpy() == 1
    assert (biased.loc[biased["g"] == 1, "y_observed"] == 0).all()  # no recorded positive of g = 1
    assert kept[~g1].all()
    # a true positive of g = 1 stays when its label was missed (0.3); a true negative unless it
    # was recorded positive (1 - 0.1)
    for sel, want in ((g1 & y, 0.3), (g1 & ~y, 0.9)):
        rate = kept[sel].mean()
        assert abs(rate - want) < K * _se(want, sel.sum()), (rate, want)


def test_representation_by_truth_or_before_the_label_bias_reads_the_truth():
    truth = copy.deepcopy(BY_OBSERVED)
    del truth["biases"][1]["by"]
    before = copy.deepcopy(BY_OBSERVED)
    before["biases"].reverse()  # reads the label before any bias recorded one: a warning
    sc_before = from_dict(before, source="b.yaml")
    assert sc_before.warnings == (
        "b.yaml: biases[0]: by: observed, but no label or proxy_label bias on 'y' comes before it: "
        "it reads the true label",)
    for d in (truth, before):
        sc = from_dict(d)
        biased = simsys.sample(sc, seed=2)
        g1 = biased["g"] == 1
        assert (biased.loc[g1, "y"] == 0).all()  # every true positive of g = 1 dropped
        assert (biased.loc[g1, "y_observed"] == 1).any()  # recorded positives (false ones) stay


def test_by_is_for_keep_positive_and_keep_negative_only():
    d = copy.deepcopy(BY_OBSERVED)
    d["biases"][1] = {"type": "representation", "keep": 0.5, "by": "observed"}
    with pytest.raises(ScenarioError) as info:
        from_dict(d, source="b.yaml")
    assert str(info.value) == ("b.yaml: biases[1]: 'by' applies to keep_positive/keep_negative only; "
                               "with 'keep' leave it out, got dict")


def test_tested_view_is_the_same_patients_as_the_clean_view():
    sc = _scenario()
    a = simsys.sample(sc, population="test", view="tested", seed=5)
    b = simsys.sample(sc, population="test", biased=False, seed=5)
    assert a["patient_id"].tolist() == b["patient_id"].tolist()
    assert a.attrs["view"] == "tested" and b.attrs["view"] == "clean"
    twin = simsys.counterfactual(sc, a, {"g": a["g"]})  # do(g = its value): the same cohort
    pd.testing.assert_frame_equal(twin.reset_index(drop=True), a.reset_index(drop=True),
                                  check_like=False)

