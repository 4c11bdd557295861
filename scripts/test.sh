#!/usr/bin/env bash
# The project's test command: lint, then every test suite tox knows.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/tox "$@"
