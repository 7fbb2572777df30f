"""Figures and the HTML report of a finished run: what ``simsys run`` writes last, and what
``simsys report RUN_DIR`` rebuilds from the run folder alone.

This module owns ``<run>/figures/`` and ``<run>/report.html``. Everything is computed from the
run's files -- ``manifest.json`` (the resolved scenario, seeds, versions), ``results.parquet`` and
``summary.parquet`` -- plus, where the tables do not hold what a figure needs, a deterministic
recomputation from the resolved scenario with the run's own seeds:

- the clean twin's group shares and prevalence (the cohort figure): the first replicate's clean
  twin is sampled again, which gives the very patients the run used (common random numbers);
- the predictions behind the ROC and calibration curves: when the run saved predictions
  (``--save-predictions``) they are read; otherwise the runner's task function
  (:func:`simsys.runner.run_task`) is called once, with ``save_predictions=True``, for the first
  replicate of the *most-biased point*, and the predictions are cached in
  ``figures/predictions_point<P>_rep000.parquet``. The task is deterministic, so these are the
  predictions the run's models made; a rebuild reads the cache and redoes nothing.

The most-biased point is the sweep point whose (first-replicate) training data differ most from
their clean twin: the total-variation distance between the joint distributions of (group, label)
in the biased training set and of (group, true label) in the clean twin; ties go to the later
point. The least-biased point (the smallest distance, ties to the earlier point) is what the key
findings compare it with.

The report is deterministic: the same run folder gives the same bytes (figures are saved without
dates and with fixed SVG ids; nothing in the page depends on when it was built).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from simsys import explain as X
from simsys.drawing import bias_id, draw_graph, figure_bytes, to_dot
from simsys.errors import ModelError, RunError
from simsys.io import atomic_write
from simsys.scenario import Scenario, from_dict, get_path

#: Disparities drawn in the headline figure, in this order (``tpr`` mirrors ``fnr`` exactly).
DISPARITIES = ("fnr", "fpr", "selection_rate", "accuracy", "auroc")
#: Disparities the key findings and the explorer's numbers speak about (as ``simsys run`` prints).
HEADLINE = ("fnr", "auroc")
#: Per-group metrics drawn against the truth and against the observed labels.
GROUP_METRICS = ("fnr", "fpr", "ppv", "auroc", "calibration_in_the_large")
#: Figures every report writes (``headline_heatmap`` only when two settings are swept on a grid).
FIGURES = ("graph", "headline", "groups", "roc_calibration", "cohort")

NAMES = {
    "fnr": "false-negative rate",
    "fpr": "false-positive rate",
    "tpr": "true-positive rate",
    "ppv": "positive predictive value",
    "npv": "negative predictive value",
    "selection_rate": "selection rate",
    "accuracy": "accuracy",
    "auroc": "AUROC",
    "brier": "Brier score",
    "ece": "expected calibration error",
    "calibration_in_the_large": "calibration in the large",
}
SHORT = {"fnr": "FNR", "fpr": "FPR", "ppv": "PPV", "auroc": "AUROC", "selection_rate": "selection rate",
         "accuracy": "accuracy", "calibration_in_the_large": "calibration-in-the-large"}

GROUP_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")
MODEL_COLOURS = ("#332288", "#117733", "#AA4499", "#44AA99", "#999933", "#882255", "#661100", "#6699CC")

DPI = 150  # PNG files
FRAME_DPI = 96  # the explorer's pre-rendered frames (embedded once per sweep point)
WIDTH = 10.0  # inches, every figure but the graph

#: Matplotlib settings the figures are drawn under (one look for every figure).
STYLE_RC = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.color": "#E5E5E5", "grid.linewidth": 0.6,
    "axes.axisbelow": True, "figure.facecolor": "white",
}

DEFINITIONS = (
    ("gap between groups", "For a metric, the largest minus the smallest value over the groups "
     "(max - min), on the test population; 0 means every group is treated alike."),
    ("against the truth / against the observed label", "Metrics computed with the true outcome, "
     "or with the recorded (possibly biased) label of the test population: what an audit with only "
     "those labels would have concluded."),
    ("biased training set", "The patients (and labels, and features) the model learned from, after "
     "every injected bias acted."),
    ("clean twin", "The same patients before any bias acted: every one of them, with true labels "
     "and true features. simsys draws both from the same random numbers."),
    ("caused by the injected biases", "The gap of the model trained on the biased data minus the gap "
     "of the same model trained on the clean twin (paired counterfactual datasets; Stanley et al. "
     "2023)."),
    ("gap in the training labels (D_data)", "The gap the training labels already carry relative to "
     "the truth, e.g. the difference in the share of true cases labelled negative."),
    ("added by the model", "The model's gap minus the gap in the training labels (D_model - D_data)."),
    ("false-negative rate (FNR)", "Share of truly positive patients the model calls negative: FN / "
     "(TP + FN). Underdiagnosis (Seyyed-Kalantari et al. 2021)."),
    ("false-positive rate (FPR)", "Share of truly negative patients the model calls positive: FP / "
     "(FP + TN)."),
    ("positive predictive value (PPV)", "Share of positive calls that are truly positive: TP / "
     "(TP + FP)."),
    ("AUROC", "Probability that a random positive scores higher than a random negative (ties count "
     "one half); threshold-free."),
    ("selection rate", "Share of patients the model calls positive."),
    ("calibration in the large", "Mean predicted risk minus the observed rate; positive when the "
     "model over-predicts risk in that group."),
    ("threshold", "Scores at or above it are positive calls; chosen on a validation set by the "
     "experiment's threshold policy."),
    ("95% interval", "Mean over the replicates -/+ t(0.975, R-1) sd / sqrt(R): Student's t over R "
     "independent replicates (fresh patients each). Not shown with one replicate."),
    ("replicate", "One repetition of the whole experiment with new patients (its own seed); every "
     "setting of the sweep uses the same patients within a replicate."),
)


class Stat(NamedTuple):
    mean: float
    lo: float
    hi: float
    n: int


NAN_STAT = Stat(math.nan, math.nan, math.nan, 0)


@dataclass
class RunData:
    """A finished run, read from its folder."""

    run_dir: Path
    manifest: dict
    scenario: Scenario
    results: pd.DataFrame
    summary: pd.DataFrame
    points: list[dict]
    paths: list[str]
    models: list[str]
    groups: list[str]
    _index: dict = field(default_factory=dict, repr=False)
    _rep0: dict = field(default_factory=dict, repr=False)

    def stat(self, point: int, model: str, metric: str, *, training: str = "biased",
             reference: str = "truth", scope: str | None = None, group: str = "") -> Stat:
        """One summary row (mean, 95% interval, replicates); NaN when the run has none."""
        if scope is None:
            scope = "group" if group else ("amplification" if "." in metric else "disparity")
        return self._index.get((point, model, training, reference, scope, group, metric), NAN_STAT)

    def rep0(self, point: int, model: str, metric: str, group: str, *, training: str = "biased",
             reference: str = "truth", scope: str = "group") -> float:
        """A value of the first replicate (the cohorts the figures show)."""
        if not self._rep0:
            r = self.results[self.results["replicate"] == 0]
            cols = [r[c].tolist() for c in ("point", "model", "training", "reference", "scope", "group",
                                            "metric", "value")]
            self._rep0.update({(int(p), *k): float(v) for p, *k, v in zip(*cols)})
        return self._rep0.get((point, model, training, reference, scope, group, metric), math.nan)

    @property
    def seeds(self) -> list[int]:
        return list(self.manifest["replicate_seeds"])

    @property
    def replicates(self) -> int:
        return len(self.seeds)

    def has(self, metric: str) -> bool:
        return any(k[6] == metric for k in self._index)


def load_run(run_dir: str | Path) -> RunData:
    """Read a finished run folder.

    Raises
    ------
    RunError
        If the folder has no manifest, is not finished, or lacks its results.
    """
    run_dir = Path(run_dir)
    mpath = run_dir / "manifest.json"
    if not mpath.is_file():
        raise RunError(f"{run_dir}: not a run folder (no manifest.json)")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if manifest.get("status") != "finished":
        raise RunError(f"{run_dir}: the run is not finished (status {manifest.get('status')!r}); "
                       f"finish it with: simsys run --resume {run_dir}")
    for name in ("results.parquet", "summary.parquet"):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir}: {name} is missing; the run folder is incomplete")
    scenario = from_dict(manifest["scenario"], source=manifest["source"])
    results = pd.read_parquet(run_dir / "results.parquet")
    summary = pd.read_parquet(run_dir / "summary.parquet")
    for frame in (results, summary):
        if "group" in frame:
            frame["group"] = frame["group"].fillna("").astype(str)
    cells = sorted(manifest.get("cells", []), key=lambda c: (c["point"], c["replicate"]))
    points: dict[int, dict] = {}
    for c in cells:
        points.setdefault(int(c["point"]), dict(c.get("settings") or {}))
    point_list = [points[i] for i in sorted(points)] or [{}]
    paths = list(dict.fromkeys(p for pt in point_list for p in pt))
    for pt in point_list:  # a point that does not set a swept path has the scenario's own value
        for path in paths:
            if path not in pt:
                pt[path] = get_path(scenario.data, path)
    models = [m if isinstance(m, str) else m.get("name", m.get("model")) for m in manifest.get("models", [])]
    from simsys.runner import GroupCoding

    groups = GroupCoding.of(scenario).labels
    index = {}
    if not summary.empty:
        cols = [summary[c].tolist() for c in ("point", "model", "training", "reference", "scope", "group",
                                             "metric", "mean", "lo", "hi", "n_replicates")]
        for p, m, t, r, s, g, k, mean, lo, hi, n in zip(*cols):
            index[(int(p), m, t, r, s, g, k)] = Stat(float(mean), float(lo), float(hi), int(n))
    return RunData(run_dir, manifest, scenario, results, summary, point_list, paths, models, groups, index)


# --- formatting ---------------------------------------------------------------------------------------
def f3(x: float) -> str:
    """A metric as the report prints it: three decimals (``n/a`` when undefined)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    s = f"{x:.3f}"
    return "0.000" if s == "-0.000" else s


def pct(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.1%}"


def interval(st: Stat, *, words: bool = True) -> str:
    """``95% interval 0.136 to 0.194`` (empty with one replicate)."""
    if not (np.isfinite(st.lo) and np.isfinite(st.hi)):
        return ""
    return f"{'95% interval ' if words else ''}{f3(st.lo)} to {f3(st.hi)}"


def point_label(run: RunData, p: int, *, short: bool = False) -> str:
    """``keep_dark = 0.03`` (``0.03`` when short and one setting is swept)."""
    pt = run.points[p]
    varying = [path for path in run.paths if len({repr(q.get(path)) for q in run.points}) > 1] or run.paths
    if not varying:
        return "the scenario's settings"
    if short and len(varying) == 1:
        return X.number(pt.get(varying[0]))
    if short:
        names = short_names(varying)
        return "\n".join(f"{names[path]}={X.number(pt.get(path))}" for path in varying)
    return ", ".join(f"{X.setting_label(path)} = {X.number(pt.get(path))}" for path in varying)


def short_names(paths: list[str]) -> dict[str, str]:
    """``biases[0].keep`` -> ``keep``, unless two paths end alike (then the whole path)."""
    last = {p: p.split(".")[-1] for p in paths}
    clash = {v for v in last.values() if list(last.values()).count(v) > 1}
    return {p: (p if last[p] in clash else last[p]) for p in paths}


def axis_label(run: RunData) -> str:
    if len(run.paths) == 1:
        return f"{X.setting_label(run.paths[0])} (swept: {run.paths[0]})"
    return "sweep point" if run.paths else ""


def group_colour(i: int) -> str:
    return GROUP_COLOURS[i % len(GROUP_COLOURS)]


def model_colour(i: int) -> str:
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


# --- the cohorts ----------------------------------------------------------------------------------------
@dataclass
class Cohorts:
    """Group sizes and prevalence of the first replicate's cohorts, per sweep point.

    Arrays are indexed [point, group]: ``test_n`` and ``test_prev`` (the test population),
    ``clean_n`` and ``clean_prev`` (the clean twin, sampled again), ``biased_n``, ``biased_prev``
    (true prevalence) and ``biased_label`` (share labelled positive) of the biased training set.
    """

    test_n: np.ndarray
    test_prev: np.ndarray
    clean_n: np.ndarray
    clean_prev: np.ndarray
    biased_n: np.ndarray
    biased_prev: np.ndarray
    biased_label: np.ndarray
    distance: np.ndarray  # per point: total variation between biased and clean (group, label)

    @property
    def same_clean(self) -> bool:
        """Whether every point has the same clean twin (the sweep moves only biases)."""
        return bool(np.array_equal(self.clean_n, self.clean_n[:1].repeat(len(self.clean_n), 0))
                    and np.allclose(self.clean_prev, self.clean_prev[:1], equal_nan=True))


def cohorts(run: RunData) -> Cohorts:
    """The first replicate's cohorts: test and biased training sets from the results table, the
    clean twin sampled again from the resolved scenario with the first replicate's seed."""
    from simsys.runner import GroupCoding
    from simsys.simulate import build_plan, run_plan

    sc = run.scenario
    exp = sc.spec.experiment or {}
    train = exp.get("train", "train")
    P, G = len(run.points), len(run.groups)
    shape = (P, G)
    out = {k: np.full(shape, np.nan) for k in ("test_n", "test_prev", "clean_n", "clean_prev",
                                                "biased_n", "biased_prev", "biased_label")}
    model = next((m for m in run.models if (run.results["model"] == m).any()), None)
    seed = run.seeds[0]
    for p, pt in enumerate(run.points):
        for g, label in enumerate(run.groups):
            if model is not None:
                out["test_n"][p, g] = run.rep0(p, model, "n", label)
                out["test_prev"][p, g] = run.rep0(p, model, "prevalence", label)
            out["biased_n"][p, g] = run.rep0(p, "data", "label_n", label)
            out["biased_prev"][p, g] = run.rep0(p, "data", "label_prevalence", label)
            out["biased_label"][p, g] = run.rep0(p, "data", "label_selection_rate", label)
        scp = sc.with_values(pt) if pt else sc
        coding = GroupCoding.of(scp)
        clean = run_plan(build_plan(scp, train, biased=False), scp.spec.populations[train].n, seed)
        codes = coding.codes(clean)
        y = clean.column(scp.spec.roles.target).astype(np.float64)
        n = np.bincount(codes, minlength=G).astype(np.float64)
        pos = np.bincount(codes, weights=y, minlength=G)
        out["clean_n"][p] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            out["clean_prev"][p] = np.where(n > 0, pos / np.maximum(n, 1), np.nan)
    dist = np.full(P, np.nan)
    for p in range(P):
        bn, bl = out["biased_n"][p], out["biased_label"][p]
        cn, cp = out["clean_n"][p], out["clean_prev"][p]
        if np.isfinite(bn).all() and bn.sum() > 0 and cn.sum() > 0:
            b = np.concatenate([bn * np.nan_to_num(bl), bn * (1 - np.nan_to_num(bl))]) / bn.sum()
            c = np.concatenate([cn * np.nan_to_num(cp), cn * (1 - np.nan_to_num(cp))]) / cn.sum()
            dist[p] = 0.5 * np.abs(b - c).sum()
    return Cohorts(**out, distance=dist)


def chosen_points(cohort: Cohorts) -> tuple[int, int]:
    """(least-biased, most-biased) point: smallest / largest distance from the clean twin; ties go
    to the earlier / later point; without any distance, the first and the last point."""
    d = cohort.distance
    P = len(d)
    if not np.isfinite(d).any():
        return 0, P - 1
    dd = np.where(np.isfinite(d), d, np.nan)
    lo = int(np.nanargmin(dd))
    hi = int(P - 1 - np.nanargmax(dd[::-1]))
    return lo, hi


# --- predictions of the chosen cell --------------------------------------------------------------------
def cell_predictions(run: RunData, point: int) -> pd.DataFrame | None:
    """Test-set predictions of the models trained on the biased data, first replicate of ``point``.

    Read from the run's saved predictions, else from the report's cache, else recomputed with the
    runner's task function (and cached). None if the cell cannot be recomputed (a model failed).
    """
    saved = sorted((run.run_dir / "predictions").glob(f"point{point:04d}_rep000_*.parquet"))
    if saved:
        return pd.concat([pd.read_parquet(f) for f in saved], ignore_index=True)
    cache = run.run_dir / "figures" / f"predictions_point{point:04d}_rep000.parquet"
    if cache.is_file():
        return pd.read_parquet(cache)
    from simsys.runner import parse_experiment, run_task

    # a run folder is untrusted: its manifest's allow_imports grants nothing, only the caller's
    allow = bool(getattr(run, "allow_imports", False))
    try:
        experiment = parse_experiment(run.scenario, allow_imports=allow)
    except ModelError as exc:
        raise RunError(f"not recomputed: {exc}") from None
    res = run_task(run.scenario, experiment, point, 0, run.seeds[0], allow_imports=allow,
                   save_predictions=True)
    if not res["predictions"]:
        return None
    frame = pd.concat(res["predictions"], ignore_index=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, lambda t: frame.to_parquet(t, index=False))
    return frame


# --- figures --------------------------------------------------------------------------------------------
def _figure(height: float, width: float = WIDTH) -> Figure:
    with matplotlib.rc_context(STYLE_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _subplots(fig: Figure, rows: int, cols: int, **kw):
    with matplotlib.rc_context(STYLE_RC):
        return fig.subplots(rows, cols, squeeze=False, **kw)


def _point_axis(ax, run: RunData, *, labels: bool = True) -> None:
    P = len(run.points)
    ax.set_xticks(range(P))
    ax.set_xticklabels([point_label(run, p, short=True) for p in range(P)] if labels else [""] * P)
    ax.set_xlim(-0.4, P - 0.6)


def disparities(run: RunData) -> list[str]:
    return [d for d in DISPARITIES if run.has(f"{d}_difference.d_model")]


def headline_disparities(run: RunData) -> list[str]:
    found = [d for d in HEADLINE if run.has(f"{d}_difference.d_model")]
    return found or disparities(run)[:1]


def headline_figure(run: RunData, *, which: Iterable[str] | None = None, mark: int | None = None,
                    height_per_row: float = 2.3, width: float = WIDTH, short: bool = False) -> Figure:
    """Each disparity (rows) against the swept setting: the gap (left) and the part the injected
    biases caused (right), one colour per model, solid = trained on the biased data, dashed = on
    the clean twin, dotted black = the gap the training labels carry; bands = 95% intervals."""
    which = list(which) if which is not None else disparities(run)
    P = len(run.points)
    x = np.arange(P)
    fig = _figure(height_per_row * len(which) + 0.7, width)
    axes = _subplots(fig, len(which), 2, sharex=True)
    for r, d in enumerate(which):
        left, right = axes[r]
        for mi, m in enumerate(run.models):
            c = model_colour(mi)
            st = [run.stat(p, m, f"{d}_difference.d_model") for p in range(P)]
            mean = np.array([s.mean for s in st])
            left.plot(x, mean, "-o", color=c, lw=1.8, ms=4)
            left.fill_between(x, [s.lo for s in st], [s.hi for s in st], color=c, alpha=0.15, lw=0)
            clean = [run.stat(p, m, f"{d}_difference", training="clean").mean for p in range(P)]
            left.plot(x, clean, "--", color=c, lw=1.3, ms=3, marker="s", mfc="white")
            ca = [run.stat(p, m, f"{d}_difference.caused") for p in range(P)]
            right.plot(x, [s.mean for s in ca], "-o", color=c, lw=1.8, ms=4)
            right.fill_between(x, [s.lo for s in ca], [s.hi for s in ca], color=c, alpha=0.15, lw=0)
        if run.models and run.has(f"{d}_difference.d_data"):
            dd = [run.stat(p, run.models[0], f"{d}_difference.d_data").mean for p in range(P)]
            left.plot(x, dd, ":", color="black", lw=1.4, marker="x", ms=4)
        right.axhline(0, color="#777777", lw=0.8)
        name = SHORT.get(d, d) if short else NAMES[d]
        left.set_title(f"{name}: gap between groups", loc="left", fontweight="bold")
        right.set_title(f"{name}: caused by the biases", loc="left", fontweight="bold")
        left.set_ylabel("gap (max - min)")
        right.set_ylabel("biased - clean twin")
        for ax in (left, right):
            _point_axis(ax, run, labels=r == len(which) - 1)
            if mark is not None:
                ax.axvspan(mark - 0.3, mark + 0.3, color="#E41A1C", alpha=0.12, lw=0)
    for ax in axes[-1]:
        ax.set_xlabel(axis_label(run))
    handles = [Line2D([], [], color=model_colour(i), lw=2, label=m) for i, m in enumerate(run.models)]
    handles += [Line2D([], [], color="#555555", lw=1.8, marker="o", ms=4, label="trained on the biased data"),
                Line2D([], [], color="#555555", lw=1.3, ls="--", marker="s", mfc="white", ms=3,
                       label="trained on the clean twin"),
                Line2D([], [], color="black", lw=1.4, ls=":", marker="x", ms=4, label="gap in the training labels"),
                Patch(color="#555555", alpha=0.2, label="95% interval")]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4), frameon=False)
    return fig


def grid_axes(run: RunData) -> tuple[str, str, list, list] | None:
    """(row path, column path, row values, column values) when two settings are swept on a full
    grid (one point per combination), else None."""
    if len(run.paths) != 2:
        return None
    a, b = run.paths
    va = list(dict.fromkeys(repr(p.get(a)) for p in run.points))
    vb = list(dict.fromkeys(repr(p.get(b)) for p in run.points))
    combos = {(repr(p.get(a)), repr(p.get(b))) for p in run.points}
    if len(va) < 2 or len(vb) < 2 or len(combos) != len(run.points) or len(combos) != len(va) * len(vb):
        return None
    vals_a = [next(p.get(a) for p in run.points if repr(p.get(a)) == v) for v in va]
    vals_b = [next(p.get(b) for p in run.points if repr(p.get(b)) == v) for v in vb]
    return a, b, vals_a, vals_b


def heatmap_figure(run: RunData) -> Figure | None:
    """Two swept settings on a grid: one heatmap per model (rows) and headline disparity, for the
    gap and the part caused by the biases (columns)."""
    g = grid_axes(run)
    if g is None:
        return None
    a, b, va, vb = g
    which = headline_disparities(run)
    cols = [(d, part) for d in which for part in ("d_model", "caused")]
    fig = _figure(2.6 * len(run.models) + 0.6)
    axes = _subplots(fig, len(run.models), len(cols))
    where = {(repr(p.get(a)), repr(p.get(b))): i for i, p in enumerate(run.points)}
    for mi, m in enumerate(run.models):
        for ci, (d, part) in enumerate(cols):
            ax = axes[mi][ci]
            z = np.full((len(va), len(vb)), np.nan)
            for i, u in enumerate(va):
                for j, v in enumerate(vb):
                    z[i, j] = run.stat(where[(repr(u), repr(v))], m, f"{d}_difference.{part}").mean
            lim = np.nanmax(np.abs(z)) if np.isfinite(z).any() else 1.0
            lim = lim if lim > 0 else 1.0
            cmap, vmin = ("RdBu_r", -lim) if part == "caused" else ("viridis", 0.0)
            im = ax.imshow(z, cmap=cmap, vmin=vmin, vmax=lim, aspect="auto", origin="upper")
            for i in range(len(va)):
                for j in range(len(vb)):
                    ax.text(j, i, f3(z[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if part == "d_model" and z[i, j] < lim * 0.5 else "black")
            ax.set_xticks(range(len(vb)), [X.number(v) for v in vb])
            ax.set_yticks(range(len(va)), [X.number(v) for v in va])
            ax.set_xlabel(X.setting_label(b))
            ax.set_ylabel(X.setting_label(a))
            ax.grid(False)
            ax.set_title(f"{m}: {SHORT.get(d, d)} {'gap' if part == 'd_model' else 'caused by biases'}",
                         loc="left", fontsize=8.5)
            fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def group_limits(run: RunData, metrics: list[str]) -> dict[str, tuple[float, float]]:
    """y-limits per metric, shared by every point (so the explorer's frames are comparable)."""
    out = {}
    s = run.summary
    for k in metrics:
        rows = s[(s["scope"] == "group") & (s["metric"] == k) & (s["training"] == "biased")
                 & (s["group"] != "overall")] if not s.empty else s
        vals = pd.concat([rows["lo"], rows["hi"], rows["mean"]]).to_numpy(dtype=float) if len(rows) else np.array([])
        vals = vals[np.isfinite(vals)]
        lo = min(0.0, float(vals.min())) if len(vals) else 0.0
        hi = max(float(vals.max()), 0.05) if len(vals) else 1.0
        if k in ("fnr", "fpr", "ppv", "auroc"):
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        pad = 0.2 * (hi - lo)  # room for the value printed above each bar
        out[k] = (lo - (pad if lo < 0 else 0), hi + pad)
    return out


def group_metrics(run: RunData) -> list[str]:
    return [k for k in GROUP_METRICS if run.has(k)]


def _group_bars(ax, run: RunData, point: int, k: str, ref: str, limits: tuple[float, float]) -> None:
    """Bars per model (x) and group (colour) of one metric, whiskers = 95% interval, value above."""
    G, M = len(run.groups), len(run.models)
    w = 0.8 / max(G, 1)
    lo_k, hi_k = limits
    for gi, g in enumerate(run.groups):
        xs, ys, lo, hi = [], [], [], []
        for mi, m in enumerate(run.models):
            st = run.stat(point, m, k, reference=ref, group=g)
            xs.append(mi - 0.4 + w * (gi + 0.5))
            ys.append(st.mean)
            lo.append(st.mean - st.lo if np.isfinite(st.lo) else 0.0)
            hi.append(st.hi - st.mean if np.isfinite(st.hi) else 0.0)
        ax.bar(xs, ys, width=w * 0.92, color=group_colour(gi), yerr=[lo, hi],
               error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"})
        for x_, y_, h_ in zip(xs, ys, hi):
            if np.isfinite(y_):
                top = min(max(y_, 0.0) + h_, hi_k)
                ax.text(x_, top + 0.02 * (hi_k - lo_k), f"{y_:.2f}", ha="center", va="bottom",
                        fontsize=6.5, color="#222222", clip_on=False)
    ax.set_xticks(range(M), run.models)
    ax.set_xlim(-0.5, M - 0.5)
    ax.set_ylim(lo_k, hi_k)
    if k == "calibration_in_the_large":
        ax.axhline(0, color="#777777", lw=0.8)


def _groups_legend(fig: Figure, run: RunData, point: int) -> None:
    handles = [Patch(color=group_colour(i), label=g) for i, g in enumerate(run.groups)]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(run.groups), 6), frameon=False,
               title=f"models trained on the biased data, at {point_label(run, point)}"
                     + ("; bars: mean, whiskers: 95% interval" if run.replicates > 1 else ""))


AUDIT = "Against the observed labels (an audit's view)"


def groups_figure(run: RunData, point: int, *, limits: dict | None = None) -> Figure:
    """Per-group metrics of the models trained on the biased data at one point, with 95%
    intervals: against the truth (left) and against the observed test labels (right)."""
    metrics = group_metrics(run)
    limits = limits or group_limits(run, metrics)
    fig = _figure(1.9 * len(metrics) + 1.1)
    with matplotlib.rc_context(STYLE_RC):
        subs = fig.subfigures(1, 2, wspace=0.02)
    for c, ref in enumerate(("truth", "observed")):
        subs[c].suptitle("Against the truth" if ref == "truth" else AUDIT, fontsize=10, fontweight="bold")
        axes = _subplots(subs[c], len(metrics), 1)
        for r, k in enumerate(metrics):
            _group_bars(axes[r][0], run, point, k, ref, limits[k])
            axes[r][0].set_title(NAMES[k], loc="left")
    _groups_legend(fig, run, point)
    return fig


def groups_frame(run: RunData, point: int, *, limits: dict) -> Figure:
    """The explorer's compact version: FNR, FPR and AUROC side by side, against the truth, and
    against the observed labels too when the test population is biased (else they agree)."""
    metrics = [k for k in ("fnr", "fpr", "auroc") if run.has(k)] or group_metrics(run)[:3]
    test = (run.scenario.spec.experiment or {}).get("test", "test")
    refs = ["truth", "observed"] if run.scenario.spec.populations[test].biased else ["truth"]
    fig = _figure(2.3 * len(refs) + 0.8)
    axes = _subplots(fig, len(refs), len(metrics))
    for r, ref in enumerate(refs):
        for c, k in enumerate(metrics):
            _group_bars(axes[r][c], run, point, k, ref, limits[k])
            where = "" if len(refs) == 1 else (" (truth)" if ref == "truth" else " (observed labels)")
            axes[r][c].set_title(f"{NAMES[k]}{where}", loc="left", fontweight="bold")
    _groups_legend(fig, run, point)
    return fig


def _roc_points(y: np.ndarray, s: np.ndarray, grid: int = 201) -> tuple[np.ndarray, np.ndarray] | None:
    from sklearn.metrics import roc_curve

    if y.min() == y.max():
        return None
    fpr, tpr, _ = roc_curve(y, s)
    xs = np.linspace(0, 1, grid)
    return xs, np.interp(xs, fpr, tpr)  # a few hundred points are enough to draw the curve


def _calibration_points(y: np.ndarray, s: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and observed rate in (up to) ``bins`` equal-count bins of the score."""
    order = np.argsort(s, kind="stable")
    chunks = [c for c in np.array_split(order, min(bins, max(len(s), 1))) if len(c)]
    return np.array([s[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks])


def roc_figure(run: RunData, point: int, preds: pd.DataFrame | None, *,
               note: str = "no predictions for this model") -> Figure:
    """ROC (left) and calibration (right) curves per group, for each model (rows), against the
    truth, for the first replicate of one point; the dot is the operating point (the threshold)."""
    M = max(len(run.models), 1)
    fig = _figure(3.4 * M + 0.6)
    axes = _subplots(fig, M, 2)
    for mi, m in enumerate(run.models):
        roc, cal = axes[mi]
        sub = preds[preds["model"] == m] if preds is not None else None
        thr = run.rep0(point, m, "threshold", "overall", scope="threshold")
        top = 0.0
        for gi, g in enumerate(run.groups):
            if sub is None or not len(sub):
                continue
            rows = sub[sub["group"] == gi]
            if not len(rows):
                continue
            y = rows["y_true"].to_numpy(np.int64)
            s = rows["score"].to_numpy(np.float64)
            pts = _roc_points(y, s)
            c = group_colour(gi)
            if pts is not None:
                auc = run.rep0(point, m, "auroc", g)
                roc.plot(*pts, color=c, lw=1.6, label=f"{g} (AUROC {f3(auc)})")
                if np.isfinite(thr):
                    yp = s >= thr
                    roc.plot([yp[y == 0].mean()], [yp[y == 1].mean()], "o", color=c, mec="black", ms=6)
            mx, my = _calibration_points(y, s)
            cal.plot(mx, my, "-o", color=c, lw=1.4, ms=3.5, label=g)
            top = max(top, float(np.nanmax(mx)) if len(mx) else 0.0, float(np.nanmax(my)) if len(my) else 0.0)
        roc.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        roc.set_xlim(0, 1)
        roc.set_ylim(0, 1.01)
        roc.set_xlabel("false-positive rate")
        roc.set_ylabel("true-positive rate")
        roc.set_title(f"{m}: ROC per group (dot: the chosen threshold)", loc="left", fontweight="bold")
        top = min(1.0, top * 1.1) if top > 0 else 1.0
        cal.plot([0, top], [0, top], color="#999999", lw=0.8, ls="--")
        cal.set_xlim(0, top)
        cal.set_ylim(0, top)
        cal.set_xlabel("mean predicted risk (10 equal-count bins)")
        cal.set_ylabel("observed rate (truth)")
        cal.set_title(f"{m}: calibration per group", loc="left", fontweight="bold")
        if sub is None or not len(sub):
            for ax in (roc, cal):
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", wrap=True)
        else:
            roc.legend(loc="lower right", frameon=False)
    fig.suptitle(f"Trained on the biased data, first replicate at {point_label(run, point)}",
                 fontsize=9.5)
    return fig


def cohort_figure(run: RunData, cohort: Cohorts, points: list[int] | None = None, *,
                  side_by_side: bool = False) -> Figure:
    """Who is in the data: group shares (top) and prevalence per group (bottom) in the test
    population, the clean twin and the biased training set (first replicate); for the biased set,
    black ticks mark the share *labelled* positive."""
    points = list(range(len(run.points))) if points is None else points
    sets: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = []
    p0 = points[0]
    sets.append(("test population", cohort.test_n[p0], cohort.test_prev[p0], None))
    if cohort.same_clean or len(points) == 1:
        sets.append(("clean twin", cohort.clean_n[p0], cohort.clean_prev[p0], None))
    else:
        sets += [(f"clean twin\n{point_label(run, p)}", cohort.clean_n[p], cohort.clean_prev[p], None) for p in points]
    multi = len(run.points) > 1
    for p in points:
        name = "biased training set" + (f"\n{point_label(run, p)}" if multi else "")
        sets.append((name, cohort.biased_n[p], cohort.biased_prev[p], cohort.biased_label[p]))
    S, G = len(sets), len(run.groups)
    with matplotlib.rc_context(STYLE_RC):
        if side_by_side:  # the explorer's frame: three sets, shares left, prevalence right
            fig = _figure(2.9)
            gs = fig.add_gridspec(1, 2, width_ratios=[1.15, 1])
            top, bottom = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
        else:
            fig = _figure(0.42 * S + 3.6)
            gs = fig.add_gridspec(2, 1, height_ratios=[0.42 * S + 0.6, 2.8])
            top, bottom = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    for si, (_, n, _, _) in enumerate(sets):
        total = np.nansum(n)
        left = 0.0
        for gi in range(G):
            share = n[gi] / total if total > 0 and np.isfinite(n[gi]) else 0.0
            top.barh(S - 1 - si, share, left=left, color=group_colour(gi), height=0.7)
            if share >= 0.045:
                top.text(left + share / 2, S - 1 - si, pct(share), ha="center", va="center", fontsize=7)
            left += share
        top.text(1.01, S - 1 - si, f"n = {int(total):,}" if total > 0 else "n = 0", va="center", fontsize=7.5)
    top.set_yticks(range(S), [s[0] for s in sets][::-1])
    top.set_xlim(0, 1)
    top.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    top.set_title("Share of each group" if side_by_side else "Who is in the data: share of each group",
                  loc="left", fontweight="bold")
    if side_by_side:
        top.set_xlim(0, 1.22)  # room for the sizes
        top.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    top.grid(False)
    w = 0.8 / max(G, 1)
    for si, (_, _, prev, lab) in enumerate(sets):
        for gi in range(G):
            x = si - 0.4 + w * (gi + 0.5)
            bottom.bar(x, prev[gi], width=w * 0.9, color=group_colour(gi))
            if lab is not None and np.isfinite(lab[gi]):
                bottom.plot([x - w * 0.45, x + w * 0.45], [lab[gi]] * 2, color="black", lw=2)
    bottom.set_xticks(range(S), [s[0] for s in sets], fontsize=7)
    bottom.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    target = run.scenario.spec.roles.target
    bottom.set_title(f"Share with {target} = 1" if side_by_side else
                     f"How many have {target} = 1 (prevalence), per group; black: share labelled 1",
                     loc="left", fontweight="bold")
    handles = [Patch(color=group_colour(i), label=g) for i, g in enumerate(run.groups)]
    handles.append(Line2D([], [], color="black", lw=2, label="labelled positive (biased set)"))
    fig.legend(handles=handles, loc="outside upper center", ncol=min(G + 1, 6), frameon=False)
    return fig


# --- findings --------------------------------------------------------------------------------------------
def _models_text(parts: list[str]) -> str:
    return X.join_words(parts)


def findings(run: RunData, cohort: Cohorts) -> list[str]:
    """The key findings, as plain sentences built from the summary table's numbers."""
    sc = run.scenario
    target = sc.spec.roles.target
    lo, hi = chosen_points(cohort)
    out: list[str] = []
    models = [m for m in run.models if np.isfinite(run.stat(hi, m, f"{headline_disparities(run)[0]}_difference.d_model").mean)] if run.models else []
    at_hi = point_label(run, hi)
    at_lo = point_label(run, lo)
    if lo != hi:
        changes = [X.describe_change(sc, path, run.points[lo].get(path), run.points[hi].get(path))
                   for path in run.paths if repr(run.points[lo].get(path)) != repr(run.points[hi].get(path))]
        change = " and ".join(changes[:1] + [c[0].lower() + c[1:] for c in changes[1:]])
    else:
        change = ""
    # who is in the data
    bn, cn, tn = cohort.biased_n[hi], cohort.clean_n[hi], cohort.test_n[hi]
    if np.isfinite(bn).all() and cn.sum() > 0 and bn.sum() > 0:
        share_b, share_c = bn / bn.sum(), cn / cn.sum()
        share_t = tn / np.nansum(tn) if np.nansum(tn) > 0 else np.full_like(tn, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = int(np.nanargmin(np.where(share_c > 0, share_b / share_c, np.inf)))
        if bn.sum() == cn.sum() and np.abs(share_b - share_c).max() < 5e-4:
            s = (f"Who the models learned from: at {at_hi}, the biased training set holds the same "
                 f"{int(bn.sum()):,} patients as its clean twin; the biases change what is recorded about "
                 f"them, not who is in the data.")
        else:
            s = (f"Who the models learned from: at {at_hi}, the biased training set kept {int(bn.sum()):,} of "
                 f"the clean twin's {int(cn.sum()):,} patients ({pct(bn.sum() / cn.sum())}); {run.groups[g]} "
                 f"made up {pct(share_b[g])} of it")
            if lo != hi and np.isfinite(cohort.biased_n[lo]).all() and cohort.biased_n[lo].sum() > 0:
                s += f" (against {pct(cohort.biased_n[lo][g] / cohort.biased_n[lo].sum())} at {at_lo})"
            s += f", {pct(share_c[g])} of the clean twin and {pct(share_t[g])} of the test population."
        out.append(s)
    if run.has("label_fnr"):
        fnr = [run.stat(hi, "data", "label_fnr", group=g).mean for g in run.groups]
        if np.nanmax(np.nan_to_num(fnr)) > 0:
            order = np.argsort(np.nan_to_num(fnr, nan=-1.0))
            w, b = int(order[-1]), int(order[0])
            out.append(f"What the training labels say: they missed {pct(fnr[w])} of the true {target} cases "
                       f"among {run.groups[w]}, against {pct(fnr[b])} among {run.groups[b]} (mean over "
                       f"{run.replicates} replicate{'s' if run.replicates > 1 else ''}).")
    first = True
    for d in headline_disparities(run):
        name = NAMES[d]
        key = f"{d}_difference"
        ms = [m for m in models if np.isfinite(run.stat(hi, m, key + ".d_model").mean)]
        if not ms:
            continue
        if lo != hi:
            parts = []
            for m in ms:
                a, b = run.stat(lo, m, key + ".d_model"), run.stat(hi, m, key + ".d_model")
                iv = interval(b)
                parts.append(f"from {f3(a.mean)} to {f3(b.mean)}{' (' + iv + ')' if iv else ''} for {m}")
            s = f"{change if first else 'The same change'} moved the {name} gap between groups {_models_text(parts)}."
            first = False
        else:
            parts = []
            for m in ms:
                b = run.stat(hi, m, key + ".d_model")
                iv = interval(b)
                parts.append(f"{f3(b.mean)}{' (' + iv + ')' if iv else ''} for {m}")
            s = f"The {name} gap between groups was {_models_text(parts)}."
        caused = [(m, run.stat(hi, m, key + ".caused")) for m in ms]
        caused = [(m, c) for m, c in caused if np.isfinite(c.mean)]
        if caused:
            parts = []
            unclear, nothing = [], []
            for m, c in caused:
                iv = interval(c, words=False)
                parts.append(f"{f3(c.mean)}{' (' + iv + ')' if iv else ''} for {m}")
                if _exactly_zero(c):
                    nothing.append(m)
                elif np.isfinite(c.lo) and c.lo <= 0 <= c.hi:
                    unclear.append(m)
            clean = [f"{f3(run.stat(hi, m, key, training='clean').mean)} for {m}" for m, _ in caused]
            s += (f" Of the gap at {at_hi}, the injected biases caused {_models_text(parts)}"
                  f"{' (95% intervals)' if run.replicates > 1 else ''}; trained on the clean twin, the same "
                  f"model{'s' if len(caused) > 1 else ''} still had a gap of {_models_text(clean)}.")
            if unclear:
                s += (f" For {_models_text(unclear)} the part caused by the biases is not distinguishable "
                      f"from zero with {run.replicates} replicates.")
            if nothing:
                s += (f" For {_models_text(nothing)} the biases changed nothing: the gap is the same with and "
                      "without them, in every replicate.")
        out.append(s)
    lede = _lede(run, models, hi, at_hi)
    if lede:
        out.insert(0, lede)
    # which group is worst off
    if run.has("fnr") and models:
        parts = []
        for m in models:
            vals = [run.stat(hi, m, "fnr", group=g).mean for g in run.groups]
            if not np.isfinite(vals).any():
                continue
            w, b = int(np.nanargmax(vals)), int(np.nanargmin(vals))
            parts.append(f"{m} missed {pct(vals[w])} of the true {target} cases among {run.groups[w]}, "
                         f"against {pct(vals[b])} among {run.groups[b]}")
        if parts:
            out.append(f"Who is missed: at {at_hi}, " + "; ".join(parts) + " (false-negative rate against the truth).")
    if run.has("fnr_difference.d_data") and models:
        dd = run.stat(hi, models[0], "fnr_difference.d_data")
        if np.isfinite(dd.mean) and dd.mean > 0:
            adds = [run.stat(hi, m, "fnr_difference.addition").mean for m in models]
            parts = [f"{f3(abs(a))} {'larger' if a >= 0 else 'smaller'} for {m}"
                     for a, m in zip(adds, models) if np.isfinite(a)]
            head = "Amplification" if all(a > 0 for a in adds if np.isfinite(a)) else "Labels against models"
            out.append(f"{head}: at {at_hi}, the training labels themselves carried a false-negative-rate "
                       f"gap of {f3(dd.mean)} (measured against the truth); the models' gaps were "
                       f"{_models_text(parts)}.")
    # what an audit would see
    test_pop = (sc.spec.experiment or {}).get("test", "test")
    d0 = headline_disparities(run)[0] if headline_disparities(run) else None
    if d0 and models:
        if not sc.spec.populations[test_pop].biased:
            out.append(f"An audit's view: the {test_pop} population carries no bias, so its recorded labels are the "
                       "truth and an audit would have measured the true gaps.")
        else:
            parts = []
            for m in models:
                obs = f3(run.stat(hi, m, f"{d0}_difference", reference="observed").mean)
                true = f3(run.stat(hi, m, f"{d0}_difference").mean)
                parts.append(f"{obs} for {m}, the same as the truth" if obs == true
                             else f"{obs} instead of {true} for {m}")
            out.append(f"An audit's view: measured with the recorded labels of the {test_pop} population, the "
                       f"{NAMES[d0]} gap at {at_hi} would have been {_models_text(parts)}.")
    # which model is fairer, if one is at every point
    if len(models) > 1 and len(run.points) > 1:
        for d in headline_disparities(run):
            best = {min(models, key=lambda m, p=p: run.stat(p, m, f"{d}_difference.d_model").mean)
                    for p in range(len(run.points))}
            if len(best) == 1:
                out.append(f"{best.pop()} had the smallest {NAMES[d]} gap at every setting of the sweep.")
    return out


def _exactly_zero(st: Stat) -> bool:
    """A caused part that is 0 in every replicate (a fixed rule, or biases that touch nothing)."""
    return abs(st.mean) < 1e-12 and (not np.isfinite(st.lo) or (abs(st.lo) < 1e-12 and abs(st.hi) < 1e-12))


def _lede(run: RunData, models: list[str], hi: int, at_hi: str) -> str | None:
    """``In short: ...``: at the most-biased point, the headline gap the biases most clearly widened:
    the one with the most models whose caused part has a positive lower bound, then the largest such
    bound."""
    best = None
    for d in headline_disparities(run):
        bounds = [c.lo if np.isfinite(c.lo) else c.mean
                  for c in (run.stat(hi, m, f"{d}_difference.caused") for m in models) if np.isfinite(c.mean)]
        if not bounds:
            continue
        key = (sum(b > 0 for b in bounds), max(bounds))
        if best is None or key > best[0]:
            best = (key, d)
    if best is None:
        return None
    score, d = best[0][1], best[1]
    cs = [(m, run.stat(hi, m, f"{d}_difference.caused")) for m in models]
    cs = [(m, c) for m, c in cs if np.isfinite(c.mean)]
    clean = X.join_words([f"{f3(run.stat(hi, m, f'{d}_difference', training='clean').mean)} for {m}" for m, _ in cs])
    if score > 0:
        parts = []
        for m, c in cs:
            iv = interval(c)
            parts.append(f"{f3(c.mean)} for {m}" + (f" ({iv})" if iv else "")
                         + (", not clearly different from zero" if np.isfinite(c.lo) and c.lo <= 0 else ""))
        return (f"In short: at {at_hi}, the injected biases widened the {NAMES[d]} gap between groups by "
                f"{'; '.join(parts)}. Trained on the clean twin, the same model{'s' if len(cs) > 1 else ''} "
                f"had a gap of {clean}: that part is there even without the biases.")
    return (f"In short: at {at_hi}, no headline gap was clearly widened by the injected biases (with "
            f"{run.replicates} replicate{'s' if run.replicates != 1 else ''}); the {NAMES[d]} gap of models "
            f"trained on the clean twin was {clean}.")


def point_sentence(run: RunData, p: int) -> str:
    """One sentence for the explorer: the headline gaps at one point, and the part caused."""
    clauses = []
    for d in headline_disparities(run):
        parts = []
        for m in run.models:
            st = run.stat(p, m, f"{d}_difference.d_model")
            ca = run.stat(p, m, f"{d}_difference.caused")
            if np.isfinite(st.mean):
                parts.append(f"{f3(st.mean)} for {m} ({f3(ca.mean)} of it caused by the biases)")
        if parts:
            clauses.append(f"the {NAMES[d]} gap is {X.join_words(parts)}")
    return f"At {point_label(run, p)}: " + ("; ".join(clauses) if clauses else "no results") + "."


# --- the explorer's data --------------------------------------------------------------------------------
def explorer_numbers(run: RunData, cohort: Cohorts, p: int) -> dict[str, str]:
    """Every number the explorer shows at point ``p``, keyed as the page's ``data-key``s."""
    out: dict[str, str] = {}
    for m in run.models:
        for d in headline_disparities(run):
            key = f"{d}_difference"
            out[f"{m}|{key}.d_model"] = f3(run.stat(p, m, key + ".d_model").mean)
            out[f"{m}|{key}.clean"] = f3(run.stat(p, m, key, training="clean").mean)
            out[f"{m}|{key}.caused"] = f3(run.stat(p, m, key + ".caused").mean)
            out[f"{m}|{key}.caused_iv"] = interval(run.stat(p, m, key + ".caused"), words=False)
            out[f"{m}|{key}.d_data"] = f3(run.stat(p, m, key + ".d_data").mean)
        for g in run.groups:
            for k in ("fnr", "fpr", "auroc"):
                out[f"{m}|{g}|{k}"] = f3(run.stat(p, m, k, group=g).mean)
    bn = cohort.biased_n[p]
    total = np.nansum(bn)
    for gi, g in enumerate(run.groups):
        out[f"train|{g}|share"] = pct(bn[gi] / total) if total > 0 else "n/a"
        out[f"train|{g}|n"] = f"{int(bn[gi]):,}" if np.isfinite(bn[gi]) else "n/a"
    out["train|n"] = f"{int(total):,}"
    return out


# --- writing ---------------------------------------------------------------------------------------------
@dataclass
class Built:
    """What :func:`build` made: figure name -> (PNG bytes, SVG bytes), frames, texts."""

    figures: dict[str, tuple[bytes, bytes]]
    frames: dict[str, list[bytes]]  # explorer frames (PNG) per kind, one per point
    graph_frames: dict[str, bytes]  # swept path -> graph PNG with what it moves highlighted
    findings: list[str]
    chosen: tuple[int, int]
    cohort: Cohorts


def _png_svg(fig: Figure) -> tuple[bytes, bytes]:
    return figure_bytes(fig, "png", dpi=DPI), figure_bytes(fig, "svg")


def build(run: RunData) -> Built:
    """Draw every figure and frame, and write the findings (nothing is written to disk but the
    predictions cache)."""
    cohort = cohorts(run)
    lo, hi = chosen_points(cohort)
    figs: dict[str, tuple[bytes, bytes]] = {}
    figs["graph"] = _png_svg(draw_graph(run.scenario))
    figs["headline"] = _png_svg(headline_figure(run))
    heat = heatmap_figure(run)
    if heat is not None:
        figs["headline_heatmap"] = _png_svg(heat)
    limits = group_limits(run, group_metrics(run))
    figs["groups"] = _png_svg(groups_figure(run, hi, limits=limits))
    try:
        preds, why = cell_predictions(run, hi), "no predictions for this model (it failed in this cell)"
    except Exception as exc:  # a cell that cannot be recomputed: the figure says why, the rest stands
        preds, why = None, f"predictions unavailable: {type(exc).__name__}: {exc}"
    figs["roc_calibration"] = _png_svg(roc_figure(run, hi, preds, note=why))
    figs["cohort"] = _png_svg(cohort_figure(run, cohort))
    frames: dict[str, list[bytes]] = {"groups": [], "cohort": [], "headline": []}
    if len(run.points) > 1:
        for p in range(len(run.points)):
            frames["groups"].append(figure_bytes(groups_frame(run, p, limits=limits), "png", dpi=FRAME_DPI))
            frames["cohort"].append(figure_bytes(cohort_figure(run, cohort, [p], side_by_side=True), "png",
                                                 dpi=FRAME_DPI))
            frames["headline"].append(figure_bytes(
                headline_figure(run, which=headline_disparities(run), mark=p, height_per_row=1.9, width=7.0,
                                short=True), "png", dpi=FRAME_DPI))
    graph_frames = {}
    for path in run.paths:
        biases, nodes = X.affected_by(run.scenario, path)
        hl = {bias_id(i) for i in biases} | set(nodes)
        graph_frames[path] = figure_bytes(draw_graph(run.scenario, highlight=hl), "png", dpi=FRAME_DPI + 18)
    return Built(figs, frames, graph_frames, findings(run, cohort), (lo, hi), cohort)


def write_figures(run: RunData, built: Built) -> Path:
    """``figures/<name>.png`` and ``.svg`` for every figure, and ``figures/graph.dot``."""
    out = run.run_dir / "figures"
    out.mkdir(exist_ok=True)
    for name, (png, svg) in built.figures.items():
        atomic_write(out / f"{name}.png", lambda t, b=png: Path(t).write_bytes(b))
        atomic_write(out / f"{name}.svg", lambda t, b=svg: Path(t).write_bytes(b))
    atomic_write(out / "graph.dot", lambda t: Path(t).write_text(to_dot(run.scenario), encoding="utf-8"))
    return out


def write_report(run_dir: str | Path, *, allow_imports: bool = False) -> Path:
    """Rebuild ``figures/`` and ``report.html`` of a finished run folder; returns the report's path.

    ``allow_imports`` lets the one recomputed cell (:func:`cell_predictions`) run models that need
    it; without it such a figure is drawn empty with the reason.

    Raises
    ------
    RunError
        If the folder is not a finished run (see :func:`load_run`).
    """
    run = load_run(run_dir)
    run.allow_imports = allow_imports  # read by cell_predictions (never from the manifest)
    built = build(run)
    write_figures(run, built)
    page = render(run, built)
    path = run.run_dir / "report.html"
    atomic_write(path, lambda t: Path(t).write_text(page, encoding="utf-8"))
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def esc(text: str) -> str:
    return html.escape(text, quote=True)


# --- the page ---------------------------------------------------------------------------------------------
CSS = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #e3e3e3; --accent: #E41A1C; --bg: #fafafa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: white; line-height: 1.5;
  font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 0 24px 64px; }
header { background: #20242b; color: white; padding: 28px 0 22px; }
header .inner { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
header .meta { color: #c7cbd1; font-size: 13px; margin: 0; }
nav { position: sticky; top: 0; background: rgba(255,255,255,.96); border-bottom: 1px solid var(--line);
  z-index: 5; }
nav .inner { max-width: 1080px; margin: 0 auto; padding: 8px 24px; font-size: 13px; }
nav a { color: var(--muted); margin-right: 16px; text-decoration: none; }
nav a:hover { color: var(--ink); }
section { scroll-margin-top: 44px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
figure { margin: 14px 0 24px; }
figure img { width: 100%; height: auto; display: block; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; }
.lede { font-size: 16px; }
ul.findings { padding-left: 20px; }
ul.findings li { margin: 0 0 10px; }
table { border-collapse: collapse; font-size: 13.5px; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.box { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 14px 18px; }
.controls { display: grid; grid-template-columns: minmax(160px, max-content) 1fr 90px; gap: 6px 14px;
  align-items: center; margin: 6px 0 12px; }
.controls input[type=range] { width: 100%; accent-color: var(--accent); }
.controls output { font-weight: 700; font-size: 17px; color: var(--accent); }
.ticks { grid-column: 2; display: flex; justify-content: space-between; color: var(--muted); font-size: 12px;
  margin-top: -6px; }
.sentence { font-size: 16px; font-weight: 600; margin: 8px 0 14px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
.explain p { margin: 0 0 8px; }
.explain ol { padding-left: 22px; }
details summary { cursor: pointer; color: var(--muted); margin: 6px 0; }
[hidden] { display: none !important; }
.box img { max-width: 100%; height: auto; display: block; }
.box figure img { border: none; }
.note { font-size: 13px; color: var(--muted); }
#js-errors { background: #fde8e8; color: #8a1c1c; padding: 8px 24px; white-space: pre-wrap; }
code { font-size: 90%; background: #f2f2f2; padding: 0 3px; border-radius: 3px; }
.warn { color: #8a1c1c; }
"""

ERROR_JS = """
window.simsysErrors = [];
window.addEventListener("error", function (e) {
  var msg = (e && e.message) ? e.message : "error loading a resource";
  window.simsysErrors.push(msg);
  var el = document.getElementById("js-errors");
  if (el) { el.textContent += msg + "\\n"; el.hidden = false; }
}, true);
"""

EXPLORER_JS = """
(function () {
  "use strict";
  var root = document.getElementById("explorer");
  if (!root) { return; }
  var data = JSON.parse(document.getElementById("explorer-data").textContent);
  var sliders = Array.prototype.slice.call(root.querySelectorAll("input[type=range]"));
  var lastAxis = 0;
  function each(sel, fn) { Array.prototype.forEach.call(root.querySelectorAll(sel), fn); }
  function show(p) {
    if (!(p >= 0 && p < data.coords.length)) { p = data.initial; }
    var c = data.coords[p];
    sliders.forEach(function (s, i) {
      s.value = String(c[i]);
      var out = document.getElementById("value-" + i);
      if (out) { out.textContent = data.axes[i].values[c[i]]; }
    });
    each("img.frame", function (img) { img.hidden = img.getAttribute("data-point") !== String(p); });
    var path = data.axes.length ? data.axes[lastAxis].path : "";
    var frames = root.querySelectorAll("img.graph-frame");
    var any = false;
    Array.prototype.forEach.call(frames, function (img) {
      var on = img.getAttribute("data-path") === path;
      img.hidden = !on; any = any || on;
    });
    if (!any && frames.length) { frames[0].hidden = false; }
    var nums = data.numbers[p];
    each("[data-key]", function (el) {
      var k = el.getAttribute("data-key");
      el.textContent = Object.prototype.hasOwnProperty.call(nums, k) ? nums[k] : "n/a";
    });
    document.getElementById("explorer-sentence").textContent = data.sentences[p];
    document.getElementById("explorer-missing").hidden = true;
    root.setAttribute("data-point", String(p));
  }
  function fromSliders() {
    var key = sliders.map(function (s) { return s.value; }).join(",");
    var p = data.pointOf[key];
    if (p === undefined) {
      document.getElementById("explorer-missing").hidden = false;
      return;
    }
    try { history.replaceState(null, "", "#point=" + p); } catch (err) { /* file:// in some browsers */ }
    show(p);
  }
  sliders.forEach(function (s, i) {
    s.addEventListener("input", function () { lastAxis = i; fromSliders(); });
  });
  function fromHash() {
    var m = /point=(\\d+)/.exec(window.location.hash);
    show(m ? parseInt(m[1], 10) : data.initial);
    // #slide=A:I moves slider A to position I the way a reader does (its input event)
    var s = /slide=(\\d+):(\\d+)/.exec(window.location.hash);
    if (s && +s[1] < sliders.length) {
      sliders[+s[1]].value = s[2];
      sliders[+s[1]].dispatchEvent(new Event("input"));
    }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  root.setAttribute("data-ready", "1");
})();
"""


def _img(data: bytes, alt: str, *, mime: str = "image/png", attrs: str = "") -> str:
    return f'<img src="data:{mime};base64,{b64(data)}" alt="{esc(alt)}"{attrs}>'


def slider_axes(run: RunData) -> tuple[list[dict], list[list[int]]]:
    """The explorer's sliders and each point's slider positions: one slider per swept setting when
    the points form a full grid (or one setting with distinct values), else one over the points."""
    P = len(run.points)
    if not run.paths or P < 2:
        return [], [[] for _ in range(P)]
    values = {path: list(dict.fromkeys(repr(pt.get(path)) for pt in run.points)) for path in run.paths}
    combos = {tuple(repr(pt.get(path)) for path in run.paths) for pt in run.points}
    full = len(combos) == P and math.prod(len(v) for v in values.values()) == P
    if full:
        axes = []
        for path in run.paths:
            shown = [X.number(next(pt.get(path) for pt in run.points if repr(pt.get(path)) == v))
                     for v in values[path]]
            axes.append({"path": path, "label": f"{X.setting_label(path)}", "title": path, "values": shown})
        coords = [[values[path].index(repr(pt.get(path))) for path in run.paths] for pt in run.points]
        return axes, coords
    return ([{"path": run.paths[0], "label": "sweep setting", "title": ", ".join(run.paths),
              "values": [point_label(run, p, short=True).replace("\n", ", ") for p in range(P)]}],
            [[p] for p in range(P)])


def _explorer(run: RunData, built: Built) -> tuple[str, str]:
    """The explorer section and its JSON data."""
    P = len(run.points)
    hi = built.chosen[1]
    axes, coords = slider_axes(run)
    numbers = [explorer_numbers(run, built.cohort, p) for p in range(P)]
    sentences = [point_sentence(run, p) for p in range(P)]
    data = {"initial": hi, "axes": axes, "coords": coords,
            "pointOf": {",".join(str(i) for i in c): p for p, c in enumerate(coords)},
            "labels": [point_label(run, p) for p in range(P)], "sentences": sentences, "numbers": numbers}
    init = numbers[hi]
    h: list[str] = ['<section id="explorer" data-ready="0" data-point="' + str(hi) + '">',
                    "<h2>Explore: move the bias, watch the model</h2>"]
    if not axes:
        h.append("<p>This run has a single setting, so there is nothing to slide; the numbers below are "
                 "those of the run.</p>")
    else:
        h.append("<p>Each slider moves one setting the experiment swept. The graph shows in red what it "
                 "moves; the numbers, the curves, the bars and the training-set picture below all jump to "
                 "the results of that setting. Nothing is recomputed in your browser: every setting was "
                 "run by simsys, and this page only shows it. (Link to a setting: add "
                 "<code>#point=N</code> to the address.)</p>")
    h.append('<div class="box">')
    if axes:
        h.append('<div class="controls">')
        for i, ax in enumerate(axes):
            c = coords[hi][i]
            h.append(f'<label for="slider-{i}" title="{esc(ax["title"])}">{esc(ax["label"])}</label>'
                     f'<input type="range" id="slider-{i}" min="0" max="{len(ax["values"]) - 1}" step="1" '
                     f'value="{c}"><output id="value-{i}">{esc(ax["values"][c])}</output>'
                     f'<div class="ticks">' + "".join(f"<span>{esc(v)}</span>" for v in ax["values"]) + "</div>")
        h.append("</div>")
    h.append(f'<p id="explorer-sentence" class="sentence">{esc(sentences[hi])}</p>')
    h.append('<p id="explorer-missing" class="warn" hidden>The sweep has no run at this combination of '
             "settings.</p>")
    captions = {
        "headline": "Where this setting sits on the sweep (red band), for the headline gaps.",
        "groups": "Per-group metrics at this setting (models trained on the biased data).",
        "cohort": "The data at this setting: the biased training set beside its clean twin and the test "
                  "population (first replicate); black ticks: the share labelled positive.",
    }

    def frames(kind: str) -> str:
        if not built.frames.get(kind):
            return ""
        out = [f'<figure class="frames" data-figure="{kind}">']
        for p, png in enumerate(built.frames[kind]):
            out.append(_img(png, f"{kind} at {point_label(run, p)}",
                            attrs=f' class="frame" data-point="{p}"' + ("" if p == hi else " hidden")))
        out.append(f"<figcaption>{esc(captions[kind])}</figcaption></figure>")
        return "".join(out)

    h.append('<div class="two"><div>')
    first = True
    for path, png in built.graph_frames.items():
        biases, nodes = X.affected_by(run.scenario, path)
        what = [f"bias {X.bias_name(run.scenario, i)}" for i in biases] + nodes
        alt = f"the causal graph, with {', '.join(what) or 'nothing drawn'} highlighted: moved by {path}"
        h.append(_img(png, alt, attrs=f' class="graph-frame" data-path="{esc(path)}"' + ("" if first else " hidden")))
        first = False
    if built.graph_frames:
        h.append('<p class="note">In red: the part of the scenario the slider moves.</p>')
    h.append(frames("headline"))
    h.append("</div><div>")
    ds = headline_disparities(run)
    h.append("<h3>The gap between groups at this setting</h3><table><tr><th>model</th><th></th>"
             + "".join(f'<th class="num">{esc(SHORT.get(d, d))} gap</th>' for d in ds) + "</tr>")
    rows = (("d_model", "trained on the biased data"), ("clean", "trained on the clean twin"),
            ("caused", "caused by the biases"), ("caused_iv", "95% interval of that"))
    for m in run.models:
        for i, (part, label) in enumerate(rows):
            h.append("<tr>" + (f'<td rowspan="{len(rows)}"><b>{esc(m)}</b></td>' if i == 0 else "")
                     + f"<td>{esc(label)}</td>")
            for d in ds:
                k = f"{m}|{d}_difference.{part}"
                cell = f'<span data-key="{esc(k)}">{esc(init[k])}</span>'
                h.append(f'<td class="num">{"<b>" + cell + "</b>" if part == "caused" else cell}</td>')
            h.append("</tr>")
    h.append("</table>")
    h.append("<h3>Per group (trained on the biased data, against the truth)</h3><table><tr><th>group</th>"
             '<th class="num">share of training data</th>')
    for m in run.models:
        h.append(f'<th class="num">{esc(m)} FNR</th><th class="num">{esc(m)} AUROC</th>')
    h.append("</tr>")
    for g in run.groups:
        h.append(f'<tr><td>{esc(g)}</td><td class="num" data-key="train|{esc(g)}|share">{esc(init[f"train|{g}|share"])}</td>')
        for m in run.models:
            h.append(f'<td class="num" data-key="{esc(m)}|{esc(g)}|fnr">{esc(init[f"{m}|{g}|fnr"])}</td>'
                     f'<td class="num" data-key="{esc(m)}|{esc(g)}|auroc">{esc(init[f"{m}|{g}|auroc"])}</td>')
        h.append("</tr>")
    h.append(f'</table><p class="note">Training set size (first replicate): '
             f'<span data-key="train|n">{esc(init["train|n"])}</span> patients.</p></div></div>')
    h.append(frames("groups"))
    h.append(frames("cohort"))
    h.append("</div></section>")
    payload = json.dumps(data, sort_keys=True, ensure_ascii=True).replace("</", "<\\/")
    return "\n".join(h), payload


def _table(rows: list[tuple[str, str]], head: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append(f"<tr><th>{esc(head[0])}</th><th>{esc(head[1])}</th></tr>")
    out += [f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in rows]
    out.append("</table>")
    return "\n".join(out)


def _provenance(run: RunData, built: Built) -> list[tuple[str, str]]:
    m = run.manifest
    hi = built.chosen[1]
    saved = any((run.run_dir / "predictions").glob(f"point{hi:04d}_rep000_*.parquet"))
    rows = [
        ("scenario", f"{run.scenario.name} (from {m.get('source')})"),
        ("scenario SHA-256", str(m.get("scenario_sha256"))),
        ("root seed", str(m.get("seed"))),
        ("replicate seeds", ", ".join(str(s) for s in run.seeds)),
        ("sweep", "; ".join(f"point {p}: {point_label(run, p)}" for p in range(len(run.points)))),
        ("models", ", ".join(x if isinstance(x, str) else f"{x.get('name', x.get('model'))} ({x.get('model')})"
                             for x in m.get("models", []))),
        ("run folder", run.run_dir.name),
        ("started / finished", f"{m.get('started')} / {m.get('finished')}"
                               + (f" (resumed {m['resumed']})" if m.get("resumed") else "")),
        ("failed cells", str(m.get("errors", 0))),
        ("cell shown in the ROC and calibration figure",
         f"point {hi} ({point_label(run, hi)}), replicate 0: the most-biased point (training data farthest "
         f"from the clean twin); predictions {'saved by the run' if saved else 'recomputed by re-running that cell with its seed'}"),
    ]
    for k, v in sorted((m.get("versions") or {}).items()):
        rows.append((f"version: {k}", str(v)))
    from importlib.metadata import version

    rows.append(("report built with", f"simsys {version('simsys')}, matplotlib {matplotlib.__version__}"))
    rows.append(("rebuild", f"simsys report {run.run_dir.name}  (from the folder that holds it)"))
    return rows


def _explain_html(run: RunData) -> str:
    out = ['<div class="explain">']
    for title, paragraphs in X.sections(run.scenario)[1:]:
        out.append(f"<h3>{esc(title)}</h3>")
        if len(paragraphs) > 1:
            out.append("<ol>" + "".join(f"<li>{esc(' '.join(p))}</li>" for p in paragraphs) + "</ol>")
        else:
            out += [f"<p>{esc(' '.join(p))}</p>" for p in paragraphs]
    out.append("</div>")
    return "\n".join(out)


FIGURE_TEXT = {
    "headline": ("The headline: the gaps against the swept setting",
                 "Each row is one metric's gap between groups (largest minus smallest group value) on the "
                 "test population, against the truth. Left: the gap of each model trained on the biased data "
                 "(solid line, band = 95% interval), of the same model trained on the clean twin (dashed), "
                 "and the gap the training labels themselves carry (dotted black). Right: biased minus "
                 "clean twin, the part of the gap the injected biases caused; above zero, the biases widened "
                 "the gap."),
    "headline_heatmap": ("The two swept settings together",
                         "One heatmap per model and headline gap: the gap of the model trained on the biased "
                         "data, and the part of it the injected biases caused, at every combination."),
    "groups": ("Per group: what is true and what an audit would see",
               "Per-group metrics of the models trained on the biased data, at {at} (the most-biased "
               "setting), with 95% intervals over the replicates. Left: against the true outcome. Right: "
               "against the recorded labels of the test population, which is all an audit of real data "
               "could use."),
    "roc_calibration": ("ROC and calibration curves per group",
                        "For the first replicate at {at}: each group's ROC curve (the dot is the operating "
                        "point the chosen threshold gives) and calibration curve (mean predicted risk against "
                        "the true rate, in ten equal-count bins; on the diagonal, the risk is right)."),
    "cohort": ("The data themselves",
               "The first replicate's cohorts: the test population, the clean twin (the training patients "
               "before any bias acted) and the biased training set at every setting. Top: each group's "
               "share. Bottom: the share with the outcome, per group; black ticks: the share labelled "
               "positive in the biased training set (below the bar when labels miss cases)."),
}


def render(run: RunData, built: Built) -> str:
    """The report page: one self-contained HTML document (images inlined, no network)."""
    sc = run.scenario
    m = run.manifest
    hi = built.chosen[1]
    at = point_label(run, hi)
    explorer, payload = _explorer(run, built)
    P, R, M = len(run.points), run.replicates, len(run.models)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>simsys report: {esc(sc.name)}</title>",
        f"<script>{ERROR_JS}</script>",
        f"<style>{CSS}</style>",
        "</head><body>",
        '<div id="js-errors" hidden></div>',
        f'<header><div class="inner"><h1>{esc(sc.name)}: how the injected biases reach the model</h1>'
        f'<p class="meta">simsys report &middot; run {esc(run.run_dir.name)} &middot; {P} setting{"s" if P != 1 else ""} '
        f"&times; {R} replicate{'s' if R != 1 else ''} &times; {M} model{'s' if M != 1 else ''} &middot; seed "
        f"{esc(str(m.get('seed')))} &middot; scenario {esc(str(m.get('scenario_sha256', ''))[:12])}</p></div></header>",
        '<nav><div class="inner"><a href="#scenario">Scenario</a><a href="#findings">Key findings</a>'
        '<a href="#explorer">Explore</a><a href="#figures">Figures</a><a href="#definitions">Definitions</a>'
        '<a href="#provenance">Provenance</a></div></nav>',
        "<main>",
        '<section id="scenario"><h2>The scenario</h2>',
        f'<p class="lede">{esc(" ".join(sc.spec.description.split()))}</p>' if sc.spec.description else "",
        "<figure>" + _img(built.figures["graph"][0], f"causal graph of {sc.name}") +
        "<figcaption>The causal graph, left to right in causal order: the true variables (left), the "
        "injected biases (orange, middle) and what the model is trained on (right: the recorded label and "
        "features, and who is kept in the training data). Colours mark the roles.</figcaption></figure>",
        "<details><summary>The scenario step by step: every variable and every bias, in words</summary>",
        _explain_html(run), "</details></section>",
        '<section id="findings"><h2>Key findings</h2>',
        (f'<p class="lede"><strong>{esc(built.findings[0])}</strong></p>'
         if built.findings and built.findings[0].startswith("In short:") else ""),
        "<ul class=\"findings\">" + "".join(f"<li>{esc(f)}</li>" for f in built.findings
                                          if not f.startswith("In short:")) + "</ul>",
        f"<p style=\"font-size:13px;color:#5f6368\">Numbers are means over {R} replicate{'s' if R != 1 else ''} "
        "(95% intervals in brackets or after them) from <code>summary.csv</code>; the gaps are measured on the test "
        "population against the true outcome unless said otherwise.</p></section>",
        explorer,
        '<section id="figures"><h2>Figures</h2>',
    ]
    for name in ("headline", "headline_heatmap", "groups", "roc_calibration", "cohort"):
        if name not in built.figures:
            continue
        title, caption = FIGURE_TEXT[name]
        if name == "groups" and not sc.spec.populations[(sc.spec.experiment or {}).get("test", "test")].biased:
            caption += " Here the test population carries no bias, so the two columns agree."
        parts.append(f'<h3 id="fig-{name}">{esc(title)}</h3><figure>' + _img(built.figures[name][0], title)
                     + f"<figcaption>{esc(caption.format(at=at))} Files: <code>figures/{name}.png</code>, "
                     f"<code>figures/{name}.svg</code>.</figcaption></figure>")
    parts += [
        "</section>",
        '<section id="definitions"><h2>Definitions</h2>', _table(list(DEFINITIONS), ("term", "meaning")),
        "<p style=\"font-size:13px;color:#5f6368\">Full definitions, formulas and sources: "
        "<code>docs/metrics.md</code> in simsys.</p></section>",
        '<section id="provenance"><h2>Provenance</h2>', _table(_provenance(run, built)), "</section>",
        "</main>",
        f'<script type="application/json" id="explorer-data">{payload}</script>',
        f"<script>{EXPLORER_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


__all__ = ["DISPARITIES", "FIGURES", "HEADLINE", "RunData", "build", "cohorts", "f3", "findings",
           "load_run", "pct", "write_report"]
