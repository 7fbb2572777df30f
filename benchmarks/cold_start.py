"""Cold start: how long a whole ``simsys sample`` process takes, with numba's cache warm and cold.

Two figures (issue [1/5] targets in brackets):

- warm: ``simsys sample scenarios/melanoma.yaml -n 100000 -o <tmp>.parquet`` as a new process,
  numba's cache already filled by an earlier run; median of ``--repeats`` (5) runs [< 1.2 s].
  Most of it is start-up that no sampler speed removes: Python, pandas, pydantic, numba's import
  and its first call to a cached kernel (which loads numba's array-maths registry, and with it
  SciPy's BLAS). The same runs of ``python -c pass``, ``python -c "import simsys"`` and
  ``simsys validate`` are interleaved with them and shown for scale;
- first-ever compile: the same command with ``NUMBA_CACHE_DIR`` pointing to a fresh, empty
  folder, so that numba has nothing cached and compiles the kernels [< 15 s]. The run must
  print simsys's one-line notice on stderr; a second run on the same folder must not.

Every figure is wall time (what a user waits) and, in brackets, the CPU time of the child
process (user + system): on a shared machine the CPU time is the steadier of the two.

Usage::

    python benchmarks/cold_start.py                  # 5 warm runs, 1 cold compile
    python benchmarks/cold_start.py --repeats 9 --compiles 2
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "melanoma.yaml"


def simsys_command() -> list[str]:
    """The ``simsys`` console script of this environment (else ``python -m simsys``)."""
    exe = shutil.which("simsys", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return [exe] if exe else [sys.executable, "-m", "simsys"]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall s, child CPU s, stderr) of one process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="warm runs (median)")
    ap.add_argument("--compiles", type=int, default=1, help="first-ever compiles (each in a new cache folder)")
    ap.add_argument("-n", type=int, default=100_000)
    args = ap.parse_args()

    from simsys.simulate import COMPILE_NOTICE

    tmp = Path(tempfile.mkdtemp(prefix="simsys-cold-"))
    out = tmp / "x.parquet"
    sample = [*simsys_command(), "sample", str(SCENARIO.relative_to(ROOT)), "-n", str(args.n), "-o", str(out)]
    others = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import simsys'": [sys.executable, "-c", "import simsys"],
        "simsys validate": [*simsys_command(), "validate", str(SCENARIO.relative_to(ROOT))],
    }
    print(f"simsys cold_start: {' '.join(sample)}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wall s (child CPU s)")

    timed(sample)  # fill numba's own cache (a no-op when it is already warm)
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for name, cmd in [("simsys sample (warm cache)", sample), *others.items()]:
            wall, cpu, _ = timed(cmd)
            runs.setdefault(name, []).append((wall, cpu))
    print(f"\nwarm, median of {args.repeats} interleaved runs:")
    for name, r in runs.items():
        w = statistics.median(x[0] for x in r)
        c = statistics.median(x[1] for x in r)
        flag = ""
        if name.startswith("simsys sample"):
            flag = "   target < 1.2 s: " + ("ok" if w < 1.2 else "SHORT")
        print(f"  {name:<28} {w:6.2f} s ({c:.2f}){flag}")

    print(f"\nfirst-ever compile (fresh NUMBA_CACHE_DIR), {args.compiles} run(s):")
    for i in range(args.compiles):
        cache = tmp / f"numba-cache-{i}"
        cache.mkdir()
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        wall, cpu, err = timed(sample, env)
        said = COMPILE_NOTICE in err
        wall2, cpu2, err2 = timed(sample, env)
        quiet = COMPILE_NOTICE not in err2
        print(f"  cold {wall:6.2f} s ({cpu:.2f})   target < 15 s: {'ok' if wall < 15 else 'SHORT'};"
              f" notice shown: {'yes' if said else 'NO'}")
        print(f"  then warm on that cache {wall2:6.2f} s ({cpu2:.2f}); notice absent: {'yes' if quiet else 'NO'}")
        if said:
            line = next(ln for ln in err.splitlines() if COMPILE_NOTICE in ln)
            print(f"  stderr said: {line}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
