"""The real Apache Flume 1.11.0 in tests: its jars come from Maven Central through
scripts/flume.sh (cached; scripts/test.sh fetches them before pytest runs), and an agent runs
as `java -cp 'libs/*' org.apache.flume.node.Application -n NAME -f CONF`, on the machine's Java.

    flume_command(name, conf, workdir)   the argv; Flume logs INFO to workdir/flume.log
    the `flume` fixture (tests/conftest.py) starts one as an AgentProcess, killed at teardown
"""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOG4J = """\
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d %p [%t] %c{{1}}: %m%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


@functools.lru_cache(maxsize=None)
def flume_libs() -> str:
    """Flume's jar directory (scripts/flume.sh fetches the jars once, then only prints it)."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "flume.sh")], stdout=subprocess.PIPE, text=True, timeout=900)
    assert r.returncode == 0, "scripts/flume.sh failed (exit %d)" % r.returncode
    return r.stdout.strip().splitlines()[-1]


def flume_command(name: str, conf: Path | str, workdir: Path, *, java_opts: tuple[str, ...] = ("-Xmx512m",),
                  main: str = "org.apache.flume.node.Application", args: tuple[str, ...] | None = None) -> list[str]:
    """argv running Flume's `main` (the agent by default; e.g.
    org.apache.flume.client.avro.AvroCLIClient for `flume-ng avro-client`, with `args`);
    its log4j 2 log goes to workdir/flume.log."""
    workdir = Path(workdir)
    log4j = workdir / "flume-log4j2.properties"
    if not log4j.exists():
        log4j.write_text(LOG4J.format(log=workdir / "flume.log"))
    if args is None:
        args = ("-n", name, "-f", str(conf), "--no-reload-conf")
    return ["java", *java_opts, "-Dlog4j2.configurationFile=" + str(log4j),
            "-cp", os.path.join(flume_libs(), "*"), main, *args]


def flume_log(workdir: Path) -> str:
    p = Path(workdir) / "flume.log"
    return p.read_text(errors="replace") if p.exists() else ""
