#!/usr/bin/env bash
# The main job on embedded defaults (no server): a seq -> memory -> file_roll agent
# moving 5 million events into out/seq/, then its events/s.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
rm -rf out/seq
fastsync agent -n a1 -f examples/seq-file_roll.properties --exit-when-done --log-level WARNING
echo "output: $(ls out/seq | wc -l) file(s), $(cat out/seq/* | wc -l) lines in out/seq/"
