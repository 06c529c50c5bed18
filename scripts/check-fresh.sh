#!/usr/bin/env bash
# Checks, as part of `make check`, the build steps that a warm machine hides:
#
#  1. Every module source that scripts/build-bundle.sh reads as files is
#     found with an EMPTY module cache (a fresh machine's), not only where an
#     earlier build left it. The empty cache is filled from this machine's
#     own cache as a file proxy first, then from the configured proxy, so the
#     check downloads nothing that is already here.
#  2. The Debian mirrors that the image scripts use are read from apt's own
#     sources, in both of its formats (scripts/lib/debian-sources.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
	echo "check-fresh: $*" >&2
	exit 1
}

# 1. Module sources from an empty cache.
warm=$(go env GOMODCACHE)
empty=$(mktemp -d)
trap 'chmod -R u+w "$empty" 2>/dev/null; rm -rf "$empty"' EXIT
proxy=$(go env GOPROXY)
[ -d "$warm/cache/download" ] && proxy="file://$warm/cache/download,$proxy"
srcs=$(GOMODCACHE=$empty GOPROXY=$proxy GOFLAGS="$(go env GOFLAGS) -modcacherw" scripts/build-bundle.sh --sources) ||
	fail "scripts/build-bundle.sh --sources failed with an empty module cache"
n=0
while read -r src; do
	n=$((n + 1))
	case "$src" in
	"$empty"/*) ;;
	*) fail "$src is not in the empty module cache $empty: the build would read a folder that a fresh machine lacks" ;;
	esac
	[ -e "$src" ] || fail "$src does not exist after the download"
done <<<"$srcs"
[ "$n" -eq 2 ] || fail "expected 2 module sources from build-bundle.sh --sources, got $n:"$'\n'"$srcs"
echo "module sources from an empty module cache: ok ($n)"

# 2. Debian mirrors from apt's sources.
# shellcheck source=scripts/lib/debian-sources.sh
. scripts/lib/debian-sources.sh
expect() {
	local what=$1 want=$2 got=$3
	[ "$got" = "$want" ] || fail "$what: want \"$want\", got \"$got\""
}
d=scripts/testdata/apt
expect "deb822 mirror" http://mirror.test/debian "$(KASA_APT_SOURCES_DIR=$d/deb822 debian_mirror bookworm)"
expect "deb822 security" http://security.test/debian-security "$(KASA_APT_SOURCES_DIR=$d/deb822 debian_security bookworm)"
expect "one-line mirror, with options" http://one.test/debian "$(KASA_APT_SOURCES_DIR=$d/oneline debian_mirror bookworm)"
expect "one-line security" http://one.test/debian-security "$(KASA_APT_SOURCES_DIR=$d/oneline debian_security bookworm)"
expect "another suite: by the archive's layout" http://mirror.test/debian "$(KASA_APT_SOURCES_DIR=$d/deb822 debian_mirror trixie)"
expect "nothing configured" "" "$(KASA_APT_SOURCES_DIR=$d/none debian_mirror bookworm)"
expect "override" http://override.test/debian "$(KASA_APT_SOURCES_DIR=$d/deb822 KASA_DEBIAN_MIRROR=http://override.test/debian debian_mirror bookworm)"
unset KASA_APT_SOURCES_DIR
echo "Debian mirrors from apt's sources: ok"
