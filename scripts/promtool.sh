#!/usr/bin/env bash
# Debian's promtool (and prometheus), taken out of the `prometheus` package without
# installing it (installing would start a Prometheus service), cached under the user's cache
# directory by package version. Prints the folder holding the two binaries.
set -euo pipefail

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/stork-py/prometheus"
version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq
  version=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2; exit}')
fi
out="$cache_root/$version"
if [ ! -x "$out/bin/promtool" ]; then
  work=$(mktemp -d)
  chmod 755 "$work"  # apt fetches as its own user
  (cd "$work" && apt-get download -qq "prometheus=$version" >/dev/null)
  dpkg -x "$work"/prometheus_*.deb "$work/root"
  mkdir -p "$out/bin"
  cp "$work/root/usr/bin/promtool" "$work/root/usr/bin/prometheus" "$out/bin/"
  rm -rf "$work"
fi
echo "$out/bin"
