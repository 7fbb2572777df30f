"""Explorer speed: server time per change of ``simsys explore`` (target: under 300 ms at 20,000
training patients with logistic regression on 2 cores).

Workload: the flagship scenario (``scenarios/melanoma.yaml``) at 20,000 training patients drawn and
20,000 test patients, logistic regression, the scenario's threshold policy (sensitivity 0.85 on a
validation cohort of 5,000). A reader's session is replayed: the swept bias strength (keep_dark)
dragged over several values, a label-bias strength, the decision threshold, a number of the world
(contrast_effect, which changes every cohort and both models), and new patients (another
replicate). Each change is one request to the app, timed in process around
``Explorer.state`` -- what the server does per request: validate, compute (with the caches), word
the sentences, choose the graph ids, render the HTML (the HTTP layer is left out).

The baseline, measured in the same run, is the same session without caching: a fresh engine per
change (every cohort sampled and every model fitted again, as a server without caches would), and
the first request of a fresh engine (cold caches, kernels already loaded).

Usage::

    python benchmarks/explore_speed.py            # the session above, 3 rounds
    python benchmarks/explore_speed.py --rounds 1 --train-n 200000

The machine may be shared: the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simsys  # noqa: E402
from simsys.explorer.server import Explorer  # noqa: E402

SESSION = [
    ("bias strength (keep_dark)", {"params.keep_dark": 0.2}),
    ("bias strength (keep_dark)", {"params.keep_dark": 0.1}),
    ("bias strength (keep_dark)", {"params.keep_dark": 0.05}),
    ("bias strength (keep_dark)", {"params.keep_dark": 0.03}),
    ("bias strength (keep_dark)", {"params.keep_dark": 0.5}),
    ("bias strength (keep_dark)", {"params.keep_dark": 1.0}),
    ("label bias (label_fnr_dark)", {"params.label_fnr_dark": 0.4}),
    ("label bias (label_fnr_dark)", {"params.label_fnr_dark": 0.6}),
    ("threshold", {"threshold": 0.05}),
    ("threshold", {"threshold": 0.1}),
    ("world (contrast_effect)", {"params.contrast_effect": 0.6}),
    ("new patients (replicate)", {"replicate": 1}),
]


def session(base: dict) -> list[tuple[str, dict]]:
    """The session as cumulative settings (each change on top of the ones before)."""
    out, cur = [], dict(base)
    for what, change in SESSION:
        cur = {**cur, **change}
        out.append((what, dict(cur)))
    return out


def timed(explorer: Explorer, settings: dict, previous: dict | None) -> float:
    t0 = time.perf_counter()
    explorer.state({"settings": settings, "previous": previous})
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="times the session is replayed (median over all)")
    ap.add_argument("--train-n", type=int, default=20_000)
    ap.add_argument("--test-n", type=int, default=20_000)
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"cores available: {len(os.sched_getaffinity(0))}")
    sc = simsys.load_scenario(ROOT / "scenarios" / "melanoma.yaml")
    base = {"train_n": args.train_n, "test_n": args.test_n, "model": "logistic_regression"}
    steps = session(base)

    from simsys.display import graph_svg

    graph = graph_svg(sc)
    Explorer(sc, graph=graph)  # kernels loaded once, as the server does before printing its address

    # baseline 1: the first request of a fresh engine (cold caches)
    cold = [timed(Explorer(sc, graph=graph, warm=False), base, None) for _ in range(args.rounds)]

    # baseline 2: no caching at all (a fresh engine for every change)
    uncached: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for what, settings in steps:
            uncached.setdefault(what, []).append(timed(Explorer(sc, graph=graph, warm=False), settings, None))

    # the explorer as served: one engine, its caches
    ex = Explorer(sc, graph=graph, warm=False)
    timed(ex, base, None)
    cached: dict[str, list[float]] = {}
    for r in range(args.rounds):
        prev = base
        for what, settings in steps:
            if r > 0:  # a new round must not be answered from the snapshot cache: other patients
                settings = {**settings, "replicate": settings.get("replicate", 0) + 2 * r}
            cached.setdefault(what, []).append(timed(ex, settings, prev))
            prev = settings

    def line(name, values):
        return (f"  {name:<32} median {statistics.median(values):7.1f} ms   "
                f"min {min(values):7.1f}   max {max(values):7.1f}   n={len(values)}")

    print(f"\nserver time per change (Explorer.state in process), {args.train_n:,} training and "
          f"{args.test_n:,} test patients, logistic regression, threshold policy:")
    print("with the explorer's caches:")
    for what in dict.fromkeys(w for w, _ in steps):
        print(line(what, cached[what]))
    all_cached = [v for vs in cached.values() for v in vs]
    print(line("every change", all_cached))
    print("baseline, no caching (a fresh engine per change):")
    all_uncached = [v for vs in uncached.values() for v in vs]
    print(line("every change", all_uncached))
    print(line("first request, cold caches", cold))
    ratio = statistics.median(all_uncached) / statistics.median(all_cached)
    print(f"\nmedian per change: {statistics.median(all_cached):.1f} ms cached vs "
          f"{statistics.median(all_uncached):.1f} ms uncached ({ratio:.1f}x); target: under 300 ms")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
