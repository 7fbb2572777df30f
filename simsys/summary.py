"""A plain summary of a scenario's cohorts (what ``simsys run`` prints before models are trained)."""

from __future__ import annotations

import time

from simsys.scenario import load_scenario
from simsys.simulate import sample


def summarise_cohorts(file: str, *, seed=None, echo=print) -> None:
    """Sample every population and print, per group, its size and true vs observed prevalence."""
    sc = load_scenario(file)
    target = sc.spec.roles.target
    echo(f"scenario {sc.name} (seed {seed if seed is not None else sc.spec.seed})")
    for pop in sc.spec.populations:
        t0 = time.perf_counter()
        df = sample(sc, population=pop, seed=seed)
        dt = time.perf_counter() - t0
        echo(f"population {pop}: {len(df)} patients ({dt:.2f} s)")
        for g in sc.groups:
            tab = df.groupby(g, observed=True).agg(
                n=(target, "size"), true_prevalence=(target, "mean"),
                observed_prevalence=(f"{target}_observed", "mean"))
            tab["share"] = tab["n"] / tab["n"].sum()
            echo(tab.to_string(float_format=lambda v: f"{v:.4f}"))
