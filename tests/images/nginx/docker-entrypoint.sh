#!/bin/sh
# Entrypoint of the nginx stand-in (tests/images/README.md): as the official
# image's, before nginx starts it runs the executable *.sh files in
# /docker-entrypoint.d/ in version order (and sources the *.envsh ones), such
# as 20-envsubst-on-templates.sh. NGINX_ENTRYPOINT_QUIET_LOGS=1 quiets it.
set -e

say() {
	if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
		echo "$@"
	fi
}

if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
	scripts=$(find /docker-entrypoint.d/ -mindepth 1 -follow -type f -print 2>/dev/null | sort -V)
	if [ -n "$scripts" ]; then
		say "$0: /docker-entrypoint.d/ is not empty, will attempt to perform configuration"
		say "$0: Looking for shell scripts in /docker-entrypoint.d/"
		for f in $scripts; do
			case $f in
			*.envsh)
				if [ -x "$f" ]; then
					say "$0: Sourcing $f"
					# shellcheck source=/dev/null
					. "$f"
				else
					say "$0: Ignoring $f, not executable"
				fi
				;;
			*.sh)
				if [ -x "$f" ]; then
					say "$0: Launching $f"
					"$f"
				else
					say "$0: Ignoring $f, not executable"
				fi
				;;
			*) say "$0: Ignoring $f" ;;
			esac
		done
		say "$0: Configuration complete; ready for start up"
	else
		say "$0: No files found in /docker-entrypoint.d/, skipping configuration"
	fi
fi

exec "$@"
