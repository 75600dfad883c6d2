"""Saved jobs (Sqoop's `job`): an import's command line stored by name in a metastore, an
embedded SQLite file by default (0600). Passwords are never stored (neither --password nor
one in the --connect URL): a job keeps --password-file (a reference), -P (prompt at run
time) or relies on FASTSYNC_PASSWORD. An incremental job's --last-value is advanced only
after its output was published."""
from __future__ import annotations

import contextlib
import json
import os
import time

import sqlalchemy as sa

from fastsync.redact import hide_password

DEFAULT_METASTORE = "sqlite:///" + os.path.join(os.path.expanduser("~"), ".fastsync", "metastore.db")

_md = sa.MetaData()
JOBS = sa.Table("fastsync_jobs", _md,
                sa.Column("name", sa.String(200), primary_key=True),
                sa.Column("argv", sa.Text, nullable=False),
                sa.Column("created", sa.Float, nullable=False),
                sa.Column("updated", sa.Float, nullable=False))


class JobError(Exception):
    pass


def _create_sqlite_file(path: str) -> None:
    """The metastore holds positions (--last-value) and the jobs' command lines: an SQLite
    file made here is its owner's only (0600, as are SQLite's journals, which copy its
    mode), in a 0700 directory when that is made too; one made by an older version is
    narrowed to 0600."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", mode=0o700, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        st = os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, 0o600)


def _saved_password(argv: list[str]) -> str | None:
    """The flag of `argv` that carries a password, if one does."""
    for i, a in enumerate(argv):
        if a == "--password" or a.startswith("--password="):
            return "--password"
        if a.startswith("--connect=") or (a != "--connect" and i and argv[i - 1] == "--connect"):
            if hide_password(a) != a:
                return "--connect"
    return None


def refuse_saved_password(name: str, argv: list[str]) -> None:
    """JobError if `argv` carries a password, which a metastore would keep."""
    flag = _saved_password(argv)
    if flag:
        what = "--password" if flag == "--password" else "the password in --connect's URL"
        raise JobError("job --create %s: %s would be stored in the metastore; use --password-file, -P "
                       "or FASTSYNC_PASSWORD" % (name, what))


def with_last_value(argv: list[str], value) -> list[str]:
    """`argv` with its --last-value set to `value` (added if absent)."""
    argv = list(argv)
    if "--last-value" in argv:
        argv[argv.index("--last-value") + 1] = str(value)
    else:
        argv += ["--last-value", str(value)]
    return argv


class Metastore:
    def __init__(self, url: str | None = None):
        url = url or DEFAULT_METASTORE
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            _create_sqlite_file(parsed.database)
        self.engine = sa.create_engine(url)
        _md.create_all(self.engine)

    def create(self, name: str, argv: list[str]) -> None:
        refuse_saved_password(name, argv)
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(JOBS.c.name).where(JOBS.c.name == name)).first():
                raise JobError("job --create %s: a job of that name exists (--delete it first)" % name)
            conn.execute(JOBS.insert().values(name=name, argv=json.dumps(argv), created=now, updated=now))

    def get(self, name: str) -> list[str]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(JOBS.c.argv).where(JOBS.c.name == name)).first()
        if row is None:
            raise JobError("no saved job named %r" % name)
        return json.loads(row[0])

    def names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(JOBS.c.name).order_by(JOBS.c.name))]

    def delete(self, name: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(JOBS.delete().where(JOBS.c.name == name)).rowcount == 0:
                raise JobError("no saved job named %r" % name)

    @contextlib.contextmanager
    def running(self, name: str, wait: bool = False):
        """A run of `name`: nothing to hold here (a zk:// metastore locks the job)."""
        yield

    def check_held(self, name: str) -> None:
        """Before a run publishes: nothing to check without a lock."""

    def close(self) -> None:
        self.engine.dispose()

    def set_last_value(self, name: str, value) -> None:
        argv = with_last_value(self.get(name), value)
        with self.engine.begin() as conn:
            conn.execute(JOBS.update().where(JOBS.c.name == name).values(argv=json.dumps(argv), updated=time.time()))
