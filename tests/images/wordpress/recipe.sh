# shellcheck shell=bash disable=SC2034,SC2016 # sourced by scripts/build-test-images.sh
# wordpress:6.7-apache stand-in: Debian's WordPress 6.1 on Apache 2.4 with
# mod_php 8.2, laid out and started as the official image
# (tests/images/README.md).
refs=(docker.io/library/wordpress:6.7-apache)
# The PHP extensions of the official image, but imagick.
packages=(apache2 libapache2-mod-php php-mysql wordpress wordpress-theme-twentytwentythree
	php-curl php-mbstring php-intl php-zip php-bcmath php-xml)
image=(-entrypoint docker-entrypoint.sh -cmd apache2-foreground -port 80 -workdir /var/www/html
	-volume /var/www/html -stopsignal SIGWINCH)

after_install() {
	put docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh 0755
	put apache2-foreground /usr/local/bin/apache2-foreground 0755
	put docker-php.conf /etc/apache2/conf-available/docker-php.conf
	put remoteip.conf /etc/apache2/conf-available/remoteip.conf
	in_chroot sh -eu -c '
		# The tree the entrypoint copies into /var/www/html, as the official
		# /usr/src/wordpress: Debian links some files to shared copies
		# (relative links, which a copy would break): copy their content.
		mkdir -p /usr/src/wordpress
		cp -rL /usr/share/wordpress/. /usr/src/wordpress/
		rm -f /usr/src/wordpress/wp-config.php /usr/src/wordpress/.htaccess
		rm -rf /usr/share/wordpress
		ln -s /usr/src/wordpress /usr/share/wordpress
		mkdir -p /usr/src/wordpress/wp-content/uploads
		chown -R www-data:www-data /usr/src/wordpress/wp-content
		chmod 1777 /usr/src/wordpress/wp-content
		# Apache as in the official image: mod_rewrite for permalinks,
		# .htaccess honoured, client addresses from X-Forwarded-For, logs
		# to the container runtime, settings of envvars overridable.
		a2enmod -q rewrite expires remoteip
		a2enconf -q docker-php remoteip
		find /etc/apache2 -type f -name "*.conf" -exec \
			sed -ri "s/([[:space:]]*LogFormat[[:space:]]+\"[^\"]*)%h([^\"]*\")/\1%a\2/g" {} +
		sed -ri "s/^export (APACHE_[A-Z_]+)=(.*)$/export \1=\${\1:-\2}/" /etc/apache2/envvars
		ln -sfT /dev/stderr /var/log/apache2/error.log
		ln -sfT /dev/stdout /var/log/apache2/access.log
		ln -sfT /dev/stdout /var/log/apache2/other_vhosts_access.log
		chown -R --no-dereference www-data:www-data /var/log/apache2
		rm -rf /var/www/html
		mkdir -p /var/www/html
		chown www-data:www-data /var/www/html
		chmod 1777 /var/www/html
	'
	put wp-config-docker.php /usr/src/wordpress/wp-config-docker.php
	put htaccess /usr/src/wordpress/.htaccess
}
