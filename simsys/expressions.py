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
"""

from __future__ import annotations

import ast
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
_MAX_DEPTH = 60  # nesting depth of the syntax tree

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

    def names(self) -> set[str]:
        """Every name (param or node) the expression uses."""
        if self.op == "name":
            return {self.name}
        out: set[str] = set()
        for a in self.args:
            out |= a.names()
        return out

    def __str__(self) -> str:  # a compact, re-parseable rendering (used in messages and docs)
        if self.op == "const":
            return repr(float(self.value))
        if self.op == "name":
            return self.name
        if self.op == "neg":
            return f"(-{self.args[0]})"
        if self.op == "not":
            return f"(not {self.args[0]})"
        if self.op in ("and", "or"):
            return "(" + f" {self.op} ".join(str(a) for a in self.args) + ")"
        if self.op in FUNCTIONS:
            return f"{self.op}(" + ", ".join(str(a) for a in self.args) + ")"
        return f"({self.args[0]} {self.op} {self.args[1]})"


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
        return const(float(text))
    if not isinstance(text, str):
        raise ExpressionError(f"expected a number or a formula, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"formula is {len(text)} characters long; at most {MAX_LENGTH} allowed")
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
    except RecursionError:
        raise ExpressionError(f"{text!r} is nested too deeply") from None


def _convert(node: ast.AST, text: str, depth: int) -> Expr:
    if depth > _MAX_DEPTH:
        raise ExpressionError(f"{text!r} is nested more than {_MAX_DEPTH} levels deep")
    d = depth + 1
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return const(1.0 if v else 0.0)
        if isinstance(v, int | float) and not isinstance(v, complex):
            try:
                return const(float(v))
            except OverflowError:
                raise ExpressionError(f"number too large in {text!r}") from None
        raise ExpressionError(
            f"{type(v).__name__} literal {v!r} is not allowed in {text!r}; only numbers"
        )
    if isinstance(node, ast.Name):
        return name(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return call(_BINOPS[type(node.op)], _convert(node.left, text, d), _convert(node.right, text, d))
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
    """Raise :class:`ExpressionError` if ``expr`` uses a name outside ``allowed``."""
    unknown = sorted(expr.names() - set(allowed))
    if unknown:
        shown = ", ".join(sorted(allowed)) or "(none)"
        raise ExpressionError(f"undefined name {unknown[0]!r}" + (f" in {text!r}" if text else "")
                              + f"; known names: {shown}")


def evaluate_constant(expr: Expr, params: dict[str, float]) -> float:
    """Evaluate an expression that uses only numbers and params (no node), with NumPy semantics.

    Domain errors give NaN or inf (as NumPy would), never an exception: a formula that is bad for
    some parameter values is caught by the range checks of the caller.
    """
    with np.errstate(all="ignore"):
        return float(_eval(expr, params))


def evaluate(expr: Expr, env: dict[str, np.ndarray | float]):
    """Evaluate ``expr`` element-wise with NumPy over the arrays in ``env``.

    This is the slow, obviously correct twin of the compiled kernels (tests compare the two), and the
    evaluator of constant sub-expressions.
    """
    with np.errstate(all="ignore"):
        return _eval(expr, env)


def _eval(e: Expr, env):
    op = e.op
    if op == "const":
        return np.float64(e.value)
    if op == "name":
        return env[e.name]
    a = [_eval(x, env) for x in e.args]
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
        return np.exp(a[0])
    if op == "log":
        return np.log(f64(1.0) * a[0])
    if op == "sqrt":
        return np.sqrt(f64(1.0) * a[0])
    if op == "abs":
        return np.abs(a[0])
    if op == "logistic":
        return 1.0 / (1.0 + np.exp(-a[0]))
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
    "FUNCTIONS",
    "Expr",
    "call",
    "check_names",
    "const",
    "evaluate",
    "evaluate_constant",
    "is_boolean",
    "name",
    "parse",
]
