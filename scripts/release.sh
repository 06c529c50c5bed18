#!/usr/bin/env bash
# Makes kasa's release into OUT/VERSION/ (default dist/), for each
# architecture given:
#
#   kasa-ARCH                         the artifact: cmd/kasa-launcher with the
#                                     bundle appended (kasa's program, the
#                                     upstream programs and the system images),
#                                     compressed by zstd with a 128 MiB window
#   kasa-airgap-images-ARCH.tar.zst   the system images as one OCI archive, for
#                                     a mirror or a node's agent/images folder
#   sha256sum-ARCH.txt                both files' sha256, as sha256sum writes it
#   install.sh                        the node installer
#
# and OUT/latest, the newest version's name, which install.sh reads when no
# INSTALL_KASA_VERSION is given.
#
#   LDFLAGS=... scripts/release.sh --version V [--out DIR] [--level N] ARCH...
#
# `make release VERSION=v0.x.y` builds kasa and its bundle for this machine
# and calls it with the Makefile's LDFLAGS. --level is zstd's (19 by default;
# the tests take a fast one). The images travel inside the artifact as well:
# one file is a whole offline node (docs/architecture.md, Releases, says why).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	echo "usage: LDFLAGS=... scripts/release.sh --version vX.Y.Z [--out DIR] [--level N] ARCH..." >&2
	exit 2
}
version='' out=dist level=19
while [ $# -gt 0 ]; do
	case $1 in
	--version) version=${2:-}; shift 2 || usage ;;
	--out) out=${2:-}; shift 2 || usage ;;
	--level) level=${2:-}; shift 2 || usage ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || usage
case $version in
v[0-9]*) ;;
*)
	echo "release: --version $version: a release's version looks like v0.1.0" >&2
	exit 2
	;;
esac
case $version in *[!A-Za-z0-9.+_-]*)
	echo "release: --version $version: letters, digits and . + _ - only" >&2
	exit 2
	;;
esac
case $level in [1-9] | 1[0-9] | 2[0-2]) ;; *) usage ;; esac
if [ -z "${LDFLAGS:-}" ]; then
	echo "release: LDFLAGS must hold the Makefile's link flags (make release VERSION=... sets them)" >&2
	exit 2
fi

host=$(go env GOHOSTARCH)
for arch in "$@"; do
	case $arch in
	"$host") ;;
	amd64 | arm64)
		echo "release: building for $arch on $host is not supported yet: run make release on a $arch machine" >&2
		exit 1
		;;
	*)
		echo "release: unknown architecture $arch: amd64 or arm64" >&2
		exit 2
		;;
	esac
done

dest=$out/$version
mkdir -p "$dest" build/tools
go build -o build/tools/mkbundle ./airgap/mkbundle
go build -o build/tools/mkairgap ./airgap/mkairgap
ultra=()
[ "$level" -le 19 ] || ultra=(--ultra)
zst() { zstd -q -T0 "${ultra[@]}" "-$level" --long=27; }

for arch in "$@"; do
	work=build/release/$arch
	rm -rf "$work"
	mkdir -p "$work"
	# This machine's kasa and bundle, as make built them (the Makefile's
	# release target builds them first).
	program=build/kasa.program bundle=build/bundle
	if [ ! -f "$program" ] || [ ! -d "$bundle/bin" ]; then
		echo "release: $program or $bundle is missing: run make first" >&2
		exit 1
	fi

	echo "release: $version $arch: the launcher"
	CGO_ENABLED=0 GOARCH=$arch go build -trimpath -ldflags "$LDFLAGS" -o "$work/launcher" ./cmd/kasa-launcher

	echo "release: $version $arch: the bundle (zstd -$level)"
	cp -al "$bundle" "$work/stage"
	cp -l "$program" "$work/stage/bin/kasa"
	build/tools/mkbundle -tar -C "$work/stage" | zst | build/tools/mkbundle -seal -o "$work/payload"
	cat "$work/launcher" "$work/payload" >"$dest/.kasa-$arch.tmp"
	chmod 0755 "$dest/.kasa-$arch.tmp"
	mv "$dest/.kasa-$arch.tmp" "$dest/kasa-$arch"

	echo "release: $version $arch: the images archive"
	build/tools/mkairgap -o "$work/images.tar" "$bundle"/images/*.tar
	# Its layers are zstd streams already: a fast level only frames them.
	zstd -q -T0 -3 <"$work/images.tar" >"$dest/.images-$arch.tmp"
	mv "$dest/.images-$arch.tmp" "$dest/kasa-airgap-images-$arch.tar.zst"

	(cd "$dest" && sha256sum "kasa-$arch" "kasa-airgap-images-$arch.tar.zst" >"sha256sum-$arch.txt")
	rm -rf "$work/stage"
done
install -m 0644 install/install.sh "$dest/install.sh"
echo "$version" >"$out/latest"
ls -l "$dest"
