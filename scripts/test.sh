#!/usr/bin/env bash
# Run the whole test suite (sets up first when needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
