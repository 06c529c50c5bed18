#!/bin/sh
# Entrypoint of the redis stand-in (tests/images/README.md): the official
# image's behaviour, with Debian's redis-server.
set -e

# Options alone, or a config file first: they are redis-server's arguments.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# As root: give the data folder (a new volume may be root's) to redis, then
# run this script again as redis.
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown -h redis '{}' +
	exec gosu redis "$0" "$@"
fi

# The official redis is compiled with protected mode off (the container is the
# boundary); Debian's is not. Without a config file, turn it off on the command
# line (a later --protected-mode still wins); a config file decides for itself.
if [ "$1" = redis-server ]; then
	case ${2:-} in
	-)
		# Configuration on standard input: redis wants "-" first or last.
		shift 2
		set -- redis-server - --protected-mode no "$@"
		;;
	'' | -*)
		shift
		set -- redis-server --protected-mode no "$@"
		;;
	esac
fi

if [ "$(umask)" = 0022 ]; then
	umask 0077
fi
exec "$@"
