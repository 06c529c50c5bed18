#!/bin/bash
# Entrypoint of the postgres:17 stand-in (tests/images/README.md): Debian's
# PostgreSQL 15, started as the official image starts its server. On an empty
# PGDATA it runs initdb, lets every host in with a password, makes the
# database, runs /docker-entrypoint-initdb.d, then runs postgres in the
# foreground as postgres (uid 999).
#
# Settings (each also as NAME_FILE, a file holding the value):
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER (default postgres), POSTGRES_DB (default: the user)
#   POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD
#   PGDATA (default /var/lib/postgresql/data; may be a folder below a volume)
set -Eeo pipefail
shopt -s nullglob

log() { printf '%s\n' "$*"; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# file_env NAME [DEFAULT]: NAME from NAME, or from the file NAME_FILE names.
file_env() {
	local var=$1 file=${1}_FILE def=${2:-}
	if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
		die "both $var and $file are set (but are exclusive)"
	fi
	local val=$def
	if [ -n "${!var:-}" ]; then
		val=${!var}
	elif [ -n "${!file:-}" ]; then
		val=$(<"${!file}")
	fi
	export "$var"="$val"
	unset "$file"
}

# wants_help ARGS...: whether postgres is only asked for help or its version.
wants_help() {
	local a
	for a; do
		case $a in
		-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	: "${PGDATA:=/var/lib/postgresql/data}"
	export PGDATA
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	DATABASE_ALREADY_EXISTS=
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

# create_dirs: PGDATA and the socket folder, owned by postgres when root.
create_dirs() {
	local u
	u=$(id -u)
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		if [ "$u" = 0 ]; then
			find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown -h postgres '{}' +
		fi
		chmod 700 "$POSTGRES_INITDB_WALDIR"
	fi
	if [ "$u" = 0 ]; then
		find "$PGDATA" \! -user postgres -exec chown -h postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown -h postgres '{}' +
	fi
}

verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		die "Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, \"-e POSTGRES_PASSWORD=password\" on \"docker run\".

       You may also use \"POSTGRES_HOST_AUTH_METHOD=trust\" to allow all
       connections without a password. This is *not* recommended."
	fi
	if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
		log "WARNING: POSTGRES_HOST_AUTH_METHOD has been set to \"trust\": every host may connect without a password."
	fi
}

init_database_dir() {
	# initdb wants a name for its user: give an unknown uid one through
	# nss_wrapper, as the official image does.
	local wrapped=
	if ! getent passwd "$(id -u)" >/dev/null; then
		wrapped=1
		NSS_WRAPPER_PASSWD=$(mktemp)
		NSS_WRAPPER_GROUP=$(mktemp)
		export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
		printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" >"$NSS_WRAPPER_PASSWD"
		printf 'postgres:x:%s:\n' "$(id -g)" >"$NSS_WRAPPER_GROUP"
	fi
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
	fi
	# POSTGRES_INITDB_ARGS may hold quoted words, hence the eval. initdb
	# refuses an empty password file, hence the newline.
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "$@"'
	if [ -n "$wrapped" ]; then
		rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"
		unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
	fi
}

# setup_hba_conf [postgres] ARGS...: every host may connect, with the password (in the
# server's password_encryption) or as POSTGRES_HOST_AUTH_METHOD says.
setup_hba_conf() {
	if [ "${1:-}" = postgres ]; then
		shift
	fi
	local auth
	auth=${POSTGRES_HOST_AUTH_METHOD:-$(postgres -C password_encryption "$@")}
	{
		echo
		echo "# Every host, as the official image allows (tests/images/postgres)"
		echo "host all all all $auth"
	} >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
	if [ "${1:-}" = postgres ]; then
		shift
	fi
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER=${PGUSER:-$POSTGRES_USER} pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER=${PGUSER:-postgres} pg_ctl -D "$PGDATA" -m fast -w stop
}

# process_sql ARGS...: psql as the superuser over the socket.
process_sql() {
	local q=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	PGHOST='' PGHOSTADDR='' "${q[@]}" "$@"
}

setup_db() {
	local exists
	exists=$(process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)
	if [ -z "$exists" ]; then
		process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		log
	fi
}

process_init_files() {
	local f
	log
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
		*.sh)
			if [ -x "$f" ]; then
				log "$0: running $f"
				"$f"
			else
				log "$0: sourcing $f"
				# shellcheck source=/dev/null
				. "$f"
			fi
			;;
		*.sql)
			log "$0: running $f"
			process_sql --dbname "$POSTGRES_DB" -f "$f"
			log
			;;
		*.sql.gz)
			log "$0: running $f"
			gunzip -c "$f" | process_sql --dbname "$POSTGRES_DB"
			log
			;;
		*.sql.xz | *.sql.zst)
			die "$f: this image has no xz or zstd; use .sql or .sql.gz"
			;;
		*) log "$0: ignoring $f" ;;
		esac
	done
}

main() {
	# Options alone are postgres's.
	if [ "${1:0:1}" = - ]; then
		set -- postgres "$@"
	fi

	if [ "$1" = postgres ] && ! wants_help "$@"; then
		setup_env
		create_dirs
		if [ "$(id -u)" = 0 ]; then
			# Run this script again as postgres.
			exec gosu postgres "${BASH_SOURCE[0]}" "$@"
		fi

		if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
			verify_minimum_env
			# A folder we cannot read fails here, not half-way.
			ls /docker-entrypoint-initdb.d/ >/dev/null
			init_database_dir
			setup_hba_conf "$@"
			export PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
			temp_server_start "$@"
			setup_db
			process_init_files
			temp_server_stop
			unset PGPASSWORD
			log
			log 'PostgreSQL init process complete; ready for start up.'
			log
		else
			log
			log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
			log
		fi
	fi
	exec "$@"
}

main "$@"
