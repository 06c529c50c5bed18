# shellcheck shell=bash disable=SC2034,SC2016 # sourced by scripts/build-test-images.sh
# nginx:1.27 stand-in: Debian's nginx 1.22 laid out as the official image
# (tests/images/README.md).
refs=(docker.io/library/nginx:1.27)
# The stream module, built into the official nginx, is a module package in Debian.
packages=(nginx libnginx-mod-stream gettext-base)
image=(-entrypoint /docker-entrypoint.sh -cmd nginx -cmd -g -cmd 'daemon off;' -port 80 -stopsignal SIGQUIT)

before_install() {
	# The official image's ids.
	in_chroot groupadd --system --gid 101 nginx
	in_chroot useradd --system --uid 101 --gid 101 --home-dir /nonexistent --no-create-home \
		--shell /bin/false --comment "nginx user" nginx
}

after_install() {
	put docker-entrypoint.sh /docker-entrypoint.sh 0755
	put 20-envsubst-on-templates.sh /docker-entrypoint.d/20-envsubst-on-templates.sh 0755
	put nginx.conf /etc/nginx/nginx.conf
	put default.conf /etc/nginx/conf.d/default.conf
	put index.html /usr/share/nginx/html/index.html
	put 50x.html /usr/share/nginx/html/50x.html
	in_chroot sh -eu -c '
		# The official layout: conf.d only, no Debian sites or default page.
		rm -rf /etc/nginx/sites-available /etc/nginx/sites-enabled /var/www
		# Logs go to the container runtime.
		ln -sf /dev/stdout /var/log/nginx/access.log
		ln -sf /dev/stderr /var/log/nginx/error.log
		ln -s nginx /usr/sbin/nginx-debug
		mkdir -p /var/cache/nginx
		chown nginx:nginx /var/lib/nginx /var/cache/nginx
	'
}
