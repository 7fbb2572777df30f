"""Hardening of runs, run folders and outputs (issue 10, items 1, 2 and 12-20).

A run folder is untrusted input (it may be damaged, or crafted and shared): nothing in it runs code
without ``--allow-import``, and a damaged value is a one-line error or a redone cell. Runs are
created atomically and locked, stop cleanly on SIGTERM / SIGKILL and on write errors, refuse sizes
the machine cannot hold, and never wait forever for Dask. Every user-facing error is compared as
its exact one line.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from simsys import io as sio
from simsys import runner
from simsys.cli import main
from simsys.errors import ModelError, RunError
from simsys.io import MAX_PATIENTS, format_bytes
from simsys.models import build_model
from simsys.runner import run
from simsys.scenario import load_scenario
from simsys.simulate import build_plan

DATA = Path(__file__).parent / "data"

TINY = {
    "name": "hard_tiny",
    "seed": 11,
    "params": {"b_share": 0.4},
    "nodes": {
        "g": {"kind": "bernoulli", "p": "b_share"},
        "x1": {"kind": "normal", "mean": "0.3*g", "sd": 1},
        "y": {"kind": "bernoulli", "logit": "-0.5 + 1.5*x1 - 0.5*g"},
    },
    "roles": {"group": "g", "target": "y", "features": ["x1"]},
    "biases": [{"type": "representation", "group": {"g": 1}, "keep": 0.5}],
    "populations": {"train": {"n": 1000, "biased": True}, "test": {"n": 1000}},
    "experiment": {
        "models": [{"name": "logreg", "model": "logistic_regression"}],
        "threshold": {"kind": "fixed", "threshold": 0.5},
        "sweep": {"grid": {"biases[0].keep": [1.0, 0.5]}},
        "replicates": 1,
        "test_n": 1000,
        "validation_n": 200,
    },
}

EVIL = """\
import pathlib
pathlib.Path(__file__).with_name("ran.txt").write_text("imported")
from sklearn.linear_model import LogisticRegression


class Evil(LogisticRegression):
    pass
"""


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _scenario(tmp_path: Path, name: str = "tiny.yaml", **changes) -> Path:
    """TINY with top-level keys or ``experiment`` keys (given as ``experiment={...}``) changed."""
    data = copy.deepcopy(TINY)
    for key, value in changes.items():
        if key == "experiment":
            data["experiment"].update(value)
        else:
            data[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_error_line(result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    text = result.stderr
    if text.startswith("\rcells:"):  # the progress bar of a run that had started
        text = text.split("\n", 1)[1]
    assert text.count("\n") == 1, result.stderr
    return text


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _write_manifest(run_dir: Path, m: dict) -> None:
    (run_dir / "manifest.json").write_text(json.dumps(m))


@pytest.fixture
def tiny_run(tmp_path):
    """A finished run of TINY (two cells, no report), and its scenario file."""
    path = _scenario(tmp_path)
    res = run(path, output_dir=tmp_path / "out", run_id="r", workers=1)
    return res.run_dir, path


def _make_evil(tmp_path: Path, run_dir: Path, scenario_path: Path, *, claims_allow: bool,
               status: str) -> Path:
    """Craft a run folder whose models load ``evil.py`` (which leaves ran.txt when imported)."""
    (tmp_path / "evil.py").write_text(EVIL)
    m = _manifest(run_dir)
    m["scenario"]["experiment"]["models"] = [{"name": "logreg", "model": "evil.py:Evil"}]
    m["source"] = str(scenario_path)  # a file model is found relative to the scenario's folder
    m["allow_imports"] = claims_allow
    m["status"] = status
    _write_manifest(run_dir, m)
    return tmp_path / "ran.txt"


# --- 1. a run folder runs no code without --allow-import -----------------------------------------
def test_resume_needs_allow_import_again_and_never_takes_it_from_the_folder(tiny_run, tmp_path):
    run_dir, path = tiny_run
    marker = _make_evil(tmp_path, run_dir, path, claims_allow=True, status="running")
    (run_dir / "cells" / "point0001_rep000.parquet").unlink()

    result = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report")
    assert _one_error_line(result) == (
        f"error: {run_dir}: this run was started with --allow-import (its models run code from "
        "outside sklearn., simsys. and fairlearn.); pass --allow-import again to resume it\n")
    assert not marker.exists()

    # a folder that lies about it is refused by the model check itself, still before any import
    m = _manifest(run_dir)
    m["allow_imports"] = False
    _write_manifest(run_dir, m)
    result = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report")
    assert _one_error_line(result) == (
        f"error: {path}: experiment.models[0].model: loading a model from the file 'evil.py' runs "
        "its code; pass --allow-import (allow_imports=True in Python) to allow it\n")
    assert not marker.exists()

    result = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report", "--allow-import")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "imported"  # the user's own flag, and only it, runs the code


def test_report_does_not_import_without_the_flag_and_leaves_the_figure_empty(tiny_run, tmp_path):
    from simsys.report import load_run
    from simsys.report.predictions import cell_predictions

    run_dir, path = tiny_run
    marker = _make_evil(tmp_path, run_dir, path, claims_allow=True, status="finished")
    assert not (run_dir / "predictions").exists()  # the ROC figure would need a recomputed cell

    preds = cell_predictions(load_run(run_dir), 1)  # the folder "claims" allow_imports: not believed
    assert preds.frame is None and "simsys report --allow-import" in preds.note
    assert not marker.exists()

    result = _invoke("report", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file()
    assert not list((run_dir / "figures").glob("predictions_*"))  # nothing recomputed or cached
    assert not marker.exists()

    result = _invoke("report", run_dir, "--allow-import")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "imported"
    assert list((run_dir / "figures").glob("predictions_*"))


# --- 1 and 20. damaged run folders ------------------------------------------------------------------
DAMAGE = {
    "not json": (lambda m: "{not json",
                 "not valid JSON (Expecting property name enclosed in double quotes at line 1, "
                 "column 2); the run folder is damaged"),
    "a list": (lambda m: "[1, 2]", "expected a JSON object, got list; the run folder is damaged"),
    "no seed": (lambda m: {k: v for k, v in m.items() if k != "seed"},
                "seed: missing; expected an integer >= 0 (the run folder is damaged)"),
    "seed as text": (lambda m: {**m, "seed": "7"},
                     "seed: got '7'; expected an integer >= 0 (the run folder is damaged)"),
    "scenario not a mapping": (lambda m: {**m, "scenario": [1, 2]},
                               "scenario: got [1, 2]; expected a mapping (the scenario) (the run "
                               "folder is damaged)"),
    "allow_imports as text": (lambda m: {**m, "allow_imports": "yes"},
                              "allow_imports: got 'yes'; expected true or false (the run folder is "
                              "damaged)"),
    "cells of the wrong shape": (lambda m: {**m, "cells": [{"point": "0"}]},
                                 "cells: got [{'point': '0'}]; expected a list of {point, replicate, "
                                 "settings} with integers >= 0 (the run folder is damaged)"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_manifest_is_one_line_naming_it(case, tiny_run):
    run_dir, _ = tiny_run
    damage, message = DAMAGE[case]
    m = _manifest(run_dir)
    broken = damage(m)
    (run_dir / "manifest.json").write_text(broken if isinstance(broken, str) else json.dumps(broken))
    mpath = run_dir / "manifest.json"
    for args in (("run", "--resume", run_dir, "--workers", "1"), ("report", run_dir)):
        result = _invoke(*args)
        assert _one_error_line(result) == f"error: {mpath}: {message}\n", args


def test_damaged_cells_are_redone_and_logged(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    cells = run_dir / "cells"
    whole = pd.read_parquet(run_dir / "results.parquet")
    c0, c1 = cells / "point0000_rep000.parquet", cells / "point0001_rep000.parquet"
    c1.write_bytes(c0.read_bytes())  # a readable cell, but of another cell
    c0.write_bytes(c0.read_bytes()[: c0.stat().st_size // 2])  # truncated

    result = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report")
    assert result.exit_code == 0, result.output
    log = (run_dir / "run.log").read_text()
    assert "cell point=0 replicate=0: point0000_rep000.parquet is damaged (" in log
    assert ("cell point=1 replicate=0: point0001_rep000.parquet is damaged (ValueError: rows of "
            "another cell); redoing it") in log
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "results.parquet"), whole)


def test_resume_refuses_the_options_it_would_ignore(tiny_run):
    run_dir, path = tiny_run
    for extra, named in (((path,), "FILE"), (("--seed", "3"), "--seed"),
                         (("--replicates", "2"), "--replicates"),
                         ((path, "--seed", "3", "--run-id", "x"), "FILE, --seed, --run-id"),
                         (("--output-dir", "elsewhere"), "--output-dir")):
        result = _invoke("run", *extra, "--resume", run_dir)
        assert _one_error_line(result, 2) == (
            "error: --resume takes the scenario, seed, replicates and outputs from the run folder; "
            f"remove {named}\n")
    with pytest.raises(RunError) as info:
        run(path, resume=run_dir, seed=3)
    assert str(info.value) == ("a resumed run takes its seed and replicates from its run folder; "
                               "do not give seed or replicates")


# --- 2. parameters that name paths or objects -------------------------------------------------------
AGGLO = "sklearn.cluster.AgglomerativeClustering"
NEEDS = ("; a parameter that names a path or an object can act on files or run code, so it needs "
         "--allow-import (allowed without it: numbers, booleans, null, one of the parameter's "
         "string choices, a nested model spec)")


@pytest.mark.parametrize("params, found", [
    ({"memory": "cache_dir"}, "memory: 'cache_dir' may name a file-system path"),
    ({"memory": "/tmp"}, "memory: '/tmp' may name a file-system path"),
    ({"metric": "euclidean", "memory": "x"}, "memory: 'x' may name a file-system path"),
])
def test_a_parameter_naming_a_path_needs_allow_import(params, found, tmp_path):
    spec = {"model": AGGLO, "params": params}
    with pytest.raises(ModelError) as info:
        build_model(spec, random_state=0, source="s.yaml")
    assert str(info.value) == f"s.yaml: experiment.models[0].params.{found}{NEEDS}"
    build_model(spec, random_state=0, source="s.yaml", allow_imports=True)  # the user's choice


def test_free_text_and_objects_need_allow_import_and_choices_do_not():
    def fails(spec):
        with pytest.raises(ModelError) as info:
            build_model(spec, random_state=0, source="s.yaml")
        return str(info.value).removeprefix("s.yaml: experiment.models[0].params.").removesuffix(NEEDS)

    # a string the constraints accept beside their options (free text) is not a choice
    assert fails({"model": "gradient_boosting", "params": {"scoring": "/tmp/x"}}) == (
        "scoring: '/tmp/x' is free text, not one of the parameter's choices")
    assert fails({"model": "gradient_boosting", "params": {"categorical_features": ["x1"]}}) == (
        "categorical_features: ['x1'] holds 'x1', not a number, boolean or null")
    assert fails({"model": "logistic_regression", "params": {"C": print}}) == (
        "C: a builtin_function_or_method object")
    # a class that declares nothing about a parameter: its text may be anything
    assert fails({"model": "fairlearn.reductions.GridSearch", "params": {
        "estimator": {"model": "logistic_regression"}, "constraints": "equalized_odds",
        "selection_rule": "tradeoff_optimization"}}) == (
        "selection_rule: 'tradeoff_optimization' is text that GridSearch does not declare as one "
        "of the parameter's choices")
    for spec in ({"model": AGGLO, "params": {"linkage": "ward", "memory": None}},
                 {"model": "logistic_regression", "params": {"class_weight": "balanced", "C": 0.5}},
                 {"model": "logistic_regression", "params": {"class_weight": {0: 1, 1: 3}}},
                 {"model": "gradient_boosting", "params": {"scoring": "roc_auc"}},
                 {"model": "mlp", "params": {"hidden_layer_sizes": [4, 3]}},
                 {"model": "group_resampling", "params": {"by": "group_label"}}):
        build_model(spec, random_state=0, source="s.yaml")


def test_a_scenario_with_a_cache_folder_is_refused_before_anything_is_written(tmp_path):
    path = _scenario(tmp_path, experiment={"models": [
        {"name": "agg", "model": AGGLO, "params": {"memory": str(tmp_path / "cache")}}]})
    out = tmp_path / "out"
    result = _invoke("run", path, "--output-dir", out, "--workers", "1")
    assert _one_error_line(result) == (
        f"error: {path}: experiment.models[0].params.memory: '{tmp_path / 'cache'}' may name a "
        f"file-system path{NEEDS}\n")
    assert not out.exists() and not (tmp_path / "cache").exists()


# --- 12. atomic, locked run folders; unique default ids ---------------------------------------------
def test_default_run_ids_differ_within_the_same_second(tmp_path, monkeypatch):
    import datetime as dt

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2030, 1, 2, 3, 4, 5)

    monkeypatch.setattr(runner._dt, "datetime", Frozen)
    path = _scenario(tmp_path)
    a = run(path, output_dir=tmp_path, workers=1)
    b = run(path, output_dir=tmp_path, workers=1)
    assert a.run_dir != b.run_dir
    for d in (a.run_dir, b.run_dir):
        assert d.name.startswith("20300102-030405-") and d.name.endswith("-s11")
        assert _manifest(d)["status"] == "finished"


def _hold_lock(folder: Path) -> int:
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return fd


def test_a_run_folder_in_use_is_refused(tmp_path, tiny_run):
    # a competitor that has just created (and locked) the folder: the fresh run must not share it
    path = _scenario(tmp_path)
    folder = tmp_path / "out" / "hard_tiny" / "taken"
    folder.mkdir(parents=True)
    fd = _hold_lock(folder)
    try:
        result = _invoke("run", path, "--output-dir", tmp_path / "out", "--run-id", "taken")
        assert _one_error_line(result) == (
            f"error: {folder}: the run folder is in use by another simsys run (pid 4242); "
            "wait for it to finish\n")
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]
    finally:
        os.close(fd)
    # released: the (still empty) folder can be used
    result = _invoke("run", path, "--output-dir", tmp_path / "out", "--run-id", "taken",
                     "--workers", "1", "--no-report")
    assert result.exit_code == 0, result.output


def test_resuming_a_running_run_is_refused(tmp_path):
    """A real run in another process holds its folder; --resume of it is refused meanwhile."""
    out = tmp_path / "out"
    run_dir = out / "runner_resume" / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simsys", "run", str(DATA / "runner_resume.yaml"), "--output-dir",
         str(out), "--run-id", "r", "--workers", "1", "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run_dir / "manifest.json").is_file(), proc, "no manifest written")
        result = _invoke("run", "--resume", run_dir)
        assert _one_error_line(result) == (
            f"error: {run_dir}: the run folder is in use by another simsys run (pid {proc.pid}); "
            "wait for it to finish\n")
        assert proc.poll() is None, "the run ended before the resume was tried"
    finally:
        proc.kill()
        proc.wait()


def test_an_unsafe_run_id_is_refused(tmp_path):
    result = _invoke("run", _scenario(tmp_path), "--output-dir", tmp_path / "out",
                     "--run-id", "../escape")
    assert _one_error_line(result) == (
        "error: --run-id: expected a folder name (no '/'), got '../escape'\n")


# --- 13. signals --------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"  # a zombie has ended (nobody may reap it here)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = set()
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = _stat(int(d))
                if st is not None and int(st[1]) in frontier and _alive(int(d)):
                    children.add(int(d))
        children -= found
        found |= children
        frontier = children
    return found


def _wait_for(condition, proc, what, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the process ended first ({what})"
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _cells_written(run_dir: Path) -> list[Path]:
    cells = run_dir / "cells"
    return [f for f in cells.iterdir() if not f.name.startswith(".")] if cells.is_dir() else []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signalled_run_leaves_no_process_behind(sig, tmp_path):
    """The worker processes and multiprocessing's resource tracker end with the run, also when the
    run is killed with SIGKILL (they would otherwise wait for work forever, holding memory)."""
    out = tmp_path / "out"
    run_dir = out / "runner_resume" / "r"
    err = tmp_path / "stderr.txt"
    family: set[int] = set()
    with open(err, "w") as stderr:  # a file, not a pipe: orphans would hold a pipe open
        proc = subprocess.Popen(
            [sys.executable, "-m", "simsys", "run", str(DATA / "runner_resume.yaml"), "--output-dir",
             str(out), "--run-id", "r", "--workers", "2", "--no-report"],
            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_for(lambda: _cells_written(run_dir), proc, "no cell written in time")
        family = _descendants(proc.pid)
        assert len(family) >= 2, family  # the workers (and the resource tracker)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while any(map(_alive, family)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in family if _alive(p)], "processes outlived the run"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in family:  # never leave them running, even when the test fails
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    stderr = err.read_text()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
        assert stderr.splitlines()[-1] == (
            "error: interrupted by SIGTERM; the finished cells are kept; finish the run with: "
            f"simsys run --resume {run_dir}")
        assert "Traceback" not in stderr
        assert not list(run_dir.rglob("*.part"))
    else:
        assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigterm_of_sample_removes_its_partial_file(tmp_path):
    target = tmp_path / "cohort.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simsys", "sample", str(DATA / "runner_small.yaml"), "-n", "50000000",
         "--chunk-size", "1000000", "-o", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(p.name.endswith(".part") for p in tmp_path.iterdir()), proc,
                  "no partial file in time")
        time.sleep(0.3)  # well inside the write
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert stderr.splitlines()[-1] == f"error: interrupted by SIGTERM; nothing was written to {target}"
    assert list(tmp_path.iterdir()) == []


# --- 14. failed runs and failed cells ---------------------------------------------------------------
def test_a_run_where_every_cell_failed_exits_1(tmp_path):
    nodes = {**TINY["nodes"], "y": {"kind": "bernoulli", "logit": "-50.0 + 0*x1"}}
    path = _scenario(tmp_path, nodes=nodes)  # no positives: every fit fails
    out = tmp_path / "out"
    result = _invoke("run", path, "--output-dir", out, "--run-id", "r", "--workers", "1")
    run_dir = out / "hard_tiny" / "r"
    errors = pd.read_csv(run_dir / "errors.csv")
    assert len(errors) == 6  # 2 cells x 1 model x 3 training sets, all with one class
    assert _one_error_line(result) == (
        f"error: {run_dir}: every cell failed (6 error(s)); see {run_dir / 'errors.csv'}\n")
    assert result.stdout == ""


def test_resume_retries_the_cells_that_failed(tmp_path):
    res = run(DATA / "runner_faults.yaml", output_dir=tmp_path, run_id="f", workers=1)
    run_dir = res.run_dir
    cells = run_dir / "cells"
    ok, failed = cells / "point0000_rep000.parquet", cells / "point0001_rep000.parquet"
    before = {f: f.stat().st_ino for f in (ok, failed)}
    result = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report")
    assert result.exit_code == 0, result.output
    assert ok.stat().st_ino == before[ok]  # kept
    assert failed.stat().st_ino != before[failed]  # written again
    assert "cell point=1 replicate=0 had 2 error(s); retrying it" in (run_dir / "run.log").read_text()


# --- 15. sweeps that mix types ------------------------------------------------------------------------
def test_a_sweep_mixing_numbers_and_text_is_refused_up_front(tmp_path):
    path = _scenario(tmp_path, experiment={"sweep": {"grid": {"biases[0].keep": [0.3, "0.5"]}}})
    out = tmp_path / "out"
    result = _invoke("run", path, "--output-dir", out)
    assert _one_error_line(result) == (
        f"error: {path}: experiment.sweep (biases[0].keep): values of different types: 0.3 (number), "
        "'0.5' (string); give every value of a swept path the same type (all numbers, all strings "
        "or all booleans)\n")
    assert not out.exists()


def test_outputs_with_a_column_of_mixed_types_are_still_written(tmp_path):
    results = pd.DataFrame({"point": [0, 1], "value": [0.1, 0.2],
                            "biases[0].keep": pd.Series([0.3, "0.5"], dtype=object)})
    errors = pd.DataFrame(columns=["point", "replicate", "model", "training", "error"])
    runner._write_outputs(tmp_path, results, results, errors, {}, [], False)
    assert pd.read_parquet(tmp_path / "results.parquet")["biases[0].keep"].tolist() == ["0.3", "0.5"]


# --- 16. a write error stops the run at once --------------------------------------------------------
@pytest.mark.slow
def test_a_write_error_cancels_the_queued_cells_and_the_run_stays_resumable(tmp_path, monkeypatch):
    import concurrent.futures as cf

    submitted = []

    class Recording(cf.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            fut = super().submit(*args, **kwargs)
            submitted.append(fut)
            return fut

    data = yaml.safe_load((DATA / "runner_resume.yaml").read_text())
    data["experiment"]["replicates"] = 4  # 12 cells
    path = tmp_path / "twelve.yaml"
    path.write_text(yaml.safe_dump(data))
    real, calls = runner._write_cell, []

    def disk_full(run_dir, key, res):
        calls.append(key)
        if len(calls) == 3:
            target = runner._cell_path(run_dir, *key)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        real(run_dir, key, res)

    monkeypatch.setattr(cf, "ProcessPoolExecutor", Recording)
    monkeypatch.setattr(runner, "_write_cell", disk_full)
    out = tmp_path / "out"
    result = _invoke("run", path, "--output-dir", out, "--run-id", "w", "--workers", "2")
    run_dir = out / "runner_resume" / "w"
    target = runner._cell_path(run_dir, *calls[2])
    assert _one_error_line(result) == (
        f"error: {target}: cannot write (No space left on device); the finished cells are kept; "
        f"finish the run with: simsys run --resume {run_dir}\n")
    assert len(calls) == 3  # nothing was handled after the error
    # 12 cells in 4 tasks of a replicate's 3 cells (simsys.runner.task_groups); the queued tasks
    # were cancelled and the running one abandoned: far from all 12 cells computed
    assert len(submitted) == len(runner.task_groups([(p, r) for r in range(4) for p in range(3)], 2)) == 4
    computed = [f for f in submitted if f.done() and not f.cancelled() and f.exception() is None]
    # the task whose cells were handled, and the one running beside it at most; the others were
    # cancelled in the queue or abandoned with their worker
    assert len(computed) <= 2
    assert len(_cells_written(run_dir)) == 2 and not list(run_dir.rglob("*.part"))
    monkeypatch.setattr(runner, "_write_cell", real)
    resumed = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report")
    assert resumed.exit_code == 0, resumed.output
    assert len(_cells_written(run_dir)) == 12


# --- 17. operating-system errors as one line --------------------------------------------------------
def _strerror(code: int) -> str:
    return os.strerror(code)


def test_run_output_dir_errors_are_one_line(tmp_path):
    path = _scenario(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    long_id = "x" * 300
    cases = [
        (("--output-dir", "/proc/x"),
         f"error: /proc/x: cannot create the output folder ({_strerror(errno.ENOENT)}); "
         "choose another --output-dir"),
        (("--output-dir", a_file / "sub"),
         f"error: {a_file / 'sub' / 'hard_tiny'}: cannot create the output folder "
         f"({_strerror(errno.ENOTDIR)}); "
         "choose another --output-dir"),
        (("--output-dir", tmp_path / "out", "--run-id", long_id),
         f"error: {tmp_path / 'out' / 'hard_tiny' / long_id}: cannot create the run folder "
         f"({_strerror(errno.ENAMETOOLONG)}); choose another --output-dir or --run-id"),
    ]
    for args, message in cases:
        result = _invoke("run", path, *args, "--workers", "1")
        assert _one_error_line(result) == message + "\n", args
    assert not (tmp_path / "out" / "hard_tiny").exists() or not any(
        (tmp_path / "out" / "hard_tiny").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions, so a chmod 0500 "
                    "folder is writable for it")
def test_a_read_only_output_dir_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        result = _invoke("run", _scenario(tmp_path), "--output-dir", ro, "--workers", "1")
        assert _one_error_line(result) == (
            f"error: {ro / 'hard_tiny'}: cannot create the output folder "
            f"({_strerror(errno.EACCES)}); choose another --output-dir\n")
        result = _invoke("sample", _scenario(tmp_path), "-n", "100", "-o", ro / "c.parquet")
        assert _one_error_line(result) == (
            f"error: {ro / 'c.parquet'}: cannot write the cohort ({_strerror(errno.EACCES)}); "
            "choose a writable -o path\n")
    finally:
        ro.chmod(0o700)


def test_sample_and_graph_output_errors_are_one_line_and_leave_nothing(tmp_path):
    path = _scenario(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    long_name = "c" * 300
    sample_cases = [
        ("/proc/x/c.parquet", _strerror(errno.ENOENT)),
        (a_file / "c.parquet", _strerror(errno.EEXIST)),
        (tmp_path / f"{long_name}.parquet", _strerror(errno.ENAMETOOLONG)),
    ]
    for target, why in sample_cases:
        result = _invoke("sample", path, "-n", "100", "-o", target)
        assert _one_error_line(result) == (
            f"error: {target}: cannot write the cohort ({why}); choose a writable -o path\n"), target
    graph_cases = [
        ("/proc/x/g.svg", _strerror(errno.ENOENT)),
        (a_file / "g.svg", _strerror(errno.ENOTDIR)),
        (tmp_path / f"{long_name}.svg", _strerror(errno.ENAMETOOLONG)),
    ]
    for target, why in graph_cases:
        result = _invoke("graph", path, "-o", target)
        assert _one_error_line(result) == (
            f"error: {target}: cannot write the graph ({why}); choose a writable -o path\n"), target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "tiny.yaml"]


def test_a_full_disk_while_sampling_leaves_nothing(tmp_path, monkeypatch):
    import pyarrow.parquet as real_pq

    class FullDisk(real_pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sio.pq, "ParquetWriter", FullDisk)
    target = tmp_path / "c.parquet"
    result = _invoke("sample", _scenario(tmp_path), "-n", "100", "-o", target)
    assert _one_error_line(result) == (
        f"error: {target}: cannot write the cohort ({_strerror(errno.ENOSPC)}); choose a writable "
        "-o path with room for it\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_report_write_errors_are_one_line(tiny_run):
    run_dir, _ = tiny_run
    (run_dir / "figures").write_text("a file where the figures folder goes")
    result = _invoke("report", run_dir)
    assert _one_error_line(result) == (
        f"error: {run_dir / 'figures'}: cannot write the report ({_strerror(errno.EEXIST)})\n")
    (run_dir / "figures").unlink()
    (run_dir / "results.parquet").write_bytes(b"PAR1 damaged")
    result = _invoke("report", run_dir)
    assert _one_error_line(result) == (f"error: {run_dir / 'results.parquet'}: cannot be read as a Parquet "
                                       "table (ArrowInvalid); expected the table simsys run writes\n")


# --- 18. sizes the machine cannot hold --------------------------------------------------------------
def _bytes_per_patient(path: Path, population: str = "train") -> int:
    p = build_plan(load_scenario(path), population, biased=True).program
    return 8 * len(p.columns_f) + len(p.columns_u) + 8


def test_sample_refuses_a_cohort_that_cannot_fit(tmp_path, monkeypatch):
    def no_sampling(*args, **kwargs):  # a regression must fail here, not fill the disk
        raise AssertionError("sampling started")

    monkeypatch.setattr(sio, "iter_chunks", no_sampling)
    path = _scenario(tmp_path)
    target = tmp_path / "c.parquet"
    huge = "99999999999999999999999"
    result = _invoke("sample", path, "-n", huge, "-o", target)
    assert _one_error_line(result) == (
        f"error: {target}: population 'train': {huge} patients: more than {MAX_PATIENTS} patients "
        "cannot be numbered; allowed: a smaller -n\n")
    monkeypatch.setattr(sio, "free_disk", lambda folder: 10**9)
    each = _bytes_per_patient(path)
    result = _invoke("sample", path, "-n", str(10**12), "-o", target)
    assert _one_error_line(result) == (
        f"error: {target}: population 'train': {10**12} patients need about "
        f"{format_bytes(10**12 * each)} on disk ({each} bytes each), but {format_bytes(10**9)} is "
        f"free in {tmp_path}; allowed: a smaller -n\n")
    monkeypatch.setattr(sio, "available_memory", lambda: 10**6)
    result = _invoke("sample", path, "-n", "100000", "--chunk-size", "100000", "-o", target)
    assert _one_error_line(result) == (
        f"error: {target}: --chunk-size: 100000 patients per chunk need about "
        f"{format_bytes(3 * each * 100000)} in memory ({3 * each} bytes each), but "
        f"{format_bytes(10**6)} is available; allowed: a smaller --chunk-size\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_run_refuses_cells_that_cannot_fit_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "available_memory", lambda: 8 * 2**30)
    path = _scenario(tmp_path, populations={"train": {"n": 1e12, "biased": True}, "test": {"n": 1000}})
    out = tmp_path / "out"
    result = _invoke("run", path, "--output-dir", out)
    per_train = _bytes_per_patient(path) + 8 * 1 + 16
    per_test = _bytes_per_patient(path, "test") + 8 * 1 + 16
    need = 2 * 10**12 * per_train + 1200 * per_test
    assert _one_error_line(result) == (
        f"error: {path}: populations.train.n: 1000000000000 patients: a cell holds the training "
        f"cohort, its clean twin, the validation and the test cohorts in memory at once, at least "
        f"{format_bytes(need)}, but 8 GiB is available; allowed: sizes whose cells fit in memory\n")
    assert not out.exists()


# --- 19. Dask never waits forever -------------------------------------------------------------------
@pytest.mark.slow
def test_a_dask_scheduler_that_does_not_answer_is_one_line_and_the_run_resumable(tmp_path):
    pytest.importorskip("dask.distributed")
    path = _scenario(tmp_path)
    out = tmp_path / "out"
    t0 = time.monotonic()
    result = _invoke("run", path, "--output-dir", out, "--run-id", "d", "--executor", "dask",
                     "--scheduler", "tcp://127.0.0.1:1", "--timeout", "1", "--no-report")
    assert time.monotonic() - t0 < 30
    run_dir = out / "hard_tiny" / "d"
    line = _one_error_line(result)
    assert line.startswith("error: dask scheduler tcp://127.0.0.1:1: no answer within 1 s (OSError: ")
    assert line.endswith("); check --scheduler, or give a longer --timeout; the finished cells are "
                         f"kept; finish the run with: simsys run --resume {run_dir}\n")
    assert _manifest(run_dir)["status"] == "running"
    resumed = _invoke("run", "--resume", run_dir, "--workers", "1", "--no-report")
    assert resumed.exit_code == 0, resumed.output
    assert _manifest(run_dir)["status"] == "finished"


@pytest.mark.slow
def test_a_dask_cluster_without_workers_times_out(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    path = _scenario(tmp_path)
    out = tmp_path / "out"
    run_dir = out / "hard_tiny" / "d"
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp",
                                    dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        proc = subprocess.run(
            [sys.executable, "-m", "simsys", "run", str(path), "--output-dir", str(out), "--run-id",
             "d", "--executor", "dask", "--scheduler", address, "--timeout", "2", "--no-report"],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"error: dask scheduler {address}: no workers for 2 s, 2 of 2 cells not run; start workers, "
        f"or give a longer --timeout; the finished cells are kept; finish the run with: simsys run "
        f"--resume {run_dir}")
    assert _manifest(run_dir)["status"] == "running"


@pytest.mark.slow
def test_workers_import_the_runs_own_simsys_not_a_folder_in_the_working_directory(tmp_path):
    """A ``simsys/`` folder in the working directory (a downloaded project, say) is not code the user
    asked to run: the worker processes of ``simsys run`` must import the same simsys as the run."""
    exe = Path(sys.executable).with_name("simsys")
    if not exe.is_file():
        pytest.skip("the simsys console script is not installed beside this Python")
    decoy = tmp_path / "simsys"
    decoy.mkdir()
    marker = tmp_path / "DECOY_RAN"
    (decoy / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise ImportError('decoy')\n")
    proc = subprocess.run([str(exe), "run", str(DATA / "runner_small.yaml"), "--workers", "2", "--no-report",
                           "--output-dir", str(tmp_path / "out")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
