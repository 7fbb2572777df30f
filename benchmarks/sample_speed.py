"""Sampling speed: simsys's compiled interpreter against plain vectorised NumPy, same graph, same run.

Workload: a 12-node melanoma-like graph (5 continuous nodes drawn from normals, 7 binary nodes,
5 of them with a logit), with a representation bias (dark-skinned patients kept with probability
0.1) and a label bias (30% of their melanomas unrecorded). It is built with ``simsys.from_dict``
and sampled at each size N:

- simsys, clean (``biased=False``) and biased, on all threads and on one thread: ``build_plan``
  once, then the timed call is ``run_plan`` (the call that produces the arrays; building a
  DataFrame from them is not timed). ``simsys.sample`` (plan + arrays + DataFrame) is shown at
  1e6 for reference;
- for diagnosis, simsys on all threads again, writing into output arrays reused from call to call
  (``run_plan(..., out=output_buffers(plan, n))``): the same work without the page faults of fresh
  memory, which on this virtual machine cost from 0.05 to 1 ms per MB at random (up to 0.5 s for
  the 560 MB of a clean cohort of 1e7), i.e. more than the sampling itself;
- NumPy, clean and biased: the same equations written out in this file, one vectorised pass with
  ``np.random.default_rng`` (the usual way to write such a simulator), producing the same columns
  (float64 for continuous nodes, one byte for binary ones, int64 patient ids).

Runs are interleaved (every variant once, then again ``--repeats`` times) and the figures are
medians; ratios to NumPy use the medians of the same run, which is what stays meaningful on a
shared, noisy machine. Peak memory is measured separately, in a fresh subprocess per size and
variant: the rise of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the call) over its resident set before it, divided by the
bytes of the columns the call returns. That is physical memory; NumPy's figure includes its
temporaries.

Usage::

    python benchmarks/sample_speed.py                       # N = 1e5, 1e6, 1e7; 3 repeats
    python benchmarks/sample_speed.py --sizes 1e6 --repeats 5
    python benchmarks/sample_speed.py --no-memory           # skip the subprocess measurements

Targets (issue [1/5], at N = 1e7 on this 2-core machine): >= 50 M patients/s clean and >= 40 M/s
biased on all threads, both >= 8x NumPy of the same run; >= 30 M/s on one thread; peak memory
<= 1.2x the output columns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import simsys
from simsys.simulate import build_plan, default_threads, output_buffers, run_plan

DARK_SHARE = 0.3
KEEP_DARK = 0.1
FNR_DARK = 0.3
CONTRAST_GAP = 0.8

SCENARIO = {
    "name": "melanoma12",
    "description": "Benchmark graph: 5 continuous and 7 binary nodes, representation and label bias.",
    "seed": 20201124,
    "params": {"dark_share": DARK_SHARE, "contrast_gap": CONTRAST_GAP},
    "nodes": {
        "dark_skin": {"kind": "bernoulli", "p": "dark_share"},
        "male": {"kind": "bernoulli", "p": 0.48},
        "age": {"kind": "normal", "mean": 52, "sd": 16},
        "uv": {"kind": "normal", "mean": "1.0 - 0.6*dark_skin", "sd": 1.0},
        "family_history": {"kind": "bernoulli", "logit": "-2.5 + 0.01*age"},
        "naevi": {"kind": "normal", "mean": "20 + 5*uv - 3*dark_skin", "sd": 8},
        "immunosuppressed": {"kind": "bernoulli", "logit": "-3.5 + 0.02*age"},
        "melanoma": {"kind": "bernoulli", "logit": "-5.2 + 0.03*age + 0.7*uv - 1.5*dark_skin"
                     " + 0.8*family_history + 0.02*naevi + 1.0*immunosuppressed + 0.2*male"},
        "diameter": {"kind": "normal", "mean": "4 + 2.5*melanoma + 0.02*age", "sd": 1.2},
        "contrast": {"kind": "normal",
                     "mean": "0.4 + 1.2*melanoma - contrast_gap*dark_skin*melanoma", "sd": 0.5},
        "biopsied": {"kind": "bernoulli", "logit": "-1 + 2*melanoma + 0.3*diameter - 0.5*dark_skin"},
        "referred": {"kind": "bernoulli", "logit": "-2 + 1.5*biopsied + 0.8*contrast"},
    },
    "roles": {"group": "dark_skin", "target": "melanoma",
              "features": ["age", "uv", "naevi", "diameter", "contrast"]},
    "biases": [
        {"type": "representation", "group": {"dark_skin": 1}, "keep": KEEP_DARK},
        {"type": "label", "group": {"dark_skin": 1}, "false_negative_rate": FNR_DARK},
    ],
    "populations": {"train": {"n": 100_000, "biased": True}},
}
SEED = 1


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_sample(n: int, seed: int, biased: bool) -> dict[str, np.ndarray]:
    """The benchmark graph in plain vectorised NumPy, one pass (the baseline)."""
    rng = np.random.default_rng(seed)
    dark = rng.random(n) < DARK_SHARE
    male = rng.random(n) < 0.48
    age = 52.0 + 16.0 * rng.standard_normal(n)
    uv = 1.0 - 0.6 * dark + rng.standard_normal(n)
    family = rng.random(n) < _logistic(-2.5 + 0.01 * age)
    naevi = 20.0 + 5.0 * uv - 3.0 * dark + 8.0 * rng.standard_normal(n)
    immuno = rng.random(n) < _logistic(-3.5 + 0.02 * age)
    melanoma = rng.random(n) < _logistic(-5.2 + 0.03 * age + 0.7 * uv - 1.5 * dark + 0.8 * family
                                         + 0.02 * naevi + 1.0 * immuno + 0.2 * male)
    diameter = 4.0 + 2.5 * melanoma + 0.02 * age + 1.2 * rng.standard_normal(n)
    contrast = 0.4 + 1.2 * melanoma - CONTRAST_GAP * (dark & melanoma) + 0.5 * rng.standard_normal(n)
    biopsied = rng.random(n) < _logistic(-1.0 + 2.0 * melanoma + 0.3 * diameter - 0.5 * dark)
    referred = rng.random(n) < _logistic(-2.0 + 1.5 * biopsied + 0.8 * contrast)
    cols = {"patient_id": np.arange(n), "dark_skin": dark, "male": male, "age": age, "uv": uv,
            "family_history": family, "naevi": naevi, "immunosuppressed": immuno,
            "melanoma": melanoma, "diameter": diameter, "contrast": contrast,
            "biopsied": biopsied, "referred": referred}
    if not biased:
        cols["melanoma_observed"] = melanoma.copy()
        return cols
    keep = ~dark | (rng.random(n) < KEEP_DARK)
    cols["melanoma_observed"] = melanoma & ~(dark & (rng.random(n) < FNR_DARK))
    return {k: v[keep] for k, v in cols.items()}


def scenario():
    return simsys.from_dict(SCENARIO, source="benchmarks/sample_speed.py")


def output_bytes(cohort) -> int:
    """Bytes of the columns a ``run_plan`` call returns (float64, uint8 and patient ids)."""
    return cohort.values_f.nbytes + cohort.values_u.nbytes + cohort.patient_id.nbytes


# --- memory, in a fresh subprocess ------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _memory_child(n: int, variant: str) -> None:
    impl, mode = variant.split("-")
    biased = mode == "biased"
    if impl == "simsys":
        plan = build_plan(scenario(), "train", biased=biased)
        # first load the kernels and start the threads (by the same path as the measured call):
        # their code and stacks are not the cohort's memory
        run_plan(plan, 200_000, SEED)
    else:
        numpy_sample(1000, SEED, biased)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    before = _status_kb("VmRSS")
    if impl == "simsys":
        out = run_plan(plan, n, SEED)
        size = output_bytes(out)
    else:
        out = numpy_sample(n, SEED, biased)
        size = sum(v.nbytes for v in out.values())
    peak = _status_kb("VmHWM")
    print(json.dumps({"delta": (peak - before) * 1024, "output": size}))


def measure_memory(n: int, variant: str) -> tuple[float, int]:
    """(peak RSS rise / output bytes, output bytes) of one call in a fresh process."""
    res = subprocess.run([sys.executable, __file__, "--memory-child", str(n), variant],
                         capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return r["delta"] / r["output"], r["output"]


# --- speed ------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7", help="comma-separated N (default: 1e5,1e6,1e7)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    threads = default_threads()
    sc = scenario()
    plans = {b: build_plan(sc, "train", biased=b) for b in (False, True)}
    t0 = time.perf_counter()
    for plan in plans.values():
        run_plan(plan, 1000, SEED, threads=1)  # compile once, or load numba's cache
    load_s = time.perf_counter() - t0
    import numba

    print(f"simsys sample_speed: numpy {np.__version__}, numba {numba.__version__}, "
          f"{os.cpu_count()} CPUs, all threads = {threads}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"kernel ready in {load_s:.2f} s (compile on first use, else numba's cache); "
          f"repeats {args.repeats}, interleaved; medians")

    variants = []
    for biased in (False, True):
        mode = "biased" if biased else "clean"
        variants.append((f"simsys {mode}, {threads} threads", mode, "simsys", threads))
        variants.append((f"simsys {mode}, 1 thread", mode, "simsys", 1))
        variants.append((f"simsys {mode}, {threads} thr., reused out", mode, "reuse", threads))
        variants.append((f"numpy  {mode}, one pass", mode, "numpy", 0))
    results: dict[tuple[int, str], list[float]] = {}
    rows_out: dict[tuple[int, str], int] = {}
    for n in sizes:
        buffers = {b: output_buffers(plans[b], n) for b in (False, True)}
        for b in (False, True):  # touch them once, untimed
            run_plan(plans[b], n, SEED, out=buffers[b])
        for _ in range(args.repeats):
            for name, mode, impl, thr in variants:
                biased = mode == "biased"
                t = time.perf_counter()
                if impl == "simsys":
                    out = run_plan(plans[biased], n, SEED, threads=thr)
                    rows_out[(n, name)] = out.n
                elif impl == "reuse":
                    out = run_plan(plans[biased], n, SEED, threads=thr, out=buffers[biased])
                    rows_out[(n, name)] = out.n
                else:
                    out = numpy_sample(n, SEED, biased)
                    rows_out[(n, name)] = len(out["patient_id"])
                results.setdefault((n, name), []).append(time.perf_counter() - t)
                del out
            if n == 1_000_000:
                for biased in (False, True):
                    name = f"simsys.sample {'biased' if biased else 'clean'} (DataFrame)"
                    t = time.perf_counter()
                    df = simsys.sample(sc, n, seed=SEED, biased=biased)
                    results.setdefault((n, name), []).append(time.perf_counter() - t)
                    rows_out[(n, name)] = len(df)
                    del df
        del buffers

    print()
    print(f"{'N':>10}  {'variant':<38} {'M patients/s':>12} {'x numpy':>8} {'median s':>9} {'rows out':>10}")
    print(f"{'':>10}  (timed: the call that returns the arrays; 'reused out': into arrays reused from call to call;")
    print(f"{'':>10}  run_plan uses at most n // 65536 threads, so at N = 1e5 every variant ran on one thread)")
    med = {k: statistics.median(v) for k, v in results.items()}
    for n in sizes:
        for name in [v[0] for v in variants] + [k[1] for k in med if k[0] == n and "DataFrame" in k[1]]:
            mode = "biased" if "biased" in name else "clean"
            ref = med[(n, f"numpy  {mode}, one pass")]
            t = med[(n, name)]
            print(f"{n:>10.0e}  {name:<38} {n / t / 1e6:>12.1f} {ref / t:>8.1f} {t:>9.4f} "
                  f"{rows_out[(n, name)]:>10}")
        print()

    mem: dict[tuple[int, str], float] = {}
    if not args.no_memory:
        print("peak memory: rise of the peak resident set (VmHWM) during one call, in a fresh process,")
        print("divided by the bytes of the columns it returns (float64 + uint8 columns + int64 ids)")
        print(f"{'N':>10}  {'variant':<16} {'output MB':>10} {'peak / output':>14}")
        for n in sizes:
            for variant in ("simsys-clean", "simsys-biased", "numpy-clean", "numpy-biased"):
                ratio, size = measure_memory(n, variant)
                mem[(n, variant)] = ratio
                print(f"{n:>10.0e}  {variant:<16} {size / 1e6:>10.1f} {ratio:>14.2f}")
        print()

    n = max(sizes)
    print(f"targets at N = {n:.0e} (issue [1/5]):")

    def rate(name):
        return n / med[(n, name)] / 1e6

    def ratio(name, mode):
        return med[(n, f"numpy  {mode}, one pass")] / med[(n, name)]

    checks = [
        (f"clean, {threads} threads >= 50 M/s", rate(f"simsys clean, {threads} threads"), 50.0),
        (f"biased, {threads} threads >= 40 M/s", rate(f"simsys biased, {threads} threads"), 40.0),
        ("clean >= 8x numpy", ratio(f"simsys clean, {threads} threads", "clean"), 8.0),
        ("biased >= 8x numpy", ratio(f"simsys biased, {threads} threads", "biased"), 8.0),
        ("clean, 1 thread >= 30 M/s", rate("simsys clean, 1 thread"), 30.0),
    ]
    for name, value, target in checks:
        print(f"  {name:<34} {value:8.1f}   {'ok' if value >= target else 'SHORT'}")
    print(f"  (into reused arrays, i.e. without fresh memory's page faults: clean "
          f"{rate(f'simsys clean, {threads} thr., reused out'):.1f} M/s, biased "
          f"{rate(f'simsys biased, {threads} thr., reused out'):.1f} M/s on {threads} threads)")
    for variant in ("simsys-clean", "simsys-biased"):
        if (n, variant) in mem:
            v = mem[(n, variant)]
            print(f"  {variant + ' peak <= 1.2x output':<34} {v:8.2f}   {'ok' if v <= 1.2 else 'SHORT'}")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(on {os.cpu_count()} CPUs: above ~0.5, other processes took part of the machine)")


if __name__ == "__main__":
    main()
