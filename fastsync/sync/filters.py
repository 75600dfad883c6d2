"""rsync's include/exclude rules: `--include`, `--exclude`, `--exclude-from`, in the order given,
the first rule that matches a path decides (no match: the path is included).

A pattern is matched as rsync matches it:

- a leading `/` anchors it at the transfer root; otherwise it matches the end of the path, at a
  component boundary (`foo` matches `foo`, `a/foo`, `a/b/foo`; `b/foo` matches `a/b/foo`);
- a trailing `/` matches directories only;
- `*` matches within one path component, `**` across components (a leading `**/` also none:
  `**/x` matches `x`; in the middle not: `a/**/b` does not match `a/b`, as rsync 3.5),
  `?` one character other than `/`, `[...]` a character class; `dir/***` matches `dir` itself
  and everything below it;
- an excluded directory is not descended into, so nothing below it is copied or deleted.
"""
from __future__ import annotations

import re


class FilterError(ValueError):
    """A rule or a rules file can't be used; one line naming it."""


def _translate(pattern: str) -> str:
    """A regular expression for an rsync wildcard pattern (without its anchoring /, trailing /)."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                while i < n and pattern[i] == "*":
                    i += 1
                if i == 2 and i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")     # a leading "**/" also matches no directory (as rsync 3.5 does)
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "^") else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Rule:
    """One --include (include=True) or --exclude pattern, as given and as a regular expression."""
    __slots__ = ("include", "pattern", "regex", "dir_only")

    def __init__(self, include: bool, pattern: str, regex: re.Pattern, dir_only: bool):
        self.include, self.pattern, self.regex, self.dir_only = include, pattern, regex, dir_only

    @classmethod
    def parse(cls, include: bool, pattern: str) -> "Rule":
        if not pattern or pattern in ("/", "//"):
            raise FilterError("empty pattern")
        body = pattern
        dir_only = body.endswith("/")
        body = body.rstrip("/") if dir_only else body
        anchored = body.startswith("/")
        body = body.lstrip("/") if anchored else body
        tail = ""
        if body.endswith("/***"):            # dir/*** : the directory and all below it
            body, tail = body[:-4], "(/.*)?"
        # anchored: the whole path; else the end of the path, at a component boundary
        rx = ("^" if anchored else "(^|/)") + _translate(body) + tail + "$"
        return cls(include, pattern, re.compile(rx, re.S), dir_only)

    def matches(self, path: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.search(path) is not None


class Filters:
    """The ordered rules; `included(path, is_dir)` for a path relative to the transfer root."""

    def __init__(self, rules: list[Rule] | None = None):
        self.rules = rules or []
        # "src" without a trailing / is copied as the directory src: its paths are src/... for
        # the rules too, as rsync's transfer root is then src's parent
        self.prefix = ""

    def __bool__(self) -> bool:
        return bool(self.rules)

    def included(self, path: str, is_dir: bool) -> bool:
        path = self.prefix + path
        for rule in self.rules:
            if rule.matches(path, is_dir):
                return rule.include
        return True

    @classmethod
    def from_args(cls, items: list[tuple[str, str]]) -> "Filters":
        """Rules from ("+"|"-"|"from", text) in command-line order; FilterError names the bad one."""
        rules = []
        for kind, text in items:
            if kind == "from":
                rules.extend(read_rules_file(text))
            else:
                try:
                    rules.append(Rule.parse(kind == "+", text))
                except FilterError as exc:
                    raise FilterError("--%s %r: %s" % ("include" if kind == "+" else "exclude", text, exc)) from None
        return cls(rules)


def read_rules_file(path: str) -> list[Rule]:
    """--exclude-from FILE: one exclude pattern a line ("-" reads stdin); blank lines and lines
    starting with ; or # are skipped; "+ PATTERN" includes and "- PATTERN" excludes, as in rsync."""
    import sys
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
    except OSError as exc:
        raise FilterError("--exclude-from %s: %s" % (path, exc.strerror or exc)) from None
    rules = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line[0] in ";#":
            continue
        include = False
        if line.startswith(("+ ", "- ")):
            include, line = line[0] == "+", line[2:]
        try:
            rules.append(Rule.parse(include, line))
        except FilterError as exc:
            raise FilterError("--exclude-from %s line %d: %s" % (path, number, exc)) from None
    return rules
