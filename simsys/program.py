"""Compile a scenario's equations into the bytecode run by ``simsys.kernels.interpreter``.

A *step* is one equation of the sampling plan: a node of the causal graph, or an observation step
added by a bias (``simsys.biases``). :func:`compile_steps` turns an ordered list of steps into a
:class:`Program`: the instruction table, the constant table (as formulas of the params, so that a new
param value changes only numbers, never the code), the stream name of every random instruction, and
the layout of the output columns.

Compilation rules. The compiled program computes exactly what the formula says, operation by
operation in Python's order (``simsys.expressions.evaluate_constant`` on every patient's values, bit
for bit): no rewrite that is exact only in real arithmetic (distributing ``k * (a + b)``, regrouping
a sum, collecting its constants) is made, because it changes results by rounding, cancellation or
overflow. Within that rule, for speed of the interpreter (each instruction is one pass over a block):

- every sub-expression that uses no column (numbers and params only) is folded into one constant
  slot, evaluated in Python, with the kernel's arithmetic, when the program is bound to params;
- a chain ``b0 + b1*x1 - b2*x2 + ...`` is one SETC and one fused AXPY (``d += b*x``) per term, which
  is the same arithmetic as the formula (``d + b*x``, ``d - b*x == d + (-b)*x``);
- a chain of binary operators is compiled in a loop over its left spine, so a flat sum of thousands
  of terms does not recurse (only genuinely nested operands do, and their depth is limited by the
  parser);
- a Bernoulli with a logit, and a normal with its mean and sd, are single fused instructions;
- a categorical node's logits are shifted by their maximum when it is beyond +-700 (the softmax is
  unchanged, and the weights neither overflow nor all underflow); otherwise they are used as given.

Every random instruction also knows the key path of the field it reads (``nodes.y.logit``), so that a
value the kernel finds unusable (a NaN probability, a negative weight) is reported where it was
written (see ``simsys.simulate``).
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
    uniform of the stream), ``deterministic`` (value), ``probability`` (value, and ``path``, the key
    path named when the value is NaN for some patient), ``load`` (the value comes from an input
    array).
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
    sources: list[str | None] = field(default_factory=list)
    """For each instruction that can meet unusable values, the key path of the field it reads
    (``nodes.y.logit``, ``biases[1].false_negative_rate``), for error messages."""

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
        self.sources: list[str | None] = []
        self.source: str | None = None

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
        self.sources.append(self.source if (stream is not None or op == K.OP_NANCHECK) else None)

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
        if e.op in _CHAIN:
            return self.chain(e, dst)
        d_new = lambda: self.temp() if dst is None else dst  # noqa: E731
        a = e.args
        if e.op == "neg":
            coef, col = _term(e, self.is_const)
            x = self.to_reg(col)
            d = d_new()
            self.emit(K.OP_SCALE, d, x, self.slot(coef))  # (-k)*x == -(k*x), exactly
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
        if e.op == "clip":
            return self.to_reg(ex.call("min", ex.call("max", a[0], a[1]), a[2]), dst)
        if e.op == "where":
            c, x, y = self.to_reg(a[0]), self.to_reg(a[1]), self.to_reg(a[2])
            d = d_new()
            self.emit(K.OP_WHERE, d, c, x, y)
            return d
        raise SimsysError(f"internal: cannot compile operator {e.op!r}")  # pragma: no cover

    def chain(self, e: ex.Expr, dst: int | None) -> int:
        """A chain of binary operators ``((x0 op1 r1) op2 r2) ...``, walked along its left spine.

        The value accumulates in two registers used in turn (an instruction never writes onto its
        own input, which would keep LLVM from vectorising it), except for ``+``/``-`` of a column
        term, which is an in-place AXPY; the last instruction writes into ``dst``.
        """
        spine = [e]
        while spine[-1].args[0].op in _CHAIN and not self.is_const(spine[-1].args[0]):
            spine.append(spine[-1].args[0])
        steps = spine[::-1]  # innermost first
        inplace = [False] + [s.op in ("+", "-") and not self.is_const(s.args[1]) for s in steps[1:]]
        final = self.temp() if dst is None else dst
        partner: list[int] = []

        def other(r: int) -> int:
            if r != final:
                return final
            if not partner:
                partner.append(self.temp())
            return partner[0]

        out = [0] * len(steps)
        cur = final
        for i in range(len(steps) - 1, -1, -1):
            out[i] = cur
            if i > 0 and not inplace[i]:
                cur = other(cur)
        self.bottom(steps[0], out[0])
        for i in range(1, len(steps)):
            self.combine(steps[i].op, out[i - 1], steps[i].args[1], out[i])
        return final

    def bottom(self, e: ex.Expr, d: int) -> None:
        """``e = L op R`` (not both constant) into register ``d``."""
        op, (left, right) = e.op, e.args
        if self.is_const(left):
            k = left
            if op in ("+", "-"):
                coef, col = _term(right, self.is_const)
                x = self.to_reg(col)
                self.emit(K.OP_SETC, d, self.slot(k))
                self.emit(K.OP_AXPY, d, x, self.slot(coef if op == "+" else ex.call("neg", coef)))
                return
            x = self.to_reg(right)
            if op == "*":
                self.emit(K.OP_SCALE, d, x, self.slot(k))
            elif op == "/":
                self.emit(K.OP_RDIVC, d, x, self.slot(k))
            elif op == "**":
                self.emit(K.OP_RPOWC, d, x, self.slot(k))
            elif op in _CMPC:
                self.emit(_CMPC[_FLIP[op]], d, x, self.slot(k))
            else:  # min, max
                self.emit(K.OP_MINC if op == "min" else K.OP_MAXC, d, x, self.slot(k))
            return
        x = self.to_reg(left)
        if op in ("+", "-") and not self.is_const(right):
            coef, col = _term(right, self.is_const)
            y = self.to_reg(col)
            if coef.op == "const" and coef.value == 1.0:
                self.emit(K.OP_ADD if op == "+" else K.OP_SUB, d, x, y)
            else:
                self.emit(K.OP_COPY, d, x)
                self.emit(K.OP_AXPY, d, y, self.slot(coef if op == "+" else ex.call("neg", coef)))
            return
        self.combine(op, x, right, d)

    def combine(self, op: str, x: int, right: ex.Expr, d: int) -> None:
        """``d = x op right`` for a register ``x``; ``d == x`` only for the in-place AXPY of + and -."""
        if self.is_const(right):
            k = right
            if op in ("+", "-"):  # x - k == x + (-k), exactly
                self.emit(K.OP_ADDC, d, x, self.slot(k if op == "+" else ex.call("neg", k)))
            elif op == "*":
                self.emit(K.OP_SCALE, d, x, self.slot(k))
            elif op == "/":  # a true division (not x * (1/k)): 3 / 10 must equal 0.3
                self.emit(K.OP_DIV, d, x, self.to_reg(k))
            elif op == "**":
                self.emit(K.OP_POWC, d, x, self.slot(k))
            elif op in _CMPC:
                self.emit(_CMPC[op], d, x, self.slot(k))
            else:
                self.emit(K.OP_MINC if op == "min" else K.OP_MAXC, d, x, self.slot(k))
            return
        if op in ("+", "-"):
            if d != x:  # pragma: no cover - chain() accumulates sums in place
                self.emit(K.OP_COPY, d, x)
            coef, col = _term(right, self.is_const)
            y = self.to_reg(col)
            self.emit(K.OP_AXPY, d, y, self.slot(coef if op == "+" else ex.call("neg", coef)))
            return
        y = self.to_reg(right)
        if op in _CMP:
            self.emit(_CMP[op], d, x, y)
        else:
            self.emit({"*": K.OP_MUL, "/": K.OP_DIV, "**": K.OP_POW, "min": K.OP_MIN,
                       "max": K.OP_MAX}[op], d, x, y)

    # -- steps
    def step(self, s: Step) -> None:
        self.next_temp = self.temp_base  # temporaries die with the step that made them
        d = self.reg[s.name]
        a = s.args
        st = s.stream
        self.source = a.get("path") or f"nodes.{s.name}.{_FIELD.get(s.kind, s.kind)}"
        if s.kind == "deterministic":
            self.to_reg(a["value"], d)
        elif s.kind == "probability":  # a per-patient probability: a NaN is an error, not a 0
            self.to_reg(a["value"], d)
            self.emit(K.OP_NANCHECK, d, d)
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
                self.softmax_weights(items, base)
            self.emit(K.OP_CAT, d, base, 0, len(items), stream=st)
        else:
            raise SimsysError(f"internal: unknown step kind {s.kind!r}")  # pragma: no cover


    def softmax_weights(self, logits: list[ex.Expr], base: int) -> None:
        """Weights ``exp(l_i - s)`` into registers ``base..``, ``s`` = the largest logit when it is
        beyond +-700, else 0 (``l - 0 == l``: the usual case computes ``exp(l_i)`` exactly as given).

        The shift keeps the softmax and stops the weights from overflowing (all of them at exp's
        clamp, 709) or underflowing (all at -708) when the logits are large: up to 256 weights of at
        most e**700 sum to a finite number.
        """
        m = logits[0]
        for w in logits[1:]:
            m = ex.call("max", m, w)
        if self.is_const(m):  # constant logits: fold the weights
            shift = ex.call("where", ex.call(">", ex.call("abs", m), _SHIFT_AT), m, _ZERO)
            for i, w in enumerate(logits):
                self.emit(K.OP_SETC, base + i, self.slot(ex.call("exp", ex.call("-", w, shift))))
            return
        regs = [self.to_reg(w) for w in logits]
        acc = regs[0]
        for r in regs[1:]:
            nxt = self.temp()
            self.emit(K.OP_MAX, nxt, acc, r)
            acc = nxt
        a, g, z, shift = (self.temp() for _ in range(4))
        self.emit(K.OP_ABS, a, acc)
        self.emit(K.OP_GTC, g, a, self.slot(_SHIFT_AT))
        self.emit(K.OP_SETC, z, self.slot(_ZERO))
        self.emit(K.OP_WHERE, shift, g, acc, z)
        for i, r in enumerate(regs):
            t = self.temp()
            self.emit(K.OP_SUB, t, r, shift)
            self.emit(K.OP_EXP, base + i, t)


_CHAIN = {"+", "-", "*", "/", "**", "<", "<=", ">", ">=", "==", "!=", "min", "max"}
"""Binary operators whose left operand may be a long chain (compiled along the spine, no recursion)."""

_SHIFT_AT = ex.const(700.0)

_FIELD = {"bernoulli": "p", "bernoulli_logit": "logit", "categorical": "probs",
          "categorical_logits": "logits", "poisson": "rate", "normal": "sd", "lognormal": "sdlog",
          "uniform": "high"}
"""The field named when a step's random instruction meets an unusable value (see simulate)."""


def _term(e: ex.Expr, is_const) -> tuple[ex.Expr, ex.Expr]:
    """``e`` as ``coefficient * column`` when it is one exactly: ``k*x``, ``x*k``, ``-x``, ``-(k*x)``
    (``(-k)*x == -(k*x)`` in floating point); otherwise ``(1, e)``."""
    sign = False
    while e.op == "neg":
        sign = not sign
        e = e.args[0]
    coef, col = _ONE, e
    if e.op == "*":
        if is_const(e.args[0]) and not is_const(e.args[1]):
            coef, col = e.args[0], e.args[1]
        elif is_const(e.args[1]) and not is_const(e.args[0]):
            coef, col = e.args[1], e.args[0]
    if sign:
        coef = ex.const(-coef.value) if coef.op == "const" else ex.call("neg", coef)
    return coef, col


def _fold(e: ex.Expr) -> ex.Expr:
    """Fold number-only sub-expressions into numbers (params stay symbolic), with the kernel's
    arithmetic (``simsys.expressions.evaluate_constant``); only exact simplifications besides."""

    def node(x: ex.Expr, args: list[ex.Expr]) -> ex.Expr:
        y = ex.Expr(x.op, args=tuple(args))
        if all(a.op == "const" for a in args):
            return ex.const(ex.evaluate_constant(y, {}))
        if y.op == "*":
            for i in (0, 1):
                if args[i].op == "const" and args[i].value == 1.0:  # 1 * x == x, exactly
                    return args[1 - i]
        if y.op == "neg" and args[0].op == "neg":
            return args[0].args[0]
        return y

    return ex._postorder(e, lambda x: x, node)


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
        loads=[s.name for s in steps if s.kind == "load"], sources=b.sources,
    )


ZIGGURAT = K.ziggurat_tables()
