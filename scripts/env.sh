#!/usr/bin/env bash
# Creates .venv (once) and installs fastsync into it, compiling the native extensions.
# Sourced by demo.sh and test.sh; needs only python3 (3.10+) and a C compiler.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
# shellcheck disable=SC1091
. .venv/bin/activate
# editable: the compiled modules land beside the sources, so tests and scripts see one build;
# the build's chatter goes to a log that is shown only if the install fails
if ! pip install -q --disable-pip-version-check -e ".[test]" > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "scripts/env.sh: installing fastsync failed (log above, also in .venv/install.log)" >&2
    exit 1
fi
python -c "import fastsync" # fails with a clear message if the native build is missing
