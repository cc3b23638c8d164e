"""A small, safe condition language over record fields, for ``when:`` (run a
stage only for some records) and ``where:`` (keep a record only if ...).

    risk == 'high' and severity >= 3
    deliberation.stop_reason in ['max_rounds', 'max_turns']
    not (gate.scores.policy_judge < 4) or 'violence' in categories

Grammar (a hand-written recursive-descent parser; nothing is ever passed to
``eval`` or Python's parser)::

    expr    := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | primary
    primary := '(' expr ')' | operand [cmpop operand | ['not'] 'in' (list | path)]
    operand := path | literal
    cmpop   := '==' | '!=' | '<' | '<=' | '>' | '>='
    list    := '[' [literal (',' literal)* [',']] ']'
    literal := 'single' or "double" quoted string | number | true | false | null
    path    := name ('.' (name | digits))*

A bare operand is a truth test (``flagged``, ``not intents``). Values compare
like JSON values: a missing field is ``null``; ``==``/``!=`` never equate
``true`` with ``1``; ``<``/``<=``/``>``/``>=`` hold only between two numbers
or two strings (anything else is false); ``x in [..]`` is membership and
``'a' in field`` is membership in a list field or a substring of a string.
No DSPy and no stage imports: the loader checks conditions at validate time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from aidsafe._util.errors import UserError

MAX_CHARS = 2000
MAX_DEPTH = 40
_MAX_NUMBER_CHARS = 40
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}
_LITERAL_WORDS = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_UNESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class ConditionError(UserError):
    """A condition that cannot be parsed; ``column`` is 1-based (0: the whole text)."""

    def __init__(self, message: str, column: int = 0):
        super().__init__((f"column {column}: " if column else "") + message)
        self.reason = message
        self.column = column


# ------------------------------------------------------------------ nodes

@dataclass(frozen=True)
class Path:
    """A record field, ``a.b.c`` (a digit part indexes a list)."""

    parts: tuple[str, ...]


@dataclass(frozen=True)
class Literal:
    """A string, number, boolean or null."""

    value: Any

    def __eq__(self, other: object) -> bool:  # true is not 1 (nor 1.0), as in JSON
        return isinstance(other, Literal) and type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))


@dataclass(frozen=True)
class ListLit:
    """``[literal, ...]`` (the right side of ``in``)."""

    items: tuple[Literal, ...]


@dataclass(frozen=True)
class Compare:
    """``left OP right``; ``op`` is a comparison, ``in`` or ``not in``."""

    op: str
    left: Path | Literal
    right: Path | Literal | ListLit


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Node


@dataclass(frozen=True)
class BoolOp:
    """``a and b and ...`` / ``a or b or ...`` (flattened: no ``and`` directly inside an ``and``)."""

    op: str
    operands: tuple[Node, ...]


Node = Path | Literal | ListLit | Compare | Not | BoolOp


# -------------------------------------------------------------- tokenizer

@dataclass(frozen=True)
class _Token:
    kind: str  # name, number, string, op, end
    text: str
    value: Any
    column: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)
  | (?P<quote>['"])
""", re.VERBOSE)


def _string(text: str, start: int) -> tuple[str, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                raise ConditionError("unknown escape in a string (use \\\\, \\', \\\", \\n, \\t or \\r)", i + 1)
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    raise ConditionError(f"string not closed; end it with {quote}", start + 1)


def _tokens(text: str) -> list[_Token]:
    tokens, i = [], 0
    while i < len(text):
        match = _TOKEN.match(text, i)
        if match is None:
            hint = "; compare with ==" if text[i] == "=" else "; use and, or, not" if text[i] in "&|!" else ""
            raise ConditionError(f"unexpected {text[i]!r}{hint}", i + 1)
        kind = match.lastgroup
        if kind == "quote":
            value, end = _string(text, i)
            tokens.append(_Token("string", text[i:end], value, i + 1))
            i = end
            continue
        word = match.group()
        if kind == "number":
            if len(word) > _MAX_NUMBER_CHARS:
                raise ConditionError(f"number too long ({len(word)} characters)", i + 1)
            value = float(word) if any(c in word for c in ".eE") else int(word)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConditionError(f"number out of range: {word}", i + 1)
            tokens.append(_Token("number", word, value, i + 1))
        elif kind != "space":
            tokens.append(_Token(kind, word, word, i + 1))
        i = match.end()
    tokens.append(_Token("end", "", None, len(text) + 1))
    return tokens


# ----------------------------------------------------------------- parser

class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.text == word

    def expect(self, text: str, what: str) -> None:
        if self.tok.text != text or self.tok.kind not in ("op", "name"):
            raise self.unexpected(what)
        self.take()

    def unexpected(self, expected: str) -> ConditionError:
        found = "the end" if self.tok.kind == "end" else repr(self.tok.text)
        hint = "; compare with == (not =)" if self.tok.text == "=" else ""
        return ConditionError(f"expected {expected}, found {found}{hint}", self.tok.column)

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "end":
            raise self.unexpected("and, or or the end")
        return node

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"nested deeper than {MAX_DEPTH} levels", self.tok.column)
        try:
            return parse()
        finally:
            self.depth -= 1

    def expr(self) -> Node:
        return self.boolean("or", self.conjunction)

    def conjunction(self) -> Node:
        return self.boolean("and", self.negation)

    def boolean(self, op: str, operand: Callable[[], Node]) -> Node:
        items = [operand()]
        while self.is_word(op):
            self.take()
            items.append(operand())
        if len(items) == 1:
            return items[0]
        flat: list[Node] = []
        for item in items:
            flat += item.operands if isinstance(item, BoolOp) and item.op == op else [item]
        return BoolOp(op, tuple(flat))

    def negation(self) -> Node:
        if self.is_word("not"):
            self.take()
            return Not(self.nested(self.negation))
        return self.primary()

    def primary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text == "(":
            self.take()
            node = self.nested(self.expr)
            self.expect(")", "')'")
            return node
        left = self.operand()
        if self.tok.kind == "op" and self.tok.text in COMPARISONS:
            op = self.take().text
            return Compare(op, left, self.operand())
        if self.is_word("in") or (self.is_word("not") and self.tokens[self.pos + 1].text == "in"):
            op = "not in" if self.take().text == "not" else "in"
            if op == "not in":
                self.take()
            right = self.list_literal() if self.tok.text == "[" and self.tok.kind == "op" else self.path()
            return Compare(op, left, right)
        return left

    def operand(self) -> Path | Literal:
        token = self.tok
        if token.kind in ("string", "number"):
            self.take()
            return Literal(token.value)
        if token.kind == "name" and token.text in _LITERAL_WORDS:
            self.take()
            return Literal(_LITERAL_WORDS[token.text])
        if token.kind == "name" and token.text not in KEYWORDS:
            return self.path()
        raise self.unexpected("a field name or a value ('text', 3, true, null)")

    def path(self) -> Path:
        if self.tok.kind != "name" or self.tok.text in KEYWORDS:
            raise self.unexpected("a field name")
        parts = [self.take().text]
        while self.tok.kind == "op" and self.tok.text == ".":
            self.take()
            token = self.tok
            if token.kind == "name" or (token.kind == "number" and token.text.isdigit()):
                parts.append(self.take().text)
            else:
                raise self.unexpected("a field name after '.'")
        return Path(tuple(parts))

    def list_literal(self) -> ListLit:
        self.expect("[", "'['")
        items: list[Literal] = []
        while not (self.tok.kind == "op" and self.tok.text == "]"):
            item = self.operand()
            if not isinstance(item, Literal):
                raise ConditionError("a list holds values ('a', 3, true), not fields", self.tokens[self.pos - 1].column)
            items.append(item)
            if self.tok.kind == "op" and self.tok.text == ",":
                self.take()
            elif not (self.tok.kind == "op" and self.tok.text == "]"):
                raise self.unexpected("',' or ']'")
        self.take()
        return ListLit(tuple(items))


def parse(text: str) -> Node:
    """Parse a condition. Raises :class:`ConditionError` (and nothing else)
    saying what was expected, what was found and at which column."""
    if not isinstance(text, str):
        raise ConditionError(f"expected a condition string, found {type(text).__name__}")
    if not text.strip():
        raise ConditionError("empty condition; write one such as risk == 'high'")
    if len(text) > MAX_CHARS:
        raise ConditionError(f"condition longer than {MAX_CHARS} characters")
    return _Parser(text).parse()


# ---------------------------------------------------------------- unparse

def _literal_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + "".join(_UNESCAPES.get(c, c) for c in value) + "'"
    return repr(value)


def unparse(node: Node) -> str:
    """The canonical text of a parsed condition: ``parse(unparse(n)) == n``."""
    if isinstance(node, Path):
        return ".".join(node.parts)
    if isinstance(node, Literal):
        return _literal_text(node.value)
    if isinstance(node, ListLit):
        return "[" + ", ".join(unparse(i) for i in node.items) + "]"
    if isinstance(node, Compare):
        return f"{unparse(node.left)} {node.op} {unparse(node.right)}"
    if isinstance(node, Not):
        inner = unparse(node.operand)
        return f"not ({inner})" if isinstance(node.operand, BoolOp) else f"not {inner}"
    parts = [f"({unparse(o)})" if isinstance(o, BoolOp) else unparse(o) for o in node.operands]
    return f" {node.op} ".join(parts)


# ------------------------------------------------------------- evaluation

MISSING = None  # a field the record does not have reads as null


def paths(node: Node) -> list[Path]:
    """Every field the condition reads, in order."""
    if isinstance(node, Path):
        return [node]
    if isinstance(node, Compare):
        return paths(node.left) + paths(node.right)
    if isinstance(node, Not):
        return paths(node.operand)
    if isinstance(node, BoolOp):
        return [p for o in node.operands for p in paths(o)]
    return []


def comparisons(node: Node) -> list[Compare]:
    """Every comparison in the condition (for checks against declared values)."""
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, Not):
        return comparisons(node.operand)
    if isinstance(node, BoolOp):
        return [c for o in node.operands for c in comparisons(o)]
    return []


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _ordered(op: str, a: Any, b: Any) -> bool:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numbers and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, (list, tuple)):
        return any(_same(item, v) for v in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    if isinstance(container, dict) and isinstance(item, str):
        return item in container
    return False


def evaluate(node: Node, lookup: Callable[[tuple[str, ...]], Any]) -> bool:
    """Evaluate a parsed condition; ``lookup(parts)`` returns a field's value
    (``None`` where the record has none)."""

    def value(n: Node) -> Any:
        if isinstance(n, Path):
            return lookup(n.parts)
        if isinstance(n, Literal):
            return n.value
        if isinstance(n, ListLit):
            return [i.value for i in n.items]
        return test(n)

    def test(n: Node) -> bool:
        if isinstance(n, Compare):
            left, right = value(n.left), value(n.right)
            if n.op == "==":
                return _same(left, right)
            if n.op == "!=":
                return not _same(left, right)
            if n.op == "in":
                return _contains(right, left)
            if n.op == "not in":
                return not _contains(right, left)
            return _ordered(n.op, left, right)
        if isinstance(n, Not):
            return not test(n.operand)
        if isinstance(n, BoolOp):
            if n.op == "and":
                return all(test(o) for o in n.operands)
            return any(test(o) for o in n.operands)
        return bool(value(n))

    return test(node)


def record_lookup(state: dict) -> Callable[[tuple[str, ...]], Any]:
    """Field lookup in a record state: a top-level field (``response``,
    ``gate``, ...) or a field in ``extra`` (declared agent outputs and
    ``predict`` outputs), then keys and list indexes along the path."""

    def lookup(parts: tuple[str, ...]) -> Any:
        head, rest = parts[0], parts[1:]
        if head in state and head != "extra":
            current = state[head]
        elif head == "extra":
            current = state.get("extra") or {}
        else:
            current = (state.get("extra") or {}).get(head)
        for part in rest:
            if isinstance(current, dict):
                current = current.get(part)
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                return None
        return current

    return lookup


@dataclass(frozen=True)
class Condition:
    """A parsed condition with its source text."""

    text: str
    node: Node

    @classmethod
    def parse(cls, text: str) -> "Condition":
        """Parse ``text`` (see :func:`parse`)."""
        return cls(text, parse(text))

    def holds(self, state: dict) -> bool:
        """Whether the condition holds for a record state."""
        return evaluate(self.node, record_lookup(state))

    def explain(self, state: dict) -> str:
        """The values of the fields it reads, e.g. ``severity = 2``."""
        lookup = record_lookup(state)
        seen, out = set(), []
        for path in paths(self.node):
            name = ".".join(path.parts)
            if name not in seen:
                seen.add(name)
                shown = repr(lookup(path.parts))
                out.append(f"{name} = {shown if len(shown) <= 60 else shown[:57] + '...'}")
        return ", ".join(out)


# ------------------------------------------------------------ type checks

_NUMBER_TYPES = ("int", "float")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


def _fixed_literal(value: Any, field_type: str) -> Any:
    """The literal a comparison with a ``field_type`` field meant, or
    ``MISSING`` where none is obvious: ``'4'`` -> ``4`` for a number, ``1`` ->
    ``true`` for a bool, ``4`` -> ``'4'`` for text."""
    if field_type in _NUMBER_TYPES and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return _NO_FIX
        return int(number) if number.is_integer() and field_type == "int" else number
    if field_type == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return _NO_FIX
    if field_type in ("str", "list[str]") and not isinstance(value, str):
        return _literal_text(value).strip("'") if value is not None else _NO_FIX
    return _NO_FIX


_NO_FIX = object()


def _literal_column(text: str, value: Any) -> tuple[int, str] | None:
    """The 1-based column and source text of the first literal token equal
    to ``value`` (of the same JSON type)."""
    for token in _tokens(text):
        if token.kind in ("string", "number"):
            token_value = token.value
        elif token.kind == "name" and token.text in _LITERAL_WORDS:
            token_value = _LITERAL_WORDS[token.text]
        else:
            continue
        if Literal(token_value) == Literal(value):
            return token.column, token.text
    return None


def type_problems(text: str, compare: Compare, field: str, field_type: str) -> list[str]:
    """Why ``compare`` (from the condition ``text``) can never hold for a
    field ``field`` of the declared ``field_type`` (str, int, float, bool,
    list[str], dict; "" is untyped), each with the column and the fix: a
    quoted number against an int (``score >= '4'``), a number against a bool
    (``violation == 1``), an order between booleans, text against a number."""
    if not field_type or field_type == "dict":
        return []
    field_side = next(s for s in (compare.left, compare.right) if isinstance(s, Path))
    other = compare.right if field_side is compare.left else compare.left
    if compare.op in ("in", "not in") and field_side is compare.right:
        # 'a' in FIELD: membership in a list, or a substring of text
        if field_type in ("list[str]", "str"):
            if isinstance(other, Literal) and _kind_of(other.value) in ("number", "bool"):
                shown = _literal_text(other.value)
                return [f"{field!r} is {_article(field_type)} {field_type} of text: `{shown} {compare.op} {field}` "
                        f"never holds; quote the value: `'{shown}' {compare.op} {field}`"]
            return []
        return [f"{field!r} is {_article(field_type)} {field_type}: `in {field}` needs a list or text field; "
                f"compare it with == != < <= > >= instead"]
    literals = [other] if isinstance(other, Literal) else list(other.items) if isinstance(other, ListLit) else []
    problems = []
    if compare.op in ("<", "<=", ">", ">=") and field_type in ("bool", "list[str]"):
        return [f"{field!r} is {_article(field_type)} {field_type}: `{compare.op}` never holds for it; "
                + ("test it with `" + field + " == true` or `not " + field + "`" if field_type == "bool"
                   else f"test membership with `'x' in {field}`")]
    for lit in literals:
        kind = _kind_of(lit.value)
        if kind == "null":
            continue  # `== null`: the field is missing (a skipped stage)
        if field_type == "list[str]" and compare.op in ("==", "!="):
            if isinstance(lit.value, str):
                problems.append(f"{field!r} is a list[str]: it never equals the text {lit.value!r}; test membership "
                                f"with `{_literal_text(lit.value)} in {field}`")
            continue
        expected = {"int": "number", "float": "number", "bool": "bool", "str": "text", "list[str]": "text"}[field_type]
        if kind != expected:
            problems.append(_type_message(text, lit.value, field, field_type, compare.op))
    return problems


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _type_message(text: str, value: Any, field: str, field_type: str, op: str) -> str:
    shown = _literal_text(value)
    found = _literal_column(text, value)
    column = f"column {found[0]}: " if found else ""
    kind = {"number": "a number", "bool": "a boolean", "text": "text"}[_kind_of(value)]
    what = f"{field!r} is {_article(field_type)} {field_type}"
    fixed = _fixed_literal(value, field_type)
    if fixed is _NO_FIX:
        fix = {"bool": f"compare with true or false, e.g. `{field} == true`",
               "int": f"compare with a number, e.g. `{field} >= 3`",
               "float": f"compare with a number, e.g. `{field} >= 0.5`"}.get(field_type, f"quote the value: '{value}'")
    elif found:
        fix = f"write `{text[:found[0] - 1]}{_literal_text(fixed)}{text[found[0] - 1 + len(found[1]):]}`"
    else:
        fix = f"compare with {_literal_text(fixed)}"
    why = " (true is not 1)" if field_type == "bool" and kind == "a number" else ""
    return f"{column}{what}, but {shown} is {kind}: `{op} {shown}` never holds{why}; {fix}"
