"""The promotion gate: a condition over the aggregated metrics of a candidate and a baseline.

    candidate.field_f1 >= baseline.field_f1 - 0.02 and candidate.json_valid >= 0.98

    delta.field_f1.lo >= -0.02          # the paired difference's lower 95% bound

Grammar: ``and``/``or``/``not``, comparisons ``< <= > >= == !=`` (chained as in Python:
``0.5 <= candidate.x < 1``), arithmetic ``+ - * /`` and unary ``-``, parentheses, numbers,
and the references: ``candidate.NAME`` / ``baseline.NAME`` (the aggregates), ``delta.NAME``
(candidate − baseline), and any of them with ``.lo`` or ``.hi``: the bounds of its seeded
paired-bootstrap interval (:mod:`gekro_ft.eval.uncertainty`). Nothing else: no calls,
subscripts, other names, strings, booleans, ``**``, conditional expressions, comments.

Why Python's parser (``ast.parse(mode="eval")``) rather than a hand-written one: the gate
reads as Python, so precedence and chained comparisons behave exactly as a reader expects,
and syntax errors come with positions. The tree is only *walked*: each node is checked
against the whitelist above, and evaluated by this module. Nothing is compiled or run
by Python.

Failing closed: an unknown metric, a baseline or delta reference with no baseline, a bound
with no interval, a division by zero, a NaN or infinite value raise ``GateError`` ("could not
decide"), never a pass.
Every comparison is evaluated (no short-circuit), so the report shows all of them.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from gekro_ft.errors import GateError

SIDES = ("candidate", "baseline")
REFERENCES = (*SIDES, "delta")  # delta.NAME = candidate.NAME - baseline.NAME
BOUNDS = ("lo", "hi")
MAX_LENGTH = 2000

_COMPARE: dict[type, tuple[str, Callable[[float, float], bool]]] = {
    ast.Lt: ("<", operator.lt), ast.LtE: ("<=", operator.le), ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge), ast.Eq: ("==", operator.eq), ast.NotEq: ("!=", operator.ne),
}
_ARITH: dict[type, tuple[str, Callable[[float, float], float]]] = {
    ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul), ast.Div: ("/", operator.truediv),
}
_REFUSED = {  # node type -> why, for the constructs people are most likely to try
    ast.Call: "function calls are not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.NamedExpr: "assignments are not allowed",
    ast.JoinedStr: "strings are not allowed",
}


@dataclass
class Comparison:
    """One comparison of the gate, as evaluated (a chain gives one per link)."""

    text: str
    left: float
    right: float
    held: bool
    bounded: bool = False  # a side used an interval bound (.lo/.hi): the uncertainty is in the gate


@dataclass
class Verdict:
    passed: bool
    comparisons: list[Comparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Rejected(Exception):
    def __init__(self, node: ast.AST, why: str):
        self.node, self.why = node, why


class Gate:
    """A parsed, checked gate expression. Build it with ``parse_gate``."""

    def __init__(self, text: str, tree: ast.Expression):
        self.text = text
        self._tree = tree
        self._names: dict[str, set[str]] = {ref: set() for ref in REFERENCES}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                self._names[node.value.id].add(node.attr)

    def names(self) -> dict[str, frozenset[str]]:
        """The metric names referred to, per reference: ``{"candidate": {...}, "baseline": {...},
        "delta": {...}}`` (bounds or not)."""
        return {ref: frozenset(names) for ref, names in self._names.items()}

    def metric_names(self) -> frozenset[str]:
        """Every metric the gate compares, whichever side or difference it reads."""
        return frozenset().union(*self._names.values())

    @property
    def needs_baseline(self) -> bool:
        return bool(self._names["baseline"] or self._names["delta"])

    def check(self, candidate: Iterable[str], baseline: Iterable[str] | None) -> None:
        """Raise ``GateError`` naming every referenced metric that the sides do not have."""
        problems = []
        if baseline is None and self.needs_baseline:
            used = [f"{ref}.{n}" for ref in ("baseline", "delta") for n in sorted(self._names[ref])]
            problems.append(f"the gate refers to {', '.join(used)} but there is no baseline")
        both = None if baseline is None else set(candidate) & set(baseline)
        for ref, available in (("candidate", candidate), ("baseline", baseline), ("delta", both)):
            if available is None:
                continue
            available = set(available)
            unknown = sorted(self._names[ref] - available)
            if unknown:
                problems.append(f"unknown {ref} metric(s) {', '.join(f'{ref}.{n}' for n in unknown)} "
                                f"(available: {', '.join(sorted(available)) or 'none'})")
        if problems:
            raise GateError(f"gate {self.text!r}: " + "; ".join(problems))

    def evaluate(self, candidate: dict[str, float], baseline: dict[str, float] | None,
                 intervals: dict[str, dict[str, dict[str, float]]] | None = None,
                 bounds_as_points: bool = False) -> Verdict:
        """The verdict on these aggregates; ``GateError`` when it cannot be decided.
        ``intervals`` (``{"candidate"|"baseline"|"delta": {NAME: {"lo", "hi"}}}``) gives the
        bounds; ``bounds_as_points`` reads a bound as its figure (a bootstrap draw has no
        interval of its own)."""
        self.check(candidate, baseline)
        comparisons: list[Comparison] = []
        sides = {"candidate": candidate, "baseline": baseline or {}}
        passed = _Evaluator(self.text, sides, comparisons, intervals or {}, bounds_as_points).truth(self._tree.body)
        return Verdict(passed=passed is True, comparisons=comparisons)

    def __repr__(self) -> str:
        return f"Gate({self.text!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """As a pydantic field: an expression string in, parsed by ``parse_gate`` (its message
        is the validation error), the expression out."""
        from pydantic_core import PydanticCustomError, core_schema

        def parse(value: Any) -> Gate:
            if isinstance(value, Gate):
                return value
            if not isinstance(value, str):
                raise PydanticCustomError("gate_type", "a condition such as candidate.exact_match >= 0.9, "
                                                       "got {got}", {"got": repr(value)})
            try:
                return parse_gate(value)
            except GateError as e:
                raise PydanticCustomError("gate", "{problem}", {"problem": str(e)}) from None

        return core_schema.no_info_plain_validator_function(
            parse, json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda gate: gate.text))


def parse_gate(text: str) -> Gate:
    """Parse and check a gate expression; ``GateError`` says which part is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise GateError("gate: empty; write a condition such as candidate.exact_match >= 0.9")
    text = " ".join(text.split())  # YAML block scalars keep newlines; one line reads the same
    if len(text) > MAX_LENGTH:
        raise GateError(f"gate: longer than {MAX_LENGTH} characters")
    if "#" in text:  # a comment would silently drop the rest of the condition
        raise GateError(f"gate {text!r}: '#' is not allowed (no comments)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        where = f" at column {e.offset}" if e.offset and e.offset > 0 else ""
        raise GateError(f"gate {text!r}: invalid syntax{where} ({e.msg})") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise GateError(f"gate {text!r}: cannot parse ({type(e).__name__})") from None
    try:
        kind = _kind(tree.body)
        if kind != "bool":
            raise _Rejected(tree.body, "a gate must be a condition (a comparison such as "
                                       "candidate.exact_match >= 0.9), not a number")
    except _Rejected as e:
        part = ast.get_source_segment(text, e.node) or type(e.node).__name__
        raise GateError(f"gate {text!r}: `{part}` is not allowed: {e.why}") from None
    except RecursionError:
        raise GateError(f"gate {text!r}: nested too deeply") from None
    return Gate(text, tree)


def _kind(node: ast.AST) -> str:
    """"bool" or "number" for an allowed node; ``_Rejected`` for anything else."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _expect(value, "bool")
        return "bool"
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            _expect(node.operand, "bool")
            return "bool"
        if isinstance(node.op, ast.USub):
            _expect(node.operand, "number")
            return "number"
        raise _Rejected(node, "only the unary operators - and not are allowed")
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                symbols = " ".join(symbol for symbol, _ in _COMPARE.values())
                raise _Rejected(node, f"only the comparisons {symbols} are allowed")
        for operand in (node.left, *node.comparators):
            _expect(operand, "number")
        return "bool"
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITH:
            raise _Rejected(node, "only the arithmetic operators + - * / are allowed")
        _expect(node.left, "number")
        _expect(node.right, "number")
        return "number"
    if isinstance(node, ast.Attribute):
        _reference(node)
        return "number"
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Rejected(node, "strings are not allowed, only numbers" if isinstance(value, (str, bytes))
                            else f"{value!r} is not a number")
        if not math.isfinite(value):
            raise _Rejected(node, "numbers must be finite")
        return "number"
    if isinstance(node, ast.Name):
        if node.id in REFERENCES:
            raise _Rejected(node, f"name a metric: {node.id}.NAME")
        raise _Rejected(node, "the only names are candidate.NAME, baseline.NAME and delta.NAME")
    raise _Rejected(node, _REFUSED.get(type(node), f"{type(node).__name__} expressions are not allowed"))


def _reference(node: ast.Attribute) -> tuple[str, str, str | None]:
    """(candidate|baseline|delta, metric, lo|hi|None) of ``REF.NAME`` or ``REF.NAME.lo/.hi``."""
    bound = None
    if isinstance(node.value, ast.Attribute):
        if node.attr not in BOUNDS:
            raise _Rejected(node, f"after a metric only .lo and .hi (its interval's bounds) may follow, "
                                  f"not .{node.attr}")
        bound, node = node.attr, node.value
    if not (isinstance(node.value, ast.Name) and node.value.id in REFERENCES):
        raise _Rejected(node, "only candidate.NAME, baseline.NAME and delta.NAME refer to metrics")
    if node.attr.startswith("_"):
        raise _Rejected(node, "metric names do not start with '_'")
    return node.value.id, node.attr, bound


def _expect(node: ast.AST, kind: str) -> None:
    if _kind(node) != kind:
        raise _Rejected(node, "a number is needed here, not a condition" if kind == "number"
                        else "a condition is needed here, not a number (compare it with something)")


class _Evaluator:
    """Walks a checked tree; every comparison is recorded, none is skipped."""

    def __init__(self, text: str, sides: dict[str, dict[str, float]], comparisons: list[Comparison],
                 intervals: dict[str, dict[str, dict[str, float]]], bounds_as_points: bool):
        self.text, self.sides, self.comparisons = text, sides, comparisons
        self.intervals, self.bounds_as_points = intervals, bounds_as_points

    def _src(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    def truth(self, node: ast.AST) -> bool:
        if isinstance(node, ast.BoolOp):
            values = [self.truth(v) for v in node.values]  # all of them: the report shows each
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):  # checked: only `not` yields a truth value
            return not self.truth(node.operand)
        assert isinstance(node, ast.Compare)
        left_node, left = node.left, self.number(node.left)
        bounded = any(isinstance(n, ast.Attribute) and n.attr in BOUNDS and isinstance(n.value, ast.Attribute)
                      for n in ast.walk(node))
        held_all = True
        for op, right_node in zip(node.ops, node.comparators):
            right = self.number(right_node)
            symbol, compare = _COMPARE[type(op)]
            held = compare(left, right)
            text = self._src(node) if len(node.ops) == 1 \
                else f"{self._src(left_node)} {symbol} {self._src(right_node)}"
            self.comparisons.append(Comparison(text=text, left=left, right=right, held=held, bounded=bounded))
            held_all = held_all and held
            left_node, left = right_node, right
        return held_all

    def number(self, node: ast.AST) -> float:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Attribute):
            ref, name, bound = _reference(node)
            if bound is not None and not self.bounds_as_points:
                value = (self.intervals.get(ref) or {}).get(name, {}).get(bound)
                if value is None:
                    raise GateError(f"gate: {ref}.{name}.{bound}: no interval was computed for it")
                return self._finite(float(value), f"{ref}.{name}.{bound}")
            if ref == "delta":
                return self._finite(self._figure("candidate", name) - self._figure("baseline", name),
                                    f"delta.{name}")
            return self._figure(ref, name)
        if isinstance(node, ast.UnaryOp):
            return -self.number(node.operand)
        assert isinstance(node, ast.BinOp)
        left, right = self.number(node.left), self.number(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise GateError(f"gate: division by zero in `{self._src(node)}` ({left:g} / {right:g})")
        return self._finite(_ARITH[type(node.op)][1](left, right), f"`{self._src(node)}`")

    def _figure(self, side: str, name: str) -> float:
        value = self.sides[side][name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GateError(f"gate: {side}.{name} is {value!r}, not a number")
        return self._finite(float(value), f"{side}.{name}")

    @staticmethod
    def _finite(value: float, what: str) -> float:
        if not math.isfinite(value):
            raise GateError(f"gate: {what} is {value}; cannot decide")
        return value
