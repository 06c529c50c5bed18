#!/bin/bash
# Entrypoint of the mysql:8.4 / mariadb:11.4 stand-in (tests/images/README.md):
# Debian's MariaDB, started as the official images start theirs. On an empty
# data dir it initialises one, sets the root password and makes the database
# and user the environment asks for, runs /docker-entrypoint-initdb.d, then
# runs the server in the foreground as mysql (uid 999).
#
# Settings, each also as NAME_FILE (a file holding the value), MARIADB_* first:
#   MYSQL_ROOT_PASSWORD / MARIADB_ROOT_PASSWORD
#   MYSQL_ALLOW_EMPTY_PASSWORD / MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
#   MYSQL_RANDOM_ROOT_PASSWORD / MARIADB_RANDOM_ROOT_PASSWORD
#   MYSQL_ROOT_HOST (default %), MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD,
#   MYSQL_ONETIME_PASSWORD, MYSQL_INITDB_SKIP_TZINFO (and their MARIADB_ names)
set -eo pipefail
shopt -s nullglob

log() { printf '%s [Entrypoint]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S%:z')" "$*"; }
die() {
	log "ERROR: $*" >&2
	exit 1
}

# file_env NAME: reads NAME from NAME or from the file NAME_FILE names.
file_env() {
	local var=$1 file=${1}_FILE
	if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
		die "both $var and $file are set (but are exclusive)"
	fi
	if [ -n "${!file:-}" ]; then
		export "$var"="$(<"${!file}")"
	fi
	unset "$file"
}

# setting NAME [MARIADB_NAME]: the value of MARIADB_NAME, else MYSQL_NAME.
setting() {
	local m=MARIADB_${2:-$1} y=MYSQL_$1
	file_env "$m"
	file_env "$y"
	printf '%s' "${!m:-${!y:-}}"
}

# sql_string VALUE: VALUE as a quoted SQL string literal.
sql_string() {
	local v=${1//\\/\\\\}
	printf "'%s'" "${v//\'/\\\'}"
}

# sql_name VALUE: VALUE as a quoted SQL identifier.
# shellcheck disable=SC2016 # backquotes, not a command
sql_name() { printf '`%s`' "${1//\`/\`\`}"; }

# is_server ARGS...: whether ARGS start the server (and do not just ask it
# for help or its version).
is_server() {
	case $1 in
	mysqld | mariadbd | mysqld_safe | mariadbd-safe) ;;
	*) return 1 ;;
	esac
	local a
	for a; do
		case $a in
		-'?' | --help | --print-defaults | -V | --version) return 1 ;;
		esac
	done
}

# server_option NAME ARGS...: the value the server would use for NAME (from
# the table of variables at the end of its --verbose --help).
server_option() {
	local name=$1
	shift
	"$@" --verbose --help 2>/dev/null | awk -v k="$name" '
		/^Variables \(--variable-name=value\)/ { table = 1; next }
		table && /^[^ \t]/ && $1 == k { sub(/^[^ \t]+[ \t]+/, ""); v = $0 }
		END { print v }
	'
}

client() {
	mariadb --protocol=socket -uroot -hlocalhost --socket="$SOCKET" "$@"
}

# client_pw ARGS...: the client as root with the root password set so far.
client_pw() {
	local pw=${ROOT_PASSWORD//\\/\\\\}
	mariadb --defaults-extra-file=<(printf '[client]\npassword="%s"\n' "${pw//\"/\\\"}") \
		--protocol=socket -uroot -hlocalhost --socket="$SOCKET" "$@"
}

temp_server_start() {
	log "Starting a temporary server (socket only)"
	"$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" --loose-wsrep-on=OFF \
		--expire-logs-days=0 --skip-slave-start --loose-innodb-buffer-pool-load-at-startup=0 &
	TEMP_PID=$!
	for _ in $(seq 60); do
		if client --database=mysql -e 'SELECT 1' >/dev/null 2>&1; then
			log "Temporary server started"
			return
		fi
		kill -0 "$TEMP_PID" 2>/dev/null || die "the temporary server ended while starting"
		sleep 0.5
	done
	die "the temporary server did not answer within 30 s"
}

temp_server_stop() {
	log "Stopping the temporary server"
	kill "$TEMP_PID"
	wait "$TEMP_PID" || die "the temporary server did not stop cleanly"
}

init_database() {
	local root_password allow_empty random root_host database user password onetime skip_tz
	root_password=$(setting ROOT_PASSWORD)
	allow_empty=$(setting ALLOW_EMPTY_PASSWORD)
	[ -n "$allow_empty" ] || allow_empty=$(setting ALLOW_EMPTY_PASSWORD ALLOW_EMPTY_ROOT_PASSWORD)
	random=$(setting RANDOM_ROOT_PASSWORD)
	root_host=$(setting ROOT_HOST)
	database=$(setting DATABASE)
	user=$(setting USER)
	password=$(setting PASSWORD)
	onetime=$(setting ONETIME_PASSWORD)
	skip_tz=$(setting INITDB_SKIP_TZINFO)
	: "${root_host:=%}"

	if [ -z "$root_password" ] && [ -z "$allow_empty" ] && [ -z "$random" ]; then
		die "the database is uninitialized and no password option is given.
    Set one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD or MYSQL_RANDOM_ROOT_PASSWORD
    (or MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD)"
	fi
	if [ "$user" = root ]; then
		die "MYSQL_USER=\"root\": MYSQL_USER and MYSQL_PASSWORD make a regular user, not root; use MYSQL_ROOT_PASSWORD"
	fi
	if [ -n "$random" ] && [ -z "$root_password" ]; then
		root_password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
		log "GENERATED ROOT PASSWORD: $root_password"
	fi
	ROOT_PASSWORD=$root_password

	log "Initializing database files in $DATADIR"
	mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
		--skip-test-db --skip-log-bin --expire-logs-days=0 --default-time-zone=SYSTEM \
		--loose-innodb-buffer-pool-load-at-startup=0 --loose-innodb-buffer-pool-dump-at-shutdown=0 "${@:2}"
	log "Database files initialized"

	temp_server_start "$@"

	if [ -z "$skip_tz" ] && [ -d /usr/share/zoneinfo ]; then
		# Time zone names, as the official images load them. The "Local time
		# zone must be set" pseudo zone is renamed to a harmless one.
		mariadb-tzinfo-to-sql --skip-write-binlog /usr/share/zoneinfo 2>/dev/null |
			sed 's/Local time zone must be set--see zic manual page/FCTY/' | client mysql
	fi

	local pw host sql
	pw=$(sql_string "$root_password")
	host=$(sql_string "$root_host")
	sql="SET @@SESSION.SQL_LOG_BIN=0;
SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');
DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname, '\'');
SET PASSWORD FOR 'root'@'localhost' = PASSWORD($pw);"
	if [ "$root_host" != localhost ]; then
		sql+="
CREATE USER 'root'@$host IDENTIFIED BY $pw;
GRANT ALL ON *.* TO 'root'@$host WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO 'root'@$host WITH GRANT OPTION;"
	fi
	if [ -n "$database" ]; then
		log "Creating database $database"
		sql+="
CREATE DATABASE IF NOT EXISTS $(sql_name "$database");"
	fi
	if [ -n "$user" ] && [ -n "$password" ]; then
		log "Creating user $user"
		sql+="
CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$password");"
		if [ -n "$database" ]; then
			log "Giving user $user access to schema $database"
			sql+="
GRANT ALL ON $(sql_name "${database//_/\\_}").* TO $(sql_string "$user")@'%';"
		fi
	elif [ -n "$user" ]; then
		log "MYSQL_USER is set but MYSQL_PASSWORD is not: the user is not created" >&2
	fi
	# As the official mariadb image: an account that may only connect, for
	# healthcheck.sh, with its password in the data dir.
	local hc_pw
	hc_pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
	sql+="
CREATE USER healthcheck@'127.0.0.1' IDENTIFIED BY '$hc_pw';
CREATE USER healthcheck@'::1' IDENTIFIED BY '$hc_pw';
CREATE USER healthcheck@localhost IDENTIFIED BY '$hc_pw';"
	(
		umask 0077
		printf '[mariadb-client]\nport=3306\nuser=healthcheck\npassword=%s\n' "$hc_pw" >"$DATADIR/.my-healthcheck.cnf"
	)
	if [ -n "$onetime" ]; then
		sql+="
ALTER USER 'root'@'%' PASSWORD EXPIRE;"
	fi
	client --comments <<<"$sql"

	local f
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
			client_pw ${database:+--database="$database"} --comments <"$f"
			;;
		*.sql.gz)
			log "$0: running $f"
			gunzip -c "$f" | client_pw ${database:+--database="$database"} --comments
			;;
		*.sql.xz | *.sql.zst)
			die "$f: this image has no xz or zstd; use .sql or .sql.gz"
			;;
		*) log "$0: ignoring $f" ;;
		esac
	done

	temp_server_stop
	log "MariaDB init process done. Ready for start up."
}

# Options alone are the server's.
if [ "${1:0:1}" = - ]; then
	set -- mysqld "$@"
fi

if is_server "$@"; then
	log "Entrypoint script for the MySQL/MariaDB stand-in started (MariaDB $(mariadbd --version | awk '{print $3}'))"
	if ! out=$("$@" --verbose --help 2>&1 >/dev/null); then
		die "the server's configuration does not parse:
$out"
	fi
	DATADIR=$(server_option datadir "$@")
	DATADIR=${DATADIR%/}
	SOCKET=$(server_option socket "$@")
	: "${DATADIR:=/var/lib/mysql}" "${SOCKET:=/run/mysqld/mysqld.sock}"
	case $DATADIR:$SOCKET in
	/?*:/?*) ;;
	*) die "unexpected datadir '$DATADIR' or socket '$SOCKET' in the server's configuration" ;;
	esac

	if [ "$(id -u)" = 0 ]; then
		# As root: own the data dir (a new volume may be root's) and the
		# socket's folder, then run this script again as mysql.
		mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
		find "$DATADIR" "$(dirname "$SOCKET")" \! -user mysql -exec chown -h mysql:mysql '{}' +
		log "Switching to dedicated user 'mysql'"
		exec gosu mysql "${BASH_SOURCE[0]}" "$@"
	fi

	mkdir -p "$DATADIR" 2>/dev/null || true
	if [ ! -w "$DATADIR" ]; then
		die "$DATADIR is not writable by uid $(id -u): give the volume to uid 999 or set fsGroup 999"
	fi
	if [ ! -d "$DATADIR/mysql" ]; then
		init_database "$@"
	fi
fi

exec "$@"
