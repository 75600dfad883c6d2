#!/usr/bin/env bash
# The main jobs on embedded defaults (no server): a seq -> memory -> file_roll agent
# moving 5 million events into out/seq/, then a 1-million-row SQLite table imported to
# Parquet in out/orders/; each prints its rate. One line per phase (venv, build, agent, import).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
phase agent "seq -> memory -> file_roll, 5 million events into out/seq/"
rm -rf out/seq
fastsync agent -n a1 -f examples/seq-file_roll.properties --exit-when-done --log-level WARNING
echo "output: $(ls out/seq | wc -l) file(s), $(cat out/seq/* | wc -l) lines in out/seq/"
phase import "a 1-million-row SQLite table (out/demo.db) to Parquet in out/orders/"
mkdir -p out
python examples/make_sqlite.py out/demo.db 1000000
fastsync import --connect jdbc:sqlite:out/demo.db --table orders -m 2 --target-dir out/orders --delete-target-dir --as-parquetfile
