"""Bootstrap speed: simsys.metrics.bootstrap_metrics against fairlearn's MetricFrame bootstrap.

Workload: 100,000 rows, 2 groups, 100 resamples, 3 metrics (selection rate, TPR, FPR), per group
and overall. Both run in the same process, on the same data, so the ratio is meaningful on a noisy
shared machine (absolute times are not). Ours is timed warm (the numba kernels compiled or loaded
from cache by a first call), median of 3. fairlearn 0.15 bootstraps inside ``MetricFrame`` itself
(``n_boot``, ``ci_quantiles``, ``random_state``); it is timed once.

Usage::

    python benchmarks/bootstrap_speed.py            # full fairlearn run (about 2 minutes)
    python benchmarks/bootstrap_speed.py --quick    # fairlearn with 5 resamples, extrapolated

With ``--quick`` fairlearn's time is scaled linearly to 100 resamples (its cost is one pandas
group-by per resample plus a fixed set-up) and the output says so.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from simsys.metrics import bootstrap_interval, bootstrap_metrics

N_ROWS = 100_000
N_GROUPS = 2
N_RESAMPLES = 100
METRICS = ("selection_rate", "tpr", "fpr")


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two groups (30% / 70%), different prevalence, a noisy score thresholded at 0.5."""
    rng = np.random.default_rng(seed)
    groups = (rng.random(N_ROWS) < 0.7).astype(np.int64)
    y_true = (rng.random(N_ROWS) < np.where(groups == 0, 0.2, 0.35)).astype(np.int64)
    y_score = np.clip(0.3 * y_true + rng.uniform(0.0, 0.7, N_ROWS), 0.0, 1.0)
    y_pred = (y_score >= 0.5).astype(np.int64)
    return y_true, y_pred, y_score, groups


def time_ours(y_true, y_pred, groups, repeats: int = 3) -> tuple[float, np.ndarray]:
    bootstrap_metrics(y_true, y_pred, None, groups, N_GROUPS, n_resamples=N_RESAMPLES, seed=1,
                      metrics=METRICS)  # warm-up: compile, or load numba's cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = bootstrap_metrics(y_true, y_pred, None, groups, N_GROUPS, n_resamples=N_RESAMPLES,
                                seed=1, metrics=METRICS)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def time_fairlearn(y_true, y_pred, groups, n_boot: int):
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    t0 = time.perf_counter()
    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                 "fpr": false_positive_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
        n_boot=n_boot,
        ci_quantiles=[0.025, 0.975],
        random_state=1,
    )
    return time.perf_counter() - t0, frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="run fairlearn with 5 resamples and extrapolate linearly to 100")
    args = parser.parse_args(argv)

    y_true, y_pred, _, groups = make_data()
    ours, samples = time_ours(y_true, y_pred, groups)
    fl_boot = 5 if args.quick else N_RESAMPLES
    fl_time, frame = time_fairlearn(y_true, y_pred, groups, fl_boot)
    fl_100 = fl_time * N_RESAMPLES / fl_boot

    print(f"workload: {N_ROWS:,} rows, {N_GROUPS} groups, {N_RESAMPLES} resamples, "
          f"{len(METRICS)} metrics ({', '.join(METRICS)})")
    print(f"simsys bootstrap_metrics (warm, median of 3): {ours:.4f} s")
    if args.quick:
        print(f"fairlearn MetricFrame(n_boot={fl_boot}): {fl_time:.2f} s -> "
              f"extrapolated linearly to n_boot={N_RESAMPLES}: {fl_100:.1f} s")
    else:
        print(f"fairlearn MetricFrame(n_boot={fl_boot}): {fl_100:.1f} s")
    print(f"speed-up: {fl_100 / ours:,.0f}x{' (extrapolated)' if args.quick else ''}")

    # Sanity check, not a test: both 95% intervals for group 0's TPR should be similar in width.
    lo, hi = bootstrap_interval(samples)
    tpr = METRICS.index("tpr")
    ci = frame.by_group_ci
    print(f"group 0 TPR 95% interval: simsys [{lo[tpr, 0]:.4f}, {hi[tpr, 0]:.4f}], "
          f"fairlearn [{ci[0]['tpr'].iloc[0]:.4f}, {ci[1]['tpr'].iloc[0]:.4f}]"
          f"{' (5 resamples only)' if args.quick else ''}")


if __name__ == "__main__":
    main()
