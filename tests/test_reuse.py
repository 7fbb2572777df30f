"""Reuse within a replicate (simsys.runner.ReuseCache, task_groups): what common random numbers make
identical is computed once, and the results are bit-identical with reuse on and off."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simsys.runner import ReuseCache, parse_experiment, replicate_seeds, run, run_task, task_groups
from simsys.scenario import load_scenario

DATA = Path(__file__).parent / "data"


def test_results_are_bit_identical_with_reuse_on_and_off_and_any_workers():
    off = run(DATA / "runner_small.yaml", output_dir=None, workers=1, reuse=False)
    on1 = run(DATA / "runner_small.yaml", output_dir=None, workers=1, reuse=True)
    on2 = run(DATA / "runner_small.yaml", output_dir=None, workers=2, reuse=True)
    pd.testing.assert_frame_equal(off.results, on1.results)
    pd.testing.assert_frame_equal(off.results, on2.results)
    pd.testing.assert_frame_equal(off.summary, on2.summary)


def test_the_cache_reuses_the_clean_twin_test_cohorts_and_their_fits():
    sc = load_scenario(DATA / "runner_small.yaml")  # sweeps only biases: the clean twin never changes
    ex = parse_experiment(sc)
    seed = replicate_seeds(sc.spec.seed, 1)[0]
    cache = ReuseCache()
    for p in range(len(ex.points)):
        run_task(sc, ex, p, 0, seed, cache=cache)
    P, M = len(ex.points), len(ex.models)
    # the clean twin at every point after the first; test and validation cohorts where the label
    # bias of the test population is unchanged (points 0 and 1 share it, point 2 moves it)
    assert cache.hits["cohorts"] == (P - 1) + 2
    # every model's clean fit after the first point; and at point 0 (keep = 1, nobody dropped) the
    # size-matched twin is the whole clean twin, the same fit; nothing else is shared
    assert cache.hits["fits"] == M * (P - 1) + M


def test_a_sweep_of_a_param_the_clean_twin_uses_reuses_no_clean_fit(tmp_path):
    text = (DATA / "runner_small.yaml").read_text()
    sc = load_scenario(DATA / "runner_small.yaml")
    ex = parse_experiment(sc)
    seed = replicate_seeds(sc.spec.seed, 1)[0]
    # a point that changes the population itself changes the clean twin: nothing to reuse there
    moved = sc.with_values({"nodes.x1.sd": 2.0})
    cache = ReuseCache()
    run_task(sc, ex, 0, 0, seed, cache=cache)
    first = cache.hits["fits"]
    run_task(moved, parse_experiment(moved), 0, 0, seed, cache=cache)
    # only its own size-matched twin (point 0 drops nobody) is found again, nothing of the first
    assert cache.hits["fits"] - first == len(ex.models)
    assert text  # the file itself is untouched


@pytest.mark.parametrize("workers, sizes", [(1, [4, 4, 4]), (2, [4, 4, 2, 2]), (3, [4, 4, 4])])
def test_tasks_group_the_cells_of_a_replicate_and_keep_the_workers_busy(workers, sizes):
    cells = [(p, r) for r in range(3) for p in range(4)]
    groups = task_groups(cells, workers)
    assert [len(g) for g in groups] == sizes
    assert sorted(c for g in groups for c in g) == sorted(cells)
    assert all(len({r for _, r in g}) == 1 for g in groups)  # one replicate per task
    assert task_groups(cells, workers, reuse=False) == [[c] for c in cells]
