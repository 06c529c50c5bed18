# shellcheck shell=bash
# Sourced by the scripts that debootstrap a Debian tree. It names no archive
# itself: the mirrors are the ones this machine's apt already uses.
#
#   debian_mirror SUITE      the archive that serves SUITE (e.g. bookworm)
#   debian_security SUITE    the archive that serves SUITE-security
#
# Each prints a URI, or nothing when none is configured (debootstrap then
# uses its own default, and the security archive is left out).
# KASA_DEBIAN_MIRROR and KASA_DEBIAN_SECURITY_MIRROR override what apt says.
# KASA_APT_SOURCES_DIR (default /etc/apt) is where apt's sources are read
# from; the tests point it at a folder of their own.

# apt_source_pairs: "SUITE URI" for every enabled deb source of this machine,
# from both formats: one-line sources.list files and deb822 .sources files.
apt_source_pairs() {
	local dir=${KASA_APT_SOURCES_DIR:-/etc/apt} f
	for f in "$dir/sources.list" "$dir"/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI SUITE COMPONENT...
		awk '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			if (i + 1 <= NF) print $(i + 1), $i
		}' "$f"
	done
	for f in "$dir"/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
		function flush(   n, s, u, i, j) {
			if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/) {
				n = split(suites, s, " "); m = split(uris, u, " ")
				for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print s[i], u[j]
			}
			types = ""; uris = ""; suites = ""; enabled = ""; last = ""
		}
		/^#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[ \t]/ { if (last == "uris") uris = uris " " $0; if (last == "suites") suites = suites " " $0; next }
		{
			key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
			last = key
			if (key == "types") types = val
			else if (key == "uris") uris = val
			else if (key == "suites") suites = val
			else if (key == "enabled") enabled = tolower(val)
		}
		END { flush() }' "$f"
	done
}

# pick_source SUITE LAYOUT: the URI that apt uses for SUITE; failing that,
# one whose path ends in LAYOUT (debian or debian-security), the folder
# that every Debian mirror uses, whatever suite this machine itself runs.
pick_source() {
	local want=$1 layout=$2 suite uri fallback=""
	while read -r suite uri; do
		uri=${uri%/}
		if [ "$suite" = "$want" ]; then
			echo "$uri"
			return
		fi
		[ -z "$fallback" ] && [ "${uri##*/}" = "$layout" ] && fallback=$uri
	done < <(apt_source_pairs)
	[ -n "$fallback" ] && echo "$fallback"
	return 0
}

debian_mirror() {
	if [ -n "${KASA_DEBIAN_MIRROR:-}" ]; then
		echo "$KASA_DEBIAN_MIRROR"
	else
		pick_source "$1" debian
	fi
}

debian_security() {
	if [ -n "${KASA_DEBIAN_SECURITY_MIRROR:-}" ]; then
		echo "$KASA_DEBIAN_SECURITY_MIRROR"
	else
		pick_source "$1-security" debian-security
	fi
}
