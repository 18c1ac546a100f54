"""``calculate_output`` of a ``multi`` grader: a small arithmetic language over the grader
keys, parsed and evaluated here (never Python's ``eval``).

The graders guide's language: numbers, the keys of ``graders`` as variables, ``+ - * /``,
``^`` (power, right-associative), unary minus, parentheses, and the functions ``min max``
(one or more arguments) and ``abs floor ceil exp sqrt log`` (one; ``log`` is natural).
Bounded: at most :data:`MAX_CHARS` characters and :data:`MAX_DEPTH` levels of nesting, so
a hostile formula costs microseconds; a value that overflows, a division by zero, or a
function outside its domain is a :class:`FormulaError` at evaluation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

MAX_CHARS = 1000
MAX_DEPTH = 32

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>[-+*/^(),]))"
)
FUNCTIONS: dict[str, Callable[..., float]] = {
    # Over their arguments (Python's min(x) of one number would look for an iterable).
    "min": lambda *xs: min(xs),
    "max": lambda *xs: max(xs),
    "abs": abs,
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
VARIADIC = frozenset({"min", "max"})


class FormulaError(ValueError):
    """The formula cannot be parsed or evaluated; the message says where and why."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Neg:
    arg: Node


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Node, ...]


Node: TypeAlias = Num | Var | Neg | BinOp | Call


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(
                f"unexpected {text[pos:].strip()[0]!r} at character {pos + 1}; use numbers, "
                "grader keys, + - * / ^, parentheses and min max abs floor ceil exp sqrt log"
            )
        kind = m.lastgroup or "op"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], names: frozenset[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.names = names
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise FormulaError(
                "the formula ends too early" + (f": expected {expected!r}" if expected else "")
            )
        token = self.tokens[self.i]
        if expected is not None and token[1] != expected:
            raise FormulaError(f"expected {expected!r}, found {token[1]!r}")
        self.i += 1
        return token

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"the formula nests deeper than {MAX_DEPTH} levels; simplify it")

    def expr(self) -> Node:  # sum := term (('+'|'-') term)*
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node = BinOp(op, node, self.term())
        return node

    def term(self) -> Node:  # term := unary (('*'|'/') unary)*
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:  # unary := '-' unary | '+' unary | power
        if self.peek() in ("-", "+"):
            op = self.take()[1]
            self.nest()
            arg = self.unary()
            self.depth -= 1
            return Neg(arg) if op == "-" else arg
        return self.power()

    def power(self) -> Node:  # power := atom ('^' unary)?   (right-associative)
        base = self.atom()
        if self.peek() == "^":
            self.take()
            self.nest()
            exponent = self.unary()
            self.depth -= 1
            return BinOp("^", base, exponent)
        return base

    def atom(self) -> Node:
        kind, text = self.take()
        if kind == "num":
            return Num(float(text))
        if kind == "name":
            if self.peek() == "(":
                return self.call(text)
            if text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise FormulaError(
                    f"{text!r} is neither a grader key ({known}) nor a function "
                    "(min max abs floor ceil exp sqrt log)"
                )
            return Var(text)
        if text == "(":
            self.nest()
            node = self.expr()
            self.take(")")
            self.depth -= 1
            return node
        raise FormulaError(f"unexpected {text!r}")

    def call(self, name: str) -> Node:
        if name not in FUNCTIONS:
            raise FormulaError(
                f"unknown function {name!r}; use min max abs floor ceil exp sqrt log"
            )
        self.take("(")
        self.nest()
        args = [self.expr()]
        while self.peek() == ",":
            self.take()
            args.append(self.expr())
        self.take(")")
        self.depth -= 1
        if name not in VARIADIC and len(args) != 1:
            raise FormulaError(f"{name}() takes one argument, got {len(args)}")
        return Call(name, tuple(args))


def parse(text: str, names: frozenset[str] | set[str]) -> Node:
    """The formula's tree; ``names`` are the grader keys it may use."""
    if len(text) > MAX_CHARS:
        raise FormulaError(f"calculate_output has {len(text)} characters; at most {MAX_CHARS}")
    tokens = _tokens(text)
    if not tokens:
        raise FormulaError("calculate_output is empty; e.g. '0.5 * a + 0.5 * b'")
    parser = _Parser(tokens, frozenset(names))
    node = parser.expr()
    if parser.i != len(tokens):
        raise FormulaError(f"unexpected {tokens[parser.i][1]!r} after a complete formula")
    return node


def evaluate(node: Node, values: Mapping[str, float]) -> float:
    """The formula's value with the grader keys' scores ``values``."""
    try:
        out = _eval(node, values)
    except (ArithmeticError, ValueError) as exc:
        raise FormulaError(f"the formula could not be computed: {exc}") from None
    if math.isnan(out) or math.isinf(out):
        raise FormulaError("the formula's value is not a finite number")
    return out


def _eval(node: Node, values: Mapping[str, float]) -> float:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Var):
        return float(values[node.name])
    if isinstance(node, Neg):
        return -_eval(node.arg, values)
    if isinstance(node, Call):
        return float(FUNCTIONS[node.fn](*(_eval(a, values) for a in node.args)))
    left, right = _eval(node.left, values), _eval(node.right, values)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if node.op == "/":
        return left / right
    result = left**right  # OverflowError past 1e308; a complex result is refused below
    if isinstance(result, complex):
        raise ValueError("a negative number to a fractional power")
    return float(result)
