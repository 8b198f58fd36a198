#!/usr/bin/env bash
# Agno (and the OpenAI Python SDK under it) beside cfgate, in one table.
#
#   bash bench/compare/run.sh            # full: compare.py, then `cargo bench --bench bench`
#   bash bench/compare/run.sh --quick    # a few iterations of each
#
# Needs python3 with venv, and PyPI: agno and openai are installed into a virtualenv under
# target/ (VENV=... to put it elsewhere). Everything talks to 127.0.0.1 only. Writes
# target/agno.json (Agno's rows) and target/bench.json (the whole table).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-target/compare-venv}"
quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade agno openai

cargo build --release --workspace --bins
"$VENV/bin/python" bench/compare/compare.py --fake target/release/fake-gateway \
  --out target/agno.json "${quick[@]}"
cargo bench --bench bench -- --agno target/agno.json --json target/bench.json "${quick[@]}"
