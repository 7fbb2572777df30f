"""Run speed: a reference sweep through simsys.runner.run, and the bootstrap against fairlearn's.

Reference workload (the default): a small skin-tone / melanoma scenario (``REFERENCE`` below, fixed
here so that timings stay comparable) with a sweep of 20 points (keep probability of dark skin x
label false-negative rate), 5 replicates, 2 models (logistic regression, gradient boosting),
100,000 training patients per cell and a test cohort of 100,000. Every cell fits each model three
times (biased training, clean twin, size-matched twin).

It prints the wall time and the split of the work into sampling, fitting and metrics, taken from the
run's manifest (``timings``: seconds summed over cells, measured inside the workers), and the share
of sampling and metrics in that work (the issue's target: under 10%). In the same process it then
times the bootstrap: ``simsys.metrics.bootstrap_metrics`` against fairlearn's
``MetricFrame(n_boot=...)`` on 100,000 rows, reusing ``benchmarks/bootstrap_speed.py``.

With ``--reuse`` it instead times a scenario file's own run (default: the melanoma flagship, as
``simsys run scenarios/melanoma.yaml`` runs it) twice in the same process, with the reuse of
common-random-number work off and on (``simsys.runner.ReuseCache``: the clean twin, the test cohorts
and the fits on them are computed once per replicate), checks the results are identical, and
prints the speed-up (target: 1.5x or better on the melanoma default). A tiny warm-up run comes
first, so that neither measured run pays for the first reads from disk.

Usage::

    python benchmarks/run_speed.py --reuse      # melanoma default, reuse off then on (a few minutes)
    python benchmarks/run_speed.py              # the reference sweep (minutes) and the full bootstrap
    python benchmarks/run_speed.py --quick      # 4 points x 2 replicates at 20,000 patients;
                                                # fairlearn with 5 resamples, extrapolated

Outputs go to a temporary folder that is deleted afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bootstrap_speed  # noqa: E402  (the sibling benchmark; reused, not duplicated)

from simsys.runner import run  # noqa: E402
from simsys.scenario import from_dict  # noqa: E402

KEEP = [1.0, 0.5, 0.3, 0.2, 0.1]
LABEL_FNR = [0.0, 0.1, 0.2, 0.3]

#: The reference scenario, fixed here (not read from scenarios/, which evolve) so that timings stay
#: comparable: skin tone and melanoma with dark skin under-represented (keep, swept) and its
#: melanomas under-labelled (false_negative_rate, swept); features age, UV exposure, contrast.
REFERENCE = {
    "name": "run_speed",
    "seed": 20201124,
    "params": {"dark_share": 0.3, "contrast_gap": 0.8},
    "nodes": {
        "dark_skin": {"kind": "bernoulli", "p": "dark_share"},
        "age": {"kind": "normal", "mean": 52, "sd": 16},
        "uv": {"kind": "normal", "mean": "1.0 - 0.6*dark_skin", "sd": 1.0},
        "melanoma": {"kind": "bernoulli", "logit": "-5.2 + 0.03*age + 0.7*uv - 1.5*dark_skin"},
        "contrast": {"kind": "normal", "sd": 0.5,
                     "mean": "0.4 + 1.2*melanoma - contrast_gap*dark_skin*melanoma"},
    },
    "roles": {"group": "dark_skin", "target": "melanoma", "features": ["age", "uv", "contrast"]},
    "biases": [
        {"type": "representation", "group": {"dark_skin": 1}, "keep": 0.1},
        {"type": "label", "group": {"dark_skin": 1}, "false_negative_rate": 0.3},
    ],
    "populations": {"train": {"n": 100_000, "biased": True}, "test": {"n": 100_000}},
    "experiment": {
        "models": [{"name": "logreg", "model": "logistic_regression"},
                   {"name": "gbm", "model": "gradient_boosting"}],
        "threshold": {"kind": "sensitivity", "target": 0.8},
    },
}


def reference_scenario(*, n_train: int, n_test: int, points: int, replicates: int):
    """The reference scenario with the benchmark's sizes and a sweep of ``points`` points."""
    data = copy.deepcopy(REFERENCE)
    data["populations"]["train"]["n"] = n_train
    data["populations"]["test"]["n"] = n_test
    grid = [(k, f) for k in KEEP for f in LABEL_FNR]
    if not 1 <= points <= len(grid):
        raise SystemExit(f"--points: expected 1..{len(grid)}, got {points}")
    chosen = grid[:: max(1, len(grid) // points)][:points]
    data["experiment"].update(
        test_n=n_test,
        validation_n=max(1000, n_test // 4),
        replicates=replicates,
        sweep={"points": [{"biases[0].keep": k, "biases[1].false_negative_rate": f} for k, f in chosen]},
    )
    return from_dict(data, source="benchmarks/run_speed.py")


def time_sweep(args) -> dict:
    sc = reference_scenario(n_train=args.n_train, n_test=args.n_test, points=args.points,
                            replicates=args.replicates)
    out = Path(tempfile.mkdtemp(prefix="simsys-run-speed-"))
    try:
        t0 = time.perf_counter()
        result = run(sc, output_dir=out, workers=args.workers, progress=True)
        wall = time.perf_counter() - t0
        timings = result.manifest["timings"]
        errors = len(result.errors)
        run_dir = result.run_dir
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    n_models = len(sc.data["experiment"]["models"])
    print(f"reference sweep: {args.points} points x {args.replicates} replicates x {n_models} models "
          f"(x 3 training sets), {args.n_train:,} training and {args.n_test:,} test patients per cell, "
          f"{args.workers or os.cpu_count()} worker(s)")
    work = timings["sampling"] + timings["fitting"] + timings["metrics"]
    print(f"  wall time: {wall:.1f} s (run's own: {timings['wall']:.1f} s){', ' + str(errors) + ' failed fits' if errors else ''}")
    for part in ("sampling", "fitting", "metrics"):
        print(f"  {part:<9} {timings[part]:8.1f} s  {100 * timings[part] / work:5.1f}% of the work "
              "(summed over cells)")
    share = (timings["sampling"] + timings["metrics"]) / work
    print(f"  sampling + metrics: {100 * share:.1f}% of the work (target < 10%: "
          f"{'met' if share < 0.10 else 'NOT met'})")
    if args.keep:
        print(f"  outputs kept in {run_dir}")
    return {"wall": wall, **timings, "share": share}


def time_bootstrap(quick: bool) -> None:
    y_true, y_pred, _, groups = bootstrap_speed.make_data()
    ours, _ = bootstrap_speed.time_ours(y_true, y_pred, groups)
    n_boot = 5 if quick else bootstrap_speed.N_RESAMPLES
    fl_time, _ = bootstrap_speed.time_fairlearn(y_true, y_pred, groups, n_boot)
    fl_full = fl_time * bootstrap_speed.N_RESAMPLES / n_boot
    print(f"bootstrap: {bootstrap_speed.N_ROWS:,} rows, {bootstrap_speed.N_GROUPS} groups, "
          f"{bootstrap_speed.N_RESAMPLES} resamples, {len(bootstrap_speed.METRICS)} metrics")
    print(f"  simsys bootstrap_metrics (warm, median of 3): {ours:.4f} s")
    if quick:
        print(f"  fairlearn MetricFrame(n_boot={n_boot}): {fl_time:.2f} s, extrapolated linearly to "
              f"n_boot={bootstrap_speed.N_RESAMPLES}: {fl_full:.1f} s")
    else:
        print(f"  fairlearn MetricFrame(n_boot={n_boot}): {fl_full:.1f} s")
    print(f"  speed-up: {fl_full / ours:,.0f}x{' (extrapolated)' if quick else ''} (target >= 200x)")


def time_reuse(args) -> None:
    import pandas as pd

    from simsys.scenario import load_scenario

    sc = load_scenario(args.scenario)
    # a tiny warm-up run first, so that neither measured run pays for reading numba's cache and
    # the libraries from disk the first time
    run(HERE.parent / "tests" / "data" / "runner_small.yaml", output_dir=None, workers=args.workers,
        replicates=2)
    walls, results = {}, {}
    for reuse in (False, True):
        t0 = time.perf_counter()
        res = run(sc, output_dir=None, workers=args.workers, reuse=reuse)
        walls[reuse] = time.perf_counter() - t0
        results[reuse] = res
        t = res.manifest["timings"]
        print(f"  reuse {'on ' if reuse else 'off'}: wall {walls[reuse]:6.1f} s; CPU summed over workers: "
              f"sampling {t['sampling']:.1f} s, fitting {t['fitting']:.1f} s, metrics {t['metrics']:.1f} s")
    pd.testing.assert_frame_equal(results[False].results, results[True].results)
    print(f"{args.scenario}: identical results; reuse speed-up {walls[False] / walls[True]:.2f}x "
          f"(target >= 1.5x), {args.workers or os.cpu_count()} worker(s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 points x 2 replicates at 20,000 patients; fairlearn with 5 resamples")
    parser.add_argument("--points", type=int, help="sweep points (default 20; quick 4)")
    parser.add_argument("--replicates", type=int, help="replicates (default 5; quick 2)")
    parser.add_argument("--n-train", type=int, help="training patients per cell (default 100,000)")
    parser.add_argument("--n-test", type=int, help="test patients per cell (default 100,000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--no-bootstrap", action="store_true", help="skip the bootstrap comparison")
    parser.add_argument("--keep", action="store_true", help="keep the run's output folder")
    parser.add_argument("--reuse", action="store_true",
                        help="time a scenario's own run with reuse off, then on (see above)")
    parser.add_argument("--scenario", default=str(HERE.parent / "scenarios" / "melanoma.yaml"),
                        help="the scenario --reuse runs (default: scenarios/melanoma.yaml)")
    args = parser.parse_args(argv)
    if args.reuse:
        time_reuse(args)
        return
    quick = args.quick
    args.points = args.points or (4 if quick else 20)
    args.replicates = args.replicates or (2 if quick else 5)
    args.n_train = args.n_train or (20_000 if quick else 100_000)
    args.n_test = args.n_test or (20_000 if quick else 100_000)

    time_sweep(args)
    if not args.no_bootstrap:
        time_bootstrap(quick)


if __name__ == "__main__":
    main()
