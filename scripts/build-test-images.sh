#!/usr/bin/env bash
# Builds the stand-ins for the catalog apps' official images (mysql, mariadb,
# postgres, redis, nginx, tomcat, wordpress) from Debian bookworm packages, so
# that the end-to-end suites run the charts as shipped with no registry
# (tests/images/README.md says what each one is). kafka's stand-in is the
# exception: no Debian, one Go program built from this module (its recipe sets
# scratch).
#
#   scripts/build-test-images.sh [OUTDIR [APP...]]     as root; OUTDIR defaults to build/test-images
#
# One debootstrap'ed minbase (kept in build/test-images-cache/base) is copied
# for each tests/images/APP/recipe.sh; the recipe's packages are installed in a
# chroot, its files (entrypoint, config) are added, and airgap/mkimage packs the
# tree into OUTDIR/APP.tar under the official references. OUTDIR/images.txt
# lists each archive with its references. A stamp per image (the hash of this
# script, the recipe's folder and mkimage, in build/test-images-cache/stamps)
# keeps an unchanged image.
set -euo pipefail
cd "$(dirname "$0")/.."
self=scripts/build-test-images.sh

out=${1:-build/test-images}
[ $# -gt 0 ] && shift
suite=bookworm
# The Debian archive and its security archive as this machine's apt has them
# (scripts/lib/debian-sources.sh; KASA_DEBIAN_MIRROR and
# KASA_DEBIAN_SECURITY_MIRROR override).
. scripts/lib/debian-sources.sh
mirror=$(debian_mirror "$suite")
security=$(debian_security "$suite")
# Bump when the base's recipe below changes: every image is rebuilt.
base_version=2
# KASA_TEST_IMAGES_CACHE: the base, downloads, logs and stamps;
# KASA_IMAGE_JOBS: images built at once; KASA_KEEP_ROOTFS=1 keeps each
# image's tree in the cache's roots/ for a look.
cache=${KASA_TEST_IMAGES_CACHE:-build/test-images-cache}
stamps=$cache/stamps
jobs=${KASA_IMAGE_JOBS:-2}

if [ "$(id -u)" != 0 ]; then
	echo "build-test-images: run as root (debootstrap and chroot need it)" >&2
	exit 1
fi

# Longest first, so that two at a time finish together.
all=(tomcat mariadb wordpress postgres nginx redis kafka)
if [ $# -gt 0 ]; then
	apps=("$@")
else
	apps=("${all[@]}")
fi
for app in "${apps[@]}"; do
	if [ ! -f "tests/images/$app/recipe.sh" ]; then
		echo "build-test-images: no tests/images/$app/recipe.sh" >&2
		exit 1
	fi
done

mkdir -p "$out" "$cache/logs" "$cache/roots" "$cache/apt" "$stamps"
# One build at a time: a second one (say, make e2e beside a hand run) waits.
exec 9>"$cache/lock"
if ! flock -n 9; then
	echo "build-test-images: another build is running; waiting for it"
	flock 9
fi
# What a killed mkimage left.
rm -f "$out"/.mkimage-*
cache_abs=$(realpath "$cache")

# mounts_under DIR: the mount points at or below DIR, deepest first.
mounts_under() {
	local d
	d=$(realpath -m "$1")
	awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# safe_rm DIR: removes a tree, never through a mount (a bind of /proc or /dev
# left by a killed build must not be emptied).
safe_rm() {
	if [ -n "$(mounts_under "$1")" ]; then
		echo "build-test-images: $1 has mounts below it; not removing it" >&2
		return 1
	fi
	rm -rf --one-file-system "$1"
}

# Jobs run in their own process groups (set -m); on any exit, end them and
# undo any mount a chroot left (the chroots run in their own mount and pid
# namespaces, so normally there is none).
set -m
cleanup() {
	local pid m left
	for pid in $(jobs -p); do
		kill -TERM -- "-$pid" 2>/dev/null || true
	done
	for _ in $(seq 20); do
		left=$(jobs -rp)
		[ -n "$left" ] || break
		sleep 0.25
	done
	for pid in $(jobs -rp); do
		kill -KILL -- "-$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	for m in $(mounts_under "$cache_abs"); do
		umount -l "$m" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_root ROOT APTCACHE CMD...: runs CMD in a chroot of ROOT, in new mount and
# pid namespaces (so its mounts and any daemon a package starts end with it),
# with /proc mounted and APTCACHE (unless empty) as apt's download folder.
in_root() {
	local root=$1 aptcache=${2:-}
	shift 2
	# shellcheck disable=SC2016 # the inner shell expands them
	unshare --mount --pid --fork --kill-child --propagation private -- /bin/sh -eu -c '
		root=$1 aptcache=$2
		shift 2
		mount -t proc proc "$root/proc"
		if [ -n "$aptcache" ]; then
			mount --bind "$aptcache" "$root/var/cache/apt/archives"
		fi
		exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
			${http_proxy:+http_proxy="$http_proxy"} ${https_proxy:+https_proxy="$https_proxy"} \
			${no_proxy:+no_proxy="$no_proxy"} "$@"
	' in_root "$root" "$aptcache" "$@"
}

# The base: a bookworm minbase with apt set up for slim images.
base=$cache/base
base_id=$(printf '%s\n' "$suite" minbase "$mirror" "$security" "$base_version" | sha256sum | cut -c1-16)
build_base() {
	if ! command -v debootstrap >/dev/null; then
		echo "installing debootstrap"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi
	echo "debootstrapping $suite (minbase) into $base"
	safe_rm "$base.tmp"
	safe_rm "$base"
	debootstrap --variant=minbase "$suite" "$base.tmp" ${mirror:+"$mirror"} >"$cache/logs/base.log" 2>&1 || {
		tail -20 "$cache/logs/base.log" >&2
		return 1
	}
	local r=$base.tmp m=$mirror
	# With no mirror configured here, the one debootstrap chose by default.
	[ -n "$m" ] || m=$(KASA_APT_SOURCES_DIR=$r/etc/apt pick_source "$suite" debian)
	{
		echo "deb $m $suite main"
		echo "deb $m $suite-updates main"
		[ -z "$security" ] || echo "deb $security $suite-security main"
	} >"$r/etc/apt/sources.list"
	cat >"$r/etc/apt/apt.conf.d/90slim" <<-EOF
		APT::Install-Recommends "false";
		APT::Install-Suggests "false";
		Acquire::Languages "none";
	EOF
	# Left out of every package installed later (copyright files stay).
	cat >"$r/etc/dpkg/dpkg.cfg.d/90slim" <<-EOF
		path-exclude=/usr/share/doc/*
		path-include=/usr/share/doc/*/copyright
		path-exclude=/usr/share/man/*
		path-exclude=/usr/share/info/*
		path-exclude=/usr/share/lintian/*
		path-exclude=/usr/share/locale/*
		path-include=/usr/share/locale/locale.alias
	EOF
	rm -f "$r"/var/cache/apt/archives/*.deb
	prepare_build "$r"
	# Security and point-release updates of what debootstrap installed.
	{
		in_root "$r" "" apt-get update -qq
		in_root "$r" "" apt-get upgrade -y -q
	} >>"$cache/logs/base.log" 2>&1
	finish_build "$r"
	mv "$base.tmp" "$base"
	echo "$base_id" >"$stamps/base"
}

# prepare_build ROOT: what a chroot needs to install packages and nothing more:
# the host's name service (the mirror's address) and apt settings, and no
# service started by a package.
prepare_build() {
	local r=$1
	cp /etc/resolv.conf "$r/etc/resolv.conf"
	cp /etc/hosts "$r/etc/hosts"
	# The host's way to the archive: proxies, and the date checks of a mirror
	# that serves a snapshot.
	apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy)' \
		>"$r/etc/apt/apt.conf.d/99build" || true
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 0755 "$r/usr/sbin/policy-rc.d"
}

# finish_build ROOT: takes the build's helpers out again and leaves the name
# service files a container runtime mounts over.
finish_build() {
	local r=$1
	rm -f "$r/usr/sbin/policy-rc.d" "$r/etc/apt/apt.conf.d/99build"
	: >"$r/etc/resolv.conf"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
	echo localhost >"$r/etc/hostname"
}

# slim ROOT: removes what an image does not need at run time.
slim() {
	local r=$1
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/debconf/*-old \
		"$r"/var/lib/dpkg/*-old "$r"/var/log/apt/* "$r"/var/log/*.log "$r"/tmp/* "$r"/var/tmp/* \
		"$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/root/.cache
	find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
	find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
	# What apt downloaded (into the cache mounted there while building).
	find "$r/var/cache/apt/archives" -mindepth 1 -not -name partial -not -name lock -exec rm -rf {} +
}

# in_tree ROOT PATH: ROOT/PATH, if no folder on the way there is a symbolic
# link (an image's absolute link, such as /var/run -> /run, would lead out of
# ROOT to the host's own folder).
in_tree() {
	local p=$1 rel=${2#/} part
	local IFS=/
	for part in ${rel%/*}; do
		p=$p/$part
		if [ -L "$p" ]; then
			echo "build-test-images: $2 goes through the symbolic link $p" >&2
			return 1
		fi
	done
	printf '%s/%s' "$1" "$rel"
}

# recipe_scratch APP: whether APP's recipe builds on an empty tree instead of
# the Debian base.
recipe_scratch() {
	(
		scratch=
		# shellcheck source=/dev/null
		. "tests/images/$1/recipe.sh"
		[ -n "$scratch" ]
	)
}

# stamp_of APP: what an image is built from: the base (or, for a scratch
# image, the Go toolchain), this script, the recipe's folder, mkimage and the
# files the recipe lists in sources.
stamp_of() {
	local sources=()
	mapfile -t sources < <(
		sources=()
		# shellcheck source=/dev/null
		. "tests/images/$1/recipe.sh"
		[ ${#sources[@]} -eq 0 ] || printf '%s\n' "${sources[@]}"
	)
	{
		if recipe_scratch "$1"; then
			echo "$(go env GOVERSION) $(realpath "$out")"
		else
			echo "$base_id $(realpath "$out")"
		fi
		sha256sum "$self"
		find "tests/images/$1" tests/images/common airgap/mkimage "${sources[@]}" -type f -print0 | sort -z | xargs -0 sha256sum
	} | sha256sum | cut -d' ' -f1
}

# build_image APP: the whole build of one image; its output goes to a log.
build_image() {
	local app=$1 dir=tests/images/$1 root=$cache/roots/$1 apt=$cache/apt/$1
	local refs=() packages=() image=() sources=() scratch=
	# A recipe sets refs, packages and image (mkimage flags) and may define
	# before_install and after_install, which use in_chroot and put. One
	# that sets scratch gets an empty tree and neither packages nor a
	# chroot: its after_install puts everything into $root; sources are
	# more files (outside its folder) the image is built from.
	before_install() { :; }
	after_install() { :; }
	# shellcheck source=/dev/null
	. "$dir/recipe.sh"
	in_chroot() { in_root "$root" "$apt" "$@"; }
	# put FILE DEST [MODE]: copies the recipe's FILE to DEST in the image, root-owned.
	# shellcheck disable=SC2317 # called by the recipe
	put() {
		local dst
		dst=$(in_tree "$root" "$2")
		install -D -o 0 -g 0 -m "${3:-0644}" "$dir/$1" "$dst"
	}

	safe_rm "$root"
	if [ -n "$scratch" ]; then
		echo "== $app: an empty tree"
		mkdir -p "$root"
	else
		echo "== $app: copying the base"
		mkdir -p "$apt"
		cp -a "$base" "$root"
		prepare_build "$root"
		echo "== $app: before_install"
		before_install
		echo "== $app: installing ${packages[*]}"
		in_chroot apt-get update -qq
		in_chroot apt-get install -y -q --no-install-recommends "${packages[@]}"
	fi
	echo "== $app: after_install"
	after_install
	if [ -z "$scratch" ]; then
		finish_build "$root"
		slim "$root"
	fi
	local rootsize
	rootsize=$(du -sh --apparent-size "$root" | cut -f1)
	echo "== $app: packing"
	local args=() ref
	for ref in "${refs[@]}"; do args+=(-ref "$ref"); done
	"$cache/mkimage" -o "$out/$app.tar" -rootfs "$root" "${args[@]}" "${image[@]}"
	if [ -z "${KASA_KEEP_ROOTFS:-}" ]; then
		safe_rm "$root"
	fi
	stamp_of "$app" >"$stamps/$app"
	printf '%-14s %6s (%s unpacked)  %s\n' "$app.tar" "$(du -h "$out/$app.tar" | cut -f1)" "$rootsize" "${refs[*]}" >&3
}

todo=()
for app in "${apps[@]}"; do
	if [ -f "$out/$app.tar" ] && [ "$(cat "$stamps/$app" 2>/dev/null)" = "$(stamp_of "$app")" ]; then
		continue
	fi
	todo+=("$app")
done

if [ ${#todo[@]} -gt 0 ]; then
	need_base=
	for app in "${todo[@]}"; do
		recipe_scratch "$app" || need_base=1
	done
	if [ -n "$need_base" ] && { [ ! -d "$base" ] || [ "$(cat "$stamps/base" 2>/dev/null)" != "$base_id" ]; }; then
		build_base
	fi
	go build -o "$cache/mkimage" ./airgap/mkimage
	exec 3>&1
	for app in "${todo[@]}"; do
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
			wait -n 2>/dev/null || true
		done
		rm -f "$cache/logs/$app.status"
		(
			set +m +e
			(
				set -e
				build_image "$app"
			) >"$cache/logs/$app.log" 2>&1
			echo $? >"$cache/logs/$app.status"
		) &
	done
	wait
	exec 3>&-
	failed=()
	for app in "${todo[@]}"; do
		if [ "$(cat "$cache/logs/$app.status" 2>/dev/null)" != 0 ]; then
			failed+=("$app")
			echo "---- $app failed; the end of $cache/logs/$app.log:" >&2
			tail -25 "$cache/logs/$app.log" >&2
		fi
	done
	if [ ${#failed[@]} -gt 0 ]; then
		echo "build-test-images: failed: ${failed[*]}" >&2
		exit 1
	fi
fi

# The index of every archive in OUTDIR: file, then its references.
index=$out/images.txt
: >"$index.tmp"
for app in "${all[@]}"; do
	[ -f "$out/$app.tar" ] || continue
	(
		refs=()
		# shellcheck source=/dev/null
		. "tests/images/$app/recipe.sh"
		echo "$app.tar ${refs[*]}"
	) >>"$index.tmp"
done
mv "$index.tmp" "$index"
if [ ${#todo[@]} -eq 0 ]; then
	echo "test images up to date in $out"
fi
