"""Passwords out of what others can read: process titles, error messages, logs, saved jobs.
Imports nothing heavy, so the process title is masked as the CLI starts."""
from __future__ import annotations

import re

# a URL's user:password@ (up to the last @ before a blank, so an unencoded @ in the password
# is hidden too), and password=... as a JDBC property, query parameter or client setting
# (sasl.password=, ssl.key.password=), and token=... (the flight hop's auth.token=)
_USERINFO = re.compile(r"((?:[A-Za-z][\w+.-]*:)+/*[^:/@\s]*:)\S*@")
_PASSWORD_PARAM = re.compile(r"((?i:[\w.-]*(?:password|token))\s*=\s*)[^&;\s]*")


def hide_password(text: str) -> str:
    """`text` (a URL, an argument, a message) with every password in it replaced by ***."""
    return _USERINFO.sub(r"\1***@", _PASSWORD_PARAM.sub(r"\1***", text))


def masked_argv(argv: list[str]) -> list[str]:
    """argv with every password as ***: the value of --password and any password inside an
    argument (a --connect URL's user:password@, password=... parameters)."""
    masked, hide = [], False
    for a in argv:
        masked.append("***" if hide else hide_password(a))
        hide = not hide and a == "--password"
    return masked


def create_private(path: str) -> int:
    """A new file at `path`, replacing any left there, readable by its owner only (0600)
    from its creation: for files holding credentials or read positions. Returns the fd,
    open for writing."""
    import os
    try:
        os.unlink(path)        # a stale one keeps its old mode through O_TRUNC
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
