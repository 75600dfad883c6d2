"""The documentation site: the generated reference pages (docs/reference/) are what the code says
now, and `mkdocs build --strict` builds the site (every link and anchor resolves)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastsync import docref

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


def _docref(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastsync.docref", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_generated_reference_is_up_to_date():
    r = _docref("--check")
    assert r.returncode == 0, ("the committed reference pages are stale: regenerate them with "
                               "`python -m fastsync.docref` and commit docs/reference/\n" + r.stdout + r.stderr)


def test_check_names_a_stale_page_and_regenerating_fixes_it(tmp_path, capsys):
    assert docref.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in REFERENCE.glob("*.md") if p.name != "index.md")
    sinks = tmp_path / "sinks.md"
    sinks.write_text(sinks.read_text().replace("events per take transaction", "events per take"))
    (tmp_path / "cli.md").unlink()
    capsys.readouterr()
    assert docref.main(["--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "stale: %s (regenerate with python -m fastsync.docref)" % sinks in out
    assert "+| `batchSize` | `100` | events per take transaction; at least 1 |" in out
    assert "stale: %s" % (tmp_path / "cli.md") in out
    assert "channels.md" not in out
    assert docref.main(["--out", str(tmp_path)]) == 0
    assert docref.main(["--check", "--out", str(tmp_path)]) == 0


def test_mkdocs_build_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, "mkdocs build --strict failed:\n" + r.stdout + r.stderr
    assert (tmp_path / "site" / "reference" / "sinks" / "index.html").is_file()
