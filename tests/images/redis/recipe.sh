# shellcheck shell=bash disable=SC2034,SC2016 # sourced by scripts/build-test-images.sh
# redis:7.4 stand-in: Debian's redis-server 7.0 with the official image's
# entrypoint behaviour (tests/images/README.md).
refs=(docker.io/library/redis:7.4)
packages=(redis-server)
image=(-entrypoint docker-entrypoint.sh -cmd redis-server -port 6379 -workdir /data -volume /data)

before_install() {
	# The official image's ids, set before the package would pick others.
	in_chroot groupadd --system --gid 999 redis
	in_chroot useradd --system --uid 999 --gid 999 --home-dir /var/lib/redis --no-create-home \
		--shell /usr/sbin/nologin redis
}

after_install() {
	put docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh 0755
	put ../common/gosu /usr/local/bin/gosu 0755
	in_chroot install -d -o redis -g redis -m 0755 /data
}
