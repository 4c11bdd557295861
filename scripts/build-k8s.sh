#!/usr/bin/env bash
# Build kube-apiserver, kube-scheduler, kube-controller-manager and kubelet from
# Debian's `kubernetes` source package and cache them under the user's cache
# directory, keyed by the source version and by this recipe (a hash of this
# script): a machine holding a build from an older recipe builds again. A second
# run only prints the path.
#
# Why from source: no container images or release binaries can be fetched here,
# but Debian ships the whole Kubernetes tree with its dependencies vendored.
set -euo pipefail

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/stork-py/kubernetes"
binaries=(kube-apiserver kube-scheduler kube-controller-manager kubelet kubectl)
commands=(cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager cmd/kubelet cmd/kubectl)

log() { echo "build-k8s: $*" >&2; }

ensure_apt_packages() {
  local missing=()
  for p in golang-go rsync jq etcd-server dpkg-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Debian's source entries mirror the binary ones: derive them from the
# machine's own apt configuration rather than naming a mirror here.
ensure_deb_src() {
  local src=/etc/apt/sources.list.d/stork-py-src.sources
  [ -f "$src" ] && return 0
  local base=/etc/apt/sources.list.d/debian.sources
  if [ -f "$base" ]; then
    sed -e 's/^Types: deb$/Types: deb-src/' "$base" >"$src"
  elif [ -f /etc/apt/sources.list ]; then
    grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >/etc/apt/sources.list.d/stork-py-src.list
  else
    log "no apt sources found to derive a deb-src entry from"; return 1
  fi
  apt-get update -qq
}

source_version() {
  apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2; exit}'
}

# The packages the five commands need (standard library included): the progress's total.
count_packages() {
  local n
  n=$( (cd "$1/.go/src/k8s.io/kubernetes" && GOPATH="$1/.go" GO111MODULE=off \
    go list -deps "${commands[@]/#/./}" 2>/dev/null) | wc -l || true)
  echo "${n:-0}"
}

# A bar of packages compiled, with the time left, until the build ends: redrawn in place on a
# terminal, one line per tenth in a log. More packages than counted (code generators are built
# first) stay at 99 % until the build ends.
show_progress() {
  local log=$1 total=$2 pid=$3 start=$SECONDS said=-1 compiled share filled hashes dots left line
  ((total > 0)) || total=1
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    compiled=$(grep -cE '^[A-Za-z0-9._~/-]+$' "$log" 2>/dev/null || true)
    share=$((compiled * 100 / total)); ((share <= 99)) || share=99
    filled=$((share * 30 / 100))
    printf -v hashes '%*s' "$filled" ''; printf -v dots '%*s' "$((30 - filled))" ''
    left=""
    if ((compiled > 0 && share < 99)); then
      left=$(( (SECONDS - start) * (100 - share) / (share > 0 ? share : 1) ))
      left="  about $((left / 60)) min $((left % 60)) s left"
    fi
    line="build-k8s: compiling [${hashes// /#}${dots// /.}] $share % ($compiled of about $total packages)$left"
    if [ -t 2 ]; then
      printf '\r\033[K%s' "$line" >&2
    elif ((share / 10 != said)); then
      said=$((share / 10)); echo "$line" >&2
    fi
  done
  [ -t 2 ] && printf '\r\033[K' >&2
  log "compiled in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
}

main() {
  if [ "${1:-}" = --recipe ]; then recipe; return 0; fi
  ensure_apt_packages
  ensure_deb_src
  local version; version=$(source_version)
  [ -n "$version" ] || { log "apt-cache showsrc kubernetes found nothing"; exit 1; }
  local out; out="$cache_root/$version-$(recipe)"
  if [ -f "$out/.complete" ]; then
    echo "$out/bin"; return 0
  fi
  log "building Kubernetes $version into $out (about 10 minutes on 2 cores)"
  rm -rf "$out"; mkdir -p "$out/src"
  (cd "$out/src" && apt-get source -qq kubernetes >/dev/null 2>&1)
  local tree; tree=$(find "$out/src" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
  patch_reflect2 "$tree"
  patch_zero_value_check "$tree"
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  local total; total=$(count_packages "$tree")
  # -v: go names each package it compiles (cached ones are skipped), which the progress counts.
  (cd "$tree/.go/src/k8s.io/kubernetes" && \
    GOPATH="$tree/.go" CGO_ENABLED=0 GOFLAGS=-v GO111MODULE=off \
    make WHAT="${commands[*]}" >"$out/build.log" 2>&1) &
  local builder=$!
  show_progress "$out/build.log" "$total" "$builder"
  wait "$builder" || { log "build failed; see $out/build.log"; tail -30 "$out/build.log" >&2; exit 1; }
  mkdir -p "$out/bin"
  for b in "${binaries[@]}"; do
    cp "$tree/_output/local/bin/linux/$(go env GOARCH)/$b" "$out/bin/$b"
  done
  rm -rf "$out/src"   # about 1 GB of sources and objects; the binaries are all we keep
  touch "$out/.complete"
  # Builds of older recipes (or versions) are about 500 MB each and never used again.
  find "$cache_root" -mindepth 1 -maxdepth 1 -type d ! -path "$out" -exec rm -rf {} +
  echo "$out/bin"
}

# The recipe's key: localcluster/binaries.py computes the same one to find the build.
recipe() {
  sha256sum "${BASH_SOURCE[0]}" | cut -c1-12
}

# Go 1.19 breaks the vendored reflect2 v1.0.1 (the apiserver segfaults serving
# custom resources); Debian's reflect2 1.0.2 sources fix it.
patch_reflect2() {
  local tree=$1 fixed=/usr/share/gocode/src/github.com/modern-go/reflect2
  if [ ! -d "$fixed" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-github-modern-go-reflect2-dev >/dev/null
  fi
  local vend="$tree/vendor/github.com/modern-go/reflect2"
  find "$vend" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -delete
  find "$fixed" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$vend/" \;
}

# The vendored OpenAPI type validators treat a value as null when
# reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(v)) holds: they compare two
# reflect.Value structs, so pointers. Under the Go 1.15 a released 1.20 was built
# with that is only ever true for nil; Go 1.19 stores "" (and reflect.Zero of a
# small type) at one shared zero address, so "" in a custom resource's string
# field is refused as "null". Checking for nil is what the released binary did.
patch_zero_value_check() {
  local tree=$1 f
  for f in vendor/github.com/go-openapi/validate/type.go vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go; do
    grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$tree/$f" \
      || { log "$f: the zero-value check to patch is not there"; exit 1; }
    sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$tree/$f"
  done
}

main "$@"
