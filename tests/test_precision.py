"""``experiment.precision`` / ``--precision``: replicates are added in batches until the headline
intervals are narrow enough; deterministic, resumable, and recorded in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import simsys.runner as runner
from simsys.cli import main
from simsys.errors import ScenarioError
from simsys.findings import RunView, build_findings, precision_reached
from simsys.scenario import from_dict, load_scenario

DATA = Path(__file__).parent / "data"


def test_replicates_grow_in_batches_until_the_headline_intervals_are_narrow(tmp_path):
    res = runner.run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=1, precision=0.03)
    prec = res.manifest["precision"]
    # the batches are the experiment's replicates (2): 2, 4, 6, ... until met
    assert prec["batch"] == 2 and prec["replicates"] % 2 == 0 and prec["met"]
    assert prec["reached"] == pytest.approx(precision_reached(res.findings)[0])
    assert prec["reached"] <= 0.03
    # one batch fewer was not enough (otherwise it would have stopped there)
    fewer = res.results[res.results["replicate"] < prec["replicates"] - 2]
    view = RunView(fewer, from_dict(res.manifest["scenario"], source=res.manifest["source"]),
                   {**res.manifest, "precision": None})
    assert precision_reached(build_findings(view))[0] > 0.03
    assert json.loads((res.run_dir / "manifest.json").read_text())["precision"] == prec


def test_an_interrupted_precise_run_resumes_to_the_same_results(tmp_path, monkeypatch):
    whole = runner.run(DATA / "runner_small.yaml", output_dir=None, workers=1, precision=0.03)
    real = runner._more_replicates
    calls = []

    def interrupt_after_the_second_batch(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(runner, "_more_replicates", interrupt_after_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        runner.run(DATA / "runner_small.yaml", output_dir=tmp_path, run_id="p", workers=1, precision=0.03)
    monkeypatch.setattr(runner, "_more_replicates", real)
    resumed = runner.run(None, resume=tmp_path / "runner_small" / "p", workers=1)
    pd.testing.assert_frame_equal(whole.results, resumed.results)
    assert resumed.manifest["precision"]["replicates"] == whole.manifest["precision"]["replicates"]


def test_the_cap_stops_the_run_and_the_findings_say_the_target_was_not_reached():
    sc = load_scenario(DATA / "runner_small.yaml")
    data = dict(sc.data)
    data["experiment"] = {**data["experiment"], "precision": {"half_width": 0.001, "max_replicates": 4}}
    res = runner.run(from_dict(data, source=sc.source), output_dir=None, workers=1)
    prec = res.manifest["precision"]
    assert prec["replicates"] == 4 and not prec["met"]
    f = next(f for f in res.findings if f.kind == "precision")
    assert f.verdict == "not distinguishable" and "not reached within the cap" in f.text


@pytest.mark.parametrize("value, message", [
    (0, "experiment.precision.half_width: expected a number in (0, 1), got 0"),
    ({"half_width": 0.02, "max_replicates": 1}, "experiment.precision.max_replicates: expected an integer >= 2, got 1"),
    ({"half_width": 0.02, "size": 3}, "experiment.precision.size: unknown key; allowed: batch, half_width, max_replicates"),
])
def test_a_bad_precision_is_a_one_line_error(value, message):
    sc = load_scenario(DATA / "runner_small.yaml")
    data = dict(sc.data)
    data["experiment"] = {**data["experiment"], "precision": value}
    with pytest.raises(ScenarioError) as info:
        runner.parse_experiment(from_dict(data, source="p.yaml"))
    assert str(info.value) == f"p.yaml: {message}"


def test_resume_refuses_a_new_precision(tmp_path):
    res = runner.run(DATA / "runner_small.yaml", output_dir=tmp_path, workers=1)
    r = CliRunner().invoke(main, ["run", "--resume", str(res.run_dir), "--precision", "0.02"])
    assert r.exit_code == 2 and "remove --precision" in r.stderr
