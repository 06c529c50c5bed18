#!/usr/bin/env bash
# Checks the stand-in images (tests/images/README.md) without Kubernetes: each
# archive is unpacked and run as a container runtime would run it (its
# entrypoint, command, environment, working folder and stop signal from the
# image's config; an overlay over the image, a fresh /dev, /proc, volumes
# bound in), then driven with the clients inside the image and with curl.
#
#   tests/images/check.sh [ARCHIVE_DIR [APP...]]     as root; default build/test-images, every app
#
# Everything runs in new mount, pid and network namespaces: when the check
# ends, however it ends, every process it started is gone and every mount
# with it; each container has its own pid namespace and sees only its own
# processes, as under a container runtime. Servers are reached at 10.99.0.1,
# an address of that network namespace only (so nothing on the machine's own
# ports matters). The scratch files live in build/test-images-check/PID and
# are removed at the end (KEEP=1 keeps them).
set -euo pipefail
cd "$(dirname "$0")/../.."

addr=10.99.0.1

if [ "${1:-}" != --inside ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "check.sh: run as root (it uses namespaces, chroot and mounts)" >&2
		exit 1
	fi
	for tool in jq curl ip unshare; do
		if ! command -v "$tool" >/dev/null; then
			echo "check.sh: needs $tool (apt-get install jq curl iproute2 util-linux)" >&2
			exit 1
		fi
	done
	work=build/test-images-check/$$
	mkdir -p "$work"
	unshare --mount --pid --net --uts --fork --kill-child --mount-proc --propagation private \
		"$0" --inside "$work" "$@" &
	upid=$!
	# unshare ignores INT and TERM while it waits; killing it takes its child,
	# the check, and with it the whole pid namespace.
	trap 'kill -KILL "$upid" 2>/dev/null; echo "check.sh: interrupted" >&2' INT TERM
	rc=0
	wait "$upid" || rc=$?
	if kill -0 "$upid" 2>/dev/null || [ "$rc" -gt 128 ]; then
		wait "$upid" 2>/dev/null || true
	fi
	if [ -z "${KEEP:-}" ]; then
		rm -rf --one-file-system "$work"
		rmdir build/test-images-check 2>/dev/null || true
	else
		echo "kept $work"
	fi
	exit "$rc"
fi
work=$(realpath "$2")
shift 2

images=${1:-build/test-images}
[ $# -gt 0 ] && shift
apps=("$@")
if [ ${#apps[@]} -eq 0 ]; then
	apps=(mariadb postgres redis nginx tomcat wordpress)
fi

hostname kasa-check
ip link set lo up
ip link add kasa0 type veth peer name kasa1
ip addr add "$addr/24" dev kasa0
ip link set kasa0 up
ip link set kasa1 up

# Per container: the unshare that holds its pid namespace (UPID), its tree,
# image, output and stop signal.
declare -A UPID CROOT CAPP CLOG CSIG
passed=0

say() { printf '  %s\n' "$*"; }
fail() {
	echo "FAIL: $*" >&2
	local n
	for n in "${!CLOG[@]}"; do
		echo "---- the end of $n's output:" >&2
		tail -30 "${CLOG[$n]}" >&2 || true
	done
	exit 1
}
ok() {
	say "ok: $*"
	passed=$((passed + 1))
}

# unpack APP: the image's tree in $work/rootfs/APP and its config in $work/meta/APP.*.
unpack() {
	local app=$1 archive=$images/$1.tar root=$work/rootfs/$1 meta=$work/meta/$1
	[ -d "$root" ] && return
	[ -f "$archive" ] || fail "no $archive: run scripts/build-test-images.sh first"
	mkdir -p "$root" "$work/meta"
	local manifest config layer
	manifest=$(tar -xOf "$archive" manifest.json)
	config=$(jq -r '.[0].Config' <<<"$manifest")
	for layer in $(jq -r '.[0].Layers[]' <<<"$manifest"); do
		tar -xOf "$archive" "$layer" | tar --numeric-owner -xpz -C "$root"
	done
	jq -r '.[0].RepoTags[]' <<<"$manifest" >"$meta.refs"
	tar -xOf "$archive" "$config" >"$meta.json"
	jq -r '.config.Entrypoint // [] | .[]' "$meta.json" >"$meta.entrypoint"
	jq -r '.config.Cmd // [] | .[]' "$meta.json" >"$meta.cmd"
	jq -r '.config.Env // [] | .[]' "$meta.json" >"$meta.env"
	jq -r '.config.WorkingDir // "" | if . == "" then "/" else . end' "$meta.json" >"$meta.workdir"
	jq -r '.config.StopSignal // "SIGTERM"' "$meta.json" >"$meta.stopsignal"
}

# inside ROOT PATH: ROOT/PATH, refusing a path through a symbolic link (which
# could lead out of ROOT).
inside() {
	local root=$1 rel=${2#/} p=$1 part
	local IFS=/
	for part in $rel; do
		p=$p/$part
		[ -L "$p" ] && fail "$2 in the image goes through a symbolic link"
	done
	printf '%s' "$p"
}

# start NAME APP [-u UID:GID] [-v HOSTDIR:PATH]... [-e NAME=VALUE]... [-- CMD...]:
# runs APP's image as container NAME, in the background.
start() {
	local name=$1 app=$2
	shift 2
	local user='' vols=() envs=() cmd=()
	while [ $# -gt 0 ]; do
		case $1 in
		-u) user=$2 && shift 2 ;;
		-v) vols+=("$2") && shift 2 ;;
		-e) envs+=("$2") && shift 2 ;;
		--) shift && cmd=("$@") && break ;;
		*) fail "start: unknown option $1" ;;
		esac
	done
	unpack "$app"
	local meta=$work/meta/$app c=$work/containers/$name
	[ ${#cmd[@]} -gt 0 ] || mapfile -t cmd <"$meta.cmd"
	local entrypoint=() imgenv=()
	mapfile -t entrypoint <"$meta.entrypoint"
	mapfile -t imgenv <"$meta.env"
	rm -rf --one-file-system "$c"
	mkdir -p "$c/upper" "$c/work" "$c/root"
	local m=$c/root
	mount -t overlay overlay -o "lowerdir=$work/rootfs/$app,upperdir=$c/upper,workdir=$c/work" "$m"
	mount -t tmpfs -o mode=0755,nosuid tmpfs "$m/dev"
	mknod -m 666 "$m/dev/null" c 1 3
	mknod -m 666 "$m/dev/zero" c 1 5
	mknod -m 666 "$m/dev/full" c 1 7
	mknod -m 666 "$m/dev/random" c 1 8
	mknod -m 666 "$m/dev/urandom" c 1 9
	mknod -m 666 "$m/dev/tty" c 5 0
	ln -s /proc/self/fd "$m/dev/fd"
	ln -s /proc/self/fd/0 "$m/dev/stdin"
	ln -s /proc/self/fd/1 "$m/dev/stdout"
	ln -s /proc/self/fd/2 "$m/dev/stderr"
	mkdir "$m/dev/shm"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/dev/shm"
	printf '127.0.0.1\tlocalhost\n%s\t%s kasa-check\n' "$addr" "$name" >"$m/etc/hosts"
	echo "$name" >"$m/etc/hostname"
	: >"$m/etc/resolv.conf"
	local v target
	for v in "${vols[@]}"; do
		target=$(inside "$m" "${v#*:}")
		mkdir -p "$target"
		mount --bind "${v%%:*}" "$target"
	done
	local chroot_args=() home=/root
	if [ -n "$user" ]; then
		chroot_args=(--userspec="$user" --groups="${user#*:}")
		home=/
	fi
	CROOT[$name]=$m
	CAPP[$name]=$app
	CLOG[$name]=$c/output.log
	CSIG[$name]=$(cat "$meta.stopsignal")
	# In its own session (Apache signals its whole process group when it
	# stops) and its own pid namespace with its own /proc, as under a
	# container runtime.
	setsid unshare --pid --fork --kill-child --mount-proc="$m/proc" \
		chroot "${chroot_args[@]}" "$m" /usr/bin/env -i -C "$(cat "$meta.workdir")" \
		"${imgenv[@]}" HOSTNAME="$name" HOME="$home" "${envs[@]}" \
		"${entrypoint[@]}" "${cmd[@]}" >"$c/output.log" 2>&1 </dev/null &
	UPID[$name]=$!
}

# alive NAME: whether the container runs (its unshare lives as long as the
# container's first process).
alive() { kill -0 "${UPID[$1]}" 2>/dev/null; }

# init_pid NAME: the container's first process (pid 1 in its namespace), as
# this namespace numbers it: unshare's child. Asked each time, as unshare may
# briefly have another child while it sets the namespace up.
init_pid() {
	local upid=${UPID[$1]} kids
	for _ in $(seq 50); do
		kids=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null || true)
		if [ "$(wc -w <<<"$kids")" = 1 ]; then
			echo "${kids// /}"
			return 0
		fi
		alive "$1" || return 1
		sleep 0.1
	done
	fail "$1: cannot tell its first process (unshare's children: $kids)"
}

# stop NAME: its stop signal, 30 s, then SIGKILL (the whole pid namespace
# ends with its first process); unmounts its tree. The first process's exit
# status is left in RC.
stop() {
	local name=$1 p pid
	if alive "$name" && pid=$(init_pid "$name"); then
		kill -s "${CSIG[$name]#SIG}" "$pid" 2>/dev/null || true
		for _ in $(seq 60); do
			alive "$name" || break
			sleep 0.5
		done
		if alive "$name"; then
			say "$name did not stop on ${CSIG[$name]} within 30 s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	if alive "$name"; then
		# unshare ignores TERM; its death kills the namespace's processes.
		kill -KILL "${UPID[$name]}" 2>/dev/null || true
	fi
	RC=0
	wait "${UPID[$name]}" 2>/dev/null || RC=$?
	for p in $(pids_in "$name"); do
		kill -KILL "$p" 2>/dev/null || true
	done
	sleep 0.2
	umount -R "${CROOT[$name]}"
	unset "UPID[$name]" "CROOT[$name]" "CAPP[$name]" "CLOG[$name]" "CSIG[$name]"
}

# ended NAME SECONDS: waits for the container's first process to end by
# itself; its status is left in RC.
ended() {
	for _ in $(seq $(($2 * 2))); do
		alive "$1" || break
		sleep 0.5
	done
	alive "$1" && fail "$1 still runs after $2 s"
	RC=0
	wait "${UPID[$1]}" 2>/dev/null || RC=$?
}

# pids_in NAME: the processes whose root is the container's tree.
pids_in() {
	local p
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/root" 2>/dev/null)" = "${CROOT[$1]}" ]; then
			echo "${p#/proc/}"
		fi
	done
}

# uids_of NAME COMM: the uids of the container's processes named COMM.
uids_of() {
	local p
	for p in $(pids_in "$1"); do
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then
			awk '/^Uid:/ { print $2 }' "/proc/$p/status"
		fi
	done | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# main_uid NAME: the uid and command name of the container's first process
# (the server, once the entrypoint has exec'd it).
main_uid() {
	local pid
	pid=$(init_pid "$1")
	echo "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status") $(cat "/proc/$pid/comm")"
}

# run NAME CMD...: CMD in container NAME's mount and pid namespaces and
# root (as docker exec would), as root.
run() {
	local name=$1
	shift
	local imgenv=()
	mapfile -t imgenv <"$work/meta/${CAPP[$name]}.env"
	local pid
	pid=$(init_pid "$name")
	nsenter --target "$pid" --mount --pid --root /usr/bin/env -i -C / "${imgenv[@]}" HOME=/root "$@"
}

# wait_for NAME SECONDS CMD...: until CMD succeeds, while NAME runs.
wait_for() {
	local name=$1 secs=$2
	shift 2
	for _ in $(seq $((secs * 2))); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if ! alive "$name"; then
			ended "$name" 1
			fail "$name ended while starting (status $RC)"
		fi
		sleep 0.5
	done
	fail "$name: not ready after $secs s ($*)"
}

# expect WHAT WANT GOT
expect() {
	if [ "$2" != "$3" ]; then
		fail "$1: want '$2', got '$3'"
	fi
	ok "$1 ($3)"
}

# volume NAME OWNER MODE: a fresh folder for a volume, as a new disk is given
# to a pod: owned by OWNER with MODE, holding only lost+found.
volume() {
	local d=$work/volumes/$1
	rm -rf --one-file-system "$d"
	mkdir -p "$d/lost+found"
	chown "$2" "$d"
	chmod "$3" "$d"
	chmod 0700 "$d/lost+found"
	echo "$d"
}

check_refs() {
	unpack "$1"
	local want got
	want=$(grep "^$1.tar " "$images/images.txt" | cut -d' ' -f2- | tr ' ' '\n' | sort | paste -sd' ')
	got=$(sort "$work/meta/$1.refs" | paste -sd' ')
	expect "$1.tar names" "$want" "$got"
}

check_mariadb() {
	echo "mariadb (mysql:8.4, mariadb:11.4)"
	check_refs mariadb
	local data initdb
	data=$(volume mysql-data 0:0 0755)
	initdb=$work/volumes/mysql-initdb
	mkdir -p "$initdb"
	echo 'CREATE TABLE seeded (v VARCHAR(20)); INSERT INTO seeded VALUES ("from initdb");' >"$initdb/01-seed.sql"
	start db mariadb -v "$data:/var/lib/mysql" -v "$initdb:/docker-entrypoint-initdb.d" \
		-e MYSQL_ROOT_PASSWORD='r00t pw' -e MYSQL_DATABASE=appdb -e MYSQL_USER=app -e MYSQL_PASSWORD=apppw
	wait_for db 120 run db mysqladmin ping -h "$addr" -uroot -p'r00t pw' --silent
	ok "mysqladmin ping over TCP on $addr:3306"
	expect "root over TCP with the password" 1 "$(run db mysql -h "$addr" -uroot -p'r00t pw' -N -e 'SELECT 1')"
	if run db mysql -h "$addr" -uroot -pwrong -e 'SELECT 1' >/dev/null 2>&1; then
		fail "root logged in with a wrong password"
	fi
	ok "a wrong root password is refused"
	run db mysql -h "$addr" -uapp -papppw appdb -e 'CREATE TABLE t (v INT); INSERT INTO t VALUES (42);'
	expect "app user writes appdb" 42 "$(run db mysql -h "$addr" -uapp -papppw appdb -N -e 'SELECT v FROM t')"
	expect "initdb.d .sql ran in MYSQL_DATABASE" "from initdb" \
		"$(run db mariadb -h "$addr" -uapp -papppw appdb -N -e 'SELECT v FROM seeded')"
	run db healthcheck.sh --connect --innodb_initialized || fail "healthcheck.sh --connect --innodb_initialized failed"
	ok "healthcheck.sh --connect --innodb_initialized (the mariadb image's probe)"
	expect "time zone names loaded" 1 \
		"$(run db mysql -h "$addr" -uroot -p'r00t pw' -N -e 'SELECT COUNT(*) > 0 FROM mysql.time_zone_name')"
	expect "server runs as uid" "999 mysqld" "$(main_uid db)"
	expect "data dir owner" 999:999 "$(stat -c %u:%g "$data/mysql")"
	stop db
	expect "stopped by SIGTERM, status" 0 "$RC"
	start db mariadb -v "$data:/var/lib/mysql"
	wait_for db 60 run db mysqladmin ping -h "$addr" -uroot -p'r00t pw' --silent
	expect "the row after a restart" 42 "$(run db mysql -h "$addr" -uapp -papppw appdb -N -e 'SELECT v FROM t')"
	stop db

	# Started as uid 999 on a volume given to group 999 (fsGroup), MARIADB_* names.
	data=$(volume mysql-data-999 0:999 2775)
	start db mariadb -u 999:999 -v "$data:/var/lib/mysql" -e MARIADB_ROOT_PASSWORD=pw2 -e MARIADB_DATABASE=db2
	wait_for db 120 run db mysqladmin ping -h "$addr" -uroot -ppw2 --silent
	expect "as uid 999: root over TCP, MARIADB_DATABASE made" db2 \
		"$(run db mysql -h "$addr" -uroot -ppw2 -N -e 'SHOW DATABASES LIKE "db2"')"
	expect "as uid 999: server uid" "999 mysqld" "$(main_uid db)"
	stop db

	# An unknown uid (runAsUser 1001 with fsGroup), a random root password.
	data=$(volume mysql-data-1001 0:2000 2775)
	start db mariadb -u 1001:2000 -v "$data:/var/lib/mysql" -e MYSQL_RANDOM_ROOT_PASSWORD=yes
	wait_for db 120 grep -q 'GENERATED ROOT PASSWORD' "${CLOG[db]}"
	local pw
	pw=$(sed -n 's/.*GENERATED ROOT PASSWORD: //p' "${CLOG[db]}")
	wait_for db 120 run db mysqladmin ping -h "$addr" -uroot -p"$pw" --silent
	expect "uid 1001, MYSQL_RANDOM_ROOT_PASSWORD: root logs in with the printed one" 1 \
		"$(run db mysql -h "$addr" -uroot -p"$pw" -N -e 'SELECT 1')"
	stop db

	# No password setting: the entrypoint refuses, as the official one.
	data=$(volume mysql-data-none 0:0 0755)
	start db mariadb -v "$data:/var/lib/mysql"
	ended db 60
	grep -q "no password option" "${CLOG[db]}" || fail "no password: the output does not say why"
	[ "$RC" != 0 ] || fail "no password: the entrypoint exited 0"
	ok "no password setting: exits $RC and says why"
	stop db
}

check_postgres() {
	echo "postgres (postgres:17)"
	check_refs postgres
	local data
	data=$(volume pg-data 0:0 0755)
	start pg postgres -v "$data:/var/lib/postgresql/data" -e PGDATA=/var/lib/postgresql/data/pgdata \
		-e POSTGRES_PASSWORD='pg pw' -e POSTGRES_USER=app -e POSTGRES_DB=appdb
	wait_for pg 60 run pg pg_isready -h "$addr" -U app -d appdb
	ok "pg_isready on $addr:5432"
	run pg env PGPASSWORD='pg pw' psql -h "$addr" -U app -d appdb -v ON_ERROR_STOP=1 -q \
		-c 'CREATE TABLE t (v int)' -c 'INSERT INTO t VALUES (42)'
	expect "app writes appdb over TCP with the password" 42 \
		"$(run pg env PGPASSWORD='pg pw' psql -h "$addr" -U app -d appdb -tA -c 'SELECT v FROM t')"
	if run pg env PGPASSWORD=wrong psql -h "$addr" -U app -d appdb -c 'SELECT 1' >/dev/null 2>&1; then
		fail "a wrong password was accepted from $addr"
	fi
	ok "a wrong password is refused from a non-loopback address"
	expect "server runs as uid" "999 postgres" "$(main_uid pg)"
	expect "PGDATA below the volume, owner and mode" "999 700" "$(stat -c '%u %a' "$data/pgdata")"
	expect "server encoding" UTF8 "$(run pg env PGPASSWORD='pg pw' psql -h "$addr" -U app -d appdb -tA -c 'SHOW server_encoding')"
	local log=${CLOG[pg]}
	stop pg
	grep -q 'database system is shut down' "$log" || fail "postgres did not shut down cleanly"
	expect "stopped by its stop signal (SIGINT), status" 0 "$RC"
	start pg postgres -v "$data:/var/lib/postgresql/data" -e PGDATA=/var/lib/postgresql/data/pgdata
	wait_for pg 60 run pg pg_isready -h "$addr" -U app -d appdb
	expect "the row after a restart" 42 \
		"$(run pg env PGPASSWORD='pg pw' psql -h "$addr" -U app -d appdb -tA -c 'SELECT v FROM t')"
	stop pg

	# Started as uid 999, PGDATA the default, on a volume given to group 999.
	data=$(volume pg-data-999 0:999 2775)
	start pg postgres -u 999:999 -v "$data:/var/lib/postgresql/data" \
		-e PGDATA=/var/lib/postgresql/data/db -e POSTGRES_PASSWORD=pw2
	wait_for pg 60 run pg pg_isready -h "$addr" -U postgres
	expect "as uid 999: postgres logs in" 1 "$(run pg env PGPASSWORD=pw2 psql -h "$addr" -U postgres -tA -c 'SELECT 1')"
	stop pg

	# An unknown uid (named through nss_wrapper for initdb), trust for all.
	data=$(volume pg-data-1001 0:2000 2775)
	start pg postgres -u 1001:2000 -v "$data:/var/lib/postgresql/data" \
		-e PGDATA=/var/lib/postgresql/data/db -e POSTGRES_HOST_AUTH_METHOD=trust
	wait_for pg 60 run pg pg_isready -h "$addr" -U postgres
	expect "uid 1001, POSTGRES_HOST_AUTH_METHOD=trust: in without a password" 1 \
		"$(run pg psql -h "$addr" -U postgres -tA -c 'SELECT 1')"
	stop pg

	# PGDATA on the volume itself (lost+found in it): initdb refuses, as
	# with the official image.
	data=$(volume pg-data-root 0:0 0755)
	start pg postgres -v "$data:/var/lib/postgresql/data" -e POSTGRES_PASSWORD=pw
	ended pg 60
	if [ "$RC" = 0 ] || ! grep -q "lost+found" "${CLOG[pg]}"; then
		fail "PGDATA a mount point with lost+found: not refused"
	fi
	ok "PGDATA a mount point with lost+found: exits $RC, initdb says to use a subdirectory"
	stop pg

	data=$(volume pg-data-nopw 0:0 0755)
	start pg postgres -v "$data:/var/lib/postgresql/data" -e PGDATA=/var/lib/postgresql/data/db
	ended pg 60
	if [ "$RC" = 0 ] || ! grep -q "POSTGRES_PASSWORD" "${CLOG[pg]}"; then
		fail "no POSTGRES_PASSWORD: not refused"
	fi
	ok "no POSTGRES_PASSWORD: exits $RC and says why"
	stop pg
}

check_redis() {
	echo "redis (redis:7.4)"
	check_refs redis
	local data
	data=$(volume redis-data 0:0 0755)
	start cache redis -v "$data:/data" -- redis-server --requirepass s3cret --appendonly yes
	wait_for cache 30 run cache redis-cli -h "$addr" -a s3cret --no-auth-warning ping
	expect "SET over TCP with the password" OK "$(run cache redis-cli -h "$addr" -a s3cret --no-auth-warning set k v42)"
	expect "no password: refused" "NOAUTH Authentication required." "$(run cache redis-cli -h "$addr" get k 2>&1)"
	expect "server runs as uid" "999 redis-server" "$(main_uid cache)"
	expect "/data owner" 999 "$(stat -c %u "$data")"
	stop cache
	start cache redis -v "$data:/data" -- redis-server --requirepass s3cret --appendonly yes
	wait_for cache 30 run cache redis-cli -h "$addr" -a s3cret --no-auth-warning ping
	expect "the key after a restart (appendonly)" v42 "$(run cache redis-cli -h "$addr" -a s3cret --no-auth-warning get k)"
	stop cache
	# The image's own command, no password: served on every address, as the
	# official image (protected mode off).
	start cache redis
	wait_for cache 30 run cache redis-cli -h "$addr" ping
	expect "no arguments: PING from $addr" PONG "$(run cache redis-cli -h "$addr" ping)"
	stop cache
}

check_nginx() {
	echo "nginx (nginx:1.27)"
	check_refs nginx
	local tpl=$work/volumes/nginx-templates
	mkdir -p "$tpl"
	# shellcheck disable=SC2016 # nginx's variables stay, the environment's are filled in
	printf '%s\n' 'server { listen 8081; location / { return 200 "${GREETING} $request_method"; } }' >"$tpl/greet.conf.template"
	start web nginx -v "$tpl:/etc/nginx/templates" -e GREETING=hello
	wait_for web 30 curl -fsS "http://$addr/"
	local body
	body=$(curl -fsS "http://$addr/")
	grep -q '<title>Welcome to nginx!</title>' <<<"$body" || fail "the default page has no welcome title"
	ok "GET / on $addr:80: the welcome page"
	expect "GET /missing" 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/missing")"
	expect "a template from /etc/nginx/templates" "hello GET" "$(curl -fsS "http://$addr:8081/")"
	expect "workers run as uid" 101 "$(uids_of web nginx | tr ' ' '\n' | grep -v '^0$' | sort -u | tr '\n' ' ' | sed 's/ $//')"
	grep -q '"GET / HTTP/1.1" 200' "${CLOG[web]}" || fail "the access log is not on stdout"
	ok "access log on stdout"
	local conf
	conf=$(run web nginx -T 2>/dev/null)
	grep -q '^load_module .*ngx_stream_module' <<<"$conf" || fail "the stream module is not loaded"
	ok "stream module loaded"
	stop web
}

check_tomcat() {
	echo "tomcat (tomcat:10.1)"
	check_refs tomcat
	start app tomcat
	wait_for app 90 curl -sS -o /dev/null "http://$addr:8080/"
	local code body
	code=$(curl -s -o "$work/tomcat.html" -w '%{http_code}' "http://$addr:8080/")
	body=$(cat "$work/tomcat.html")
	expect "GET / (empty webapps)" 404 "$code"
	grep -q 'Apache Tomcat' <<<"$body" || fail "the 404 page does not name Apache Tomcat"
	ok "the 404 page names $(grep -o 'Apache Tomcat/[0-9.]*' <<<"$body" | head -1)"
	grep -q 'Server startup in' "${CLOG[app]}" || fail "Tomcat's log is not on stdout"
	ok "log on stdout"
	expect "catalina.sh and webapps" "yes yes" \
		"$([ -x "${CROOT[app]}/usr/local/tomcat/bin/catalina.sh" ] && echo yes) $([ -d "${CROOT[app]}/usr/local/tomcat/webapps" ] && echo yes)"
	stop app
	# A webapp with a JSP, as uid 1000 (logs, temp and work are writable by any uid).
	local webapp=$work/volumes/tomcat-root
	mkdir -p "$webapp"
	echo '<%= "jsp " + (6 * 7) %>' >"$webapp/index.jsp"
	start app tomcat -u 1000:1000 -v "$webapp:/usr/local/tomcat/webapps/ROOT"
	wait_for app 90 curl -fsS -o /dev/null "http://$addr:8080/"
	expect "as uid 1000: a JSP in webapps/ROOT" "jsp 42" "$(curl -fsS "http://$addr:8080/" | tr -d '\r\n')"
	stop app
}

check_wordpress() {
	echo "wordpress (wordpress:6.7-apache, with the mysql stand-in)"
	check_refs wordpress
	local data html
	data=$(volume wp-db 0:0 0755)
	html=$(volume wp-html 0:0 0755)
	rmdir "$html/lost+found"
	start wpdb mariadb -v "$data:/var/lib/mysql" -e MYSQL_ROOT_PASSWORD=rootpw \
		-e MYSQL_DATABASE=wordpress -e MYSQL_USER=wp -e MYSQL_PASSWORD=wppw
	wait_for wpdb 120 run wpdb mysqladmin ping -h "$addr" -uwp -pwppw --silent
	start wp wordpress -v "$html:/var/www/html" -e WORDPRESS_DB_HOST="$addr:3306" -e WORDPRESS_DB_USER=wp \
		-e WORDPRESS_DB_PASSWORD=wppw -e WORDPRESS_DB_NAME=wordpress -e WORDPRESS_TABLE_PREFIX=kasa_
	wait_for wp 60 curl -sS -o /dev/null "http://$addr/"
	local out
	out=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "http://$addr/")
	expect "GET / of a fresh WordPress" "302 http://$addr/wp-admin/install.php" "$out"
	local page
	page=$(curl -fsS "http://$addr/wp-admin/install.php")
	grep -q 'WordPress' <<<"$page" || fail "install.php does not answer"
	ok "install.php answers"
	curl -fsS -o /dev/null "http://$addr/wp-admin/install.php?step=2" \
		--data-urlencode weblog_title='Kasa check' --data-urlencode user_name=admin \
		--data-urlencode admin_password='Adm1n-pass-word' --data-urlencode admin_password2='Adm1n-pass-word' \
		--data-urlencode pw_weak=on --data-urlencode admin_email=admin@example.com --data-urlencode blog_public=0
	page=$(curl -fsS "http://$addr/")
	grep -q 'Kasa check' <<<"$page" || fail "after the install, / does not show the site"
	ok "installed: / shows the site"
	expect "tables in the database with the prefix" kasa_options \
		"$(run wpdb mysql -h "$addr" -uwp -pwppw wordpress -N -e 'SHOW TABLES LIKE "kasa\_options"')"
	grep -q 'put your unique phrase here' "$html/wp-config.php" && fail "wp-config.php has no salts"
	ok "wp-config.php written with salts"
	expect "html owner" 33 "$(stat -c %u "$html/index.php")"
	expect "apache workers run as uid" 33 "$(uids_of wp apache2 | tr ' ' '\n' | grep -v '^0$' | sort -u | tr '\n' ' ' | sed 's/ $//')"
	grep -q '"GET / HTTP/1.1" 200' "${CLOG[wp]}" || fail "the access log is not on stdout"
	ok "access log on stdout"
	stop wp
	stop wpdb
}

cleanup() {
	local n
	for n in "${!CROOT[@]}"; do
		stop "$n" 2>/dev/null || true
	done
}
trap cleanup EXIT

t0=$SECONDS
for app in "${apps[@]}"; do
	"check_$app"
done
echo "all ${passed} checks passed in $((SECONDS - t0)) s (${apps[*]})"
