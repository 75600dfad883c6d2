"""Java .properties parsing that remembers the line each key came from."""
from __future__ import annotations

from dataclasses import dataclass

from fastsync.agent.errors import ConfigError

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


@dataclass(frozen=True)
class Prop:
    value: str
    line: int


def _unescape(s: str, path: str, line: int) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "u":
                code = s[i + 2:i + 6]
                try:
                    out.append(chr(int(code, 16)))
                except ValueError:
                    raise ConfigError("malformed \\u escape %r" % ("\\u" + code), path, line) from None
                i += 6
                continue
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _split_key(s: str) -> tuple[str, str]:
    """Key ends at the first unescaped '=', ':' or whitespace, as java.util.Properties."""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            key, rest = s[:i], s[i:].lstrip(" \t\f")
            if rest[:1] in ("=", ":") and c in " \t\f":
                rest = rest[1:].lstrip(" \t\f")
            elif c in "=:":
                rest = rest[1:].lstrip(" \t\f")
            return key, rest
        i += 1
    return s, ""


def parse_properties(text: str, path: str = "<string>") -> dict[str, Prop]:
    """Parse .properties text; later keys win, as in Java."""
    props: dict[str, Prop] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i + 1
        raw = lines[i].lstrip(" \t\f")
        i += 1
        if not raw or raw[0] in "#!":
            continue
        # continuation: an odd number of trailing backslashes
        while (len(raw) - len(raw.rstrip("\\"))) % 2 == 1 and i < len(lines):
            raw = raw[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        key, value = _split_key(raw)
        props[_unescape(key, path, start)] = Prop(_unescape(value, path, start), start)
    return props
