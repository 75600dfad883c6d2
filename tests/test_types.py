"""mypy finds no type errors in the modules pyproject.toml lists ([tool.mypy] files): the ones a
user or a component's author imports (event, component, config, properties, errors, the channel
base, splits) and the native modules' stubs. The cache is kept in pytest's cache directory, so a
second run takes a second or two."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_nothing(pytestconfig):
    cache = pytestconfig.cache.mkdir("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail("mypy (the files of [tool.mypy] in pyproject.toml):\n" + out.stdout + out.stderr, pytrace=False)


# a user's mistakes mypy must find in a program using the builder's hints
WRONG_PROGRAM = '''\
from fastsync import Agent

a = Agent("a1").source("r1", "seq", channels=3)
n: int = a.to_properties()
'''


def test_mypy_checks_every_example_program(pytestconfig, tmp_path):
    """Every examples/python/*.py (small user programs of the Python API) type-checks, with
    fastsync's hints and stubs; and a wrong program beside them is caught, so the hints are
    really read, through `from fastsync import ...` (fastsync/__init__.py shows type checkers
    its lazy names)."""
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples" / "python").glob("*.py"))
    assert examples, "no examples/python/*.py"
    wrong = tmp_path / "wrong_user_program.py"
    wrong.write_text(WRONG_PROGRAM)
    cache = pytestconfig.cache.mkdir("mypy")
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary", *examples, str(wrong)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    # by file name: mypy's cache may name the wrong program by the path of an earlier run's
    def is_wrong(line: str) -> bool:
        return os.path.basename(line.split(":")[0]) == wrong.name
    theirs = [line for line in errors if not is_wrong(line)]
    if theirs or out.stderr.strip():
        pytest.fail("mypy over examples/python:\n" + "\n".join(theirs) + out.stderr, pytrace=False)
    caught = {int(line.split(":")[1]) for line in errors if is_wrong(line)}
    assert caught == {3, 4}, out.stdout
