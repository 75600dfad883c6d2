"""Java .properties parsing that remembers the line each key came from."""
from __future__ import annotations

import re
from dataclasses import dataclass

from fastsync.agent.errors import ConfigError

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_ESCAPE = re.compile(r"\\(?:u(?P<hex>.{0,4})|(?P<c>.))", re.S)
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
# the key ends at the first '=', ':' or whitespace that is not escaped
_KEY = re.compile(r"(?:[^\\=: \t\f]|\\.|\\$)*", re.S)
_SEPARATOR = re.compile(r"[ \t\f]*[=:]?[ \t\f]*")
# Java's line terminators only (str.splitlines would also split at \x1c, \x85, \u2028, ...)
_LINES = re.compile(r"\r\n|[\r\n]")


@dataclass(frozen=True)
class Prop:
    value: str
    line: int


def _unescape(s: str, path: str, line: int) -> str:
    if "\\" not in s:
        return s

    def one(m: re.Match) -> str:
        code = m.group("hex")
        if code is None:
            return _ESCAPES.get(m.group("c"), m.group("c"))
        if not _HEX4.fullmatch(code):
            raise ConfigError("malformed \\u escape %r: expected 4 hex digits" % ("\\u" + code), path, line)
        return chr(int(code, 16))

    out = _ESCAPE.sub(one, s)
    if "\\u" in s:
        # \uD83D\uDE00 is one character, as in Java's UTF-16 strings; a lone half is an error
        try:
            out = out.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise ConfigError("\\u escape of half a surrogate pair", path, line) from None
    return out


def _split_key(s: str) -> tuple[str, str]:
    """Key ends at the first unescaped '=', ':' or whitespace, as java.util.Properties; the
    value starts after whitespace, one '=' or ':', and whitespace."""
    key = _KEY.match(s)
    assert key is not None          # both patterns match the empty string
    sep = _SEPARATOR.match(s, key.end())
    assert sep is not None
    return s[:key.end()], s[sep.end():]


def parse_properties(text: str, path: str = "<string>") -> dict[str, Prop]:
    """Parse .properties text; later keys win, as in Java."""
    props: dict[str, Prop] = {}
    lines = _LINES.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        start = i + 1
        raw = lines[i].lstrip(" \t\f")
        i += 1
        if not raw or raw[0] in "#!":
            continue
        # continuation: an odd number of trailing backslashes (parts joined once: a value of
        # many continued lines is not copied once per line)
        parts = []
        while (len(raw) - len(raw.rstrip("\\"))) % 2 == 1 and i < len(lines):
            parts.append(raw[:-1])
            raw = lines[i].lstrip(" \t\f")
            i += 1
        if parts:
            parts.append(raw)
            raw = "".join(parts)
        key, value = _split_key(raw)
        props[_unescape(key, path, start)] = Prop(_unescape(value, path, start), start)
    return props
