"""The README is the project's front door: short, every link inside the repository and to a
file that exists, and its three examples run as written."""
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# [text](target) and [text](<target> "title"), images included; reference definitions "[x]: target"
INLINE = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def link_problems(markdown: str, base: Path, root: Path) -> list[str]:
    """Every link of `markdown` (a file in `base`) that leaves `root` or names no file."""
    problems = []
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)  # code blocks hold no links
    targets = INLINE.findall(text) + REFERENCE.findall(text) + AUTOLINK.findall(text)
    for target in targets:
        if SCHEME.match(target):
            problems.append(f"{target}: a link outside the repository")
            continue
        path = target.split("#", 1)[0]
        if not path:
            continue  # an anchor in the same file
        resolved = (base / path).resolve()
        if resolved != root and root not in resolved.parents:
            problems.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
    return problems


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; it is a front door: move details to docs/"


def test_readme_links_stay_in_the_repository_and_exist():
    assert link_problems(README.read_text(encoding="utf-8"), ROOT, ROOT) == []


def test_link_checker_catches_bad_links(tmp_path):
    (tmp_path / "here.md").write_text("x")
    md = ("[ok](here.md#a) [anchor](#top) [up](../shared/DESIGN.md) [web](https://example.com/x)\n"
          "[gone](docs/nothing.md) <https://example.org>\n[ref]: ../outside.md\n"
          "```\n[in code](../ignored.md)\n```\n")
    assert link_problems(md, tmp_path, tmp_path) == [
        "../shared/DESIGN.md: leaves the repository",
        "https://example.com/x: a link outside the repository",
        "docs/nothing.md: no such file",
        "../outside.md: leaves the repository",
        "https://example.org: a link outside the repository",
    ]


def example_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Three examples", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.slow  # five fastsync processes and a split pool: 5 - 15 s on the shared 2 cores
def test_readme_examples_run_as_written(tmp_path):
    """The agent, import and export blocks, run verbatim by bash in a copy of examples/, with
    `fastsync` on PATH as after `source .venv/bin/activate`."""
    blocks = example_blocks()
    assert len(blocks) == 3
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, target in (("fastsync", f'"{sys.executable}" -m fastsync'), ("python", f'"{sys.executable}"')):
        shim = bindir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    outputs = []
    for block in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{block}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        outputs.append(done.stdout)
    out = tmp_path / "out"
    assert "agent a1: 5000000 events delivered" in outputs[0]
    assert sum(f.read_bytes().count(b"\n") for f in (out / "seq").iterdir()) == 5_000_000
    assert "imported 10000 rows from orders" in outputs[1]
    assert pq.read_table(out / "orders").num_rows == 10_000
    assert "exported 10000 rows" in outputs[2]
    with sqlite3.connect(out / "shop.db") as db:
        copied = db.execute("SELECT count(*), sum(amount) FROM orders_copy").fetchone()
        original = db.execute("SELECT count(*), sum(amount) FROM orders").fetchone()
    assert copied == original and original[0] == 10_000


def test_other_top_level_pages_link_inside_the_repository():
    for page in ("SECURITY.md", "bench/README.md"):
        path = ROOT / page
        assert link_problems(path.read_text(encoding="utf-8"), path.parent, ROOT) == [], page


def test_the_docs_plots_are_the_benchmark_results():
    """docs/ can show only files under docs/: its copies of the peers plots stay current."""
    results = ROOT / "bench" / "peers" / "results"
    copies = ROOT / "docs" / "assets" / "benchmarks"
    plots = sorted(p.name for p in results.glob("*.png"))
    assert plots and plots == sorted(p.name for p in copies.glob("*.png"))
    for name in plots:
        assert (copies / name).read_bytes() == (results / name).read_bytes(), (
            f"docs/assets/benchmarks/{name} differs from bench/peers/results/{name}: copy it again")
