"""PostgreSQL tsqueries in Python: read their text form, the lexemes a match needs, and whether
a document holding given lexemes matches one without phrases (as `@@` decides)."""

import re
from typing import Any

Node = tuple[Any, ...]
"""A parsed tsquery: ("lex", word) | ("not", node) | ("and", nodes) | ("or", nodes) |
("phrase", nodes)."""

_TOKEN = re.compile(r"\s*(?:'((?:[^'\\]|''|\\.)*)'(?::[*A-D]+)?|(<->|<\d+>)|([!&|()]))")
_UNESCAPE = re.compile(r"''|\\(.)")


class _Parser:
    """tsquery text as PostgreSQL prints it. Precedence, tightest first: ! <-> & |."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        for m in _TOKEN.finditer(text):
            if m.start() != pos:
                break
            lexeme, phrase, op = m.groups()
            if lexeme is None:
                self.tokens.append(("op", phrase or op))
            elif "'" in lexeme or "\\" in lexeme:
                self.tokens.append(("lex", _UNESCAPE.sub(lambda x: x.group(1) or "'", lexeme)))
            else:
                self.tokens.append(("lex", lexeme))
            pos = m.end()
        if pos != len(text):
            raise ValueError(f"unreadable tsquery {text!r} at {pos}")
        self.at = 0

    def peek(self) -> str | None:
        if self.at < len(self.tokens):
            kind, value = self.tokens[self.at]
            return value if kind == "op" else None
        return None

    def parse(self) -> Node | None:
        if not self.tokens:
            return None
        node = self.or_()
        if self.at != len(self.tokens):
            raise ValueError("trailing tokens in tsquery")
        return node

    def or_(self) -> Node:
        nodes = [self.and_()]
        while self.peek() == "|":
            self.at += 1
            nodes.append(self.and_())
        return nodes[0] if len(nodes) == 1 else ("or", tuple(nodes))

    def and_(self) -> Node:
        nodes = [self.phrase()]
        while self.peek() == "&":
            self.at += 1
            nodes.append(self.phrase())
        return nodes[0] if len(nodes) == 1 else ("and", tuple(nodes))

    def phrase(self) -> Node:
        nodes = [self.unary()]
        while (op := self.peek()) is not None and op.startswith("<"):
            self.at += 1
            nodes.append(self.unary())
        return nodes[0] if len(nodes) == 1 else ("phrase", tuple(nodes))

    def unary(self) -> Node:
        kind, value = self.tokens[self.at]
        self.at += 1
        if kind == "lex":
            return ("lex", value)
        if value == "!":
            return ("not", self.unary())
        if value == "(":
            node = self.or_()
            if self.peek() != ")":
                raise ValueError("unbalanced parenthesis in tsquery")
            self.at += 1
            return node
        raise ValueError(f"unexpected {value!r} in tsquery")


_PLAIN_AND = re.compile(r"'[^'\\]+'(?: & '[^'\\]+')*")
_PLAIN_LEXEME = re.compile(r"'([^'\\]+)'")


def parse_tsquery(text: str) -> Node | None:
    """A tsquery's text form as a tree; None for the empty query (only stop words)."""
    if _PLAIN_AND.fullmatch(text):
        # Most saved searches are a few words: 'a' & 'b', read without the parser.
        words = tuple(("lex", w) for w in _PLAIN_LEXEME.findall(text))
        return words[0] if len(words) == 1 else ("and", words)
    return _Parser(text).parse()


def has_phrase(node: Node) -> bool:
    if node[0] == "lex":
        return False
    if node[0] == "phrase":
        return True
    children = (node[1],) if node[0] == "not" else node[1]
    return any(has_phrase(c) for c in children)


def needed(node: Node) -> frozenset[str] | None:
    """Lexemes of which a matching document holds at least one; None when no such set exists
    (a bare NOT). AND and phrases need any one child's set: the smallest, longest words first
    (long words are rarer, so fewer articles make the watch a candidate)."""
    kind = node[0]
    if kind == "lex":
        return frozenset((node[1],))
    if kind == "not":
        return None
    sets = [needed(c) for c in node[1]]
    if kind == "or":
        if any(s is None for s in sets):
            return None
        return frozenset().union(*(s for s in sets if s is not None))
    known = [s for s in sets if s is not None]
    if not known:
        return None
    return min(known, key=lambda s: (len(s), -min(len(w) for w in s)))


def evaluate(node: Node, lexemes: frozenset[str] | set[str]) -> bool:
    """Whether a document holding `lexemes` matches a tsquery without phrases."""
    kind = node[0]
    if kind == "lex":
        return node[1] in lexemes
    if kind == "not":
        return not evaluate(node[1], lexemes)
    if kind == "and":
        return all(evaluate(c, lexemes) for c in node[1])
    if kind == "or":
        return any(evaluate(c, lexemes) for c in node[1])
    raise ValueError("phrases are evaluated by PostgreSQL")
