# shellcheck shell=bash disable=SC2034,SC2016 # sourced by scripts/build-test-images.sh
# tomcat:10.1 stand-in: Debian's Tomcat 10.1 on OpenJDK 17 (headless), laid
# out under /usr/local/tomcat as the official image (tests/images/README.md).
refs=(docker.io/library/tomcat:10.1)
# tomcat10 holds the default configuration; the standalone sysusers and
# tmpfiles stand in for systemd, which it asks for.
packages=(openjdk-17-jre-headless tomcat10 systemd-standalone-sysusers systemd-standalone-tmpfiles)
image=(-cmd catalina.sh -cmd run -port 8080 -workdir /usr/local/tomcat
	-env PATH=/usr/local/tomcat/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	-env CATALINA_HOME=/usr/local/tomcat -env JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
	-env LANG=C.UTF-8 -env TOMCAT_MAJOR=10)

after_install() {
	in_chroot sh -eu -c '
		home=/usr/local/tomcat
		mkdir -p $home/bin $home/lib $home/conf $home/webapps $home/webapps.dist $home/logs $home/temp $home/work
		# The scripts and bootstrap jars, copied (catalina.sh finds its
		# home from its own path); the libraries, linked.
		cp -L /usr/share/tomcat10/bin/* $home/bin/
		for f in /usr/share/tomcat10/lib/*.jar; do
			ln -s "$(readlink -f "$f")" "$home/lib/${f##*/}"
		done
		# Tomcat'"'"'s default configuration, readable by any user id.
		cp /usr/share/tomcat10/etc/* $home/conf/
		chmod 0644 $home/conf/*
		# As the official image: webapps is empty (/ answers 404 from
		# Tomcat), the default ROOT app waits in webapps.dist.
		cp -r /usr/share/tomcat10-root/default_root $home/webapps.dist/ROOT
		chmod 1777 $home/logs $home/temp $home/work
		rm -rf /var/lib/tomcat10/webapps/ROOT
	'
}
