#!/usr/bin/env bash
# Fuzz the real ASGI app with atheris (libFuzzer) for N seconds (default 60).
#
#   bash fuzz/run.sh            # 60 s
#   bash fuzz/run.sh 600        # 10 min
#   bash fuzz/run.sh 60 -jobs=2 -workers=2   # extra arguments go to libFuzzer
#
# Installs atheris into .venv on first use. The corpus grows in fuzz/corpus/ (kept between
# runs, git-ignored); a finding is written to fuzz/artifacts/ and the script exits non-zero.
# Replay one with: .venv/bin/python fuzz/fuzz_asgi.py fuzz/artifacts/crash-<hash>
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet -e '.[dev]'
fi
if ! .venv/bin/python -c 'import atheris' 2>/dev/null; then
    .venv/bin/pip install --quiet atheris
fi

mkdir -p fuzz/corpus fuzz/artifacts
exec .venv/bin/python fuzz/fuzz_asgi.py \
    -max_total_time="$seconds" \
    -artifact_prefix=fuzz/artifacts/ \
    -print_final_stats=1 \
    "$@" \
    fuzz/corpus
