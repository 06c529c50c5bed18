# shellcheck shell=bash disable=SC2034,SC2016 # sourced by scripts/build-test-images.sh
# mysql:8.4 and mariadb:11.4 stand-in: Debian's MariaDB 10.11 with the
# official images' first-start behaviour (tests/images/README.md).
refs=(docker.io/library/mysql:8.4 docker.io/library/mariadb:11.4)
packages=(mariadb-server mariadb-client)
image=(-entrypoint docker-entrypoint.sh -cmd mysqld -port 3306 -volume /var/lib/mysql -env LANG=C.UTF-8)

before_install() {
	# The official images' ids, set before the package would pick others.
	in_chroot groupadd --system --gid 999 mysql
	in_chroot useradd --system --uid 999 --gid 999 --home-dir /var/lib/mysql --no-create-home \
		--shell /usr/sbin/nologin mysql
}

after_install() {
	put docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh 0755
	put healthcheck.sh /usr/local/bin/healthcheck.sh 0755
	put ../common/gosu /usr/local/bin/gosu 0755
	# conf.d is read last, so that a file mounted there (as the official
	# images' documentation says) wins over Debian's defaults.
	put mariadb.cnf /etc/mysql/mariadb.cnf
	put docker.cnf /etc/mysql/mariadb.conf.d/90-docker.cnf
	# The package's postinst made a data dir: the image starts with none, as
	# the official one (the entrypoint initialises it).
	in_chroot sh -eu -c '
		sed -i "s/^bind-address/#&/" /etc/mysql/mariadb.conf.d/50-server.cnf
		rm -rf /var/lib/mysql /etc/mysql/debian.cnf
		mkdir -p /var/lib/mysql /run/mysqld /docker-entrypoint-initdb.d
		chown mysql:mysql /var/lib/mysql /run/mysqld
		# Any user id may run the image (and write its socket and data).
		chmod 1777 /var/lib/mysql /run/mysqld
	'
}
