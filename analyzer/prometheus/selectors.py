"""Label selectors for ``perfsentinel check``: parse ``version="1.5.0",env!="dev"`` and add those matchers to
every vector selector of a PromQL query, so baseline and candidate run the same query on different label sets.

The injector is a small PromQL scanner, not a parser: it copies strings, range brackets, numbers and
grouping clauses (``by (...)``, ``on (...)``) unchanged, appends the matchers inside every ``{...}`` block
and gives every bare metric name a ``{...}`` block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s*')
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[a-zA-Z0-9]*")
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile", "limitk", "limit_ratio"}  # fmt: skip


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str  # as written, quotes included

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """``a="x",b=~"y.*"`` (braces optional). Raises ValueError naming what is wrong."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers, pos = [], 0
    while pos < len(body):
        match = _MATCHER.match(body, pos)
        if not match:
            raise ValueError(f'expected label matchers like version="1.5.0", got {text!r}')
        matchers.append(Matcher(*match.groups()))
        pos = match.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError(f"expected ',' between label matchers in {text!r}")
            pos += 1
    if not matchers:
        raise ValueError(f"empty label selector {text!r}")
    return tuple(matchers)


def _skip_string(query: str, pos: int) -> int:
    quote, pos = query[pos], pos + 1
    while pos < len(query) and query[pos] != quote:
        pos += 2 if query[pos] == "\\" and quote != "`" else 1
    return pos + 1


def _matching(query: str, pos: int, opening: str, closing: str) -> int:
    """Index just past the bracket closing the one at ``pos`` (strings inside are skipped)."""
    depth = 0
    while pos < len(query):
        char = query[pos]
        if char in "\"'`":
            pos = _skip_string(query, pos)
            continue
        depth += char == opening
        depth -= char == closing
        pos += 1
        if depth == 0:
            return pos
    raise ValueError(f"unbalanced {opening}{closing} in query {query!r}")


def _next_char(query: str, pos: int) -> str:
    rest = query[pos:].lstrip()
    return rest[:1]


def inject_matchers(query: str, matchers: tuple[Matcher, ...]) -> str:
    """The query with ``matchers`` added to every vector selector."""
    extra = ",".join(str(m) for m in matchers)
    out: list[str] = []
    pos, grouping_next = 0, False
    while pos < len(query):
        char = query[pos]
        if char in "\"'`":
            end = _skip_string(query, pos)
        elif char == "[":
            end = _matching(query, pos, "[", "]")
        elif char == "{":
            end = _matching(query, pos, "{", "}")
            inner = query[pos + 1 : end - 1].strip().rstrip(",")
            out.append("{" + (f"{inner},{extra}" if inner else extra) + "}")
            pos = end
            continue
        elif char == "(" and grouping_next:
            end, grouping_next = _matching(query, pos, "(", ")"), False
        elif char.isdigit() or (char == "." and query[pos + 1 : pos + 2].isdigit()):
            end = _NUMBER.match(query, pos).end()  # type: ignore[union-attr]
        elif _IDENT.match(query, pos):
            end = _IDENT.match(query, pos).end()  # type: ignore[union-attr]
            word, following = query[pos:end], _next_char(query, end)
            grouping_next = word in GROUPING
            is_metric = word not in KEYWORDS and word not in AGGREGATIONS and following not in ("(", "{")
            out.append(word + ("{" + extra + "}" if is_metric else ""))
            pos = end
            continue
        else:
            end = pos + 1
        out.append(query[pos:end])
        pos = end
    return "".join(out)
