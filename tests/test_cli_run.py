"""Tests of ``simsys run``: exit codes and exact error texts, outputs, and resuming a killed run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from simsys.cli import main
from simsys.findings import fmt
from simsys.runner import run

DATA = Path(__file__).parent / "data"


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- user errors: one line on stderr, exit code 1, no traceback, nothing written --------------
ERRORS = {
    "runner_bad_model": (
        (), "experiment.models[1].model: module 'sklearn.linear_model' has no attribute 'NoSuchModel' "
            "(import path 'sklearn.linear_model.NoSuchModel'); check the spelling"),
    "runner_disallowed_import": (
        (), "experiment.models[0].model: import path 'os.path.join' is not allowed; allowed prefixes "
            "are sklearn., simsys., fairlearn. (pass --allow-import to allow others)"),
    "runner_disallowed_import --allow-import": (
        ("--allow-import",), "experiment.models[0].model: 'os.path.join' is a function, not a class; "
                             "an import path must name an estimator class with a fit method"),
    "runner_bad_sweep_path": (
        (), "experiment.sweep (biases[7].keep): names nothing: there is no item [7] here"),
    "runner_empty_sweep": (
        (), "experiment.sweep.grid.biases[0].keep: expected a non-empty list of values, got []"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_run_reports_a_bad_experiment_in_one_line(case, tmp_path):
    name = case.split()[0]
    flags, message = ERRORS[case]
    path = DATA / f"{name}.yaml"
    out = tmp_path / "out"
    result = _invoke("run", path, "--output-dir", out, "--workers", "1", *flags)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    assert result.stderr == f"error: {path}: {message}\n"
    assert result.stdout == ""
    assert not out.exists()


def test_a_real_process_prints_no_traceback(tmp_path):
    path = DATA / "runner_disallowed_import.yaml"
    proc = subprocess.run([sys.executable, "-m", "simsys", "run", str(path), "--output-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == f"error: {path}: {ERRORS['runner_disallowed_import'][1]}\n"
    assert proc.stdout == ""


def test_run_needs_a_file_or_a_run_to_resume():
    result = _invoke("run")
    assert result.exit_code == 2
    assert "Error: give a scenario FILE, or --resume RUN_DIR" in result.stderr


def test_resume_needs_a_run_folder(tmp_path):
    result = _invoke("run", "--resume", tmp_path)
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path}: not a run folder (no manifest.json)\n"


def test_every_run_option_has_help_text():
    command = main.commands["run"]
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help, param.name


# --- a successful run -------------------------------------------------------------------------
def test_a_tiny_run_prints_its_summary_and_writes_its_outputs(tmp_path):
    path = DATA / "runner_small.yaml"
    result = _invoke("run", path, "--output-dir", tmp_path, "--run-id", "ok", "--workers", "1",
                     "--seed", "99")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runner_small" / "ok"
    for name in ("results.parquet", "results.csv", "summary.parquet", "summary.csv", "errors.csv",
                 "manifest.json", "run.log"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.part"))

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 99 and manifest["status"] == "finished"
    seeds = manifest["replicate_seeds"]
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    assert [(c["point"], c["replicate"], c["seed"]) for c in manifest["cells"]] == [
        (p, r, seeds[r]) for r in range(2) for p in range(3)]
    for pkg in ("python", "numpy", "pandas", "scikit-learn", "numba", "simsys"):
        assert manifest["versions"][pkg], pkg
    assert "finished: " in (run_dir / "run.log").read_text()

    results = pd.read_parquet(run_dir / "results.parquet")
    assert len(pd.read_csv(run_dir / "results.csv")) == len(results) > 0
    summary = pd.read_parquet(run_dir / "summary.parquet")
    assert len(pd.read_csv(run_dir / "summary.csv")) == len(summary)

    # the terminal summary: the findings (simsys.findings), headline tables first, then where and how long
    lines = result.stdout.splitlines()
    assert lines[0].startswith("In short, at ")
    assert any(ln.startswith("false-negative rate (FNR) against the truth") for ln in lines)
    assert any(ln.startswith("AUROC against the truth") for ln in lines)
    assert lines[-1].startswith(f"results in {run_dir}: summary.md, report.html, results.parquet; wall time ")
    assert "CPU time summed over worker processes" in lines[-1]
    assert (run_dir / "summary.md").read_text(encoding="utf-8").startswith("# simsys run: runner_small")

    # the same seed from the Python API gives the same table, and the console row of logreg at the
    # first point shows that run's gap finding with its interval
    again = run(path, seed=99, output_dir=tmp_path / "api", workers=1)
    pd.testing.assert_frame_equal(results, pd.read_parquet(again.run_dir / "results.parquet"))
    gap = next(f for f in again.findings if f.kind == "gap" and f.subject["metric"] == "fnr"
               and f.subject["point"] == 0 and f.subject["model"] == "logreg")
    q = gap.quantities["gap"]
    shown = f"{fmt(q.value, 'pp')} [{fmt(q.lo, 'pp')}, {fmt(q.hi, 'pp')}]"
    assert any(" logreg " in ln and shown in ln for ln in lines), shown


def test_a_run_does_not_overwrite_a_finished_run(tmp_path):
    path = DATA / "runner_faults.yaml"
    args = ("run", path, "--output-dir", tmp_path, "--run-id", "same", "--workers", "1")
    first = _invoke(*args)
    assert first.exit_code == 0
    assert "2 failures recorded in errors.csv" in first.stdout
    second = _invoke(*args)
    assert second.exit_code == 1
    run_dir = tmp_path / "runner_faults" / "same"
    assert second.stderr == (f"error: {run_dir}: run folder exists and is not empty; "
                             "use --resume to finish it\n")


# --- resume after a kill ----------------------------------------------------------------------
def _finished_cells(cells: Path) -> list[Path]:
    if not cells.is_dir():
        return []
    return sorted(f for f in cells.iterdir() if f.suffix == ".parquet" and not f.name.startswith("."))


def test_resume_after_a_killed_run_gives_the_uninterrupted_results(tmp_path):
    """SIGKILL a run (6 cells) once a cell is written: nothing in its folder is corrupt, and
    ``--resume`` keeps the finished cells, does the rest and matches an uninterrupted run."""
    path = DATA / "runner_resume.yaml"
    out = tmp_path / "out"
    run_dir = out / "runner_resume" / "r"
    cells = run_dir / "cells"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simsys", "run", str(path), "--output-dir", str(out), "--run-id", "r",
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not _finished_cells(cells):
            assert proc.poll() is None, "the run ended before any cell was written"
            assert time.monotonic() < deadline, "no cell written in time"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in _finished_cells(cells)}
    assert 1 <= len(before) < 6, "killed too late: the run had finished"
    assert not (run_dir / "results.parquet").exists()
    # nothing corrupt: final files open; an interrupted write can only leave a hidden .part file
    for f in run_dir.rglob("*"):
        if f.is_dir():
            continue
        if f.name.endswith(".part"):
            assert f.name.startswith(".")
        elif f.suffix == ".parquet":
            assert pq.read_table(f).num_rows > 0
        elif f.name == "manifest.json":
            assert json.loads(f.read_text())["status"] == "running"
        else:
            assert f.name in ("run.log", ".lock"), f  # .lock: the run's lock file (flock)

    resumed = subprocess.run([sys.executable, "-m", "simsys", "run", "--resume", str(run_dir)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"results in {run_dir}: summary.md" in resumed.stdout
    after = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in _finished_cells(cells)}
    assert len(after) == 6
    assert {name: after[name] for name in before} == before  # finished cells were not redone
    assert not list(run_dir.rglob("*.part"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and "resumed" in manifest

    whole = run(path, output_dir=tmp_path / "whole", workers=1)
    for name in ("results.parquet", "summary.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / name),
                                      pd.read_parquet(whole.run_dir / name))
