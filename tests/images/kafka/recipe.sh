# shellcheck shell=bash disable=SC2034,SC2154 # sourced by scripts/build-test-images.sh ($root is its)
# apache/kafka:3.9.1 stand-in: no Debian and no JVM, but one static Go program
# (this folder's main package, a broker on franz-go's kfake) in the official
# image's place, with its user, folders, volumes and port
# (tests/images/README.md).
refs=(docker.io/apache/kafka:3.9.1)
# An empty tree, not the Debian base.
scratch=1
# The module's requirements pin kfake's version.
sources=(go.mod go.sum)
image=(-cmd /etc/kafka/docker/run -user appuser -port 9092
	-volume /etc/kafka/secrets -volume /var/lib/kafka/data -volume /mnt/shared/config
	-label "org.opencontainers.image.description=kasa's test stand-in for apache/kafka:3.9.1: franz-go's kfake, not Apache Kafka")

after_install() {
	# The official image's user appuser (1000:1000) and its folders, with
	# the same owners and modes.
	install -d -m 0755 "$root/etc"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nappuser:x:1000:1000::/home/appuser:/sbin/nologin\n' >"$root/etc/passwd"
	printf 'root:x:0:root\nappuser:x:1000:appuser\n' >"$root/etc/group"
	chmod 0644 "$root/etc/passwd" "$root/etc/group"
	# What a container runtime mounts over.
	: >"$root/etc/hosts"
	: >"$root/etc/resolv.conf"
	echo localhost >"$root/etc/hostname"
	install -d -o 1000 -g 0 -m 0775 "$root/etc/kafka" "$root/etc/kafka/secrets" "$root/var/lib/kafka" "$root/var/lib/kafka/data"
	install -d -o 1000 -g 1000 -m 0755 "$root/etc/kafka/docker" "$root/opt/kafka" "$root/opt/kafka/config" \
		"$root/mnt/shared/config" "$root/usr/logs" "$root/home/appuser"
	install -d -m 1777 "$root/tmp"
	install -d -m 0700 "$root/root"
	# The image's command is its run script; here the program itself.
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$root/etc/kafka/docker/run" ./tests/images/kafka
	chown 1000:1000 "$root/etc/kafka/docker/run"
}
