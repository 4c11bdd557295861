#!/usr/bin/env bash
# The stork-py image without a container engine: a Debian root from Debian's packages
# (mmdebstrap), the project's wheels installed into it, written as an OCI archive.
# Needs root (mmdebstrap --mode=root) and scripts/setup.sh's .venv. The last line printed
# is the archive's path: load it with `ctr -n k8s.io images import PATH`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh >/dev/null
exec .venv/bin/python -m localcluster.storkimage "$@"
