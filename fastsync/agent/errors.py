"""Errors of the agent half, named as Flume names them."""


class ConfigError(Exception):
    """A configuration problem, located: `file:line: key: message`."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, key: str | None = None):
        self.message, self.path, self.line, self.key = message, path, line, key
        where = ""
        if path:
            where = "%s:%s: " % (path, line) if line else "%s: " % path
        if key:
            where += "%s: " % key
        super().__init__(where + message)


class ChannelException(Exception):
    """A channel operation failed; the transaction must be rolled back."""


class ChannelFullException(ChannelException):
    """No room in the channel within keep-alive: back-pressure, nothing was lost."""


class EventDeliveryException(Exception):
    """A sink could not deliver a batch; its take is rolled back and retried."""
