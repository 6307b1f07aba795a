#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the default test suite on both cores.
# Slow tests run too when QJOULE_SLOW=1; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
marker="not slow"
[ "${QJOULE_SLOW:-0}" = "1" ] && marker=""
exec .venv/bin/python -m pytest -n 2 -m "$marker" "$@"
