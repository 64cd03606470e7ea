"""A small, safe expression language for filters: parsed with :mod:`ast`, checked against a whitelist,
compiled to closures. Never ``eval``.

Allowed: numbers and strings; the names ``value origin t device resource profile source value_type
units``; ``+ - * / // % **``; ``< <= > >= == !=``; ``in`` / ``not in`` a literal list, tuple or set;
``and or not``; ``x if cond else y``; calls of ``abs min max round isnan isfinite``. Anything else
(attributes, subscripts, lambdas, comprehensions, other names or calls) is refused when the expression is
compiled, with the offending piece named.

The same closure runs over numpy arrays (one call for a whole batch of numeric readings) and over
Python scalars (one reading at a time, for non-numeric values). Number literals are floats, so ``**``
overflows instead of building huge integers.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgeflow.errors import RuleError

__all__ = ["NAMES", "Compiled", "compile_expression"]

NAMES = frozenset({"value", "origin", "t", "device", "resource", "profile", "source", "value_type", "units"})
_MAX_LEN = 2000

Compiled = Callable[[Mapping[str, Any]], Any]

_BIN: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _min(*args: Any) -> Any:
    out = args[0]
    for a in args[1:]:
        out = np.minimum(out, a)
    return out


def _max(*args: Any) -> Any:
    out = args[0]
    for a in args[1:]:
        out = np.maximum(out, a)
    return out


def _round(x: Any, n: Any = 0.0) -> Any:
    return np.round(x, int(n))


_FUNCS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "abs": (np.abs, 1, 1),
    "min": (_min, 2, 8),
    "max": (_max, 2, 8),
    "round": (_round, 1, 2),
    "isnan": (np.isnan, 1, 1),
    "isfinite": (np.isfinite, 1, 1),
}


def _err(expr: str, node: ast.AST, what: str) -> RuleError:
    col = getattr(node, "col_offset", 0)
    return RuleError(f"expression {expr!r}: {what} (at column {col + 1})")


def compile_expression(expr: str) -> Compiled:
    """Parse and check ``expr``; return a function of an environment mapping names to values/arrays."""
    if len(expr) > _MAX_LEN:
        raise RuleError(f"expression is longer than {_MAX_LEN} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"expression {expr!r} is not valid: {exc.msg}") from None
    return _compile(expr, tree.body)


def _literal_set(expr: str, node: ast.expr) -> list[Any]:
    if not isinstance(node, ast.List | ast.Tuple | ast.Set):
        raise _err(expr, node, "'in' needs a literal list, tuple or set on its right")
    out: list[Any] = []
    for el in node.elts:
        if (
            not isinstance(el, ast.Constant)
            or not isinstance(el.value, int | float | str)
            or el.value is None
        ):
            raise _err(expr, el, "'in' lists may hold only numbers and strings")
        v = el.value
        out.append(float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
    return out


def _compile(expr: str, node: ast.expr) -> Compiled:
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool | str | int | float):
            const: Any = v if isinstance(v, bool | str) else float(v)

            def constant(env: Mapping[str, Any]) -> Any:
                return const

            return constant
        raise _err(expr, node, f"constant {v!r} is not allowed")
    if isinstance(node, ast.Name):
        if node.id not in NAMES:
            raise _err(expr, node, f"unknown name {node.id!r}; use one of {', '.join(sorted(NAMES))}")
        name = node.id
        return lambda env: env[name]
    if isinstance(node, ast.BinOp):
        op = _BIN.get(type(node.op))
        if op is None:
            raise _err(expr, node, f"operator {type(node.op).__name__} is not allowed")
        left, right = _compile(expr, node.left), _compile(expr, node.right)
        return lambda env: op(left(env), right(env))
    if isinstance(node, ast.UnaryOp):
        operand = _compile(expr, node.operand)
        if isinstance(node.op, ast.Not):
            return lambda env: np.logical_not(operand(env))
        if isinstance(node.op, ast.USub):
            return lambda env: operator.neg(operand(env))
        if isinstance(node.op, ast.UAdd):
            return lambda env: operator.pos(operand(env))
        raise _err(expr, node, f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.BoolOp):
        parts = [_compile(expr, v) for v in node.values]
        is_and = isinstance(node.op, ast.And)
        combine = np.logical_and if is_and else np.logical_or

        def boolop(env: Mapping[str, Any]) -> Any:
            out = parts[0](env)
            for p in parts[1:]:
                if np.ndim(out) == 0 and bool(out) != is_and:
                    return out  # one reading: short-circuit as Python does
                out = combine(out, p(env))
            return out

        return boolop
    if isinstance(node, ast.Compare):
        steps: list[tuple[Callable[[Any, Any], Any], Compiled]] = []
        left = _compile(expr, node.left)
        for op_node, comp in zip(node.ops, node.comparators, strict=True):
            if isinstance(op_node, ast.In | ast.NotIn):
                items = _literal_set(expr, comp)
                negate = isinstance(op_node, ast.NotIn)

                def isin(a: Any, _b: Any, items: list[Any] = items, negate: bool = negate) -> Any:
                    r = np.isin(np.asarray(a, dtype=object), np.asarray(items, dtype=object))
                    return np.logical_not(r) if negate else r

                steps.append((isin, lambda env: None))
                continue
            cmp = _CMP.get(type(op_node))
            if cmp is None:
                raise _err(expr, node, f"comparison {type(op_node).__name__} is not allowed")
            steps.append((cmp, _compile(expr, comp)))

        def compare(env: Mapping[str, Any]) -> Any:
            a = left(env)
            out: Any = True
            for (cmp, right), comp_node in zip(steps, node.comparators, strict=True):
                b = right(env)
                out = np.logical_and(out, cmp(a, b))
                if not isinstance(comp_node, ast.List | ast.Tuple | ast.Set):
                    a = b
            return out

        return compare
    if isinstance(node, ast.IfExp):
        cond, yes, no = _compile(expr, node.test), _compile(expr, node.body), _compile(expr, node.orelse)

        def ifexp(env: Mapping[str, Any]) -> Any:
            c = cond(env)
            if np.ndim(c) == 0:
                return yes(env) if bool(c) else no(env)
            return np.where(c, yes(env), no(env))

        return ifexp
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
            raise _err(expr, node, f"only the functions {', '.join(sorted(_FUNCS))} may be called")
        if node.keywords:
            raise _err(expr, node, "keyword arguments are not allowed")
        fn, lo, hi = _FUNCS[node.func.id]
        if not lo <= len(node.args) <= hi:
            raise _err(expr, node, f"{node.func.id} takes {lo}..{hi} arguments, not {len(node.args)}")
        args = [_compile(expr, a) for a in node.args]
        return lambda env: fn(*(a(env) for a in args))
    raise _err(expr, node, f"{type(node).__name__} is not allowed")
