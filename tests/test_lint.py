"""The code passes ruff with the rules in pyproject.toml ([tool.ruff]): pyflakes, pycodestyle
errors and warnings, 140 columns. To fix what it reports: `ruff check --fix` for the mechanical
ones (unused imports ...), by hand for the rest."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["fastsync", "tests", "bench", "scripts", "examples"]


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.fail("ruff check %s:\n%s%s" % (" ".join(CHECKED), out.stdout, out.stderr), pytrace=False)
