"""Errors of the agent half, named as Flume names them."""
import re
from typing import Any

MAX_KEY = 200        # characters of a key kept in an error
MAX_MESSAGE = 400    # characters of a message kept in an error (it quotes values, lists names)
# characters that would break the one-line error (str.splitlines() splits at all of these) or
# garble a terminal
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def readable(text: str, limit: int) -> str:
    """text on one line, control characters escaped, and at most about `limit` characters: a
    10 MB value quoted in an error is cut in the middle, its start and end kept."""
    if len(text) > limit:
        head = limit * 3 // 4
        tail = limit - head
        text = "%s...[%d characters]...%s" % (text[:head], len(text) - head - tail, text[-tail:])
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class ConfigError(Exception):
    """A configuration problem, located: `file:line: key: message`, on one line of readable
    length whatever the values it quotes."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, key: str | None = None):
        self.message, self.path, self.line, self.key = message, path, line, key
        where = ""
        if path:
            where = "%s:%s: " % (path, line) if line else "%s: " % path
        if key:
            where += "%s: " % readable(key, MAX_KEY)
        super().__init__(where + readable(message, MAX_MESSAGE))


class ChannelException(Exception):
    """A channel operation failed; the transaction must be rolled back."""

    committed: Any      # set by a put of several transactions that failed part way: what went in before


class ChannelFullException(ChannelException):
    """No room in the channel within keep-alive: back-pressure, nothing was lost."""


class EventDeliveryException(Exception):
    """A sink could not deliver a batch; its take is rolled back and retried."""


class UnknownKey:
    """A key the agent does not use, found while reading a configuration: by default a
    warning (Flume ignores such keys), with --strict an error. `suggestion` is the known key
    it is probably a misspelling of."""

    def __init__(self, path: str, line: int | None, key: str, suggestion: str | None = None, what: str = "unknown key"):
        self.path, self.line, self.key, self.suggestion, self.what = path, line, key, suggestion, what

    def hint(self) -> str:
        return " — did you mean `%s`?" % self.suggestion if self.suggestion else ""

    def warning(self) -> str:
        return str(ConfigError("%s, ignored%s" % (self.what, self.hint()), self.path, self.line, self.key))

    def error(self) -> ConfigError:
        return ConfigError(self.what + self.hint(), self.path, self.line, self.key)


class UnknownKeysError(ConfigError):
    """--strict: the configuration has keys the agent would ignore; `problems` holds one
    located ConfigError per key."""

    def __init__(self, unknown: list[UnknownKey]):
        self.problems = [u.error() for u in unknown]
        super().__init__("; ".join(p.args[0] for p in self.problems))
