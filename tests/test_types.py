"""mypy finds no type errors in the modules pyproject.toml lists ([tool.mypy] files): the ones a
user or a component's author imports (event, component, config, properties, errors, the channel
base, splits) and the native modules' stubs. The cache is kept in pytest's cache directory, so a
second run takes a second or two."""
from __future__ import annotations

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
