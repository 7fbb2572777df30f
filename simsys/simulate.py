"""Turn a scenario and a seed into a cohort: true and observed columns side by side.

This module owns sampling: it builds the plan of a population (the scenario's nodes in causal
order, interventions, then the observation steps of the biases that act on it), compiles it once
(``simsys.program``), binds it to the population's params and the seed, and runs the compiled
interpreter over the rows -- in chunks, on a small thread pool, in bounded memory.

Guarantees (tested in ``tests/test_simulate.py``):

- the same seed gives the same cohort bit for bit, whatever the number of threads, the block size
  or the chunking: patient ``i``'s values depend only on (seed, population, node name, i);
- changing a number or the graph's structure never recompiles anything (the kernel is generic);
- a population's clean twin (``biased=False``) is the same patients before any bias acted.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simsys import expressions as ex
from simsys.biases import ObservationPlan, observation_steps
from simsys.errors import ScenarioError, SimsysError
from simsys.program import ZIGGURAT, Program, Step, compile_steps
from simsys.scenario import (
    BernoulliNode,
    CategoricalNode,
    DeterministicNode,
    Scenario,
    indicator_names,
)

BLOCK = 2048  # rows per interpreter block: registers stay in L2 cache; results do not depend on it
CHUNK = 1 << 20  # rows per chunk when streaming large cohorts
_MIN_ROWS_PER_THREAD = 1 << 16  # below this a second thread costs more than it gives

SeedLike = int | np.random.SeedSequence | None


@dataclass
class Plan:
    """A compiled sampling plan for one population (and one set of interventions)."""

    scenario: Scenario
    population: str
    biased: bool
    program: Program
    observation: ObservationPlan
    params: dict[str, float]

    @property
    def keep_row(self) -> int | None:
        k = self.observation.keep
        return None if k is None else self.program.columns_u.index(k)


def node_store(scenario: Scenario, node: str) -> str:
    """Output kind of a node: ``"u"`` (uint8) for 0/1 and categorical values, else ``"f"``."""
    s = scenario.spec.nodes[node]
    if isinstance(s, BernoulliNode | CategoricalNode):
        return "u"
    if isinstance(s, DeterministicNode) and ex.is_boolean(scenario.formulas[f"nodes.{node}.value"]):
        return "u"
    return "f"


def _node_step(scenario: Scenario, node: str, intervention) -> Step:
    s = scenario.spec.nodes[node]
    f = scenario.formulas
    store = node_store(scenario, node)
    if intervention is not None:
        if isinstance(intervention, int):  # an input column
            return Step(node, "load", {"input": intervention}, store=store)
        return Step(node, "deterministic", {"value": intervention}, store=store)
    stream = f"node:{node}"
    k = f"nodes.{node}"
    if isinstance(s, BernoulliNode):
        if s.p is not None:
            return Step(node, "bernoulli", {"p": f[k + ".p"]}, stream, store)
        return Step(node, "bernoulli_logit", {"logit": f[k + ".logit"]}, stream, store)
    if isinstance(s, CategoricalNode):
        if s.probs is not None:
            w = [f[f"{k}.probs[{i}]"] for i in range(len(s.probs))]
            return Step(node, "categorical", {"weights": w}, stream, store)
        w = [f[f"{k}.logits[{i}]"] for i in range(len(s.logits))]
        return Step(node, "categorical_logits", {"logits": w}, stream, store)
    if s.kind == "deterministic":
        return Step(node, "deterministic", {"value": f[k + ".value"]}, None, store)
    fields = {"normal": ("mean", "sd"), "lognormal": ("meanlog", "sdlog"), "poisson": ("rate",),
              "uniform": ("low", "high")}[s.kind]
    return Step(node, s.kind, {fld: f[f"{k}.{fld}"] for fld in fields}, stream, store)


def build_plan(scenario: Scenario, population: str = "train", *, biased: bool | None = None,
               do: Mapping[str, object] | None = None) -> Plan:
    """Compile the sampling plan of a population.

    Parameters
    ----------
    biased : bool, optional
        Whether the scenario's biases act (default: the population's ``biased`` flag).
    do : mapping node -> number, formula, or array
        Interventions on top of the population's own ``do``; an array gives one value per row
        (counterfactuals), a number or formula replaces the node's equation.
    """
    spec = scenario.spec
    if population not in spec.populations:
        raise ScenarioError(scenario.source, "populations",
                            f"unknown population {population!r}; defined: {', '.join(spec.populations)}")
    pop = spec.populations[population]
    biased = pop.biased if biased is None else bool(biased)
    interventions: dict[str, object] = {}
    for node in pop.do:
        interventions[node] = scenario.formulas[f"populations.{population}.do.{node}"]
    n_inputs = 0
    for node, value in (do or {}).items():
        if node not in spec.nodes:
            raise ScenarioError(scenario.source, f"do.{node}", f"unknown node {node!r}; nodes: {', '.join(spec.nodes)}")
        if isinstance(value, np.ndarray):
            interventions[node] = n_inputs
            n_inputs += 1
        else:
            try:
                e = ex.parse(value)
                ex.check_names(e, set(spec.params) | set(spec.nodes) - {node})
            except ex.ExpressionError as exc:
                raise ScenarioError(scenario.source, f"do.{node}", str(exc)) from None
            interventions[node] = e
    order = _order_with_interventions(scenario, interventions)
    steps = [_node_step(scenario, n, interventions.get(n)) for n in order]
    stores = {s.name: s.store for s in steps}
    obs = observation_steps(scenario, population, biased, stores)
    program = compile_steps(steps + obs.steps, params=set(spec.params),
                            indicators=indicator_names(spec))
    params = {**spec.params, **pop.params}
    return Plan(scenario, population, biased, program, obs, params)


def _order_with_interventions(scenario: Scenario, interventions) -> list[str]:
    from simsys.graph import topological_order

    parents = {n: list(p) for n, p in scenario.parents.items()}
    ind = indicator_names(scenario.spec)
    for node, value in interventions.items():
        if isinstance(value, ex.Expr):
            parents[node] = sorted({ind[u][0] if u in ind else u for u in value.names()
                                    if u not in scenario.spec.params})
        else:
            parents[node] = []
    try:
        return topological_order(parents)
    except SimsysError as exc:
        raise ScenarioError(scenario.source, "do", str(exc)) from None


@dataclass
class Cohort:
    """Sampled columns as NumPy arrays (views into two 2-D blocks: float64 and uint8)."""

    plan: Plan
    values_f: np.ndarray
    values_u: np.ndarray
    patient_id: np.ndarray
    n: int

    def column(self, name: str) -> np.ndarray:
        p = self.plan.program
        if name in p.columns_f:
            return self.values_f[p.columns_f.index(name), : self.n]
        if name == "patient_id":
            return self.patient_id
        return self.values_u[p.columns_u.index(name), : self.n]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame: ``patient_id``, the nodes in declaration order, then observed columns."""
        sc = self.plan.scenario
        p = self.plan.program
        cols: dict[str, object] = {"patient_id": self.patient_id}
        for name in [*sc.spec.nodes, *self.plan.observation.observed.values()]:
            values = self.column(name)
            spec = sc.spec.nodes.get(name) or sc.spec.nodes.get(name.removesuffix("_observed"))
            if isinstance(spec, CategoricalNode) and name in p.columns_u:
                values = pd.Categorical.from_codes(values, categories=spec.categories)
            cols[name] = values
        df = pd.DataFrame(cols, copy=False)
        df.attrs.update(seed=self.seed, population=self.plan.population, biased=self.plan.biased,
                        scenario=sc.name)
        return df

    seed: int = 0


def resolve_seed(seed: SeedLike, default: int) -> int:
    """One integer root seed from ``int | SeedSequence | None`` (None: the scenario's seed)."""
    if seed is None:
        return int(default)
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(1, dtype=np.uint64)[0])
    if isinstance(seed, np.random.Generator):
        raise TypeError("pass an int or a SeedSequence (a Generator's state cannot be recorded)")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="simsys")
        return _pools[threads]


def default_threads() -> int:
    """Threads for sampling: the cores this process may use (``SIMSYS_THREADS`` overrides)."""
    env = os.environ.get("SIMSYS_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def run_plan(plan: Plan, n: int, seed: int, *, start: int = 0, filter: bool = True,
             threads: int | None = None, block: int = BLOCK, inputs: np.ndarray | None = None,
             row_ids: np.ndarray | None = None) -> Cohort:
    """Sample rows ``start .. start+n`` of a population (patients are numbered from 0).

    Representation and selection biases drop patients when ``filter`` is true (the cohort then has
    fewer than ``n`` rows). ``row_ids`` samples explicit patients instead (their noise is that of
    those patient numbers), and ``inputs`` gives per-row values of array interventions.
    """
    from simsys.kernels.interpreter import _compact_rows, _run_program

    prog = plan.program
    if row_ids is not None:
        row_ids = np.ascontiguousarray(row_ids, dtype=np.int64)
        n = row_ids.shape[0]
    else:
        row_ids = np.empty(0, dtype=np.int64)
    n = int(n)
    out_f = np.empty((len(prog.columns_f), n), dtype=np.float64)
    out_u = np.empty((len(prog.columns_u), n), dtype=np.uint8)
    consts = prog.consts(plan.params)
    keys = prog.keys(seed, plan.population)
    if inputs is None:
        inputs = np.empty((0, 0), dtype=np.float64)
    zk, zw, zf = ZIGGURAT
    threads = default_threads() if threads is None else max(1, int(threads))
    threads = max(1, min(threads, n // _MIN_ROWS_PER_THREAD))
    args = (prog.code, keys, consts, prog.n_regs, start, row_ids, inputs, prog.store_reg,
            prog.store_kind, prog.store_row, out_f, out_u)
    if threads == 1:
        _run_program(*args, 0, n, block, zk, zw, zf)
    else:
        per = -(-n // threads)
        per = -(-per // block) * block
        bounds = [(s, min(n, s + per)) for s in range(0, n, per)]
        futures = [_pool(threads).submit(_run_program, *args, a, b, block, zk, zw, zf) for a, b in bounds]
        for fut in futures:
            fut.result()
    if row_ids.shape[0]:
        pid = row_ids
    else:
        pid = np.arange(start, start + n, dtype=np.int64)
    m = n
    k = plan.keep_row
    if filter and k is not None:
        keep = out_u[k].copy()
        m = int(_compact_rows(out_f, out_u, keep, n))
        pid = pid[keep.view(np.bool_)]
        out_f = out_f[:, :m]
        out_u = out_u[:, :m]
    return Cohort(plan, out_f, out_u, pid, m, seed=seed)


def sample(scenario: Scenario, n: int | None = None, *, seed: SeedLike = None,
           population: str = "train", biased: bool | None = None,
           do: Mapping[str, object] | None = None, threads: int | None = None,
           filter: bool = True) -> pd.DataFrame:
    """Draw a cohort of a scenario's population as a DataFrame.

    Parameters
    ----------
    scenario : Scenario
        From :func:`simsys.load_scenario`.
    n : int, optional
        Patients drawn (default: the population's ``n``). Representation and selection biases then
        drop some of them, so a biased cohort has fewer rows.
    seed : int or SeedSequence, optional
        Root seed (default: the scenario's ``seed``).
    population : str
        Which population (``train``, ``test``, ...).
    biased : bool, optional
        Override the population's ``biased`` flag (``False`` gives the clean twin: the same
        patients before any bias acted).
    do : mapping, optional
        Interventions ``node -> number | formula | array``.

    Returns
    -------
    DataFrame with ``patient_id``, every node's true value, and ``<name>_observed`` for the target
    and for every feature a bias corrupts.
    """
    if n is None:
        pop = scenario.spec.populations.get(population)
        n = pop.n if pop is not None else 0
    inputs, do_exprs = _split_do(do)
    plan = build_plan(scenario, population, biased=biased, do=do_exprs)
    if inputs is not None and inputs.shape[1] != n:
        raise ValueError(f"array interventions must have n={n} values, got {inputs.shape[1]}")
    s = resolve_seed(seed, scenario.spec.seed)
    return run_plan(plan, n, s, threads=threads, filter=filter, inputs=inputs).to_frame()


def _split_do(do):
    if not do:
        return None, None
    arrays = [np.asarray(v, dtype=np.float64) for v in do.values() if isinstance(v, np.ndarray | pd.Series | list)]
    exprs = {k: (np.empty(0) if isinstance(v, np.ndarray | pd.Series | list) else v) for k, v in do.items()}
    inputs = np.ascontiguousarray(np.vstack(arrays)) if arrays else None
    return inputs, exprs


def iter_chunks(scenario: Scenario, n: int, *, seed: SeedLike = None, population: str = "train",
                biased: bool | None = None, chunk_size: int = CHUNK,
                threads: int | None = None) -> Iterator[pd.DataFrame]:
    """Yield a large cohort chunk by chunk (bounded memory); identical to one :func:`sample` call."""
    plan = build_plan(scenario, population, biased=biased)
    s = resolve_seed(seed, scenario.spec.seed)
    for start in range(0, n, chunk_size):
        yield run_plan(plan, min(chunk_size, n - start), s, start=start, threads=threads).to_frame()


def counterfactual(scenario: Scenario, cohort: pd.DataFrame, do: Mapping[str, object], *,
                   seed: SeedLike = None, population: str | None = None,
                   biased: bool | None = None) -> pd.DataFrame:
    """The cohort's counterfactual twin under ``do``: the same patients (same exogenous noise),
    every descendant of the intervened nodes recomputed.

    ``do`` values may be a number, a formula, or one value per row of ``cohort`` (e.g.
    ``{"dark_skin": 1 - cohort.dark_skin}``). With ``do(group = its factual value)`` the twin
    equals the cohort exactly.
    """
    population = population or cohort.attrs.get("population", "train")
    if biased is None:
        biased = cohort.attrs.get("biased")
    s = resolve_seed(cohort.attrs.get("seed") if seed is None else seed, scenario.spec.seed)
    inputs, do_exprs = _split_do(do)
    plan = build_plan(scenario, population, biased=biased, do=do_exprs)
    ids = cohort["patient_id"].to_numpy()
    return run_plan(plan, len(ids), s, row_ids=ids, inputs=inputs, filter=False).to_frame()
