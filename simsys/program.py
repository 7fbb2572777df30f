"""Compile a scenario's equations into the bytecode run by ``simsys.kernels.interpreter``.

A *step* is one equation of the sampling plan: a node of the causal graph, or an observation step
added by a bias (``simsys.biases``). :func:`compile_steps` turns an ordered list of steps into a
:class:`Program`: the instruction table, the constant table (as formulas of the params, so that a new
param value changes only numbers, never the code), the stream name of every random instruction, and
the layout of the output columns.

Compilation rules, chosen for speed of the interpreter (each instruction is one pass over a block):

- every sub-expression that uses no column (numbers and params only) is folded into one constant
  slot, evaluated in Python when the program is bound to params;
- sums of terms are kept in linear form: ``b0 + b1*x1 + ... + bk*xk`` is one SETC and one fused
  AXPY (``d += b*x``) per term, whatever mix of params and numbers the coefficients are;
- a Bernoulli with a logit, and a normal with its mean and sd, are single fused instructions.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np

from simsys import expressions as ex
from simsys.errors import SimsysError
from simsys.kernels import interpreter as K

_ONE = ex.const(1.0)
_ZERO = ex.const(0.0)

_CMP = {"<": K.OP_LT, "<=": K.OP_LE, ">": K.OP_GT, ">=": K.OP_GE, "==": K.OP_EQ, "!=": K.OP_NE}
_CMPC = {"<": K.OP_LTC, "<=": K.OP_LEC, ">": K.OP_GTC, ">=": K.OP_GEC, "==": K.OP_EQC, "!=": K.OP_NEC}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_UNARY = {"exp": K.OP_EXP, "log": K.OP_LOG, "sqrt": K.OP_SQRT, "abs": K.OP_ABS,
          "logistic": K.OP_LOGISTIC, "not": K.OP_NOT}


@dataclass(frozen=True)
class Step:
    """One equation of a sampling plan.

    ``kind`` is one of: ``bernoulli`` (args p), ``bernoulli_logit`` (logit), ``categorical``
    (weights: list), ``categorical_logits`` (logits: list), ``normal`` (mean, sd), ``lognormal``
    (meanlog, sdlog), ``poisson`` (rate), ``uniform`` (low, high), ``uniform01`` (no args: the raw
    uniform of the stream), ``deterministic`` (value), ``load`` (the value comes from an input array).
    ``store`` says how the value is written out: ``"f"`` float64, ``"u"`` uint8, None (not written).
    ``stream`` names the random stream (None for steps without noise).
    """

    name: str
    kind: str
    args: dict = field(default_factory=dict)
    stream: str | None = None
    store: str | None = "f"


@dataclass
class Program:
    """Bytecode and layout for one sampling plan; bind it to params and a seed to run it."""

    code: np.ndarray
    streams: list[str | None]
    const_exprs: list[ex.Expr]
    n_regs: int
    store_reg: np.ndarray
    store_kind: np.ndarray
    store_row: np.ndarray
    columns_f: list[str]
    columns_u: list[str]
    loads: list[str]

    def consts(self, params: dict[str, float]) -> np.ndarray:
        """The constant table for these param values."""
        return np.array([ex.evaluate_constant(e, params) for e in self.const_exprs] or [0.0])

    def keys(self, seed: int, population: str) -> np.ndarray:
        """The 64-bit stream key of every instruction (0 for instructions without noise)."""
        return np.array([0 if s is None else stream_key(seed, population, s) for s in self.streams]
                        or [0], dtype=np.uint64)


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=65536)
def stream_key(seed: int, population: str, stream: str) -> int:
    """The key of a random stream: ``SeedSequence(seed, spawn_key=(population, stream))``.

    Keyed by names, not positions, so that adding or changing one node leaves the draws of every
    other node unchanged, and every cell of a sweep sees the same patients (common random numbers).
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(_stable_int(population), _stable_int(stream)))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


class _Builder:
    def __init__(self, steps: list[Step], params: set[str], indicators: dict[str, tuple[str, int]]):
        self.params = params
        self.indicators = indicators
        self.steps = steps
        self.reg = {s.name: i for i, s in enumerate(steps)}
        self.temp_base = len(steps)
        self.next_temp = self.temp_base
        self.max_reg = self.temp_base
        self.code: list[tuple[int, int, int, int, int]] = []
        self.streams: list[str | None] = []
        self.consts: list[ex.Expr] = []
        self.const_index: dict[str, int] = {}

    # -- registers and constants
    def temp(self, count: int = 1) -> int:
        r = self.next_temp
        self.next_temp += count
        self.max_reg = max(self.max_reg, self.next_temp)
        return r

    def slot(self, e: ex.Expr) -> int:
        e = _fold(e)
        key = str(e)
        if key not in self.const_index:
            self.const_index[key] = len(self.consts)
            self.consts.append(e)
        return self.const_index[key]

    def emit(self, op: int, dst: int, a: int = 0, b: int = 0, c: int = 0, stream: str | None = None):
        self.code.append((op, dst, a, b, c))
        self.streams.append(stream)

    def is_const(self, e: ex.Expr) -> bool:
        return not (e.names() - self.params)

    # -- expressions
    def to_reg(self, e: ex.Expr, dst: int | None = None) -> int:
        """Emit code that leaves the value of ``e`` in a register (``dst`` if given)."""
        if self.is_const(e):
            d = self.temp() if dst is None else dst
            self.emit(K.OP_SETC, d, self.slot(e))
            return d
        if e.op == "name":
            if e.name in self.indicators:
                node, code = self.indicators[e.name]
                d = self.temp() if dst is None else dst
                self.emit(K.OP_EQC, d, self.reg[node], self.slot(ex.const(code)))
                return d
            src = self.reg[e.name]
            if dst is None or dst == src:
                return src
            self.emit(K.OP_COPY, dst, src)
            return dst
        # x / k stays a true division (not x * (1/k)): 3 / 10 must equal 0.3, as in NumPy
        if e.op in ("+", "-", "neg") or (e.op == "*" and (self.is_const(e.args[0]) or self.is_const(e.args[1]))):
            return self.linear(e, dst)
        d_new = lambda: self.temp() if dst is None else dst  # noqa: E731
        a = e.args
        if e.op in ("*", "/", "**"):
            if e.op == "/" and self.is_const(a[0]):
                x = self.to_reg(a[1])
                d = d_new()
                self.emit(K.OP_RDIVC, d, x, self.slot(a[0]))
                return d
            if e.op == "**" and self.is_const(a[1]):
                x = self.to_reg(a[0])
                d = d_new()
                self.emit(K.OP_POWC, d, x, self.slot(a[1]))
                return d
            if e.op == "**" and self.is_const(a[0]):
                x = self.to_reg(a[1])
                d = d_new()
                self.emit(K.OP_RPOWC, d, x, self.slot(a[0]))
                return d
            x, y = self.to_reg(a[0]), self.to_reg(a[1])
            d = d_new()
            self.emit({"*": K.OP_MUL, "/": K.OP_DIV, "**": K.OP_POW}[e.op], d, x, y)
            return d
        if e.op in _CMP:
            if self.is_const(a[1]):
                x = self.to_reg(a[0])
                d = d_new()
                self.emit(_CMPC[e.op], d, x, self.slot(a[1]))
            elif self.is_const(a[0]):
                x = self.to_reg(a[1])
                d = d_new()
                self.emit(_CMPC[_FLIP[e.op]], d, x, self.slot(a[0]))
            else:
                x, y = self.to_reg(a[0]), self.to_reg(a[1])
                d = d_new()
                self.emit(_CMP[e.op], d, x, y)
            return d
        if e.op in ("and", "or"):
            acc = self.to_reg(a[0])
            for nxt in a[1:]:
                y = self.to_reg(nxt)
                d = self.temp()
                self.emit(K.OP_AND if e.op == "and" else K.OP_OR, d, acc, y)
                acc = d
            if dst is not None:
                self.emit(K.OP_COPY, dst, acc)
                return dst
            return acc
        if e.op in _UNARY:
            x = self.to_reg(a[0])
            d = d_new()
            self.emit(_UNARY[e.op], d, x)
            return d
        if e.op in ("min", "max"):
            c0, c1 = self.is_const(a[0]), self.is_const(a[1])
            if c0 or c1:
                x = self.to_reg(a[1] if c0 else a[0])
                d = d_new()
                self.emit(K.OP_MINC if e.op == "min" else K.OP_MAXC, d, x, self.slot(a[0] if c0 else a[1]))
                return d
            x, y = self.to_reg(a[0]), self.to_reg(a[1])
            d = d_new()
            self.emit(K.OP_MIN if e.op == "min" else K.OP_MAX, d, x, y)
            return d
        if e.op == "clip":
            return self.to_reg(ex.call("min", ex.call("max", a[0], a[1]), a[2]), dst)
        if e.op == "where":
            c, x, y = self.to_reg(a[0]), self.to_reg(a[1]), self.to_reg(a[2])
            d = d_new()
            self.emit(K.OP_WHERE, d, c, x, y)
            return d
        raise SimsysError(f"internal: cannot compile operator {e.op!r}")  # pragma: no cover

    def linear(self, e: ex.Expr, dst: int | None) -> int:
        c0, terms = self._lin(e)
        regs = [(coef, self.to_reg(col)) for coef, col in terms]
        d = self.temp() if dst is None else dst
        if any(r == d for _, r in regs):  # never accumulate onto an input
            d = self.temp()
        c0 = _fold(c0)
        first, rest = regs[0], regs[1:]
        if c0.op == "const" and c0.value == 0.0:
            coef = _fold(first[0])
            if coef.op == "const" and coef.value == 1.0:
                self.emit(K.OP_COPY, d, first[1])
            else:
                self.emit(K.OP_SCALE, d, first[1], self.slot(coef))
        else:
            self.emit(K.OP_SETC, d, self.slot(c0))
            rest = regs
        for coef, r in rest:
            self.emit(K.OP_AXPY, d, r, self.slot(coef))
        if dst is not None and d != dst:
            self.emit(K.OP_COPY, dst, d)
            return dst
        return d

    def _lin(self, e: ex.Expr):
        """(constant part, [(coefficient, column expression)]) of a sum of terms."""
        if self.is_const(e):
            return e, []
        if e.op in ("+", "-"):
            c1, t1 = self._lin(e.args[0])
            c2, t2 = self._lin(e.args[1])
            if e.op == "+":
                return ex.call("+", c1, c2), t1 + t2
            return ex.call("-", c1, c2), t1 + [(ex.call("neg", k), x) for k, x in t2]
        if e.op == "neg":
            c, t = self._lin(e.args[0])
            return ex.call("neg", c), [(ex.call("neg", k), x) for k, x in t]
        if e.op == "*" and self.is_const(e.args[0]):
            c, t = self._lin(e.args[1])
            k = e.args[0]
            return ex.call("*", k, c), [(ex.call("*", k, kk), x) for kk, x in t]
        if e.op == "*" and self.is_const(e.args[1]):
            c, t = self._lin(e.args[0])
            k = e.args[1]
            return ex.call("*", k, c), [(ex.call("*", k, kk), x) for kk, x in t]
        return _ZERO, [(_ONE, e)]

    # -- steps
    def step(self, s: Step) -> None:
        self.next_temp = self.temp_base  # temporaries die with the step that made them
        d = self.reg[s.name]
        a = s.args
        st = s.stream
        if s.kind == "deterministic":
            self.to_reg(a["value"], d)
        elif s.kind == "load":
            self.emit(K.OP_LOAD, d, a["input"])
        elif s.kind == "bernoulli":
            self.emit(K.OP_BERN, d, self.to_reg(a["p"]), stream=st)
        elif s.kind == "bernoulli_logit":
            self.emit(K.OP_BERNL, d, self.to_reg(a["logit"]), stream=st)
        elif s.kind in ("normal", "lognormal"):
            mean, sd = (a["mean"], a["sd"]) if s.kind == "normal" else (a["meanlog"], a["sdlog"])
            m = self.to_reg(mean)
            out = d if s.kind == "normal" else self.temp()
            if self.is_const(sd):
                self.emit(K.OP_NORMC, out, m, self.slot(sd), stream=st)
            else:
                self.emit(K.OP_NORM, out, m, self.to_reg(sd), stream=st)
            if s.kind == "lognormal":
                self.emit(K.OP_EXP, d, out)
        elif s.kind == "poisson":
            self.emit(K.OP_POIS, d, self.to_reg(a["rate"]), stream=st)
        elif s.kind == "uniform":
            self.emit(K.OP_UNIF, d, self.to_reg(a["low"]), self.to_reg(a["high"]), stream=st)
        elif s.kind == "uniform01":
            self.emit(K.OP_UNIFORM01, d, stream=st)
        elif s.kind in ("categorical", "categorical_logits"):
            items = a["weights"] if s.kind == "categorical" else a["logits"]
            base = self.temp(len(items))
            if s.kind == "categorical":
                for i, w in enumerate(items):
                    self.to_reg(w, base + i)
            else:
                logits = [self.to_reg(w) for w in items]
                for i, r in enumerate(logits):
                    self.emit(K.OP_EXP, base + i, r)
            self.emit(K.OP_CAT, d, base, 0, len(items), stream=st)
        else:
            raise SimsysError(f"internal: unknown step kind {s.kind!r}")  # pragma: no cover


def _fold(e: ex.Expr) -> ex.Expr:
    """Fold number-only sub-expressions into numbers (params stay symbolic)."""
    if e.op in ("const", "name"):
        return e
    args = tuple(_fold(a) for a in e.args)
    e = ex.Expr(e.op, args=args)
    if all(a.op == "const" for a in args):
        return ex.const(ex.evaluate_constant(e, {}))
    if e.op == "*":
        for i in (0, 1):
            if args[i].op == "const" and args[i].value == 1.0:
                return args[1 - i]
    if e.op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    return e


def compile_steps(steps: list[Step], *, params: set[str],
                  indicators: dict[str, tuple[str, int]] | None = None) -> Program:
    """Compile an ordered list of steps (parents before children) into a :class:`Program`."""
    b = _Builder(steps, params, indicators or {})
    for s in steps:
        b.step(s)
    store_reg, store_kind, store_row, cols_f, cols_u = [], [], [], [], []
    for i, s in enumerate(steps):
        if s.store == "f":
            store_reg.append(i)
            store_kind.append(0)
            store_row.append(len(cols_f))
            cols_f.append(s.name)
        elif s.store == "u":
            store_reg.append(i)
            store_kind.append(1)
            store_row.append(len(cols_u))
            cols_u.append(s.name)
    code = np.array(b.code, dtype=np.int64).reshape(-1, 5)
    return Program(
        code=np.ascontiguousarray(code), streams=b.streams, const_exprs=b.consts, n_regs=b.max_reg,
        store_reg=np.array(store_reg, dtype=np.int64), store_kind=np.array(store_kind, dtype=np.int64),
        store_row=np.array(store_row, dtype=np.int64), columns_f=cols_f, columns_u=cols_u,
        loads=[s.name for s in steps if s.kind == "load"],
    )


ZIGGURAT = K.ziggurat_tables()
