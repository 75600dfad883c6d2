"""Connections: Sqoop's --connect (a SQLAlchemy URL, or a JDBC URL translated) and its
password options. A password never appears in an error, a log line or a saved job."""
from __future__ import annotations

import getpass
import logging
import os
import re
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from fastsync.redact import hide_password

log = logging.getLogger("fastsync.connect")

# JDBC scheme -> SQLAlchemy dialect+driver
_JDBC = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
# plain SQLAlchemy schemes without a driver get the one we install
_DEFAULT_DRIVER = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                   "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}


class ConnectError(ValueError):
    """A bad --connect or password option; the message names the flag."""


def _error(flag: str | None, message: str) -> ConnectError:
    return ConnectError("%s: %s" % (flag, message) if flag else message)


def translate_url(connect: str, flag: str | None = "--connect") -> URL:
    """--connect as a SQLAlchemy URL: jdbc:postgresql://h:p/db, jdbc:mysql://…,
    jdbc:mariadb://…, jdbc:sqlite:path, or any SQLAlchemy URL. Errors and warnings name
    `flag` (None: the caller names the setting itself)."""
    text = connect.strip()
    if text.startswith("jdbc:"):
        rest = text[5:]
        if rest.startswith("sqlite:"):
            path = rest[len("sqlite:"):]
            return make_url("sqlite:///" + path if not path.startswith("/") else "sqlite:///" + path)
        m = re.match(r"^(\w+)://([^/?;]*)(/[^?;]*)?(?:[?;](.*))?$", rest)
        if not m or m.group(1) not in _JDBC:
            raise _error(flag, "unsupported JDBC URL %r (supported: jdbc:postgresql://, jdbc:mysql://, "
                               "jdbc:mariadb://, jdbc:sqlite:)" % hide_password(text))
        scheme, hostport, path, params = m.groups()
        userinfo, _, hostport = hostport.rpartition("@")     # Connector/J's user:password@host
        host, _, port = hostport.partition(":")
        if port and not port.isdigit():
            raise _error(flag, "%r: the port is not a number" % hide_password(text))
        query = {}
        for part in re.split(r"[&;]", params or ""):
            k, sep, v = part.partition("=")
            if sep and k not in ("user", "password"):
                query[k] = v
        user, _, pw = userinfo.partition(":")
        user, pw = unquote(user) or None, unquote(pw) or None
        for part in re.split(r"[&;]", params or ""):
            k, _, v = part.partition("=")
            if k == "user":
                user = v
            elif k == "password":
                pw = v
        if query:
            # JDBC driver properties (useSSL, serverTimezone, ...) mean nothing to the Python drivers
            log.warning("%s: JDBC properties ignored: %s", flag or "JDBC URL", ", ".join(sorted(query)))
        return URL.create(_JDBC[scheme], username=user, password=pw, host=host or None,
                          port=int(port) if port else None, database=(path or "/")[1:] or None)
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):      # ValueError: a port that is not a number
        raise _error(flag, "not a database URL: %r" % hide_password(text)) from None
    if url.drivername in _DEFAULT_DRIVER:
        url = url.set(drivername=_DEFAULT_DRIVER[url.drivername])
    if url.host and "@" in url.host:
        # the password held an @: the rest of it would be taken for the host (and shown)
        raise _error(flag, "%r: write an @ in the user or password as %%40" % hide_password(text))
    try:
        url.get_dialect()
    except ArgumentError:                    # NoSuchModuleError: no such database type
        raise _error(flag, "unknown database type %r in %r" % (url.drivername, hide_password(text))) from None
    return url


def resolve_password(password: str | None, password_file: str | None, prompt: bool) -> str | None:
    """Sqoop's order: --password, --password-file, -P, then FASTSYNC_PASSWORD."""
    if password is not None:
        return password
    if password_file:
        try:
            return read_password_file(password_file)
        except OSError as exc:
            raise ConnectError("--password-file %s: %s" % (password_file, exc.strerror)) from None
    if prompt:
        return getpass.getpass("Enter password: ")
    return os.environ.get("FASTSYNC_PASSWORD")


def read_password_file(path: str) -> str:
    """The password in a file (Sqoop's --password-file): its text less the final newline."""
    with open(os.path.expanduser(path), "r", encoding="utf-8") as f:
        return f.read().rstrip("\r\n")


def build_url(connect: str, username: str | None = None, password: str | None = None,
              flag: str | None = "--connect") -> URL:
    url = translate_url(connect, flag)
    if url.get_backend_name() == "sqlite":
        return url          # a file: no user, no password
    if username is not None:
        url = url.set(username=username)
    if password is not None:
        url = url.set(password=password)
    return url
