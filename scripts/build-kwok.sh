#!/usr/bin/env bash
# Builds kwok's controller (sigs.k8s.io/kwok, simulated nodes and pods for
# the scale test and make bench-scale) from its Go module, and writes its
# stages: the node's start and lease heartbeat, the pod's Running, completion
# and deletion, as the module ships them. Nothing is pulled but the module.
#
#   scripts/build-kwok.sh [OUTDIR]      OUTDIR defaults to build/tools
#
# OUTDIR/kwok is the program, OUTDIR/kwok-stages.yaml its --config. A stamp
# (the version and this script's hash) keeps an unchanged build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version of kwok the module proxy serves that builds with this Go.
version=v0.8.0
out=${1:-build/tools}
mkdir -p "$out"
out=$(cd "$out" && pwd)

stamp="$version $(sha256sum scripts/build-kwok.sh | cut -d' ' -f1)"
if [ -x "$out/kwok" ] && [ -f "$out/kwok-stages.yaml" ] && [ "$(cat "$out/kwok.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

# Its own go.mod, not kasa's: kwok is built as its maintainers pin it. The
# download fetches the module's source into the module cache if need be.
src=$(go mod download -json sigs.k8s.io/kwok@"$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "build-kwok: the module's source of sigs.k8s.io/kwok@$version is not in the module cache" >&2; exit 1; }
CGO_ENABLED=0 GOBIN="$out" go install sigs.k8s.io/kwok/cmd/kwok@"$version"

stages=(
	kustomize/stage/node/fast/node-initialize.yaml
	kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
	kustomize/stage/pod/fast/pod-ready.yaml
	kustomize/stage/pod/fast/pod-complete.yaml
	kustomize/stage/pod/fast/pod-delete.yaml
)
{
	echo "# kwok $version's stages (scripts/build-kwok.sh)"
	for s in "${stages[@]}"; do
		echo "---"
		cat "$src/$s"
	done
} > "$out/kwok-stages.yaml.tmp"
mv "$out/kwok-stages.yaml.tmp" "$out/kwok-stages.yaml"
echo "$stamp" > "$out/kwok.stamp"
echo "kwok $version in $out"
