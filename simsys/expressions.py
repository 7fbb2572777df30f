"""The whitelisted expression language of scenario files.

Scenario files hold small formulas -- ``"-5.2 + 0.03*age + 0.7*uv - 1.5*dark_skin"`` -- for means,
logits, probabilities and deterministic nodes. This module owns that language: it parses a formula
into a small immutable tree (:class:`Expr`), checks every name and function against what is allowed,
and says which names a formula uses (so that the graph can infer parents).

User text is never evaluated as Python. Python's own parser (``ast.parse(mode="eval")``) only turns
the text into a syntax tree -- it executes nothing -- and :func:`parse` then accepts a short list of
node types (numbers, names, arithmetic, comparisons, ``and``/``or``/``not``, calls of whitelisted
functions by bare name) and rejects everything else (attribute access, subscripts, lambdas, keyword
arguments, strings, comprehensions, ...). Reusing ``ast`` rather than writing a tokenizer gives the
operator precedence every user already knows from Python and spreadsheets.

The language
------------
numbers, params, node names, ``+ - * / **``, unary ``-``/``+``, comparisons (``< <= > >= == !=``,
chains allowed), ``and``/``or``/``not`` (truthiness: non-zero), ``True``/``False``, and the functions
``where(c, a, b)``, ``exp``, ``log``, ``sqrt``, ``abs``, ``min(a, b, ...)``, ``max(a, b, ...)``,
``clip(x, lo, hi)``, ``logistic(x)`` (= 1 / (1 + exp(-x))). Booleans are 1.0 and 0.0.

Limits, each an :class:`ExpressionError` that says so: at most :data:`MAX_LENGTH` characters; ASCII
only (Python's parser NFKC-normalises identifiers, so a look-alike such as a mathematical bold
"age" would otherwise silently mean ``age``); finite number literals; at most :data:`MAX_NESTING`
levels of nesting. A long flat chain such as ``a + b + c + ...`` is not nesting (the left operand of
a binary operator does not count), and every walk over a tree here and in ``simsys.program`` is
iterative along such chains, so any formula the length limit allows is safe from Python's
recursion limit.

What is computed
----------------
:func:`evaluate_constant` computes, on scalars, exactly what the compiled kernel computes, bit for
bit: ``exp`` is the kernel's own polynomial (:func:`kernel_exp`), argument clamped to [-708, 709];
``log``, ``sqrt`` and ``**`` call the C math library as the kernel does (NumPy's vectorised versions
may differ from it in the last bit). Constant folding uses it, so a formula gives the same value
whether its constants are folded or reach the kernel through a column. :func:`evaluate`, the slow,
obviously correct NumPy twin of the kernel that the tests compare with, uses NumPy's functions (with
the same clamp), so it agrees with the kernel to rounding.
"""

from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass

import numpy as np

from simsys.errors import ExpressionError

#: Functions an expression may call, with (min, max) number of arguments (None = unbounded).
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "where": (3, 3),
    "exp": (1, 1),
    "log": (1, 1),
    "sqrt": (1, 1),
    "abs": (1, 1),
    "logistic": (1, 1),
    "min": (2, None),
    "max": (2, None),
    "clip": (3, 3),
}

MAX_LENGTH = 4000  # characters; longer formulas are almost surely a mistake (and bound parse time)
MAX_NESTING = 60  # nesting depth of the syntax tree; the left operand of a binary operator is not deeper
EXP_CLAMP = (-708.0, 709.0)
"""``exp(x)`` is ``exp(clip(x, -708, 709))`` (NaN stays NaN), so it never overflows to inf."""

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


@dataclass(frozen=True)
class Expr:
    """A node of a parsed expression.

    ``op`` is one of ``const`` (``value``), ``name`` (``name``), a binary operator
    (``+ - * / **``), a comparison (``< <= > >= == !=``), ``neg``, ``not``, ``and``, ``or``, or a
    function name from :data:`FUNCTIONS`; ``args`` holds the operands.
    """

    op: str
    args: tuple[Expr, ...] = ()
    value: float = 0.0
    name: str = ""

    def names(self) -> frozenset[str]:
        """Every name (param or node) the expression uses (computed once per node, iteratively)."""
        got = self.__dict__.get("_names")
        if got is None:
            stack = [self]
            while stack:
                node = stack[-1]
                if "_names" in node.__dict__:
                    stack.pop()
                    continue
                if node.op == "name":
                    node.__dict__["_names"] = frozenset((node.name,))
                    stack.pop()
                    continue
                todo = [a for a in node.args if "_names" not in a.__dict__]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                parts = [a.__dict__["_names"] for a in node.args]
                node.__dict__["_names"] = frozenset().union(*parts) if parts else frozenset()
            got = self.__dict__["_names"]
        return got

    def __str__(self) -> str:  # a compact, re-parseable rendering (used in messages and as a key)
        return _postorder(self, _render_leaf, _render_node)[0]

    # Equality, hashing, pickling, copying and repr without recursion: the generated ones would
    # recurse once per level, and a flat chain of 2,000 terms is 2,000 levels deep.
    def _postfix(self) -> tuple:
        out = []
        stack: list[tuple[Expr, bool]] = [(self, False)]
        while stack:
            x, expanded = stack.pop()
            if expanded or not x.args:
                out.append((x.op, x.value, x.name, len(x.args)))
            else:
                stack.append((x, True))
                stack.extend((a, False) for a in reversed(x.args))
        return tuple(out)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Expr):
            return NotImplemented
        return self is other or self._postfix() == other._postfix()

    def __hash__(self) -> int:
        return hash(self._postfix())

    def __reduce__(self):
        return _from_postfix, (self._postfix(),)

    def __repr__(self) -> str:
        return f"<Expr {self}>"


def _from_postfix(items: tuple) -> Expr:
    """The tree written by ``Expr._postfix`` (for pickling and copying)."""
    stack: list[Expr] = []
    for op, value, nm, nargs in items:
        args = tuple(stack[len(stack) - nargs:]) if nargs else ()
        if nargs:
            del stack[len(stack) - nargs:]
        stack.append(Expr(op, args=args, value=value, name=nm))
    return stack[0]


def _postorder(e: Expr, leaf, node):
    """``node(x, [values of x's args])`` for every non-leaf ``x`` of ``e``, children first, without
    recursion (a chain of 2,000 terms is 2,000 levels deep); ``leaf(x)`` for leaves."""
    out: list = []
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:
        x, expanded = stack.pop()
        if not x.args:
            out.append(leaf(x))
        elif expanded:
            k = len(x.args)
            values = out[-k:]
            del out[-k:]
            out.append(node(x, values))
        else:
            stack.append((x, True))
            stack.extend((a, False) for a in reversed(x.args))
    return out[0]


# --- rendering: Python's precedence, parentheses only where needed --------------------------------
_PREC = {"or": 1, "and": 2, "not": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "==": 4, "!=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7, "**": 8}


def _render_leaf(x: Expr) -> tuple[str, int]:
    if x.op == "name":
        return x.name, 9
    v = float(x.value)
    return repr(v), (7 if math.copysign(1.0, v) < 0 else 9)


def _wrap(part: tuple[str, int], parens: bool) -> str:
    return f"({part[0]})" if parens else part[0]


def _render_node(x: Expr, parts: list[tuple[str, int]]) -> tuple[str, int]:
    op = x.op
    if op == "neg":
        return "-" + _wrap(parts[0], parts[0][1] < 7), 7
    if op == "not":
        return "not " + _wrap(parts[0], parts[0][1] < 3), 3
    if op in ("and", "or"):  # n-ary: a nested and/or keeps its parentheses (it is another node)
        p = _PREC[op]
        return f" {op} ".join(_wrap(a, a[1] <= p) for a in parts), p
    if op in FUNCTIONS:
        if op in ("min", "max") and x.args[0].op == op:  # min(min(a, b), c) is min(a, b, c)
            return f"{parts[0][0][:-1]}, {parts[1][0]})", 9
        return f"{op}(" + ", ".join(a[0] for a in parts) + ")", 9
    p = _PREC[op]
    left, right = parts
    if op == "**":  # right-associative
        return f"{_wrap(left, left[1] <= p)} ** {_wrap(right, right[1] < p)}", p
    if p == 4:  # a comparison inside a comparison would chain
        return f"{_wrap(left, left[1] <= p)} {op} {_wrap(right, right[1] <= p)}", p
    return f"{_wrap(left, left[1] < p)} {op} {_wrap(right, right[1] <= p)}", p


def const(value: float) -> Expr:
    """An :class:`Expr` for a number."""
    return Expr("const", value=float(value))


def name(identifier: str) -> Expr:
    """An :class:`Expr` for a name."""
    return Expr("name", name=identifier)


def call(fn: str, *args: Expr) -> Expr:
    """An :class:`Expr` for an operator or whitelisted function applied to ``args``."""
    return Expr(fn, args=tuple(args))


def parse(text: str | float | int | bool) -> Expr:
    """Parse a formula (or a plain number) into an :class:`Expr`.

    Raises
    ------
    ExpressionError
        For anything outside the language; the message says what was found and what is allowed.
        No other exception escapes, whatever the input.
    """
    if isinstance(text, bool):
        return const(1.0 if text else 0.0)
    if isinstance(text, int | float):
        try:
            v = float(text)
        except OverflowError:
            raise ExpressionError(f"number too large: {text}; numbers must be finite") from None
        if not math.isfinite(v):
            raise ExpressionError(f"expected a finite number, got {v}")
        return const(v)
    if not isinstance(text, str):
        raise ExpressionError(f"expected a number or a formula, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"formula is {len(text)} characters long; at most {MAX_LENGTH} allowed")
    if not text.isascii():
        # checked on the raw text: Python's parser would NFKC-normalise a look-alike name into a
        # real one (a mathematical bold 'age' means age to it)
        bad = next(c for c in text if ord(c) > 127)
        raise ExpressionError(f"non-ASCII character {bad!r} (U+{ord(bad):04X}) in {text!r}; "
                              "formulas use ASCII letters, digits and operators only")
    if not text.strip():
        raise ExpressionError("empty formula; expected a number or a formula such as '0.5 + 0.1*age'")
    try:
        with warnings.catch_warnings():  # Python's SyntaxWarnings ('1and x') are not ours to print
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ExpressionError(f"cannot parse {text!r}: {type(exc).__name__}") from None
    try:
        return _convert(tree.body, text, 0)
    except RecursionError:  # pragma: no cover - nesting is limited well below the recursion limit
        raise ExpressionError(f"{text!r} is nested too deeply") from None


def _convert(node: ast.AST, text: str, depth: int) -> Expr:
    if depth > MAX_NESTING:
        raise ExpressionError(f"{text!r} is nested more than {MAX_NESTING} levels deep")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        # a chain a + b - c * d ... leans left: walk its left spine in a loop, so that a long flat
        # sum is neither "deep" nor a deep recursion; only right operands nest
        spine = []
        while isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            spine.append(node)
            node = node.left
        acc = _convert(node, text, depth)
        for b in reversed(spine):
            acc = call(_BINOPS[type(b.op)], acc, _convert(b.right, text, depth + 1))
        return acc
    d = depth + 1
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return const(1.0 if v else 0.0)
        if isinstance(v, int | float) and not isinstance(v, complex):
            try:
                f = float(v)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                raise ExpressionError(f"number too large in {text!r}; numbers must be finite "
                                      "(at most about 1.8e308)")
            return const(f)
        raise ExpressionError(
            f"{type(v).__name__} literal {v!r} is not allowed in {text!r}; only numbers"
        )
    if isinstance(node, ast.Name):
        return name(node.id)
    if isinstance(node, ast.UnaryOp):
        operand = _convert(node.operand, text, d)
        if isinstance(node.op, ast.USub):
            return call("neg", operand)
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return call("not", operand)
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return call(op, *(_convert(v, text, d) for v in node.values))
    if isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
        operands = [_convert(node.left, text, d)] + [_convert(c, text, d) for c in node.comparators]
        pairs = [
            call(_CMPOPS[type(o)], operands[i], operands[i + 1]) for i, o in enumerate(node.ops)
        ]
        return pairs[0] if len(pairs) == 1 else call("and", *pairs)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(
                f"only calls of {', '.join(sorted(FUNCTIONS))} by name are allowed in {text!r}"
            )
        fn = node.func.id
        if fn not in FUNCTIONS:
            raise ExpressionError(
                f"function {fn!r} is not allowed in {text!r}; allowed: {', '.join(sorted(FUNCTIONS))}"
            )
        if node.keywords:
            raise ExpressionError(f"keyword arguments are not allowed in {text!r}")
        lo, hi = FUNCTIONS[fn]
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else f"at least {lo}"
            raise ExpressionError(f"{fn}() takes {want} arguments, got {n} in {text!r}")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"*arguments are not allowed in {text!r}")
        args = [_convert(a, text, d) for a in node.args]
        if fn in ("min", "max") and len(args) > 2:  # fold n-ary min/max into binary calls
            acc = call(fn, args[0], args[1])
            for a in args[2:]:
                acc = call(fn, acc, a)
            return acc
        return call(fn, *args)
    what = {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscripts",
        ast.Lambda: "lambdas",
        ast.IfExp: "'x if c else y' (use where(c, x, y))",
        ast.NamedExpr: "assignment",
    }.get(type(node), type(node).__name__)
    raise ExpressionError(f"{what} not allowed in {text!r}")


def check_names(expr: Expr, allowed: set[str] | dict, *, text: str = "") -> None:
    """Raise :class:`ExpressionError` if ``expr`` uses a name outside ``allowed``.

    ``allowed`` is only looked up in (never copied), so checking many formulas against the names of
    a large scenario stays linear in its size.
    """
    unknown = sorted(n for n in expr.names() if n not in allowed)
    if unknown:
        known = sorted(allowed)
        shown = ", ".join(known[:40]) + (f", ... ({len(known) - 40} more)" if len(known) > 40 else "")
        shown = shown or "(none)"
        raise ExpressionError(f"undefined name {unknown[0]!r}" + (f" in {text!r}" if text else "")
                              + f"; known names: {shown}")


def evaluate_constant(expr: Expr, params: dict[str, float]) -> float:
    """Evaluate an expression that uses only numbers and params (no node), exactly as the kernel would.

    Domain errors give NaN or inf (as the kernel does), never an exception: a formula that is bad
    for some parameter values is caught by the range checks of the caller.
    """
    with np.errstate(all="ignore"):
        return float(_postorder(expr, lambda x: _leaf(x, params), _scalar_op))


def evaluate(expr: Expr, env: dict[str, np.ndarray | float]):
    """Evaluate ``expr`` element-wise with NumPy over the arrays in ``env``.

    This is the slow, obviously correct twin of the compiled kernels (tests compare the two): the
    same operators, with NumPy's functions (exp clamped as documented).
    """
    with np.errstate(all="ignore"):
        return _postorder(expr, lambda x: _leaf(x, env), _array_op)


def _leaf(e: Expr, env):
    if e.op == "const":
        return np.float64(e.value)
    return env[e.name]


# --- the kernel's exp, in NumPy (bit for bit: the same operations in the same order) -------------
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_POLY = (1.6666666666666666e-01, 4.1666666666666664e-02, 8.3333333333333332e-03,
             1.3888888888888889e-03, 1.9841269841269841e-04, 2.4801587301587302e-05,
             2.7557319223985893e-06, 2.7557319223985888e-07, 2.5052108385441720e-08)


def kernel_exp(x):
    """``exp(x)`` as ``simsys.kernels.interpreter._exp`` computes it (argument clamped to
    [-708, 709], NaN propagated), for a scalar or an array; equal to the kernel bit for bit."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        nan = x != x
        t = np.minimum(np.maximum(np.where(nan, 0.0, x), EXP_CLAMP[0]), EXP_CLAMP[1])
        kf = np.floor(t * _LOG2E + 0.5)
        r = (t - kf * _LN2_HI) - kf * _LN2_LO
        q = r * _EXP_POLY[-1]
        for c in reversed(_EXP_POLY[:-1]):  # Horner, innermost first, as the kernel writes it
            q = r * (c + q)
        p = 1.0 + r * (1.0 + r * (0.5 + q))
        s = ((kf.astype(np.int64) + 1023) << 52).view(np.float64)
        out = np.where(nan, x, p * s)
    return out[()] if out.ndim == 0 else out


def _c_log(x: float) -> float:
    """The C library's log (what the kernel calls), with its special values."""
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


def _c_sqrt(x: float) -> float:
    return math.sqrt(x) if (x >= 0.0 or x != x) else math.nan


def _c_pow(x: float, y: float) -> float:
    """The C library's pow (what the kernel calls); its special values as IEEE 754 defines them."""
    try:
        return math.pow(x, y)
    except (ValueError, OverflowError):  # a pole, a negative base, an overflow: exact IEEE values
        return float(np.power(np.float64(x), np.float64(y)))


def _scalar_op(e: Expr, a: list):
    """One operator on scalars, as the kernel computes it (see simsys.kernels.interpreter)."""
    op = e.op
    f64 = np.float64
    if op == "+":
        return f64(a[0]) + f64(a[1])
    if op == "-":
        return f64(a[0]) - f64(a[1])
    if op == "*":
        return f64(a[0]) * f64(a[1])
    if op == "/":
        return f64(a[0]) / f64(a[1])
    if op == "**":
        if float(a[1]) == 2.0:  # the kernel squares for a constant exponent of 2
            return f64(a[0]) * f64(a[0])
        return f64(_c_pow(float(a[0]), float(a[1])))
    if op == "neg":
        return -f64(a[0])
    if op in _CMP_FNS:
        return f64(1.0) if _CMP_FNS[op](float(a[0]), float(a[1])) else f64(0.0)
    if op == "not":
        return f64(1.0) if a[0] == 0 else f64(0.0)
    if op == "and":
        return f64(1.0) if all(x != 0 for x in a) else f64(0.0)
    if op == "or":
        return f64(1.0) if any(x != 0 for x in a) else f64(0.0)
    if op == "where":
        return f64(a[1]) if a[0] != 0 else f64(a[2])
    if op == "exp":
        return f64(kernel_exp(a[0]))
    if op == "log":
        return f64(_c_log(float(a[0])))
    if op == "sqrt":
        return f64(_c_sqrt(float(a[0])))
    if op == "abs":
        return abs(f64(a[0]))
    if op == "logistic":
        return f64(1.0) / (f64(1.0) + f64(kernel_exp(-f64(a[0]))))
    if op == "min":
        x, y = f64(a[0]), f64(a[1])
        return x if (x <= y or x != x) else y
    if op == "max":
        x, y = f64(a[0]), f64(a[1])
        return x if (x >= y or x != x) else y
    if op == "clip":
        x, lo, hi = f64(a[0]), f64(a[1]), f64(a[2])
        x = x if (x >= lo or x != x) else lo
        return x if (x <= hi or x != x) else hi
    raise ExpressionError(f"internal: unknown operator {op!r}")  # pragma: no cover


_CMP_FNS = {"<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y,
            ">=": lambda x, y: x >= y, "==": lambda x, y: x == y, "!=": lambda x, y: x != y}


def _array_op(e: Expr, a: list):
    """One operator on NumPy arrays (the obviously correct twin)."""
    op = e.op
    f64 = np.float64
    if op == "+":
        return a[0] + a[1]
    if op == "-":
        return a[0] - a[1]
    if op == "*":
        return a[0] * a[1]
    if op == "/":
        return np.divide(f64(1.0) * a[0], a[1])
    if op == "**":
        return np.power(f64(1.0) * a[0], a[1])
    if op == "neg":
        return -a[0]
    if op in ("<", "<=", ">", ">=", "==", "!="):
        fn = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
              "==": np.equal, "!=": np.not_equal}[op]
        return fn(a[0], a[1]).astype(np.float64) if np.ndim(a[0]) or np.ndim(a[1]) else f64(fn(a[0], a[1]))
    if op == "not":
        return f64(1.0) * (a[0] == 0)
    if op == "and":
        out = f64(1.0)
        for x in a:
            out = out * (x != 0)
        return f64(1.0) * out
    if op == "or":
        out = f64(1.0) * (a[0] != 0)  # not 0*a[0]: that is NaN for a NaN or inf operand
        for x in a[1:]:
            out = np.maximum(out, f64(1.0) * (x != 0))
        return out
    if op == "where":
        return np.where(a[0] != 0, a[1], a[2])
    if op == "exp":
        return np.exp(np.clip(a[0], *EXP_CLAMP))
    if op == "log":
        return np.log(f64(1.0) * a[0])
    if op == "sqrt":
        return np.sqrt(f64(1.0) * a[0])
    if op == "abs":
        return np.abs(a[0])
    if op == "logistic":
        return 1.0 / (1.0 + np.exp(np.clip(-a[0], *EXP_CLAMP)))
    if op == "min":
        return np.minimum(a[0], a[1])
    if op == "max":
        return np.maximum(a[0], a[1])
    if op == "clip":
        return np.minimum(np.maximum(a[0], a[1]), a[2])
    raise ExpressionError(f"internal: unknown operator {op!r}")  # pragma: no cover


def is_boolean(expr: Expr) -> bool:
    """True when the expression's value is always 0 or 1 (a comparison or logical operator)."""
    return expr.op in ("<", "<=", ">", ">=", "==", "!=", "not", "and", "or")


__all__ = [
    "EXP_CLAMP",
    "FUNCTIONS",
    "MAX_LENGTH",
    "MAX_NESTING",
    "Expr",
    "call",
    "check_names",
    "const",
    "evaluate",
    "evaluate_constant",
    "is_boolean",
    "kernel_exp",
    "name",
    "parse",
]
