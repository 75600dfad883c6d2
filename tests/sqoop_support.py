"""The real Apache Sqoop 1.4.7 in tests: its jars (the hadoop260 build, Hadoop 2.6.5's client,
the PostgreSQL driver and MySQL Connector/J 5.1, which Sqoop's MySQLManager loads for
jdbc:mysql:// and which talks to MariaDB) come from Maven Central through scripts/sqoop.sh
(cached; scripts/test.sh fetches them before pytest runs). Sqoop runs in Hadoop's local mode
(`-fs file:/// -jt local`) on the machine's Java 17, everything it writes besides the target
under a work directory:

    jdbc(url)                         'postgresql://u:p@h:port/db' -> ('jdbc:postgresql://h:port/db', 'u', 'p')
    sqoop_command(tool, args, workdir)  the argv; Sqoop's log4j log goes to workdir/sqoop.log
    run_sqoop(tool, *args, workdir=, tz=)  runs it, asserts exit 0 (with the log's tail), returns it

A JVM start plus Sqoop's codegen (it writes and compiles a class per table) costs ~15-25 s: let
one run serve several comparisons (import-all-tables, or a --query over several rows).
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent

# Hadoop 2.6 on Java 17: it installs a SecurityManager and reflects into java.base
JAVA_OPTS = (
    "-Xmx512m", "-XX:TieredStopAtLevel=1", "-Djava.security.manager=allow",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED", "--add-opens", "java.base/java.net=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED", "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED", "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
)

LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=%d %p [%t] %c{{1}}: %m%n
"""


@functools.lru_cache(maxsize=None)
def sqoop_libs() -> str:
    """Sqoop's jar directory (scripts/sqoop.sh fetches the jars once, then only prints it)."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "sqoop.sh")], stdout=subprocess.PIPE, text=True, timeout=900)
    assert r.returncode == 0, "scripts/sqoop.sh failed (exit %d)" % r.returncode
    return r.stdout.strip().splitlines()[-1]


def jdbc(url: str) -> tuple[str, str, str]:
    """A fastsync-style postgresql:// or mysql:// URL as Sqoop's (--connect, --username, --password)."""
    u = urlsplit(url)
    scheme = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql", "mariadb": "mysql"}[u.scheme]
    host = u.hostname or "127.0.0.1"
    port = ":%d" % u.port if u.port else ""
    return ("jdbc:%s://%s%s%s" % (scheme, host, port, u.path), unquote(u.username or ""), unquote(u.password or ""))


def sqoop_command(tool: str, args: list[str] | tuple[str, ...], workdir: Path, *,
                  java_opts: tuple[str, ...] = JAVA_OPTS) -> list[str]:
    """argv running `sqoop TOOL ARGS` in local mode; Hadoop's temporary and staging files, the
    generated code and classes go under workdir, the log4j log to workdir/sqoop.log."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log4j = workdir / "sqoop-log4j.properties"
    if not log4j.exists():
        log4j.write_text(LOG4J.format(log=workdir / "sqoop.log"))
    hadoop_tmp = workdir / "hadoop-tmp"
    # generic options first (Hadoop's GenericOptionsParser reads them right after the tool name)
    generic = ["-fs", "file:///", "-jt", "local", "-D", "hadoop.tmp.dir=%s" % hadoop_tmp,
               "-D", "mapreduce.jobtracker.staging.root.dir=%s" % (hadoop_tmp / "staging")]
    # the generated .java and .class/.jar files (Sqoop's codegen flags) in workdir, not in cwd and /tmp
    codegen = ["--outdir", str(workdir / "gen"), "--bindir", str(workdir / "bin")] if tool in (
        "import", "export", "import-all-tables", "codegen") and "--jar-file" not in args else []
    return ["java", *java_opts, "-Dlog4j.configuration=file:" + str(log4j), "-Djava.io.tmpdir=" + str(workdir),
            "-Dhadoop.tmp.dir=" + str(hadoop_tmp), "-cp", os.path.join(sqoop_libs(), "*"),
            "org.apache.sqoop.Sqoop", tool, *generic, *args, *codegen]


def sqoop_log(workdir: Path) -> str:
    p = Path(workdir) / "sqoop.log"
    return p.read_text(errors="replace") if p.exists() else ""


def run_sqoop(tool: str, *args: str, workdir: Path, tz: str | None = None, check: bool = True,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `sqoop TOOL ARGS` (local mode) in workdir; tz sets the JVM's time zone (TZ), which is
    how Sqoop renders timestamptz. check: assert exit 0, showing the output and the log's tail."""
    env = dict(os.environ)
    if tz is not None:
        env["TZ"] = tz
    r = subprocess.run(sqoop_command(tool, list(args), workdir), cwd=workdir, env=env, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, "sqoop %s failed (exit %d):\n%s\n%s\n--- log tail ---\n%s" % (
            tool, r.returncode, r.stdout[-2000:], r.stderr[-4000:], sqoop_log(workdir)[-4000:])
    return r
