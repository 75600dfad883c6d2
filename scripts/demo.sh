#!/usr/bin/env bash
# The main jobs on embedded defaults (no server): a seq -> memory -> file_roll agent
# moving 5 million events into out/seq/, then a 1-million-row SQLite table imported to
# Parquet in out/orders/; each prints its rate.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
rm -rf out/seq
fastsync agent -n a1 -f examples/seq-file_roll.properties --exit-when-done --log-level WARNING
echo "output: $(ls out/seq | wc -l) file(s), $(cat out/seq/* | wc -l) lines in out/seq/"
mkdir -p out
python examples/make_sqlite.py out/demo.db 1000000
fastsync import --connect jdbc:sqlite:out/demo.db --table orders -m 2 --target-dir out/orders --delete-target-dir
