#!/usr/bin/env bash
# Builds kasa-test-host:<recipe hash>, the image of the multi-node test hosts
# (tests/harness/hosts): a Debian bookworm with systemd as PID 1, sshd,
# iproute2 and iptables, made with debootstrap and `docker import` (no
# registry is reachable from this machine).
#
#   scripts/build-host-image.sh                 as root: build the image unless it exists
#   scripts/build-host-image.sh --print-tag     print the image's tag and exit
#   scripts/build-host-image.sh --stop-docker   stop the dockerd this script started
#
# On a fresh machine it first installs docker.io and debootstrap from
# Debian's archive (without their recommendations) and, when no Docker
# engine answers, starts dockerd in the background:
#
#   dockerd --bridge=none --ip-forward=false
#
# --bridge=none: no docker0 and no 172.17.0.0/16 on the machine (the harness
# makes its own networks); --ip-forward=false: the engine leaves the
# machine's net.ipv4.ip_forward and the FORWARD chain's policy alone (the
# hosts of a network talk over the bridge and need neither). Its pid goes to
# /run/kasa-test-hosts/dockerd.pid and its output to
# /var/log/kasa-test-dockerd.log. The engine is left running for the next
# run (the image lives in its store); --stop-docker stops it again, and only
# a dockerd that this script started. The engine's own iptables chains
# (DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-*, with jumps from FORWARD,
# PREROUTING and OUTPUT) stay while it runs; --stop-docker removes them
# after the engine stopped. A network's own rules go when the network is
# removed.
#
# Cost on this kind of machine: installing docker.io ~10 s; the image 45-60 s
# (58 s with an empty package cache); nothing when the tag exists.
#
# The tag is the first 12 hex digits of this file's sha256: the recipe is
# this file, and tests/harness/hosts computes the same tag. Older
# kasa-test-host tags are removed when a new one is built. debootstrap's
# package cache stays in build/host-image/debs, so a rebuild downloads
# nothing that it already has.
set -euo pipefail
cd "$(dirname "$0")/.."
self=scripts/build-host-image.sh

repo=kasa-test-host
tag=$repo:$(sha256sum "$self" | cut -c1-12)
suite=bookworm
# The Debian archive this machine's apt uses (scripts/lib/debian-sources.sh).
. scripts/lib/debian-sources.sh
mirror=$(debian_mirror "$suite")
# mariadb-server and postgresql: the external datastores of the tests with
# several servers, each run on a host of its own (their services stay
# disabled; a test starts the one it needs).
packages=systemd,systemd-sysv,dbus,iproute2,iptables,ipset,nftables,openssh-server,sudo,ca-certificates,procps,iputils-ping,curl,mariadb-server,postgresql
work=build/host-image
piddir=/run/kasa-test-hosts
dockerd_log=/var/log/kasa-test-dockerd.log

# Docker's own client matches the engine that docker.io installs; a newer
# client elsewhere on PATH (/usr/local/bin) also works, by negotiation.
docker=${DOCKER:-docker}

case "${1:-}" in
--print-tag)
	echo "$tag"
	exit 0
	;;
--stop-docker | "") ;;
*)
	echo "usage: $self [--print-tag | --stop-docker]" >&2
	exit 2
	;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "build-host-image: run as root (apt-get, dockerd and debootstrap need it)" >&2
	exit 1
fi

engine_up() {
	"$docker" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# remove_docker_chains takes away the iptables chains a stopped Docker
# engine leaves (empty, jumped to from FORWARD, PREROUTING and OUTPUT), so
# that a test run leaves no rules behind. Only after stopping the dockerd
# this script started.
remove_docker_chains() {
	local ipt
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		while "$ipt" -t filter -D FORWARD -j DOCKER-USER 2>/dev/null; do :; done
		while "$ipt" -t filter -D FORWARD -j DOCKER-ISOLATION-STAGE-1 2>/dev/null; do :; done
		while "$ipt" -t filter -D FORWARD -j DOCKER-FORWARD 2>/dev/null; do :; done
		while "$ipt" -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null; do :; done
		while "$ipt" -t nat -D OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null; do :; done
		while "$ipt" -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null; do :; done
		local table chain
		for table in filter nat; do
			for chain in DOCKER DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-FORWARD DOCKER-BRIDGE DOCKER-CT; do
				"$ipt" -t "$table" -F "$chain" 2>/dev/null || true
				"$ipt" -t "$table" -X "$chain" 2>/dev/null || true
			done
		done
	done
}

if [ "${1:-}" = --stop-docker ]; then
	pid=$(cat "$piddir/dockerd.pid" 2>/dev/null || true)
	if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
		echo "build-host-image: no dockerd started by this script is running"
		rm -f "$piddir/dockerd.pid"
		exit 0
	fi
	echo "stopping dockerd (pid $pid)"
	kill -TERM "$pid"
	for _ in $(seq 1 60); do
		[ -d "/proc/$pid" ] || break
		sleep 0.5
	done
	if [ -d "/proc/$pid" ]; then
		echo "build-host-image: dockerd (pid $pid) did not stop within 30 s; see $dockerd_log" >&2
		exit 1
	fi
	rm -f "$piddir/dockerd.pid"
	remove_docker_chains
	exit 0
fi

# What a fresh machine lacks. docker.io's recommendations are left out: they
# bring cgroupfs-mount (which mounts cgroup hierarchies) and needrestart.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The package's own client, when PATH has none.
	command -v "$docker" >/dev/null || docker=/usr/bin/docker
fi

if ! engine_up; then
	if pgrep -x dockerd >/dev/null; then
		echo "build-host-image: a dockerd runs but does not answer on /var/run/docker.sock" >&2
		exit 1
	fi
	echo "starting dockerd (log: $dockerd_log)"
	mkdir -p "$piddir"
	t0=$SECONDS
	setsid --fork dockerd --bridge=none --ip-forward=false --pidfile /run/docker.pid </dev/null >>"$dockerd_log" 2>&1
	for _ in $(seq 1 120); do
		engine_up && break
		if [ $((SECONDS - t0)) -gt 2 ] && ! pgrep -x dockerd >/dev/null; then
			echo "build-host-image: dockerd exited; the end of $dockerd_log:" >&2
			tail -20 "$dockerd_log" >&2
			exit 1
		fi
		sleep 0.5
	done
	if ! engine_up; then
		echo "build-host-image: dockerd did not answer within 60 s; see $dockerd_log" >&2
		exit 1
	fi
	cp /run/docker.pid "$piddir/dockerd.pid"
fi

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
	echo "$tag is up to date"
	exit 0
fi

mkdir -p "$work/debs" "$work/logs"
root=$(realpath "$work")/root
debs=$(realpath "$work/debs")
log=$work/logs/debootstrap.log

# mounts_under DIR: the mount points at or below DIR, deepest first.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# safe_rm DIR: removes a tree, never through a mount (a bind of /proc or /dev
# left by a killed build must not be emptied).
safe_rm() {
	if [ -n "$(mounts_under "$1")" ]; then
		echo "build-host-image: $1 has mounts below it; not removing it" >&2
		return 1
	fi
	rm -rf --one-file-system "$1"
}
trap 'safe_rm "$root" 2>/dev/null || true' EXIT

# in_root CMD...: runs CMD in a chroot of the tree, in its own mount, pid,
# network, uts and ipc namespaces with /proc mounted, so that nothing it
# starts or mounts outlives it and no per-network kernel setting of this
# machine changes.
in_root() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare --mount --pid --net --uts --ipc --fork --kill-child --propagation private -- /bin/sh -eu -c '
		root=$1
		shift
		mount -t proc proc "$root/proc"
		exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
	' in_root "$root" "$@"
}

started=$(date +%s)
echo "debootstrapping $suite (minbase with $packages) into $root"
safe_rm "$root"
# debootstrap mounts /proc and /sys in the tree: in a mount namespace of its
# own, a killed build leaves no mount behind. It keeps services from starting
# while it installs (policy-rc.d).
if ! unshare --mount --pid --uts --ipc --fork --kill-child --propagation private -- \
	debootstrap --variant=minbase --include="$packages" --cache-dir="$debs" \
	"$suite" "$root" ${mirror:+"$mirror"} >"$log" 2>&1; then
	tail -25 "$log" >&2
	echo "build-host-image: debootstrap failed; the whole log is $log" >&2
	exit 1
fi

# The entrypoint: what a container manager does before it starts systemd on
# a machine. Docker gives a container private mount propagation and mounts
# the cgroup hierarchies read-only when it is not --privileged; systemd and
# a nested containerd and kubelet need "/" shared and the cgroups writable.
# With the private cgroup namespace these mounts show only the container's
# own part of each hierarchy, and "remount,bind" changes the flag of this
# container's mount alone, never the machine's. systemd also raises
# fs.file-max and fs.nr_open as it boots: in a container those are the
# machine's own settings, so they are made read-only here.
install -D -m 0755 /dev/stdin "$root/usr/local/sbin/kasa-host-entrypoint" <<'EOF'
#!/bin/sh
set -eu
mount --make-rshared /
for f in /proc/sys/fs/file-max /proc/sys/fs/nr_open; do
	mount --bind "$f" "$f"
	mount -o remount,bind,ro "$f"
done
awk '$3 == "cgroup" || $3 == "cgroup2" || $2 == "/sys/fs/cgroup" { print $2 }' /proc/self/mounts |
	while read -r m; do
		mount -o remount,bind,rw "$m"
	done
exec "$@"
EOF

# SSH host keys are made on each host's first boot, so that hosts differ.
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/kasa-host-keys.service" <<'EOF'
[Unit]
Description=Make this host's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF

# The journal in /run only (a test host's is short-lived), without the
# machine's kernel log.
mkdir -p "$root/etc/systemd/journald.conf.d"
cat >"$root/etc/systemd/journald.conf.d/kasa-test-host.conf" <<'EOF'
[Journal]
Storage=volatile
RuntimeMaxUse=64M
ReadKMsg=no
EOF

# A unique machine id per host, made at boot.
: >"$root/etc/machine-id"
: >"$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo localhost >"$root/etc/hostname"

# Units masked because a container must not run them: /proc/sys and the
# binfmt_misc and audit interfaces are the machine's kernel's, so
# systemd-sysctl, binfmt and journald's audit socket would change or read
# the machine itself; the rest are timers that reach for the network, and
# gettys without a console.
masked=(
	systemd-sysctl.service
	systemd-binfmt.service
	proc-sys-fs-binfmt_misc.automount
	proc-sys-fs-binfmt_misc.mount
	systemd-journald-audit.socket
	systemd-modules-load.service
	sys-kernel-config.mount
	sys-kernel-debug.mount
	sys-kernel-tracing.mount
	sys-fs-fuse-connections.mount
	systemd-firstboot.service
	apt-daily.timer
	apt-daily-upgrade.timer
	dpkg-db-backup.timer
	e2scrub_all.timer
	fstrim.timer
	getty.target
	console-getty.service
)
{
	in_root systemctl mask "${masked[@]}"
	in_root systemctl enable kasa-host-keys.service ssh.service
	in_root systemctl disable mariadb.service postgresql.service
	in_root systemctl set-default multi-user.target
} >>"$log" 2>&1

# What an image does not need at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
	"$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/* \
	"$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete

echo "importing $tag"
tar --numeric-owner --xattrs --xattrs-include='security.capability' -C "$root" -c . |
	"$docker" import \
		--change 'ENV container=docker' \
		--change 'ENTRYPOINT ["/usr/local/sbin/kasa-host-entrypoint"]' \
		--change 'CMD ["/sbin/init"]' \
		--change "LABEL kasa-test.image=host kasa-test.recipe=${tag#*:}" \
		- "$tag" >/dev/null
safe_rm "$root"

# Older builds of the recipe.
"$docker" image ls "$repo" --format '{{.Repository}}:{{.Tag}}' | while read -r old; do
	[ "$old" = "$tag" ] || "$docker" image rm "$old" >/dev/null 2>&1 || true
done
echo "built $tag in $(($(date +%s) - started)) s ($("$docker" image inspect "$tag" --format '{{.Size}}' | numfmt --to=iec))"
