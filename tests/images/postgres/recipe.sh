# shellcheck shell=bash disable=SC2034,SC2016 # sourced by scripts/build-test-images.sh
# postgres:17 stand-in: Debian's PostgreSQL 15 with the official image's
# first-start behaviour (tests/images/README.md).
refs=(docker.io/library/postgres:17)
packages=(postgresql-15 libnss-wrapper)
image=(-entrypoint docker-entrypoint.sh -cmd postgres -port 5432 -volume /var/lib/postgresql/data
	-stopsignal SIGINT
	-env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	-env PG_MAJOR=15 -env PGDATA=/var/lib/postgresql/data -env LANG=en_US.utf8)

before_install() {
	# The official image's ids, set before the package would pick others.
	in_chroot groupadd --system --gid 999 postgres
	in_chroot useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --no-create-home \
		--shell /bin/bash postgres
	# No "main" cluster: the entrypoint makes the one cluster in PGDATA.
	in_chroot sh -eu -c '
		mkdir -p /etc/postgresql-common/createcluster.d
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/inhibit-main-cluster.conf
	'
}

after_install() {
	put docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh 0755
	put ../common/gosu /usr/local/bin/gosu 0755
	in_chroot sh -eu -c '
		# A new cluster listens on every address, as the official image does.
		sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '"'"'*'"'"'!" /usr/share/postgresql/15/postgresql.conf.sample
		grep -q "^listen_addresses = '"'"'\*'"'"'" /usr/share/postgresql/15/postgresql.conf.sample
		# The official image runs in en_US.utf8.
		localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
		# No JIT (LLVM is 130 MB of the image): PostgreSQL runs without it
		# when its provider is missing.
		rm -rf /usr/lib/postgresql/15/lib/llvmjit.so /usr/lib/postgresql/15/lib/llvmjit_types.bc \
			/usr/lib/postgresql/15/lib/bitcode /usr/lib/x86_64-linux-gnu/libLLVM-14.so* \
			/usr/lib/x86_64-linux-gnu/libz3.so*
		# ssl-cert made a key at install: no image should ship a shared one.
		rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
		mkdir -p /var/lib/postgresql/data /run/postgresql /docker-entrypoint-initdb.d
		chown -R postgres:postgres /var/lib/postgresql /run/postgresql
		# Any user id may run the image (and write its socket and data).
		chmod 1777 /var/lib/postgresql/data
		chmod 3777 /run/postgresql
	'
}
