"""A finished run folder, read for the report: its manifest, results and summary, checked, and the
run's findings rebuilt from them.

A run folder is untrusted input: it may be damaged, edited by hand or made by someone else. Every
value the report reads from it is checked for its type and range here, and damage is one line,
``<file>: <key path>: <what was found>; <what is allowed>`` (:class:`simsys.errors.RunError`).
Nothing in the folder can make code run: the scenario is rebuilt as data
(:func:`simsys.scenario.from_dict`), model names are only names, and the folder's own
``allow_imports`` is never believed (only the caller's, see :mod:`simsys.report.predictions`).

The findings are built from ``results.parquet`` by :func:`simsys.findings.build_findings`, the very
function ``simsys run`` used, so the page says what the console and ``summary.md`` said. The
figures draw ``summary.parquet``'s ``estimate`` / ``lo`` / ``hi`` (:mod:`simsys.summary`) and the
findings' quantities; the cohort picture sums the recorded confusion counts over the replicates
(model ``data``: the recorded labels of the training set, of its clean twin and of the test
population, each as a "prediction" of the truth). Nothing is sampled again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simsys.errors import RunError, SimsysError
from simsys.findings import Finding, RunView, build_findings, fmt, headline_metrics
from simsys.scenario import Scenario, from_dict

RESULTS = "results.parquet"
SUMMARY = "summary.parquet"
MANIFEST = "manifest.json"

#: Columns of ``results.parquet`` the report reads, and what each must hold.
RESULT_TEXT = ("model", "training", "reference", "scope", "metric")
SUMMARY_TEXT = ("model", "training", "reference", "scope", "metric")
SUMMARY_NUMBERS = ("estimate", "lo", "hi", "cases", "events")


@dataclass(frozen=True)
class Stat:
    """One row of the summary table: estimate, 95% interval, support."""

    estimate: float
    lo: float
    hi: float
    cases: float
    events: float
    n: int

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


NAN_STAT = Stat(math.nan, math.nan, math.nan, math.nan, math.nan, 0)


@dataclass
class Cohorts:
    """Who is in the data, per sweep point and group, summed over the replicates.

    From the recorded confusion counts of model ``data`` (truth against the recorded label):
    arrays indexed [point, group] of patients (``*_n``), true cases (``*_pos``) and recorded
    positive labels (``*_labelled``) in the test population (``test_*``), the clean twins
    (``clean_*``) and the biased training sets (``biased_*``). NaN where a count is missing.
    """

    test_n: np.ndarray
    test_pos: np.ndarray
    test_labelled: np.ndarray
    clean_n: np.ndarray
    clean_pos: np.ndarray
    biased_n: np.ndarray
    biased_pos: np.ndarray
    biased_labelled: np.ndarray

    @staticmethod
    def share(pos: np.ndarray, n: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, pos / np.where(n > 0, n, 1), np.nan)

    @property
    def same_clean(self) -> bool:
        """Whether every point has the same clean twins (the sweep moves only biases)."""
        return bool(np.array_equal(self.clean_n, self.clean_n[:1].repeat(len(self.clean_n), 0), equal_nan=True)
                    and np.array_equal(self.clean_pos, self.clean_pos[:1].repeat(len(self.clean_pos), 0),
                                       equal_nan=True))


@dataclass
class RunData:
    """A finished run, read from its folder, with its findings."""

    run_dir: Path
    manifest: dict
    scenario: Scenario
    results: pd.DataFrame
    summary: pd.DataFrame
    view: RunView
    findings: list[Finding]
    _stats: dict = field(default_factory=dict, repr=False)
    _by_key: dict = field(default_factory=dict, repr=False)

    # -- the run's shape
    @property
    def points(self) -> list[dict]:
        return self.view.points

    @property
    def paths(self) -> list[str]:
        return self.view.paths

    @property
    def varying(self) -> list[str]:
        return self.view.varying

    @property
    def models(self) -> list[str]:
        return self.view.models

    @property
    def groups(self) -> list[str]:
        return self.view.groups

    @property
    def replicates(self) -> int:
        return self.view.R

    @property
    def seeds(self) -> list[int]:
        return list(self.manifest["replicate_seeds"])

    @cached_property
    def chosen(self) -> tuple[int, int]:
        """(least-biased, most-biased) point (:meth:`simsys.findings.RunView.chosen_points`)."""
        return self.view.chosen_points()

    @cached_property
    def metrics(self) -> list[str]:
        """The headline metrics, those with gap findings, in the findings' order."""
        have = {f.subject.get("metric") for f in self.findings if f.kind == "gap"}
        return [k for k in headline_metrics(self.view) if k in have]

    @cached_property
    def plain_models(self) -> list[str]:
        """Models with gap findings: every model but the fairness methods (the baseline stays)."""
        have = {f.subject.get("model") for f in self.findings if f.kind == "gap"}
        return [m for m in self.models if m in have]

    # -- lookups
    def stat(self, point: int, model: str, metric: str, *, training: str = "biased",
             reference: str = "truth", scope: str = "group", group: str = "") -> Stat:
        """One summary row; :data:`NAN_STAT` when the run has none."""
        return self._stats.get((point, model, training, reference, scope, group, metric), NAN_STAT)

    def has(self, metric: str, scope: str = "group") -> bool:
        return any(k[6] == metric and k[4] == scope for k in self._stats)

    def finding(self, key: str) -> Finding | None:
        if not self._by_key:
            self._by_key.update({f.key: f for f in self.findings})
        return self._by_key.get(key)

    def point_label(self, p: int, *, short: bool = False) -> str:
        """``keep_dark = 0.03`` (short: ``0.03`` when one setting varies)."""

        pt = self.points[p]
        if not self.varying:
            return "the scenario's settings"
        if short and len(self.varying) == 1:
            return fmt(pt.get(self.varying[0]), "setting")
        if short:
            return "\n".join(f"{short_name(path, self.varying)}={fmt(pt.get(path), 'setting')}"
                             for path in self.varying)
        return self.view.setting(p) if p < len(self.points) else ""

    def axis_label(self) -> str:
        from simsys.explain import setting_label

        if len(self.varying) == 1:
            return f"{setting_label(self.varying[0])} (swept: {self.varying[0]})"
        return "sweep point" if self.varying else ""

    def counts(self, point: int, model: str, training: str, reference: str, group: str) -> dict | None:
        """Confusion counts summed over the replicates (tp, fp, fn, tn), or None."""
        c = self.view.counts(point, model, training, reference, group)
        if c is None:
            return None
        return {k: float(np.nansum(v)) for k, v in c.items()}

    def test_labels_equal_truth(self, point: int) -> bool | None:
        """Whether the recorded labels of the test population equal the truth for every patient of
        every replicate at ``point`` (None when the run recorded no such counts)."""
        seen = False
        for g in self.groups:
            c = self.counts(point, "data", "test", "truth", g)
            if c is None:
                return None
            seen = True
            if c["fn"] + c["fp"] > 0:
                return False
        return seen or None

    @cached_property
    def cohorts(self) -> Cohorts:
        P, G = len(self.points), len(self.groups)
        out = {k: np.full((P, G), np.nan) for k in Cohorts.__dataclass_fields__}
        for p in range(P):
            for gi, g in enumerate(self.groups):
                for name, training in (("test", "test"), ("clean", "clean"), ("biased", "biased")):
                    c = self.counts(p, "data", training, "truth", g)
                    if c is None:
                        continue
                    out[f"{name}_n"][p, gi] = c["tp"] + c["fp"] + c["fn"] + c["tn"]
                    out[f"{name}_pos"][p, gi] = c["tp"] + c["fn"]
                    if f"{name}_labelled" in out:
                        out[f"{name}_labelled"][p, gi] = c["tp"] + c["fp"]
        return Cohorts(**out)


def short_name(path: str, paths: list[str]) -> str:
    """``biases[0].keep`` -> ``keep``, unless two paths end alike (then the whole path)."""
    last = path.split(".")[-1]
    return path if sum(p.split(".")[-1] == last for p in paths) > 1 else last


# --- reading and checking the folder ----------------------------------------------------------------
def _damaged(where: Path | str, key: str, found: str, allowed: str) -> RunError:
    return RunError(f"{where}: {key}: {found}; {allowed}")


def _kind(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "a missing value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_manifest(manifest: dict, where: Path) -> dict:
    """What the report reads from a manifest beyond what :func:`simsys.runner.read_manifest`
    already checked (the types a resumed run needs): the run is finished, each cell's replicate
    has a seed, and the fields the page shows (raises :class:`RunError`)."""
    def need(ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            raise _damaged(where, key, f"found {_kind(value)}", allowed)

    status = manifest.get("status")
    if status != "finished":
        run_dir = where.parent
        raise RunError(f"{run_dir}: the run is not finished (status {status!r}); finish it with: "
                       f"simsys run --resume {run_dir}")
    seeds = manifest["replicate_seeds"]
    cells = manifest["cells"]
    need(len(cells) > 0, "cells", cells, "expected a non-empty list of cells")
    for i, c in enumerate(cells):
        need(c["replicate"] < len(seeds), f"cells[{i}].replicate", c["replicate"],
             f"expected a replicate below {len(seeds)} (one per seed)")
        settings = c.get("settings")
        need(settings is None or all(isinstance(k, str) for k in settings),
             f"cells[{i}].settings", settings, "expected a mapping of key paths to values")
    need(manifest.get("baseline") is None or isinstance(manifest.get("baseline"), str), "baseline",
         manifest.get("baseline"), "expected a model name or null")
    checks = manifest.get("method_checks")
    need(checks is None or isinstance(checks, dict), "method_checks", checks, "expected a mapping or null")
    if checks:
        need(isinstance(checks.get("metric", ""), str), "method_checks.metric", checks.get("metric"),
             "expected a metric name")
        tol = checks.get("tolerance", 0.0)
        need(isinstance(tol, int | float) and not isinstance(tol, bool) and math.isfinite(tol),
             "method_checks.tolerance", tol, "expected a number")
    for key in ("finished", "resumed", "scenario_sha256", "scenario_name"):
        v = manifest.get(key)
        need(v is None or isinstance(v, str), key, v, "expected text")
    need(_is_int(manifest.get("errors", 0)), "errors", manifest.get("errors"), "expected a whole number")
    versions = manifest.get("versions") or {}
    need(isinstance(versions, dict) and all(isinstance(v, str | None) for v in versions.values()),
         "versions", versions, "expected a mapping of package names to versions")
    return manifest


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow's many error types: a damaged file is one line
        raise RunError(f"{path}: cannot be read as a Parquet table ({type(exc).__name__}); "
                       "expected the table simsys run writes") from exc


def _text_column(frame: pd.DataFrame, col: str, where: Path, *, nullable: bool = False) -> None:
    values = frame[col].tolist()
    for i, v in enumerate(values):
        if isinstance(v, str):
            continue
        if nullable and (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA):
            continue
        raise _damaged(where, f"column {col!r}, row {i}", f"found {_kind(v)}", "expected text")


def _number_column(frame: pd.DataFrame, col: str, where: Path, *, whole: bool = False) -> None:
    s = frame[col]
    if whole:
        ok = pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if ok and len(s) and int(s.min()) < 0:
            raise _damaged(where, f"column {col!r}", f"found {int(s.min())}", "expected whole numbers >= 0")
        allowed = "expected whole numbers"
    else:
        ok = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        allowed = "expected numbers"
    if not ok:
        raise _damaged(where, f"column {col!r}", f"found values of type {s.dtype}", allowed)


def _columns(frame: pd.DataFrame, cols: tuple[str, ...], where: Path) -> None:
    for c in cols:
        if c not in frame.columns:
            raise _damaged(where, f"column {c!r}", "missing", "expected the table simsys run writes "
                           "(a run folder made by an older simsys needs a new run)")


def check_results(frame: pd.DataFrame, where: Path, *, points: set[int], replicates: int) -> pd.DataFrame:
    _columns(frame, ("point", "replicate", *RESULT_TEXT, "group", "value", "reason"), where)
    _number_column(frame, "point", where, whole=True)
    _number_column(frame, "replicate", where, whole=True)
    _number_column(frame, "value", where)
    for c in RESULT_TEXT:
        _text_column(frame, c, where)
    _text_column(frame, "group", where, nullable=True)
    _text_column(frame, "reason", where, nullable=True)
    extra = sorted(set(frame["point"].unique().tolist()) - points)
    if extra:
        raise _damaged(where, "column 'point'", f"found point {extra[0]}, which the manifest's cells do not have",
                       "expected the points of manifest.json")
    if len(frame) and int(frame["replicate"].max()) >= replicates:
        raise _damaged(where, "column 'replicate'", f"found replicate {int(frame['replicate'].max())}",
                       f"expected replicates below {replicates} (one per seed in manifest.json)")
    frame = frame.copy()
    frame["group"] = frame["group"].fillna("").astype(str)
    frame["value"] = frame["value"].astype(np.float64)
    return frame


def check_summary(frame: pd.DataFrame, where: Path) -> pd.DataFrame:
    _columns(frame, ("point", *SUMMARY_TEXT, "group", *SUMMARY_NUMBERS, "n_replicates"), where)
    _number_column(frame, "point", where, whole=True)
    _number_column(frame, "n_replicates", where, whole=True)
    for c in SUMMARY_NUMBERS:
        if frame[c].isna().all():  # an all-empty column (no rates in the run) reads as object
            frame = frame.assign(**{c: frame[c].astype(np.float64)})
        _number_column(frame, c, where)
    for c in SUMMARY_TEXT:
        _text_column(frame, c, where)
    _text_column(frame, "group", where, nullable=True)
    frame = frame.copy()
    frame["group"] = frame["group"].fillna("").astype(str)
    return frame


def load_run(run_dir: str | Path) -> RunData:
    """Read and check a finished run folder, and rebuild its findings.

    Raises
    ------
    RunError
        If the folder is not a finished run, or anything in it is damaged (one line saying where
        and what).
    """
    from simsys.runner import read_manifest

    run_dir = Path(run_dir)
    mpath = run_dir / MANIFEST
    manifest = check_manifest(read_manifest(run_dir), mpath)  # one reader of manifests: the runner's
    for name in (RESULTS, SUMMARY):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir}: {name} is missing; the run folder is incomplete")
    try:
        scenario = from_dict(manifest["scenario"], source=manifest["source"])
    except SimsysError as exc:
        raise RunError(f"{mpath}: scenario: {exc}") from exc
    except Exception as exc:  # a mapping the scenario model cannot even read
        raise _damaged(mpath, "scenario", f"not a scenario ({type(exc).__name__})",
                       "expected the resolved scenario simsys run writes") from exc
    points = {int(c["point"]) for c in manifest["cells"]}
    results = check_results(_read_parquet(run_dir / RESULTS), run_dir / RESULTS, points=points,
                            replicates=len(manifest["replicate_seeds"]))
    summary = check_summary(_read_parquet(run_dir / SUMMARY), run_dir / SUMMARY)
    try:
        view = RunView(results, scenario, manifest)
        findings = build_findings(view)
    except SimsysError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RunError(f"{run_dir}: the run's tables do not fit together ({type(exc).__name__}: {exc}); "
                       "expected the files of one simsys run") from exc
    stats = {}
    if len(summary):
        cols = [summary[c].tolist() for c in ("point", "model", "training", "reference", "scope", "group", "metric",
                                              "estimate", "lo", "hi", "cases", "events", "n_replicates")]
        for p, m, t, r, s, g, k, est, lo, hi, cases, events, n in zip(*cols):
            stats[(int(p), m, t, r, s, g, k)] = Stat(_f(est), _f(lo), _f(hi), _f(cases), _f(events), int(n))
    return RunData(run_dir, manifest, scenario, results, summary, view, findings, stats)


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


__all__ = ["NAN_STAT", "Cohorts", "RunData", "Stat", "load_run", "short_name"]
