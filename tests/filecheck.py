"""A tiny FileCheck (LLVM's, as numba-cuda uses it) for emitted PTX text.

    filecheck(ptx, '''
        CHECK: .visible .entry k(
        CHECK-NOT: fma
        CHECK: add.rn.f32 %f{{[0-9]+}}, %f{{[0-9]+}}, 0f3F800000;
        CHECK-NEXT: ret;
    ''')

Directives, one per line (blank lines and lines starting with ``#`` are ignored):

- ``CHECK: p``       ``p`` matches at or after the end of the previous match.
- ``CHECK-NEXT: p``  ``p`` matches on the line right after the previous match's line.
- ``CHECK-SAME: p``  ``p`` matches later on the same line as the previous match.
- ``CHECK-NOT: p``   ``p`` does not occur between the previous match and the next
                     positive match (or the end of the text).

Inside a pattern ``{{regex}}`` is a regular expression and everything else is literal; a
run of spaces/tabs in the literal text matches any run of spaces/tabs (so ``\\t`` versus
``' '`` indentation never matters), and the pattern's own leading and trailing blanks are
dropped. Matches never cross a line end. A failure raises ``AssertionError`` naming the
directive and showing the text where the search was.
"""

from __future__ import annotations

import re

__all__ = ["filecheck", "compile_pattern"]

_DIRECTIVE = re.compile(r"^(CHECK(?:-NEXT|-SAME|-NOT)?):(.*)$")
_CONTEXT_LINES = 8


def compile_pattern(pattern: str) -> re.Pattern:
    """``literal{{regex}}literal`` -> a compiled regex (blank runs match blank runs)."""
    out, pos = [], 0
    pattern = pattern.strip()
    while True:
        start = pattern.find("{{", pos)
        literal = pattern[pos:] if start < 0 else pattern[pos:start]
        for k, piece in enumerate(re.split(r"[ \t]+", literal)):
            if k:
                out.append(r"[ \t]+")
            out.append(re.escape(piece))
        if start < 0:
            break
        end = pattern.find("}}", start + 2)
        if end < 0:
            raise ValueError(f"unterminated {{{{regex}}}} in pattern {pattern!r}")
        out.append("(?:" + pattern[start + 2:end] + ")")
        pos = end + 2
    return re.compile("".join(out))


def _parse(patterns: str) -> list:
    checks = []
    for n, raw in enumerate(patterns.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _DIRECTIVE.match(line)
        if m is None:
            raise ValueError(f"pattern line {n} is not a CHECK directive: {raw!r}")
        kind, body = m.group(1), m.group(2)
        if not body.strip():
            raise ValueError(f"pattern line {n}: {kind} with an empty pattern")
        checks.append((kind, body.strip(), compile_pattern(body), n))
    if not checks:
        raise ValueError("no CHECK directives in the patterns")
    return checks


class _Text:
    def __init__(self, text: str):
        self.text = text
        self.starts = [0]
        for k, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(k + 1)

    def line_of(self, offset: int) -> int:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def line_span(self, line: int) -> tuple:
        start = self.starts[line]
        end = self.text.find("\n", start)
        return start, (len(self.text) if end < 0 else end)

    def search(self, rx: re.Pattern, start: int, end: int | None = None):
        """First match in [start, end), line by line (a match never crosses a newline)."""
        end = len(self.text) if end is None else end
        line = self.line_of(start)
        while line < len(self.starts) and self.starts[line] <= end:
            ls, le = self.line_span(line)
            m = rx.search(self.text, max(ls, start), min(le, end))
            if m is not None:
                return m
            line += 1
        return None

    def show(self, offset: int, mark: int | None = None) -> str:
        """Numbered lines of the text from the line holding ``offset``."""
        first = self.line_of(min(offset, len(self.text)))
        lines = []
        for line in range(first, min(first + _CONTEXT_LINES, len(self.starts))):
            ls, le = self.line_span(line)
            arrow = ">>" if line == mark else "  "
            lines.append(f"{arrow}{line + 1:5d}| {self.text[ls:le]}")
        if first + _CONTEXT_LINES < len(self.starts):
            lines.append("      | ...")
        return "\n".join(lines)


def _fail(what: str, kind: str, body: str, n: int, text: _Text, offset: int,
          mark: int | None = None) -> None:
    raise AssertionError(f"filecheck: {what}\n  pattern line {n}: {kind}: {body}\n"
                         f"  text, from where the search was:\n{text.show(offset, mark)}")


def filecheck(text: str, patterns: str) -> None:
    """Check ``text`` against FileCheck ``patterns``; raise AssertionError on a mismatch."""
    t = _Text(text)
    checks = _parse(patterns)
    pos = 0          # end of the previous positive match
    prev_line = None  # line of the previous positive match
    nots: list = []

    def check_nots(end: int) -> None:
        for kind, body, rx, n in nots:
            m = t.search(rx, pos, end)
            if m is not None:
                line = t.line_of(m.start())
                _fail(f"CHECK-NOT pattern found on line {line + 1}", kind, body, n, t,
                      max(pos, t.starts[max(0, line - 2)]), mark=line)
        nots.clear()

    for kind, body, rx, n in checks:
        if kind == "CHECK-NOT":
            nots.append((kind, body, rx, n))
            continue
        if kind == "CHECK":
            m = t.search(rx, pos)
            if m is None:
                _fail("no match", kind, body, n, t, pos)
        else:
            if prev_line is None:
                raise ValueError(f"pattern line {n}: {kind} before any CHECK")
            line = prev_line + (1 if kind == "CHECK-NEXT" else 0)
            if line >= len(t.starts):
                _fail("no next line", kind, body, n, t, pos)
            ls, le = t.line_span(line)
            m = rx.search(t.text, max(ls, pos), le)
            if m is None:
                where = "the next line" if kind == "CHECK-NEXT" else "the same line"
                _fail(f"no match on {where}", kind, body, n, t,
                      t.starts[prev_line], mark=line)
        check_nots(m.start())
        pos, prev_line = m.end(), t.line_of(m.start())
    check_nots(len(t.text))
