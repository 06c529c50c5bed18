#!/usr/bin/env bash
# Builds what kasa bundles (airgap/README.md) into build/bundle/ and packs it
# into build/bundle.bin, the payload that the Makefile appends to bin/kasa.
# Everything is built from source; a part already built at its version is kept.
#
#   scripts/build-bundle.sh             build what changed, pack build/bundle.bin
#   scripts/build-bundle.sh --sources   only fetch the module sources that the
#                                       build reads as files, and print their
#                                       folders (scripts/check-fresh.sh runs it
#                                       against an empty module cache)
set -euo pipefail
cd "$(dirname "$0")/.."
. airgap/versions.env
out=build/bundle

# moddir MODULE[@VERSION]: the folder of a module's source, downloaded first
# when the module cache does not hold it (a fresh machine's is empty, and
# `go list -m -f {{.Dir}}` then prints nothing).
moddir() {
	local dir
	dir=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "build-bundle: go mod download $1 gave no source folder" >&2
		return 1
	fi
	echo "$dir"
}

# The files that the build reads from module sources, rather than letting
# `go install` or `go build` fetch the module: pause.c, and Traefik's tree.
pause_source() {
	echo "$(moddir k8s.io/kubernetes)/build/pause/linux/pause.c"
}
traefik_source() {
	# Asked outside this module: Traefik's version, not the one go.mod would pick.
	local d
	d=$(mktemp -d)
	(cd "$d" && GOFLAGS=-mod=mod moddir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")
	rmdir "$d"
}

case "${1:-}" in
--sources)
	pause_source
	traefik_source
	exit 0
	;;
"") ;;
*)
	echo "usage: scripts/build-bundle.sh [--sources]" >&2
	exit 2
	;;
esac
mkdir -p "$out/bin" "$out/images" build/stamps

# The system images' layers are compressed by the zstd program (mkimage -oci).
if ! command -v zstd >/dev/null; then
	echo "the system images need zstd to build: sudo scripts/install-deps.sh" >&2
	exit 1
fi

# runc needs cgo and a static libseccomp.
if ! pkg-config --exists libseccomp 2>/dev/null || [ ! -e /usr/lib/x86_64-linux-gnu/libseccomp.a ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "installing libseccomp-dev (to build runc)"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev >/dev/null
	else
		echo "runc needs libseccomp-dev to build: sudo apt-get install libseccomp-dev" >&2
		exit 1
	fi
fi

# build NAME VERSION CMD...: runs CMD unless the stamp says NAME is at VERSION.
build() {
	local name=$1 version=$2
	shift 2
	local stamp=build/stamps/$name
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
		return
	fi
	echo "building $name $version"
	"$@"
	echo "$version" >"$stamp"
}

gobin="$PWD/$out/bin"
build runc "$RUNC_VERSION" env CGO_ENABLED=1 GOBIN="$gobin" go install \
	-tags "seccomp urfave_cli_no_docs netgo osusergo" \
	-ldflags "-s -w -X main.version=${RUNC_VERSION#v} -linkmode external -extldflags -static" \
	"github.com/opencontainers/runc@$RUNC_VERSION"
build cni "$CNI_PLUGINS_VERSION" env CGO_ENABLED=0 GOBIN="$gobin" go install -ldflags "-s -w" \
	"github.com/containernetworking/plugins/plugins/main/bridge@$CNI_PLUGINS_VERSION" \
	"github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION" \
	"github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION" \
	"github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_PLUGINS_VERSION"
# kasa's own CNI plugin, a small program of its own (cmd/kasa-hold says
# why); its stamp is the hash of the packages it is built from.
hold_sum=$(go list -deps -f '{{if not .Standard}}{{range .GoFiles}}{{$.Dir}}/{{.}} {{end}}{{end}}' ./cmd/kasa-hold |
	xargs cat go.sum | sha256sum | cut -d' ' -f1)
build kasa-hold "$hold_sum" env CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$gobin/kasa-hold" ./cmd/kasa-hold
# containerd runs as kasa's child from its own, much smaller binary: every
# process of the 200 MB kasa binary maps most of it (docs/benchmarks.md).
build containerd "$CONTAINERD_VERSION" env CGO_ENABLED=0 GOBIN="$gobin" go install \
	-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=release" \
	-tags "no_btrfs no_zfs no_devmapper no_aufs" \
	"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
	"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
build crictl "$CRICTL_VERSION" env CGO_ENABLED=0 GOBIN="$gobin" go install \
	-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
	"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"

# mkimage: the system images are OCI archives of one layer each, compressed
# by zstd -19 (airgap/internal/ocitar says why). IMAGE_FORMAT goes into each
# image's stamp, so that a change of format builds the images again.
IMAGE_FORMAT=oci-zstd19
mkimage() {
	go run ./airgap/mkimage -oci -level 19 -arch "$(go env GOARCH)" "$@"
}

# The pause image, from the C source that registry.k8s.io/pause is built from.
build_pause() {
	local src tmp
	src=$(pause_source)
	tmp=$(mktemp -d)
	gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-kasa" -o "$tmp/pause" "$src"
	strip "$tmp/pause"
	mkimage -o "$out/images/pause.tar" -ref "kasa.local/pause:$PAUSE_VERSION" \
		-entrypoint /pause "$tmp/pause=/pause"
	rm -rf "$tmp"
}
build pause-image "$PAUSE_VERSION-$IMAGE_FORMAT" build_pause

build_coredns() {
	local tmp
	tmp=$(mktemp -d)
	CGO_ENABLED=0 GOBIN="$tmp" go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
	mkimage -o "$out/images/coredns.tar" -ref "kasa.local/coredns:${COREDNS_VERSION#v}" \
		-user 65532 -entrypoint /coredns "$tmp/coredns=/coredns"
	rm -rf "$tmp"
}
build coredns-image "$COREDNS_VERSION-$IMAGE_FORMAT" build_coredns

# Traefik's go.mod has replace directives, which go install refuses: build it
# as the main module from a copy of its published module source.
build_traefik() {
	local tmp src
	tmp=$(mktemp -d)
	src=$(traefik_source)
	cp -r "$src" "$tmp/src"
	chmod -R u+w "$tmp/src"
	(cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -o "$tmp/traefik" \
		-ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" ./cmd/traefik)
	mkimage -o "$out/images/traefik.tar" -ref "kasa.local/traefik:${TRAEFIK_VERSION#v}" \
		-user 65532 -entrypoint /traefik "$tmp/traefik=/traefik"
	rm -rf "$tmp"
}
build traefik-image "$TRAEFIK_VERSION-$IMAGE_FORMAT" build_traefik

build_metrics_server() {
	local tmp
	tmp=$(mktemp -d)
	CGO_ENABLED=0 GOBIN="$tmp" go install \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$METRICS_SERVER_VERSION" \
		"sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
	mkimage -o "$out/images/metrics-server.tar" -ref "kasa.local/metrics-server:${METRICS_SERVER_VERSION#v}" \
		-user 65532 -entrypoint /metrics-server "$tmp/metrics-server=/metrics-server"
	rm -rf "$tmp"
}
build metrics-server-image "$METRICS_SERVER_VERSION-$IMAGE_FORMAT" build_metrics_server

# Pack again only when a part changed.
sum=$(cd "$out" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ ! -f build/bundle.bin ] || [ "$(cat build/stamps/bundle 2>/dev/null)" != "$sum" ]; then
	echo "packing build/bundle.bin"
	go run ./airgap/mkbundle -o build/bundle.bin -C "$out"
	echo "$sum" >build/stamps/bundle
fi
