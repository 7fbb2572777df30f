"""The test-set predictions behind the ROC and calibration figure, and when the report may recompute
them.

The results tables hold no curves, so the figure needs one cell's predictions (the first replicate
of the most-biased point, models trained on the biased data). In this order:

1. the run's own ``predictions/point<P>_rep000_*.parquet`` (``simsys run --save-predictions``);
2. the report's cache, ``figures/predictions_point<P>_rep000.parquet``;
3. a recomputation of the cell with the runner's task function (:func:`simsys.runner.run_task`,
   the same seed: common random numbers make these the run's own predictions), cached in (2).

A run folder is untrusted input, and recomputing a cell fits the run's models: that is allowed only
when every model is a built-in -- a name in :data:`simsys.models.BUILTIN_MODELS` or
:data:`simsys.mitigations.MITIGATIONS`, or an import path under one of
:data:`simsys.models.ALLOWED_IMPORT_PREFIXES` (nested model specs included) -- or when the caller
passes ``allow_imports=True`` (``simsys report --allow-import``). The folder's own
``allow_imports`` is never believed. Otherwise the figure is replaced by a note saying how to get
the predictions. Files read here are checked like every other file of the folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simsys.errors import RunError, SimsysError
from simsys.io import atomic_write
from simsys.report.data import RunData

COLUMNS = ("model", "group", "y_true", "y_pred", "score")

#: How the figure got its predictions (shown in the provenance table).
SAVED = "saved by the run (--save-predictions)"
RECOMPUTED = "recomputed by re-running that cell with its seed (cached in figures/)"


@dataclass
class Predictions:
    """A cell's predictions (None when unavailable), how they were got, or why not."""

    frame: pd.DataFrame | None
    how: str
    note: str | None = None


def cache_path(run: RunData, point: int) -> Path:
    return run.run_dir / "figures" / f"predictions_point{point:04d}_rep000.parquet"


def saved_files(run: RunData, point: int) -> list[Path]:
    return sorted((run.run_dir / "predictions").glob(f"point{point:04d}_rep000_*.parquet"))


def _walk_models(spec: Any) -> Iterable[Any]:
    """Every ``model`` value of a model spec, nested specs in its params included."""
    if isinstance(spec, str):
        yield spec
        return
    if not isinstance(spec, dict):
        yield spec
        return
    yield spec.get("model")
    params = spec.get("params")
    if isinstance(params, dict):
        for value in params.values():
            if isinstance(value, dict) and "model" in value:
                yield from _walk_models(value)


def needs_imports(specs: Iterable[Any]) -> list[str]:
    """The models (as written) that are not built-ins: fitting them would run outside code."""
    from simsys.mitigations import MITIGATIONS
    from simsys.models import ALLOWED_IMPORT_PREFIXES, BUILTIN_MODELS

    out = []
    for spec in specs:
        for model in _walk_models(spec):
            builtin = isinstance(model, str) and (
                model in BUILTIN_MODELS or model in MITIGATIONS
                or (model.startswith(ALLOWED_IMPORT_PREFIXES) and ":" not in model and "/" not in model
                    and not model.endswith(".py")))
            if not builtin:
                out.append(model if isinstance(model, str) else type(model).__name__)
    return list(dict.fromkeys(out))


def _check(frame: pd.DataFrame, where: Path) -> pd.DataFrame:
    for c in COLUMNS:
        if c not in frame.columns:
            raise RunError(f"{where}: column {c!r}: missing; expected the predictions simsys run writes")
    if not all(isinstance(v, str) for v in frame["model"].tolist()):
        raise RunError(f"{where}: column 'model': found a value that is not text; expected model names")
    for c in ("group", "y_true", "y_pred"):
        s = frame[c]
        if not pd.api.types.is_integer_dtype(s) or (len(s) and (s.min() < 0)):
            raise RunError(f"{where}: column {c!r}: found values of type {s.dtype}; expected whole numbers >= 0")
    for c in ("y_true", "y_pred"):
        if len(frame) and frame[c].max() > 1:
            raise RunError(f"{where}: column {c!r}: found {int(frame[c].max())}; expected 0 or 1")
    score = frame["score"]
    if not pd.api.types.is_numeric_dtype(score):
        if score.isna().all():  # a method with hard predictions only: no scores
            score = score.astype(np.float64)
        else:
            raise RunError(f"{where}: column 'score': found values of type {score.dtype}; expected numbers")
    out = pd.DataFrame({"model": frame["model"].astype(str), "group": frame["group"].astype(np.int64),
                        "y_true": frame["y_true"].astype(np.int64), "y_pred": frame["y_pred"].astype(np.int64),
                        "score": score.astype(np.float64)})
    return out


def _read(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for p in paths:
        try:
            raw = pd.read_parquet(p)
        except Exception as exc:  # pyarrow's many error types: a damaged file is one line
            raise RunError(f"{p}: cannot be read as a Parquet table ({type(exc).__name__}); "
                           "expected the predictions simsys run writes") from exc
        frames.append(_check(raw, p))
    return pd.concat(frames, ignore_index=True)


def cell_predictions(run: RunData, point: int, *, allow_imports: bool = False) -> Predictions:
    """Test-set predictions of the models trained on the biased data, first replicate of ``point``
    (see the module docstring for where they come from)."""
    saved = saved_files(run, point)
    if saved:
        return Predictions(_read(saved), SAVED)
    cache = cache_path(run, point)
    if cache.is_file():
        return Predictions(_read([cache]), RECOMPUTED)
    if run.manifest.get("python_models"):
        return Predictions(None, "not available", (
            "The run's models were passed from Python, so the report cannot fit them again; rerun with "
            "--save-predictions (save_predictions=True) to draw these curves."))
    specs = (run.scenario.spec.experiment or {}).get("models") or []
    outside = needs_imports([*specs, *run.manifest.get("models", [])])
    if outside and not allow_imports:
        return Predictions(None, "not available", (
            f"Drawing these curves would fit the run's models again, and {', '.join(outside)} "
            f"{'is' if len(outside) == 1 else 'are'} not built into simsys (fitting runs outside code). "
            "Rerun the scenario with --save-predictions, or rebuild the report with "
            "simsys report --allow-import if you trust the run folder."))
    from simsys.runner import parse_experiment, run_task

    try:
        experiment = parse_experiment(run.scenario, allow_imports=allow_imports)
        if point >= len(experiment.points):
            raise RunError(f"{run.run_dir}: point {point}: the scenario in manifest.json has "
                           f"{len(experiment.points)} sweep points; the run folder is inconsistent")
        res = run_task(run.scenario, experiment, point, 0, run.seeds[0], allow_imports=allow_imports,
                       save_predictions=True)
    except SimsysError as exc:  # the rest of the report stands; the figure says why it is missing
        return Predictions(None, "not available", f"The cell could not be run again ({exc}).")
    if not res["predictions"]:
        return Predictions(None, "not available", "No model produced predictions in this cell (see errors.csv).")
    frame = _check(pd.concat(res["predictions"], ignore_index=True), cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, lambda t: frame.to_parquet(t, index=False))
    return Predictions(frame, RECOMPUTED)


def roc_points(y: np.ndarray, s: np.ndarray, grid: int = 201) -> tuple[np.ndarray, np.ndarray] | None:
    """The ROC curve on a fixed grid of false-positive rates (None without both classes)."""
    from sklearn.metrics import roc_curve

    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    if len(y) == 0 or y.min() == y.max():
        return None
    fpr, tpr, _ = roc_curve(y, s)
    xs = np.linspace(0, 1, grid)
    return xs, np.interp(xs, fpr, tpr)


def calibration_points(y: np.ndarray, s: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and true rate in (up to) ``bins`` equal-count bins of the score."""
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    order = np.argsort(s, kind="stable")
    chunks = [c for c in np.array_split(order, min(bins, max(len(s), 1))) if len(c)]
    return np.array([s[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks])


def operating_point(y: np.ndarray, yhat: np.ndarray) -> tuple[float, float]:
    """(FPR, TPR) of the 0/1 predictions the run made."""
    neg, pos = y == 0, y == 1
    fpr = float(yhat[neg].mean()) if neg.any() else math.nan
    tpr = float(yhat[pos].mean()) if pos.any() else math.nan
    return fpr, tpr


__all__ = ["RECOMPUTED", "SAVED", "Predictions", "cell_predictions", "needs_imports"]
