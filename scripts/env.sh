#!/usr/bin/env bash
# Creates .venv (once) and installs fastsync into it, compiling the native extensions.
# Sourced by demo.sh and test.sh; needs only python3 (3.10+) and a C compiler.
# Prints one line per phase (venv, build) on stderr. The build (pip install -e .[test], ~50 s)
# is skipped when .venv/build.stamp holds the hash of what it depends on (ext/, setup.py,
# pyproject.toml, the Python version) and every ext/fastsync/*.pyx has its compiled module;
# FASTSYNC_REBUILD=1 forces it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
phase() { echo "[$1] ${*:2}" >&2; }

if [ ! -x .venv/bin/python ]; then
    phase venv "creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
else
    phase venv ".venv in place ($(.venv/bin/python --version 2>&1))"
fi
# shellcheck disable=SC1091
. .venv/bin/activate

# what the build depends on: sources only (ext/ also holds Cython's generated .c and .html)
build_hash() {
    { python -VV
      find ext -type f ! -name '*.c' ! -name '*.html' -print0 | sort -z | xargs -0 sha256sum
      sha256sum setup.py pyproject.toml
    } | sha256sum | cut -d' ' -f1
}
native_built() {  # every ext/fastsync/_x.pyx has its fastsync/_x.*.so
    local pyx name
    for pyx in ext/fastsync/*.pyx; do
        name="$(basename "$pyx" .pyx)"
        compgen -G "fastsync/$name.*.so" >/dev/null || return 1
    done
}

want="$(build_hash)"
if [ -z "${FASTSYNC_REBUILD:-}" ] && [ "$(cat .venv/build.stamp 2>/dev/null)" = "$want" ] && native_built; then
    phase build "skipped: ext/, setup.py and pyproject.toml unchanged since the last build (FASTSYNC_REBUILD=1 forces it)"
else
    phase build "installing fastsync and its test dependencies, compiling ext/ (log: .venv/install.log)"
    start=$SECONDS
    rm -f .venv/build.stamp
    # editable: the compiled modules land beside the sources, so tests and scripts see one build;
    # the build's chatter goes to a log that is shown only if the install fails
    if ! pip install -q --disable-pip-version-check -e ".[test]" > .venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "scripts/env.sh: installing fastsync failed (log above, also in .venv/install.log)" >&2
        exit 1
    fi
    echo "$want" > .venv/build.stamp
    phase build "done in $((SECONDS - start)) s"
fi
python -c "import fastsync" # fails with a clear message if the native build is missing
