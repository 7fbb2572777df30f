"""``simsys stress``: a method developer's battery, scored against the truth.

A fairness method (a model spec as in ``experiment.models``: a built-in mitigation, an import path,
or ``file.py:Class`` with ``--allow-import``) is run through a battery of scenarios at graded bias
strengths, beside each scenario's baseline model and the built-in mitigations as comparators. Each
battery entry is one ordinary simsys run (its own folder, resumable), so the method and every
comparator see the same patients in every replicate and are compared paired. The scores
(:func:`simsys.findings.stress_scores`) are against the truth -- something no benchmark on real
data can give -- and beside what an audit with the recorded labels would see.

Outputs, in ``outputs/stress/<method>/<run-id>/``: one sub-folder per scenario (a full run with its
own report), ``leaderboard.csv`` / ``.parquet`` (one row per method x scenario x strength x metric),
``summary.md`` (the ranking and the failures in words) and ``stress.html``.

The default battery (``simsys/battery.yaml``) lists every scenario of the library with the sweep
of bias strengths it is judged at and the population scale that keeps the whole battery, with one
method, within about 10 minutes on 2 cores.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import re
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simsys.errors import RunError, ScenarioError
from simsys.io import atomic_write

#: Built-in mitigations the method is compared with (fast ones; name -> model spec).
DEFAULT_COMPARATORS: dict[str, dict] = {
    "reweighing": {"name": "reweighing", "model": "reweighing"},
    "group_resampling": {"name": "group_resampling", "model": "group_resampling"},
    "eo_thresholds": {"name": "eo_thresholds", "model": "group_thresholds",
                      "params": {"constraint": "equal_opportunity"}},
}
_BATTERY_KEYS = {"scenario", "sweep", "scale", "replicates", "baseline", "note"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class BatteryEntry:
    """One scenario of a battery: which scenario, at which bias strengths, at what size."""

    scenario: str
    sweep: Mapping | None = None  # None: the scenario's own experiment.sweep
    scale: float = 1.0
    replicates: int | None = None
    baseline: str | None = None
    note: str = ""


def library_dir() -> Path:
    """The scenario library: ``scenarios/`` beside the package (a checkout or an editable install),
    else the copy installed with the package (``<prefix>/share/simsys/scenarios``)."""
    here = Path(__file__).resolve().parent.parent / "scenarios"
    if here.is_dir():
        return here
    return Path(sysconfig.get_path("data")) / "share" / "simsys" / "scenarios"


def resolve_scenario(name: str, base: Path | None = None) -> Path:
    """A library name (``melanoma``) or a path to a scenario file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        q = p if p.is_absolute() or base is None else base / p
        if not q.is_file():
            raise ScenarioError(str(q), "", "file not found")
        return q
    lib = library_dir() / f"{name}.yaml"
    if not _NAME.fullmatch(name) or not lib.is_file():
        known = sorted(f.stem for f in library_dir().glob("*.yaml"))
        raise RunError(f"unknown scenario {name!r}; the library has: {', '.join(known)} (or give a .yaml path)")
    return lib


def load_battery(path: str | os.PathLike | None = None, *, scenarios: Sequence[str] | None = None) -> list[BatteryEntry]:
    """Read a battery file (default: the built-in battery), optionally keeping only ``scenarios``.

    A battery file is a YAML list (or ``{scenarios: [...]}``) of entries ``{scenario, sweep, scale,
    replicates, baseline, note}``; only ``scenario`` is required. ``sweep`` takes the form of
    ``experiment.sweep`` (``grid`` and/or ``points``).
    """
    from simsys.scenario import read_yaml

    src = Path(path) if path is not None else Path(__file__).with_name("battery.yaml")
    data = read_yaml(src)
    if isinstance(data, Mapping):
        data = data.get("scenarios")
    if not isinstance(data, list) or not data:
        raise ScenarioError(str(src), "", "expected a list of battery entries ({scenario: name, ...})")
    out = []
    for i, e in enumerate(data):
        if isinstance(e, str):
            e = {"scenario": e}
        if not isinstance(e, Mapping) or "scenario" not in e:
            raise ScenarioError(str(src), f"[{i}]", "expected a mapping with a 'scenario' key")
        for k in e:
            if k not in _BATTERY_KEYS:
                raise ScenarioError(str(src), f"[{i}].{k}", f"unknown key; allowed: {', '.join(sorted(_BATTERY_KEYS))}")
        scale = e.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
            raise ScenarioError(str(src), f"[{i}].scale", f"expected a number in (0, 1], got {scale!r}")
        reps = e.get("replicates")
        if reps is not None and (isinstance(reps, bool) or not isinstance(reps, int) or reps < 1):
            raise ScenarioError(str(src), f"[{i}].replicates", f"expected an integer >= 1, got {reps!r}")
        sweep = e.get("sweep")
        if sweep is not None and not isinstance(sweep, Mapping):
            raise ScenarioError(str(src), f"[{i}].sweep", "expected a mapping with 'grid' and/or 'points'")
        out.append(BatteryEntry(str(e["scenario"]), sweep, float(scale), reps, e.get("baseline"),
                                str(e.get("note", ""))))
    if scenarios:
        # in the order asked for; a scenario the battery does not list runs at its own settings
        names = {Path(x.scenario).stem: x for x in out}
        out = [names.get(s) or BatteryEntry(s) for s in scenarios]
    return out


def method_spec(method: Any, *, params: Mapping | None = None, name: str | None = None) -> dict:
    """The model spec of the method under test (as in ``experiment.models``)."""
    if isinstance(method, Mapping):
        spec = dict(method)
    else:
        spec = {"model": method}
    if params:
        spec["params"] = {**spec.get("params", {}), **dict(params)}
    if name:
        spec["name"] = name
    if "name" not in spec:
        from simsys.models import model_label

        label = model_label(spec["model"])
        spec["name"] = re.sub(r"[^A-Za-z0-9_]", "_", label.split(":")[-1].split(".")[-1])[:64] or "method"
    return spec


def _scaled(n: int, scale: float, lo: int = 200) -> int:
    return max(lo, math.ceil(n * scale))


def battery_scenario(entry: BatteryEntry, *, replicates: int | None = None):
    """The scenario a battery entry runs (scaled populations, the entry's sweep) and the name of
    its baseline: the entry's, else the scenario's first model that does not receive the group."""
    from simsys.scenario import from_dict, load_scenario

    base = load_scenario(resolve_scenario(entry.scenario))
    data = copy.deepcopy(base.data)
    for pop in data.get("populations", {}).values():
        pop["n"] = _scaled(int(pop["n"]), entry.scale)
    exp = dict(data.get("experiment") or {})
    baseline_spec = None  # the scenario's first model that does not receive the group
    for m in exp.get("models") or [{"model": "logistic_regression"}]:
        m = {"model": m} if isinstance(m, str) else dict(m)
        nm = m.get("name") or m["model"]
        if (entry.baseline is None and not _receives_group(m)) or nm == entry.baseline:
            baseline_spec = m
            break
    if baseline_spec is None:
        raise RunError(f"battery entry {entry.scenario}: no plain baseline model in its experiment")
    baseline_spec.setdefault("name", baseline_spec["model"])
    for k in ("test_n", "validation_n"):
        if k in exp:
            exp[k] = _scaled(int(exp[k]), entry.scale, lo=100)
    # the models are passed to the runner as `models=` (they may be Python objects); the file keeps
    # the baseline, so that the scenario stays a valid scenario on its own
    exp["models"] = [baseline_spec]
    exp["baseline"] = baseline_spec["name"]
    if entry.sweep is not None:
        exp["sweep"] = dict(entry.sweep)
    reps = replicates or entry.replicates
    if reps:
        exp["replicates"] = int(reps)
    exp.pop("precision", None)
    data["experiment"] = exp
    return from_dict(data, source=str(resolve_scenario(entry.scenario))), baseline_spec


def _receives_group(spec: Mapping) -> bool:
    from simsys.models import _default_receives_group

    return bool(spec.get("receives_group", _default_receives_group(spec["model"])))


@dataclass
class StressResult:
    """What a battery produced: per-scenario runs, the leaderboard and the findings."""

    method: str
    against: str | None
    run_dir: Path | None
    runs: dict = field(default_factory=dict)  # scenario -> RunResult
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)
    findings: list = field(default_factory=list)

    def _rows(self, scenario: str, metric: str, model: str | None, point: int | None) -> pd.DataFrame:
        lb = self.leaderboard
        sel = lb[(lb["scenario"] == scenario) & (lb["metric"] == metric) & (lb["model"] == (model or self.method))]
        if sel.empty:
            raise KeyError(f"no {metric!r} for {model or self.method!r} in {scenario!r}")
        if point is None:
            run = self.runs[scenario]
            point = run.view.chosen_points()[1]
        return sel[sel["point"] == point]

    def score(self, scenario: str, metric: str, *, model: str | None = None, point: int | None = None):
        """One leaderboard entry as an :class:`simsys.intervals.Estimate` (at the most-biased point
        by default)."""
        from simsys.intervals import Estimate

        r = self._rows(scenario, metric, model, point).iloc[0]
        return Estimate(float(r["estimate"]), float(r["lo"]), float(r["hi"]), int(r["replicates"]), "leaderboard")

    def recovery(self, scenario: str, metric: str = "tpr", *, model: str | None = None, point: int | None = None):
        """The method's recovery of the baseline's bias-caused gap in ``metric`` between groups
        (``tpr``: equal opportunity), with its 95% interval: 0 = no better than the baseline on the
        biased data, 1 = as good as the baseline trained on the clean twin."""
        key = {"tpr": "equal_opportunity_difference", "fnr": "equal_opportunity_difference",
               "equal_opportunity": "equal_opportunity_difference"}.get(metric, metric)
        return self.score(scenario, f"recovery.{key}", model=model, point=point)

    def gap(self, scenario: str, *, reference: str = "truth", model: str | None = None, point: int | None = None):
        """The true-positive-rate gap (compared minus reference group) against ``truth`` or the
        ``recorded`` labels."""
        return self.score(scenario, f"tpr_gap.{reference}", model=model, point=point)

    def failures(self) -> list:
        """Findings where the method makes the true gap worse or only hides it from an audit."""
        return [f for f in self.findings if f.kind in ("stress_worse", "stress_hides")
                and f.subject.get("model") == self.method]


def stress(method: Any, *, params: Mapping | None = None, name: str | None = None, against: Any = None,
           against_params: Mapping | None = None, battery: str | os.PathLike | None = None,
           scenarios: Sequence[str] | None = None, replicates: int | None = None, seed: int | None = None,
           workers: int | None = None, executor: str = "local", scheduler: str | None = None,
           output_dir: str | os.PathLike | None = "outputs", run_id: str | None = None,
           resume: str | os.PathLike | None = None, allow_imports: bool = False, progress: bool = False,
           comparators: Mapping[str, dict] | None = None, echo=None) -> StressResult:
    """Run a method through a battery and score it against the truth (see the module docstring).

    Parameters
    ----------
    method : str, mapping or estimator
        The method: a model spec's ``model`` (built-in mitigation name, import path,
        ``file.py:Class``) or a whole spec ``{model, params, name, receives_group}``, or an
        estimator object / class from Python.
    against : optional
        A second method (or another version of the same) compared with the first, paired.
    battery : path, optional
        A battery file (default: the built-in battery); ``scenarios`` keeps only those.
    replicates : int, optional
        Replicates of every entry (default: each entry's own, else its scenario's).
    resume : path, optional
        A stress folder to finish: finished scenarios are read back, the others run or resumed.
    """
    from simsys.runner import run

    echo = echo or (lambda *_: None)
    if resume is not None:
        sdir = Path(resume)
        meta = _read_meta(sdir)
        method, params, name = meta["method"], meta.get("params"), meta["name"]
        against, against_params = meta.get("against"), meta.get("against_params")
        battery, scenarios, replicates, seed = meta.get("battery"), meta.get("scenarios"), meta.get("replicates"), meta.get("seed")
    spec = method_spec(method, params=params, name=name)
    specs = [spec]
    other = None
    if against is not None:
        other = method_spec(against, params=against_params)
        if other["name"] == spec["name"]:
            other["name"] = other["name"] + "_against"
        specs.append(other)
    comps = dict(DEFAULT_COMPARATORS if comparators is None else comparators)
    for s in specs:
        comps.pop(s["name"], None)
    models = [*specs, *comps.values()]
    entries = load_battery(battery, scenarios=scenarios)
    # every entry is resolved and checked before any work (a misspelt scenario fails now)
    prepared = [battery_scenario(e, replicates=replicates) for e in entries]
    from simsys.runner import parse_experiment

    total_cells = 0
    for sc, base_spec in prepared:  # and every model (the method included) is built once
        exp = parse_experiment(sc, allow_imports=allow_imports, models=[base_spec, *models])
        total_cells += len(exp.points) * exp.replicates
    sdir = None
    if resume is not None:
        sdir = Path(resume)
    elif output_dir is not None:
        rid = run_id or _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        sdir = Path(output_dir) / "stress" / spec["name"] / rid
        if sdir.exists() and any(sdir.iterdir()):
            raise RunError(f"{sdir}: stress folder exists and is not empty; use --resume to finish it")
        sdir.mkdir(parents=True, exist_ok=True)
        meta = {"simsys_stress": 1, "method": spec["model"] if isinstance(spec["model"], str) else None,
                "name": spec["name"], "params": spec.get("params"),
                "against": other["model"] if other and isinstance(other["model"], str) else None,
                "against_params": other.get("params") if other else None,
                "battery": str(battery) if battery else None, "scenarios": list(scenarios) if scenarios else None,
                "replicates": replicates, "seed": seed, "comparators": list(comps)}
        atomic_write(sdir / "stress.json", lambda t: Path(t).write_text(json.dumps(meta, indent=2, default=str)))
    result = StressResult(spec["name"], other["name"] if other else None, sdir)
    bar = None
    if progress:  # one bar over the whole battery
        from tqdm import tqdm

        bar = tqdm(total=total_cells, desc="battery", unit="cell", file=sys.stderr)
    rows: list[dict] = []
    from simsys.findings import compare_methods, stress_scores

    for i, entry in enumerate(entries):
        label = Path(entry.scenario).stem
        echo(f"[{i + 1}/{len(entries)}] {label}")
        sc, base_spec = prepared[i]
        baseline = base_spec["name"]
        sub = sdir / label if sdir is not None else None
        kw = dict(workers=workers, executor=executor, scheduler=scheduler, allow_imports=allow_imports,
                  progress=bar if bar is not None else False, models=[base_spec, *models])
        if sub is not None and (sub / "run" / "manifest.json").is_file():
            res = run(None, resume=sub / "run", **kw)  # a scenario the interrupted battery had started
        else:
            # run folders: <stress dir>/<scenario name>/run/
            res = run(sc, seed=seed, output_dir=sdir, run_id="run", **kw)
        result.runs[label] = res
        names = [m["name"] for m in models]
        r, f = stress_scores(res.view, label, [baseline, *names], baseline)
        rows += r
        result.findings += f
        if other is not None:
            result.findings += compare_methods(res.view, label, spec["name"], other["name"])
    if bar is not None:
        bar.close()
    result.leaderboard = pd.DataFrame(rows)
    if sdir is not None:
        _write(result)
    return result


def _read_meta(sdir: Path) -> dict:
    p = sdir / "stress.json"
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{p}: not a readable stress folder ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("simsys_stress") != 1 or not isinstance(meta.get("name"), str):
        raise RunError(f"{p}: not a stress folder written by simsys")
    if meta.get("method") is None:
        raise RunError(f"{p}: this battery ran a method passed from Python; resume it from Python")
    return meta


def ranking(result: StressResult) -> pd.DataFrame:
    """The methods ranked: fewest places where each makes the true gap worse than its baseline,
    then fewest where it only hides the gap from an audit, then the highest median recovery of the
    baseline's bias-caused equal-opportunity gap over the battery's points (the median: a ratio
    over a small gap can be large either way). Each scenario's own baseline is one row,
    ``baseline``."""
    lb = result.leaderboard
    if lb.empty:
        return pd.DataFrame()
    lb = lb.assign(model=lb["model"].where(lb["model"] != lb["baseline"], "baseline"))
    rec = lb[lb["metric"] == "recovery.equal_opportunity_difference"]
    cost = lb[lb["metric"] == "accuracy_cost"]
    out = []
    for m, sub in rec.groupby("model", sort=False):
        def count(kind, m=m):
            return sum(1 for f in result.findings if f.kind == kind and f.subject.get("model") == m)

        out.append({"model": m, "median_recovery": sub["estimate"].median(skipna=True),
                    "points_scored": int(sub["estimate"].notna().sum()), "points": len(sub),
                    "mean_accuracy_change_pp": 100 * cost[cost["model"] == m]["estimate"].mean(skipna=True),
                    "makes_gap_worse": count("stress_worse"), "only_hides_gap": count("stress_hides")})
    frame = pd.DataFrame(out).sort_values(["makes_gap_worse", "only_hides_gap", "median_recovery"],
                                          ascending=[True, True, False], kind="stable", na_position="last")
    return frame.reset_index(drop=True)


def _write(result: StressResult) -> None:
    sdir = result.run_dir
    lb = result.leaderboard
    atomic_write(sdir / "leaderboard.parquet", lambda t: lb.to_parquet(t, index=False))
    atomic_write(sdir / "leaderboard.csv", lambda t: lb.to_csv(t, index=False))
    from simsys.render import stress_markdown

    text = stress_markdown(result, ranking(result))
    atomic_write(sdir / "summary.md", lambda t: Path(t).write_text(text, encoding="utf-8"))
    from simsys.report.stress import write_stress_report

    write_stress_report(result, ranking(result))


__all__ = ["DEFAULT_COMPARATORS", "BatteryEntry", "StressResult", "battery_scenario", "library_dir",
           "load_battery", "method_spec", "ranking", "stress"]
