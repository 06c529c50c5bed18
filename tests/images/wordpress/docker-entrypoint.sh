#!/bin/bash
# Entrypoint of the wordpress stand-in (tests/images/README.md), as the
# official image's: when Apache is to start and the working folder
# (/var/www/html, often a volume) holds no WordPress, it copies the one in
# /usr/src/wordpress there; when there is no wp-config.php and any
# WORDPRESS_* variable is set, it writes one that reads its settings from the
# environment, with random keys and salts.
set -Eeuo pipefail

if [[ $1 == apache2* ]]; then
	uid=$(id -u)
	gid=$(id -g)
	if [ "$uid" = 0 ]; then
		# Apache's user, as its envvars would set it.
		user=${APACHE_RUN_USER:-www-data}
		group=${APACHE_RUN_GROUP:-www-data}
		user=${user#'#'}
		group=${group#'#'}
	else
		user=$uid
		group=$gid
	fi

	if [ ! -e index.php ] && [ ! -e wp-includes/version.php ]; then
		if [ "$uid" = 0 ] && [ "$(stat -c %u:%g .)" != "$(id -u "$user"):$(getent group "$group" | cut -d: -f3)" ]; then
			chown "$user:$group" .
		fi
		echo >&2 "WordPress not found in $PWD - copying now..."
		if [ -n "$(find . -mindepth 1 -maxdepth 1 -not -name wp-content)" ]; then
			echo >&2 "WARNING: $PWD is not empty! (copying anyhow)"
		fi
		src=(--create --file - --directory /usr/src/wordpress --one-file-system)
		dst=(--extract --file -)
		if [ "$uid" = 0 ]; then
			src+=(--owner "$user" --group "$group")
		else
			# Only root may change the folder's owner or mode.
			dst+=(--no-overwrite-dir)
		fi
		# What is already there (a mounted wp-content's plugins and themes,
		# an .htaccess) is kept.
		for path in /usr/src/wordpress/.htaccess /usr/src/wordpress/wp-content/*/*/; do
			rel=${path#/usr/src/wordpress/}
			rel=${rel%/}
			if [ -e "$PWD/$rel" ]; then
				src+=(--exclude "./$rel")
			fi
		done
		tar "${src[@]}" . | tar "${dst[@]}"
		echo >&2 "Complete! WordPress has been successfully copied to $PWD"
	fi

	wp_envs=("${!WORDPRESS_@}")
	if [ ! -s wp-config.php ] && [ "${#wp_envs[@]}" -gt 0 ]; then
		for src in wp-config-docker.php /usr/src/wordpress/wp-config-docker.php; do
			if [ -s "$src" ]; then
				echo >&2 "No 'wp-config.php' found in $PWD, but 'WORDPRESS_...' variables supplied; copying '$src' (${wp_envs[*]})"
				# Each placeholder gets its own random value.
				awk '
					/put your unique phrase here/ {
						cmd = "head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \\n\""
						cmd | getline salt
						close(cmd)
						sub(/put your unique phrase here/, salt)
					}
					{ print }
				' "$src" >wp-config.php
				if [ "$uid" = 0 ]; then
					chown "$user:$group" wp-config.php || true
				fi
				break
			fi
		done
	fi
fi

exec "$@"
