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

A population is drawn in one of three views (``simsys.biases.VIEWS``): ``biased`` (the training
data), ``clean`` (its twin) and ``tested`` (the experiment's test and validation cohorts).
:func:`experiment_view` says which one the experiment uses for a population; ``simsys run`` and
``simsys sample`` both go through it, so that a sampled cohort is the one the run sees.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simsys import expressions as ex
from simsys.biases import VIEWS, ObservationPlan, observation_steps
from simsys.errors import ScenarioError, SimsysError
from simsys.kernels.interpreter import (
    BAD_INFINITE,
    BAD_NAN,
    BAD_NEGATIVE,
    BAD_TOO_LARGE,
    BAD_ZERO_SUM,
    POISSON_MAX_RATE,
)
from simsys.program import ZIGGURAT, Program, Step, compile_steps
from simsys.scenario import (
    BernoulliNode,
    CategoricalNode,
    DeterministicNode,
    Scenario,
    indicator_names,
    intervention_problem,
)

BLOCK = 2048  # rows per interpreter block: registers stay in L2 cache; results do not depend on it
CHUNK = 1 << 20  # rows per chunk when streaming large cohorts
CHUNK_ROWS = 1 << 16  # rows a thread samples at a time (its filtering scratch stays in cache)
COMPILE_NOTICE = "simsys: compiling the sampling kernel once (about 10 s; cached afterwards)..."
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
    view: str = "biased"

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


def experiment_view(scenario: Scenario, population: str) -> str:
    """The view in which the experiment draws a population: ``biased`` for its training
    population (``experiment.train``, default ``train``), ``tested`` for its test population
    (``experiment.test``, default ``test``; validation comes from it too), and for any other
    population its own ``biased`` flag (``biased`` or ``clean``).
    """
    exp = scenario.spec.experiment or {}
    train, test = exp.get("train", "train"), exp.get("test", "test")
    if population == train:
        return "biased"
    if population == test:
        return "tested"
    return "biased" if scenario.spec.populations[population].biased else "clean"


def build_plan(scenario: Scenario, population: str = "train", *, biased: bool | None = None,
               do: Mapping[str, object] | None = None, view: str | None = None) -> Plan:
    """Compile the sampling plan of a population.

    Parameters
    ----------
    biased : bool, optional
        Whether the scenario's biases act (default: the population's ``biased`` flag): the
        ``biased`` view, or the ``clean`` twin.
    do : mapping node -> number, formula, or array
        Interventions on top of the population's own ``do``; an array gives one value per row
        (counterfactuals), a number or formula replaces the node's equation.
    view : {"biased", "clean", "tested", "experiment"}, optional
        Overrides ``biased``: a view of ``simsys.biases.VIEWS``, or ``"experiment"`` for the one
        the experiment uses (:func:`experiment_view`).
    """
    spec = scenario.spec
    if population not in spec.populations:
        raise ScenarioError(scenario.source, "populations",
                            f"unknown population {population!r}; defined: {', '.join(spec.populations)}")
    pop = spec.populations[population]
    if view == "experiment":
        view = experiment_view(scenario, population)
    if view is None:
        view = "biased" if (pop.biased if biased is None else bool(biased)) else "clean"
    elif view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; allowed: {', '.join(VIEWS)}, experiment")
    # whether observed features carry their biases (the tested view follows the population's flag)
    biased = view == "biased" or (view == "tested" and pop.biased)
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
                ex.check_names(e, (set(spec.params) | set(spec.nodes)) - {node})
            except ex.ExpressionError as exc:
                raise ScenarioError(scenario.source, f"do.{node}", str(exc)) from None
            problem = intervention_problem(spec, node, e, {**spec.params, **pop.params})
            if problem:
                raise ScenarioError(scenario.source, f"do.{node}", problem)
            interventions[node] = e
    order = _order_with_interventions(scenario, interventions)
    steps = [_node_step(scenario, n, interventions.get(n)) for n in order]
    stores = {s.name: s.store for s in steps}
    obs = observation_steps(scenario, population, view, stores)
    program = compile_steps(steps + obs.steps, params=set(spec.params),
                            indicators=indicator_names(spec))
    params = {**spec.params, **pop.params}
    return Plan(scenario, population, biased, program, obs, params, view)


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
                        view=self.plan.view, scenario=sc.name)
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


def output_buffers(plan: Plan, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uninitialised output arrays for up to ``n`` rows of ``plan`` (for ``run_plan(out=...)``):
    float64 columns, uint8 columns, int64 patient ids."""
    p = plan.program
    return (np.empty((len(p.columns_f), n), dtype=np.float64),
            np.empty((len(p.columns_u), n), dtype=np.uint8), np.empty(n, dtype=np.int64))


def plan_fingerprint(plan: Plan, seed: int) -> str:
    """A hash of everything that determines the cohorts a plan samples with a seed: its bytecode,
    its constant table (the params' values), the stream keys of its instructions, its output
    layout and its population. Two plans with the same fingerprint sample the same patients with
    the same values, row for row (the runner reuses such cohorts across sweep points)."""
    import hashlib

    prog = plan.program
    h = hashlib.blake2b(digest_size=20)
    for a in (prog.code, prog.consts(plan.params), prog.keys(int(seed), plan.population),
              prog.store_reg, prog.store_kind, prog.store_row):
        a = np.ascontiguousarray(a)
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    h.update(repr((prog.n_regs, prog.columns_f, prog.columns_u, prog.loads, plan.population,
                   plan.observation.keep, sorted(plan.observation.observed.items()))).encode())
    return h.hexdigest()


def run_plan(plan: Plan, n: int, seed: int, *, start: int = 0, filter: bool = True,
             threads: int | None = None, block: int = BLOCK, inputs: np.ndarray | None = None,
             row_ids: np.ndarray | None = None,
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Cohort:
    """Sample rows ``start .. start+n`` of a population (patients are numbered from 0).

    Representation and selection biases drop patients when ``filter`` is true (the cohort then has
    fewer than ``n`` rows). ``row_ids`` samples explicit patients instead (their noise is that of
    those patient numbers), and ``inputs`` gives per-row values of array interventions.

    Memory: the output columns are allocated once and written by the kernel directly (filtered
    rows never reach them), so the peak is about the cohort itself; when filtering, the arrays
    are sized for ``n`` rows but only the kept rows' pages are ever touched. ``out`` (from
    :func:`output_buffers`, for at least ``n`` rows) is written instead of new arrays: a caller
    that samples repeatedly avoids the page faults of fresh memory, which cost more than the
    sampling itself on some virtual machines. The cohort returned is then a view of ``out``, and
    the next call that reuses ``out`` overwrites it.
    """
    from simsys.kernels.interpreter import _copy_rows, _run_program

    prog = plan.program
    if row_ids is not None:
        row_ids = np.ascontiguousarray(row_ids, dtype=np.int64)
        n = row_ids.shape[0]
    else:
        row_ids = np.empty(0, dtype=np.int64)
    n = int(n)
    keep_reg = -1
    if filter and plan.keep_row is not None:
        is_keep = (prog.store_kind == 1) & (prog.store_row == plan.keep_row)
        keep_reg = int(prog.store_reg[is_keep][0])
    if out is None:
        out_f, out_u, pid = output_buffers(plan, n)
    else:
        out_f, out_u, pid = out
        want = output_buffers(plan, 0)
        for name, a, w in zip(("out[0]", "out[1]", "out[2]"), out, want):
            if not (isinstance(a, np.ndarray) and a.dtype == w.dtype and a.ndim == w.ndim
                    and a.shape[:-1] == w.shape[:-1] and a.shape[-1] >= n and a.flags.c_contiguous):
                raise ValueError(f"run_plan: {name}: expected a C-contiguous {w.dtype} array of shape "
                                 f"{(*w.shape[:-1], n)} or longer (see output_buffers), got "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    if inputs is None:
        inputs = np.empty((0, 0), dtype=np.float64)
    head = (prog.code, prog.keys(seed, plan.population), prog.consts(plan.params), prog.n_regs,
            start, row_ids, inputs, prog.store_reg, prog.store_kind, prog.store_row, keep_reg)
    # the register file is n_regs x block float64 per thread: a very large graph gets smaller
    # blocks (results do not depend on the block size), not a register file of hundreds of MB
    block = max(64, min(int(block), _REGISTER_BYTES // (8 * max(1, prog.n_regs))))
    tail = (block, *ZIGGURAT)
    problems: list[np.ndarray] = []

    def run(a: int, b: int, of, ou, op, w0: int) -> int:
        errs = np.zeros((max(1, prog.code.shape[0]), 3), dtype=np.int64)
        rows = int(_run_program(*head, of, ou, op, w0, a, b, *tail, errs))
        if errs[:, 0].any():
            problems.append(errs)  # list.append is atomic: chunks on other threads may add theirs
        return rows

    threads = default_threads() if threads is None else max(1, int(threads))
    threads = max(1, min(threads, n // _MIN_ROWS_PER_THREAD))
    with _CompileNotice():  # compile (first use ever) or load the kernels here, on 0 rows
        run(0, 0, out_f, out_u, pid, 0)
        if threads > 1 and keep_reg >= 0:
            _copy_rows(out_f, out_u, pid, 0, out_f, out_u, pid, 0)
    if threads == 1:
        m = run(0, n, out_f, out_u, pid, 0)
    else:
        m = _run_chunks(run, _copy_rows, n, threads, keep_reg >= 0, out_f, out_u, pid)
    if problems:
        raise _unusable_values(plan, problems)
    return Cohort(plan, out_f[:, :m], out_u[:, :m], pid[:m], m, seed=seed)


_REGISTER_BYTES = 64 << 20

_WHY = {  # the kernel's reason codes (simsys.kernels.interpreter.BAD_*) -> what was found
    BAD_NAN: "NaN", BAD_NEGATIVE: "a negative value", BAD_ZERO_SUM: "all weights 0",
    BAD_INFINITE: "an infinite weight", BAD_TOO_LARGE: f"a rate above {POISSON_MAX_RATE:g}",
}
_ALLOWED = {
    "p": "a probability must be a number (values outside [0, 1] act as 0 or 1)",
    "logit": "a logit must be a number",
    "probs": "weights must be finite numbers >= 0, not all 0",
    "logits": "logits must be numbers below +inf",
    "rate": f"a rate must be a number in [0, {POISSON_MAX_RATE:g}]",
}
_PROBABILITY = "a probability must be a number (values outside [0, 1] act as 0 or 1)"


def _unusable_values(plan: Plan, problems: list[np.ndarray]) -> ScenarioError:
    """The error for values the kernel could not sample from (first instruction that met some)."""
    errs = problems[0].copy()
    for e in problems[1:]:
        take = (e[:, 0] > 0) & ((errs[:, 0] == 0) | (e[:, 1] < errs[:, 1]))
        errs[take, 1:] = e[take, 1:]
        errs[:, 0] += e[:, 0]
    j = int(np.flatnonzero(errs[:, 0])[0])
    rows, pid, why = (int(v) for v in errs[j])
    path = plan.program.sources[j] or "?"
    fld = path.rsplit(".", 1)[-1]
    what = _WHY.get(why, "an unusable value")
    if fld == "logits" and why == BAD_NAN:
        what = "NaN (or +inf)"
    allowed = _ALLOWED.get(fld, "a usable number") if path.startswith("nodes.") else _PROBABILITY
    patients = "patient" if rows == 1 else "patients"
    return ScenarioError(plan.scenario.source, path,
                         f"{what} for {rows} {patients} of population {plan.population!r} "
                         f"(first: patient_id {pid}); {allowed}")


def _run_chunks(run, copy_rows, n: int, threads: int, filtering: bool, out_f, out_u, pid) -> int:
    """Run the kernel over chunks of ``CHUNK_ROWS`` rows on ``threads`` threads; return rows kept.

    Threads take chunks in order from a shared counter (dynamic: a thread slowed down by another
    process on a shared machine simply takes fewer). Without filtering every chunk writes its own
    slice of the output. With filtering, a chunk's place in the output depends on how many rows
    the chunks before it kept: a thread samples its chunk into its own small scratch columns, waits
    for the previous chunk's count (not for its copy), publishes its own, then copies.
    """
    bounds = [(a, min(n, a + CHUNK_ROWS)) for a in range(0, n, CHUNK_ROWS)]
    counter = itertools.count()
    offsets = [0] * (len(bounds) + 1)
    ready = [threading.Event() for _ in range(len(bounds) + 1)]
    ready[0].set()
    failed = []

    def worker() -> None:
        scratch = None
        try:
            while not failed:
                k = next(counter)
                if k >= len(bounds):
                    return
                a, b = bounds[k]
                if not filtering:
                    run(a, b, out_f, out_u, pid, a)
                    continue
                if scratch is None:
                    rows = min(CHUNK_ROWS, n)
                    scratch = (np.empty((out_f.shape[0], rows)), np.empty((out_u.shape[0], rows), np.uint8),
                               np.empty(rows, np.int64))
                c = run(a, b, *scratch, 0)
                ready[k].wait()
                if failed:
                    return
                w = offsets[k]
                offsets[k + 1] = w + c
                ready[k + 1].set()
                copy_rows(*scratch, c, out_f, out_u, pid, w)
        except BaseException:
            failed.append(True)
            for e in ready:  # release the threads waiting for a count that will never come
                e.set()
            raise

    futures = [_pool(threads).submit(worker) for _ in range(threads)]
    for fut in futures:
        fut.result()
    return offsets[-1] if filtering else n


_announced = False


class _CompileNotice:
    """Say on stderr, once per process, that numba is compiling the kernels (a cache miss).

    numba broadcasts a ``numba:compile`` event only when it really compiles -- never when it loads
    a function from its on-disk cache -- so listening for it is an exact, free test (numba's
    documented event API, ``numba.core.event``).
    """

    def __enter__(self):
        from numba.core import event

        class Listener(event.Listener):
            def on_start(self, ev):
                global _announced
                fn = getattr(ev.data.get("dispatcher"), "py_func", None)
                if not _announced and getattr(fn, "__module__", "").startswith("simsys.kernels"):
                    _announced = True
                    print(COMPILE_NOTICE, file=sys.stderr, flush=True)

            def on_end(self, ev):
                pass

        self._listener = Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc):
        from numba.core import event

        event.unregister("numba:compile", self._listener)
        return False


def sample(scenario: Scenario, n: int | None = None, *, seed: SeedLike = None,
           population: str = "train", biased: bool | None = None,
           do: Mapping[str, object] | None = None, threads: int | None = None,
           filter: bool = True, view: str | None = None) -> pd.DataFrame:
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
    view : {"biased", "clean", "tested", "experiment"}, optional
        Overrides ``biased``; ``"experiment"`` draws the cohort ``simsys run`` draws from this
        population (e.g. its test cohort: recorded labels, the population's ``selection``), as
        ``simsys sample`` does by default. See :func:`experiment_view`.

    Returns
    -------
    DataFrame with ``patient_id``, every node's true value, and ``<name>_observed`` for the target
    and for every feature a bias corrupts.
    """
    if n is None:
        pop = scenario.spec.populations.get(population)
        n = pop.n if pop is not None else 0
    inputs, do_exprs = _split_do(do)
    plan = build_plan(scenario, population, biased=biased, do=do_exprs, view=view)
    _check_inputs(scenario, do_exprs, inputs)
    if inputs is not None and inputs.shape[1] != n:
        raise ValueError(f"array interventions must have n={n} values, got {inputs.shape[1]}")
    s = resolve_seed(seed, scenario.spec.seed)
    return run_plan(plan, n, s, threads=threads, filter=filter, inputs=inputs).to_frame()


def _check_inputs(scenario: Scenario, do_exprs, inputs) -> None:
    """Per-row intervention values of a 0/1 or categorical node must be codes it can hold."""
    if inputs is None:
        return
    arrays = [k for k, v in do_exprs.items() if isinstance(v, np.ndarray)]
    for row, node in zip(inputs, arrays):
        if node_store(scenario, node) != "u":
            continue
        k = len(scenario.categories(node))
        bad = ~((row >= 0) & (row < k) & (row == np.floor(row)))  # NaN is bad too
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ScenarioError(scenario.source, f"do.{node}", f"{int(bad.sum())} values are not a "
                                f"code 0..{k - 1} of this node (first: row {i}, {row[i]!r})")


def _split_do(do):
    if not do:
        return None, None
    def as_values(v):
        # a categorical column intervenes with its codes (what formulas see), not its names
        if isinstance(v, pd.Series) and isinstance(v.dtype, pd.CategoricalDtype):
            return v.cat.codes.to_numpy(dtype=np.float64)
        if isinstance(v, pd.Categorical):
            return v.codes.astype(np.float64)
        return np.asarray(v, dtype=np.float64)

    arrays = [as_values(v) for v in do.values() if isinstance(v, np.ndarray | pd.Series | pd.Categorical | list)]
    exprs = {k: (np.empty(0) if isinstance(v, np.ndarray | pd.Series | pd.Categorical | list) else v)
             for k, v in do.items()}
    inputs = np.ascontiguousarray(np.vstack(arrays)) if arrays else None
    return inputs, exprs


def iter_chunks(scenario: Scenario, n: int, *, seed: SeedLike = None, population: str = "train",
                biased: bool | None = None, chunk_size: int = CHUNK,
                threads: int | None = None, view: str | None = None) -> Iterator[pd.DataFrame]:
    """Yield a large cohort chunk by chunk (bounded memory); identical to one :func:`sample` call."""
    plan = build_plan(scenario, population, biased=biased, view=view)
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
    view = None
    if biased is None:
        biased = cohort.attrs.get("biased")
        view = cohort.attrs.get("view")  # a tested cohort's twin is tested too
    s = resolve_seed(cohort.attrs.get("seed") if seed is None else seed, scenario.spec.seed)
    inputs, do_exprs = _split_do(do)
    plan = build_plan(scenario, population, biased=biased, do=do_exprs, view=view)
    _check_inputs(scenario, do_exprs, inputs)
    ids = cohort["patient_id"].to_numpy()
    return run_plan(plan, len(ids), s, row_ids=ids, inputs=inputs, filter=False).to_frame()
