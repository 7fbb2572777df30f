"""Tests of simsys.runner: known answers, determinism, faults and the results table.

The statistical tests use fixed seeds (the scenarios' own) and tolerances derived from the sample
sizes (5 standard errors) or from the run's own replicate intervals. Scenarios live in
``tests/data/runner_*.yaml``; every run writes into pytest's ``tmp_path``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from simsys import runner
from simsys.errors import RunError, ScenarioError
from simsys.metrics import binary_metrics
from simsys.runner import AMPLIFIED, RESULT_COLUMNS, replicate_seeds, run
from simsys.scenario import from_dict, load_scenario

DATA = Path(__file__).parent / "data"
KEYS = ["point", "replicate", "model", "training", "reference", "scope", "group", "metric"]

# fairlearn 0.15 enlarges Series with ``.at``, which pandas 3 deprecates; not ours to fix.
quiet_fairlearn = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def _scenario(name: str, **experiment):
    """A scenario from tests/data, with experiment keys replaced."""
    sc = load_scenario(DATA / f"{name}.yaml")
    if not experiment:
        return sc
    data = copy.deepcopy(sc.data)
    data["experiment"].update(experiment)
    return from_dict(data, source=sc.source)


def _sel(results: pd.DataFrame, **where) -> pd.DataFrame:
    mask = np.ones(len(results), dtype=bool)
    for col, value in where.items():
        mask &= (results[col] == value).to_numpy()
    return results[mask]


def _one(results: pd.DataFrame, **where) -> float:
    rows = _sel(results, **where)
    assert len(rows) == 1, (where, len(rows))
    return float(rows["value"].iloc[0])


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS).reset_index(drop=True)


# --- known answers ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["neutral_biases", "no_biases"])
def test_without_bias_nothing_is_caused_by_the_biases(variant, tmp_path):
    """No bias (an empty list, or every bias at its neutral strength): the biased training set is
    its clean twin, patient for patient, so for deterministic fits (logistic regression; gradient
    boosting with a fixed random_state) D_model(biased) - D_model(clean) is exactly 0."""
    sc = _scenario("runner_no_bias")
    if variant == "no_biases":
        data = copy.deepcopy(sc.data)
        data["biases"] = []
        sc = from_dict(data, source=sc.source)
    res = run(sc, output_dir=tmp_path, workers=1)
    d = res.results
    assert res.errors.empty
    exp = sc.data["experiment"]
    n_cells = len(exp["sweep"]["grid"]["params.b_share"]) * exp["replicates"]
    sizes = res.manifest["train_sizes"]
    assert len(sizes) == n_cells
    assert all(biased == clean == 4000 for biased, clean in sizes.values())

    amp = _sel(d, scope="amplification")
    caused = amp[amp["metric"].str.endswith((".caused", ".caused_size_matched"))]
    assert len(caused) == n_cells * len(exp["models"]) * len(AMPLIFIED) * 2
    assert (caused["value"] == 0.0).all()
    # ... and its interval across replicates is the single point 0
    s = res.summary
    cs = s[(s["scope"] == "amplification") & s["metric"].str.endswith(".caused")]
    assert len(cs) and (cs["mean"] == 0.0).all() and (cs["lo"] == 0.0).all() and (cs["hi"] == 0.0).all()

    # the labels are the truth: the label-borne error-rate gaps are 0, so the model's addition is
    # its own whole gap (a model may well have a gap without any bias: SimBA, Stanley et al. 2023)
    for k in ("fnr", "tpr", "fpr", "accuracy"):
        assert (_sel(amp, metric=f"{k}_difference.d_data")["value"] == 0.0).all()
        dm = _sel(amp, metric=f"{k}_difference.d_model").set_index(["point", "replicate", "model"])["value"]
        add = _sel(amp, metric=f"{k}_difference.addition").set_index(["point", "replicate", "model"])["value"]
        pd.testing.assert_series_equal(dm, add, check_names=False)
    assert (_sel(d, model="data", metric="label_fnr")["value"].fillna(0.0) == 0.0).all()

    # every metric of the model trained on biased data equals the clean-trained one, exactly
    models = d[(d["model"] != "data") & (d["scope"] != "amplification")]  # (amplification: biased only)
    key = [c for c in KEYS if c != "training"]
    biased = _sel(models, training="biased").set_index(key)["value"].sort_index()
    clean = _sel(models, training="clean").set_index(key)["value"].sort_index()
    matched = _sel(models, training="size_matched").set_index(key)["value"].sort_index()
    pd.testing.assert_series_equal(biased, clean)
    pd.testing.assert_series_equal(biased, matched)
    # and auditing on the observed labels concludes what the truth says
    key = [c for c in KEYS if c != "reference"]
    truth = _sel(models, reference="truth").set_index(key)["value"].sort_index()
    observed = _sel(models, reference="observed").set_index(key)["value"].sort_index()
    truth = truth[truth.index.get_level_values("scope") != "threshold"]
    pd.testing.assert_series_equal(truth, observed)


@pytest.fixture(scope="module")
def label_bias_run(tmp_path_factory):
    return run(DATA / "runner_label_bias.yaml", output_dir=tmp_path_factory.mktemp("label"), workers=1)


def _fn_points(res):
    """(point, nu) of the sweep points that flip positives only."""
    d = res.results
    pts = d[["point", "biases[0].false_negative_rate", "biases[0].false_positive_rate"]].drop_duplicates()
    return [(int(p), float(nu)) for p, nu, fpr in pts.itertuples(index=False) if fpr == 0.0 and nu > 0]


def test_label_bias_shows_as_an_observed_label_fnr_gap_of_nu(label_bias_run):
    """Label bias on group 1 at rate nu: the training labels' realised FNR is nu for group 1
    (within 5 binomial standard errors of its positives) and exactly 0 for group 0."""
    d = label_bias_run.results
    points = _fn_points(label_bias_run)
    assert [nu for _, nu in points] == [0.1, 0.3, 0.5]
    for p, nu in points:
        for rep in range(2):
            where = dict(point=p, replicate=rep, model="data", scope="group")
            f1 = _one(d, **where, group="g=1", metric="label_fnr")
            f0 = _one(d, **where, group="g=0", metric="label_fnr")
            n_pos = _one(d, **where, group="g=1", metric="label_n") * _one(
                d, **where, group="g=1", metric="label_prevalence")
            se = math.sqrt(nu * (1 - nu) / n_pos)
            assert f0 == 0.0
            assert abs(f1 - nu) <= 5 * se, (nu, f1, se)
            # the data part of the amplification is this gap
            assert _one(d, point=p, replicate=rep, model="logreg", scope="amplification",
                        metric="fnr_difference.d_data") == pytest.approx(f1 - f0, abs=1e-12)


def _rates(d, reference, group, **where):
    return {k: _one(d, **where, reference=reference, scope="group", group=group, metric=k)
            for k in ("n", "prevalence", "tpr", "fnr", "fpr", "tnr", "ppv")}


def test_label_bias_misleads_an_audit_on_observed_labels(label_bias_run):
    """In the test cohort the same label bias acts on the observed labels. Flipping positives of
    group 1 to 0 at rate nu (independently of the features) keeps a random (1 - nu) share of its
    positives, so the model's FNR against the observed labels equals the true FNR (within 5 SE of
    the subsample), while the flipped positives, mostly predicted positive, inflate the FPR to
    E[FPR_obs] = (FP + nu TP) / (N + nu P). Flipping negatives to 1 at rate phi instead inflates
    the FNR to (FN + phi TN) / (P + phi N). Group 0 is audited correctly."""
    d = label_bias_run.results
    base = dict(model="logreg", training="biased")
    for p, nu in _fn_points(label_bias_run):
        for rep in range(2):
            t = _rates(d, "truth", "g=1", point=p, replicate=rep, **base)
            o = _rates(d, "observed", "g=1", point=p, replicate=rep, **base)
            P = t["n"] * t["prevalence"]
            N = t["n"] - P
            k = o["n"] * o["prevalence"]  # observed positives
            assert abs(k / P - (1 - nu)) <= 5 * math.sqrt(nu * (1 - nu) / P)
            f = t["fnr"]
            assert abs(o["fnr"] - f) <= 5 * math.sqrt(f * (1 - f) * nu / k), (nu, o["fnr"], f)
            expected_fpr = (t["fpr"] * N + nu * t["tpr"] * P) / (N + nu * P)
            n_obs_neg = o["n"] - k
            assert o["fpr"] > t["fpr"]
            assert abs(o["fpr"] - expected_fpr) <= 5 * math.sqrt(expected_fpr * (1 - expected_fpr) / n_obs_neg)
            assert o["ppv"] < t["ppv"]
            assert _rates(d, "truth", "g=0", point=p, replicate=rep, **base) == _rates(
                d, "observed", "g=0", point=p, replicate=rep, **base)
    # the point that flips negatives (false_positive_rate 0.3) instead
    (fp_point,) = d.loc[d["biases[0].false_positive_rate"] == 0.3, "point"].unique()
    phi = 0.3
    for rep in range(2):
        t = _rates(d, "truth", "g=1", point=fp_point, replicate=rep, **base)
        o = _rates(d, "observed", "g=1", point=fp_point, replicate=rep, **base)
        P = t["n"] * t["prevalence"]
        N = t["n"] - P
        expected_fnr = (t["fnr"] * P + phi * t["tnr"] * N) / (P + phi * N)
        k = o["n"] * o["prevalence"]
        assert o["fnr"] > t["fnr"]
        assert abs(o["fnr"] - expected_fnr) <= 5 * math.sqrt(expected_fnr * (1 - expected_fnr) / k)


def test_keep_positive_lowers_minority_agreement_with_bayes_labels_monotonically(tmp_path):
    """Blum & Stangl (2020): keeping each positive of group B with probability beta lowers B's
    agreement with its Bayes-optimal labels, monotonically in beta; the majority is untouched.

    Known answer: keeping positives with probability beta multiplies B's odds by beta, so with
    unlimited data the fitted logit of B is its true logit L + log(beta), L ~ N(0, s^2) with
    s^2 = 0.5^2 + 0.2^2 + 0.1^2, and the agreement with 1[L > 0] is
    A(beta) = 1 - P(0 < L < -log beta) = 1.5 - Phi(-log(beta) / s). A finite training set loses
    at most what it loses at beta = 1 (where the most patients sit at the threshold), so A(beta)
    minus that loss, and A(beta) itself, must be reachable by the replicate interval."""
    res = run(DATA / "runner_blum_stangl.yaml", output_dir=tmp_path, workers=1)
    assert res.errors.empty
    d = _sel(res.results, model="logreg", training="biased", reference="bayes", scope="group",
             metric="accuracy")
    betas = [1.0, 0.8, 0.6, 0.4]
    agree = d.pivot_table(index="biases[0].keep_positive", columns=["group", "replicate"],
                          values="value").loc[betas]
    minority, majority = agree["B=1"], agree["B=0"]
    # strictly decreasing in every replicate (common random numbers: same patients at every beta)
    assert (minority.diff().iloc[1:] < 0).all().all(), minority
    # the majority's classifier does not depend on B's data
    assert (majority > 0.95).all().all()
    assert (majority.max() - majority.min() < 0.01).all()

    s = np.sqrt(0.5**2 + 0.2**2 + 0.1**2)
    summ = _sel(res.summary, model="logreg", training="biased", reference="bayes", scope="group",
                metric="accuracy", group="B=1").set_index("biases[0].keep_positive")
    loss_at_1 = 1.0 - summ.loc[1.0, "mean"]
    assert 0 < loss_at_1 < 0.05
    for beta in betas[1:]:
        theory = 1.5 - norm.cdf(-np.log(beta) / s)
        lo, hi = summ.loc[beta, "lo"], summ.loc[beta, "hi"]
        assert hi >= theory - loss_at_1 and lo <= theory, (beta, theory, lo, hi)


@quiet_fairlearn
def test_equal_opportunity_recovers_accuracy_under_label_bias(tmp_path):
    """Blum & Stangl (2020): with labeling bias only (B's positives flipped to 0 at rate nu),
    the Bayes-optimal classifier still satisfies Equal Opportunity on the biased data, so
    EO-constrained ERM recovers it: its accuracy for B against the truth is that of plain ERM
    trained on clean labels, while plain ERM trained on the biased labels loses it. Tolerance:
    5 standard errors of a difference of two accuracies over B's test patients."""
    res = run(DATA / "runner_blum_stangl_eo.yaml", output_dir=tmp_path, workers=1)
    assert res.errors.empty
    d = _sel(res.results, scope="group", group="B=1", metric="accuracy")
    for rep in range(2):
        n_b = _one(res.results, replicate=rep, model="erm", training="biased", reference="truth",
                   scope="group", group="B=1", metric="n")
        se = math.sqrt(2 * 0.25 / n_b)
        acc = {(m, t, r): _one(d, replicate=rep, model=m, training=t, reference=r)
               for m in ("erm", "eo") for t in ("biased", "clean") for r in ("truth", "bayes")}
        # plain ERM loses accuracy against the truth under label bias ...
        assert acc["erm", "clean", "truth"] - acc["erm", "biased", "truth"] > 5 * se
        # ... the EO-constrained model does not: it beats ERM and matches ERM on clean labels
        assert acc["eo", "biased", "truth"] - acc["erm", "biased", "truth"] > 5 * se
        assert abs(acc["eo", "biased", "truth"] - acc["erm", "clean", "truth"]) < 5 * se
        # the same seen against the Bayes-optimal labels
        assert acc["eo", "biased", "bayes"] - acc["erm", "biased", "bayes"] > 5 * se


# --- determinism ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_one_worker(tmp_path_factory):
    return run(DATA / "runner_small.yaml", output_dir=tmp_path_factory.mktemp("w1"), workers=1)


def test_same_results_with_one_or_two_worker_processes(small_one_worker, tmp_path):
    two = run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=2)
    pd.testing.assert_frame_equal(_sorted(small_one_worker.results), _sorted(two.results))
    pd.testing.assert_frame_equal(small_one_worker.summary, two.summary)
    assert small_one_worker.manifest["cells"] == two.manifest["cells"]


def test_same_results_with_dask(small_one_worker, tmp_path):
    pytest.importorskip("dask.distributed")
    on_dask = run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=2, executor="dask")
    pd.testing.assert_frame_equal(_sorted(small_one_worker.results), _sorted(on_dask.results))


def test_results_are_in_task_order_and_seeded_from_the_root_seed(small_one_worker, tmp_path):
    d = small_one_worker.results
    m = small_one_worker.manifest
    assert m["seed"] == 7  # the scenario's
    assert m["replicate_seeds"] == replicate_seeds(7, 2)
    assert [(c["point"], c["replicate"], c["seed"]) for c in m["cells"]] == [
        (p, r, m["replicate_seeds"][r]) for r in range(2) for p in range(3)]
    order = d[["replicate", "point"]].drop_duplicates().to_numpy().tolist()
    assert order == [[r, p] for r in range(2) for p in range(3)]
    other = run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=1, seed=8)
    assert other.manifest["replicate_seeds"] != m["replicate_seeds"]
    assert not np.array_equal(other.results["value"].to_numpy(), d["value"].to_numpy())


# --- faults -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faults_run(tmp_path_factory):
    return run(DATA / "runner_faults.yaml", output_dir=tmp_path_factory.mktemp("faults"), workers=1)


def test_a_one_class_training_set_is_recorded_and_the_run_goes_on(faults_run):
    """At the second point every positive label is hidden: both fits on the biased data fail with
    their message; the clean fits of that point and the whole first point have results."""
    errors = faults_run.errors
    assert errors[["point", "replicate", "model", "training"]].to_numpy().tolist() == [
        [1, 0, "logreg", "biased"], [1, 0, "gbm", "biased"]]
    assert errors["error"].tolist() == [
        f"ModelError: model '{m}': training labels contain a single class (all 3000 labels are 0); "
        "fitting needs both 0 and 1" for m in ("logreg", "gbm")]
    d = faults_run.results
    for model in ("logreg", "gbm"):
        assert _sel(d, point=0, model=model, training="biased").shape[0] > 0
        assert _sel(d, point=0, model=model, scope="amplification").shape[0] > 0
        assert _sel(d, point=1, model=model, training="clean").shape[0] > 0
        assert _sel(d, point=1, model=model, training="biased").empty
        assert _sel(d, point=1, model=model, scope="amplification").empty
    run_dir = faults_run.run_dir
    on_disk = pd.read_csv(run_dir / "errors.csv")
    assert on_disk["error"].tolist() == errors["error"].tolist()
    log = (run_dir / "run.log").read_text()
    assert "cell point=1 replicate=0 model=logreg training=biased failed: ModelError: model 'logreg'" in log
    assert faults_run.manifest["errors"] == 2


def test_an_undefined_metric_is_nan_with_its_reason(faults_run):
    """Group 1 has no positives: its TPR, FNR (model and training labels) and AUROC are NaN, each
    with the reason; every NaN in the table has a reason and no defined value has one."""
    d = faults_run.results
    where = dict(point=0, replicate=0, model="logreg", training="biased", reference="truth",
                 scope="group", group="g=1")
    for metric, reason in (("tpr", "no positives in group"), ("fnr", "no positives in group"),
                           ("auroc", "only one class")):
        row = _sel(d, **where, metric=metric)
        assert np.isnan(row["value"].iloc[0]) and row["reason"].iloc[0] == reason
    label = _sel(d, point=0, model="data", group="g=1", metric="label_fnr")
    assert np.isnan(label["value"].iloc[0]) and label["reason"].iloc[0] == "no positives in group"
    assert _one(d, **{**where, "group": "g=0"}, metric="tpr") > 0
    assert d.loc[d["value"].isna(), "reason"].notna().all()
    assert d.loc[d["value"].notna(), "reason"].isna().all()


# --- the results table ------------------------------------------------------------------------
def test_results_table_has_the_documented_columns(small_one_worker):
    d = small_one_worker.results
    swept = ["biases[0].keep", "biases[1].false_negative_rate"]
    assert d.columns.tolist() == RESULT_COLUMNS + swept
    assert RESULT_COLUMNS == ["point", "replicate", "model", "training", "reference", "scope",
                              "group", "metric", "value", "reason"]
    models = d[d["model"] != "data"]
    assert set(models["training"]) == {"biased", "clean", "size_matched"}
    # model "data": the recorded labels of each cohort as a "prediction" of the truth
    assert set(d.loc[d["model"] == "data", "training"]) == {"biased", "clean", "test"}
    assert set(d["reference"]) == {"truth", "observed"}
    assert set(d["scope"]) == {"group", "disparity", "amplification", "threshold", "counts"}
    assert set(_sel(d, scope="group")["group"]) == {"g=0", "g=1", "overall"}
    # a grid point that does not set the second path shows the scenario's own value there
    settings = d[["point", *swept]].drop_duplicates().to_numpy().tolist()
    assert settings == [[0, 1.0, 0.3], [1, 0.5, 0.3], [2, 0.2, 0.6]]
    on_disk = pd.read_parquet(small_one_worker.run_dir / "results.parquet")
    pd.testing.assert_frame_equal(on_disk, d, check_dtype=False)
    assert (small_one_worker.run_dir / "summary.csv").is_file()


def test_truth_metrics_equal_a_recomputation_from_saved_predictions(tmp_path):
    res = run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=1, save_predictions=True)
    pred_dir = res.run_dir / "predictions"
    files = sorted(pred_dir.glob("*.parquet"))
    assert len(files) == 3 * 2 * 2  # points x replicates x models
    preds = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert preds.columns.tolist() == ["point", "replicate", "model", "patient_id", "group",
                                      "y_true", "y_observed", "score", "y_pred"]
    assert len(preds) == 12 * 2000
    d = res.results
    checked = 0
    for (p, rep, model), pr in preds.groupby(["point", "replicate", "model"]):
        thr = _one(d, point=p, replicate=rep, model=model, training="biased", scope="threshold")
        assert ((pr["score"] >= thr).astype(int) == pr["y_pred"]).all()
        for reference, col in (("truth", "y_true"), ("observed", "y_observed")):
            vals = binary_metrics(pr[col].to_numpy(), pr["y_pred"].to_numpy(),
                                  pr["score"].to_numpy(), pr["group"].to_numpy(), 2)
            for metric in ("tpr", "fpr", "ppv", "auroc"):
                for gi, label in enumerate(["g=0", "g=1", "overall"]):
                    got = _one(d, point=p, replicate=rep, model=model, training="biased",
                               reference=reference, scope="group", group=label, metric=metric)
                    assert got == vals[metric][gi]
                    checked += 1
            # TPR by hand, without simsys: predicted positives among the positives
            for gi, label in enumerate(["g=0", "g=1"]):
                pos = pr[(pr["group"] == gi) & (pr[col] == 1)]
                got = _one(d, point=p, replicate=rep, model=model, training="biased",
                           reference=reference, scope="group", group=label, metric="tpr")
                assert got == pytest.approx(pos["y_pred"].mean(), abs=1e-12)
    assert checked == 12 * 2 * 4 * 3


def test_manifest_records_seeds_versions_and_timings(small_one_worker):
    m = json.loads((small_one_worker.run_dir / "manifest.json").read_text())
    assert m["status"] == "finished"
    assert m["seed"] == 7 and len(m["cells"]) == 6 and all("seed" in c for c in m["cells"])
    for pkg in ("python", "platform", "numpy", "pandas", "scikit-learn", "simsys"):
        assert m["versions"][pkg]
    assert set(m["timings"]) == {"sampling", "fitting", "metrics", "wall"}
    assert m["scenario"] == load_scenario(DATA / "runner_small.yaml").data


def test_output_files_get_the_usual_permissions(small_one_worker):
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("results.parquet", "results.csv", "summary.csv", "manifest.json", "errors.csv"):
        mode = (small_one_worker.run_dir / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, name


# --- the references option --------------------------------------------------------------------
@pytest.mark.parametrize(("references", "message"), [
    (["nope"], "experiment.references[0]: expected the name of a node, got 'nope'; nodes: g, x1, x2, y"),
    (["x1"], "experiment.references[0]: node 'x1' is not a 0/1 node other than the target; "
             "allowed: a bernoulli node, a two-category node or a comparison such as 'risk > 0.5'"),
    ("g", "experiment.references: expected a list of 0/1 node names, got 'g'"),
])
def test_references_must_name_zero_one_nodes(references, message, tmp_path):
    with pytest.raises(ScenarioError) as info:
        run(_scenario("runner_small", references=references), output_dir=tmp_path, workers=1)
    assert str(info.value) == f"{DATA / 'runner_small.yaml'}: {message}"
    assert not any(tmp_path.iterdir())  # nothing written before the experiment is valid


# --- run hygiene ------------------------------------------------------------------------------
def test_an_unknown_executor_fails_before_any_folder_is_made(tmp_path):
    with pytest.raises(RunError) as info:
        run(DATA / "runner_small.yaml", output_dir=tmp_path, executor="spark")
    assert str(info.value) == "unknown executor 'spark'; allowed: local, dask"
    assert not any(tmp_path.iterdir())


def test_the_run_log_is_detached_even_after_a_failed_run(tmp_path, monkeypatch):
    """A run that raises cannot detach its log file; the next run must not write into it, and a
    handler the user attached to the ``simsys.run`` logger survives every run."""
    logger = logging.getLogger("simsys.run")
    records: list[str] = []
    mine = logging.Handler()
    mine.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(mine)
    try:
        def broken(payload, **kwargs):
            raise RuntimeError("the executor died")
            yield  # a generator, like the real one

        with monkeypatch.context() as m:
            m.setattr(runner, "_execute", broken)
            with pytest.raises(RuntimeError, match="the executor died"):
                run(DATA / "runner_faults.yaml", output_dir=tmp_path, run_id="broken", workers=1)
        res = run(DATA / "runner_faults.yaml", output_dir=tmp_path, run_id="fine", workers=1)
        broken_log = (tmp_path / "runner_faults" / "broken" / "run.log").read_text()
        assert "finished" not in broken_log and "run fine" not in broken_log
        assert "finished: " in (res.run_dir / "run.log").read_text()
        assert logger.handlers == [mine]
        assert any(r.startswith("finished: ") for r in records)
    finally:
        logger.removeHandler(mine)
