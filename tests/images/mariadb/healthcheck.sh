#!/bin/bash
# healthcheck.sh as the official mariadb image has it, for the tests it
# names: --connect (the server takes a connection over TCP) and
# --innodb_initialized (InnoDB is up). It signs in as the healthcheck
# account that the entrypoint made, whose password is in the data dir.
set -eu
defaults=${DATADIR:-/var/lib/mysql}/.my-healthcheck.cnf
run() { mariadb --defaults-extra-file="$defaults" -h127.0.0.1 --protocol=tcp -sN -e "$1"; }
[ $# -gt 0 ] || set -- --connect
for test in "$@"; do
	case $test in
	--connect) run 'SELECT 1' >/dev/null ;;
	--innodb_initialized)
		[ "$(run "SELECT 1 FROM information_schema.ENGINES WHERE engine='innodb' AND support IN ('YES','DEFAULT','ENABLED')")" = 1 ] ;;
	--su-mysql | --no-defaults | --defaults-file=* | --defaults-extra-file=* | --datadir=*) ;;
	*) echo "healthcheck.sh: $test is not supported by this stand-in" >&2; exit 2 ;;
	esac
done
