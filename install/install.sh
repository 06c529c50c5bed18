#!/bin/sh
# kasa's node installer: installs kasa on the machine it runs on, as a
# systemd service, with an uninstall script.
#
#   curl -sfL https://HOST/install.sh | INSTALL_KASA_RELEASE_URL=https://HOST/kasa sh -   a server
#   curl -sfL https://HOST/install.sh | KASA_URL=https://SERVER:6443 KASA_TOKEN=K10... sh -   an agent
#   sh install.sh [server|agent] [FLAGS...]                      flags go to kasa
#
# Settings, as k3s users know them, with KASA names:
#   INSTALL_KASA_RELEASE_URL     where kasa's releases are (what make release writes to dist/):
#                                BASE/latest names the newest, BASE/VERSION/kasa-ARCH is the
#                                artifact, BASE/VERSION/sha256sum-ARCH.txt holds its sha256
#   INSTALL_KASA_VERSION         the release to install (v0.1.0); the newest when not given
#   INSTALL_KASA_DOWNLOAD_URL    one binary to download instead; URL.sha256 holds its sha256
#   INSTALL_KASA_SKIP_DOWNLOAD   true: use INSTALL_KASA_BINARY, or the kasa already in the bin dir
#   INSTALL_KASA_BINARY          a kasa binary on this machine to install (implies no download)
#   INSTALL_KASA_SHA256          the binary's expected sha256 (checked whatever its source)
#   INSTALL_KASA_EXEC            the command and flags: "server --tls-san x", "agent ...", or flags
#                                alone; quoted as in sh ('...', "...", \), with nothing expanded
#   INSTALL_KASA_BIN_DIR         where kasa, its links and scripts go (default /usr/local/bin)
#   INSTALL_KASA_SKIP_START      true: install and enable, do not start
#   INSTALL_KASA_SYMLINK         skip: no kubectl/crictl/ctr links; force: replace what is there
#   KASA_URL                     a server to join: the service is an agent
#   KASA_TOKEN, KASA_*           kept, every one, in the service's environment file (mode 0600)
#
# Flags whose values are secrets (--token, --agent-token, --datastore-endpoint)
# go to the environment file as their KASA_* variables, never into the unit
# (mode 0644) or the process's arguments; the other flags reach kasa exactly
# as given, spaces, % and $ included.
#
# Running it again with the same settings changes nothing; a new binary or new
# settings are installed and the service restarted.
set -eu

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
	echo "[ERROR] $*" >&2
	exit 1
}

nl='
'
tab=$(printf '\t')

# kasa's flags that matter to the installer (install_test.go checks these
# lists against kasa's own flags): those whose values are secrets, as
# FLAG=VARIABLE, the ones of them kasa agent has too, and the flags that
# take no value.
SECRET_FLAGS="--token=KASA_TOKEN -t=KASA_TOKEN --agent-token=KASA_AGENT_TOKEN --datastore-endpoint=KASA_DATASTORE_ENDPOINT"
AGENT_SECRET_FLAGS="--token -t"
BOOL_FLAGS="--cluster-reset --db-snapshot-compress --debug --disable-agent --disable-db-snapshots --disable-network-policy --disable-default-registry-endpoint --protect-kernel-defaults --secrets-encryption --help -h"

# quote prints its argument in single quotes, for sh.
quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# unit_word prints its argument as one word of a systemd command line: as
# it is when every character is a plain one, else in double quotes with \
# and " escaped, and % and $ doubled (systemd expands %h and $VAR even
# there).
unit_word() {
	case $1 in
	*"$nl"*) fatal "a flag's value holds a line break, which a systemd unit cannot: put that setting in /etc/kasa/config.yaml" ;;
	'' | *[!A-Za-z0-9_./:=,@+-]*)
		printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g; s/%/%%/g; s/\$/$$/g')"
		;;
	*) printf '%s' "$1" ;;
	esac
}

# split_words reads $1 as sh reads words: quoted with '...', "..." and \,
# but with nothing expanded. It sets WORDS to the words, each quoted for
# eval.
split_words() {
	s=$1
	WORDS=""
	word=""
	inword=""
	q=""
	while [ -n "$s" ]; do
		c=${s%"${s#?}"}
		s=${s#?}
		case $q$c in
		"''" | '""') q="" ;;
		"'" | '"')
			q=$c
			inword=1
			;;
		"'"*) word=$word$c ;;
		'"'\\)
			n=${s%"${s#?}"}
			case $n in
			'"' | \\ | '$' | '`')
				word=$word$n
				s=${s#?}
				;;
			"$nl") s=${s#?} ;;
			*) word=$word$c ;;
			esac
			;;
		'"'*) word=$word$c ;;
		\\)
			[ -n "$s" ] || fatal "INSTALL_KASA_EXEC ends with a backslash"
			n=${s%"${s#?}"}
			s=${s#?}
			if [ "$n" != "$nl" ]; then
				word=$word$n
				inword=1
			fi
			;;
		' ' | "$tab" | "$nl")
			if [ -n "$inword" ]; then
				WORDS="$WORDS $(quote "$word")"
				word=""
				inword=""
			fi
			;;
		*)
			word=$word$c
			inword=1
			;;
		esac
	done
	[ -z "$q" ] || fatal "INSTALL_KASA_EXEC has a $q that is not closed"
	if [ -n "$inword" ]; then
		WORDS="$WORDS $(quote "$word")"
	fi
}

# secret_var prints the variable of a flag whose value is a secret, given
# as $1 alone or with its value (--token, --token=x, -tx), else nothing.
secret_var() {
	for f in $SECRET_FLAGS; do
		name=${f%%=*}
		case $name:$1 in
		"$name:$name" | "$name:$name"=* | -?:"$name"?*)
			echo "${f#*=}"
			return
			;;
		esac
	done
}

# add_arg adds a word to the service's command line.
add_arg() {
	ARGS="$ARGS $(unit_word "$1")"
}

# add_flag FLAG VALUE SEP adds a flag and its value to the command line, as
# one word FLAG$SEP$VALUE or, when SEP is a space, as two; a flag whose
# value is a secret goes to the environment file instead, as its variable.
add_flag() {
	var=$(secret_var "$1")
	if [ -n "$var" ]; then
		if [ "$CMD" = agent ]; then
			case " $AGENT_SECRET_FLAGS " in
			*" $1 "*) ;;
			*) fatal "kasa agent has no $1 flag: give it to the server" ;;
			esac
		fi
		eval "$var=\$2"
		export "${var?}"
		case "$MOVED " in *" $1 "*) ;; *) MOVED="$MOVED $1" ;; esac
		return
	fi
	case $1 in --data-dir | -d) DATA_DIR=$2 ;; esac
	if [ "$3" = " " ]; then
		add_arg "$1"
		add_arg "$2"
	else
		add_arg "$1$3$2"
	fi
}

verify_system() {
	os=$(uname -s)
	[ "$os" = Linux ] || fatal "kasa runs on Linux; this is $os"
	case $(uname -m) in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) fatal "unsupported architecture $(uname -m): kasa is built for amd64 and arm64" ;;
	esac
	if [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
		fatal "this installer needs systemd as the init system; run kasa by hand instead (kasa server, kasa agent)"
	fi
	if [ "$(id -u)" -ne 0 ]; then
		fatal "run the installer as root (sudo sh install.sh, or | sudo sh -)"
	fi
}

setup_env() {
	# The command and its flags: INSTALL_KASA_EXEC, then the arguments.
	split_words "${INSTALL_KASA_EXEC:-}"
	eval "set -- $WORDS \"\$@\""
	case ${1:-} in
	server | agent)
		CMD=$1
		shift
		;;
	-* | "")
		if [ -n "${KASA_URL:-}" ]; then CMD=agent; else CMD=server; fi
		;;
	*) fatal "unknown command '$1': INSTALL_KASA_EXEC starts with server, agent or a flag" ;;
	esac
	# The flags, read as kasa reads them: --flag=value, --flag value,
	# -fvalue, -f=value, -f value.
	ARGS=""
	MOVED=""
	DATA_DIR=/var/lib/kasa
	flag=""
	for a in "$@"; do
		# A secret flag is never taken as a value: after a flag that kasa
		# does not know (a typo), it would carry the secret into the unit.
		if [ -n "$flag" ] && [ -z "$(secret_var "$a")" ]; then
			add_flag "$flag" "$a" " "
			flag=""
			continue
		fi
		if [ -n "$flag" ]; then
			[ -z "$(secret_var "$flag")" ] || fatal "INSTALL_KASA_EXEC: $flag needs a value"
			add_arg "$flag"
			flag=""
		fi
		case $a in
		--) add_arg "$a" ;;
		--*=*) add_flag "${a%%=*}" "${a#*=}" = ;;
		-[!-]=*) add_flag "${a%"${a#??}"}" "${a#???}" = ;;
		-[!-]?*) add_flag "${a%"${a#??}"}" "${a#??}" "" ;;
		-?*)
			case " $BOOL_FLAGS " in
			*" $a "*) add_arg "$a" ;;
			*) flag=$a ;;
			esac
			;;
		*) add_arg "$a" ;;
		esac
	done
	if [ -n "$flag" ]; then
		[ -z "$(secret_var "$flag")" ] || fatal "INSTALL_KASA_EXEC: $flag needs a value"
		add_arg "$flag"
	fi
	if [ "$CMD" = agent ]; then
		[ -n "${KASA_URL:-}" ] || case " $* " in *" --server "* | *" -s "* | *" --server="*) ;; *)
			fatal "an agent needs the server to join: set KASA_URL=https://SERVER:6443 (and KASA_TOKEN)" ;;
		esac
		SYSTEM_NAME=kasa-agent
	else
		SYSTEM_NAME=kasa
	fi
	BIN_DIR=${INSTALL_KASA_BIN_DIR:-/usr/local/bin}
	SYSTEMD_DIR=/etc/systemd/system
	FILE_SERVICE=$SYSTEMD_DIR/$SYSTEM_NAME.service
	FILE_ENV=$FILE_SERVICE.env
	UNINSTALL=$BIN_DIR/$SYSTEM_NAME-uninstall.sh
	KILLALL=$BIN_DIR/kasa-killall.sh
	TMP=$(mktemp -d)
	trap 'rm -rf "$TMP"' EXIT
	if [ -n "$MOVED" ]; then
		info "the values of$MOVED are secrets: they go to $FILE_ENV (mode 0600), not into the unit"
	fi
}

sha256_of() {
	sha256sum "$1" | cut -d' ' -f1
}

download() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		fatal "neither curl nor wget is here to download $1; or give INSTALL_KASA_BINARY"
	fi
}

# release_url sets url to the artifact of INSTALL_KASA_VERSION (else the
# newest) for this machine's architecture, and INSTALL_KASA_SHA256 (unless
# given) from the release's sha256sum file.
release_url() {
	base=${INSTALL_KASA_RELEASE_URL%/}
	version=${INSTALL_KASA_VERSION:-}
	if [ -z "$version" ]; then
		download "$base/latest" "$TMP/latest" || fatal "could not read the newest version from $base/latest: is INSTALL_KASA_RELEASE_URL right? Or give INSTALL_KASA_VERSION"
		version=$(head -n 1 "$TMP/latest" | tr -d ' \r')
	fi
	case $version in
	v[0-9]*) ;;
	*) fatal "INSTALL_KASA_VERSION $version: a version looks like v0.1.0" ;;
	esac
	case $version in *[!A-Za-z0-9.+_-]*) fatal "INSTALL_KASA_VERSION $version: letters, digits and . + _ - only" ;; esac
	url=$base/$version/kasa-$ARCH
	if [ -z "${INSTALL_KASA_SHA256:-}" ]; then
		download "$base/$version/sha256sum-$ARCH.txt" "$TMP/sha256sum.txt" ||
			fatal "could not download $base/$version/sha256sum-$ARCH.txt: is there a release $version for $ARCH?"
		INSTALL_KASA_SHA256=$(awk -v f="kasa-$ARCH" '$2 == f || $2 == "*" f { print $1 }' "$TMP/sha256sum.txt")
		[ -n "$INSTALL_KASA_SHA256" ] || fatal "sha256sum-$ARCH.txt of $version has no line for kasa-$ARCH"
	fi
	info "release $version for $ARCH"
}

# get_binary leaves the binary to install in $NEW_BIN.
get_binary() {
	if [ -n "${INSTALL_KASA_BINARY:-}" ]; then
		[ -f "$INSTALL_KASA_BINARY" ] || fatal "INSTALL_KASA_BINARY $INSTALL_KASA_BINARY is not a file"
		NEW_BIN=$INSTALL_KASA_BINARY
	elif [ "${INSTALL_KASA_SKIP_DOWNLOAD:-}" = true ]; then
		[ -x "$BIN_DIR/kasa" ] || fatal "INSTALL_KASA_SKIP_DOWNLOAD is set but $BIN_DIR/kasa is not there: put it there or give INSTALL_KASA_BINARY"
		NEW_BIN=$BIN_DIR/kasa
	else
		url=${INSTALL_KASA_DOWNLOAD_URL:-}
		if [ -n "${INSTALL_KASA_RELEASE_URL:-}" ]; then
			[ -z "$url" ] || fatal "INSTALL_KASA_RELEASE_URL and INSTALL_KASA_DOWNLOAD_URL are both set: give one of them"
			release_url
		fi
		[ -z "${INSTALL_KASA_VERSION:-}" ] || [ -n "${INSTALL_KASA_RELEASE_URL:-}" ] ||
			fatal "INSTALL_KASA_VERSION needs INSTALL_KASA_RELEASE_URL, the address of kasa's releases (what make release writes to dist/)"
		# No release host is built in: nothing to download by default.
		[ -n "$url" ] || fatal "nothing to download: give INSTALL_KASA_RELEASE_URL=https://HOST/PATH (kasa's releases, as make release writes them to dist/), INSTALL_KASA_BINARY=/path/to/kasa (a binary you built or copied here) or INSTALL_KASA_DOWNLOAD_URL=https://HOST/kasa (with kasa.sha256 beside it)"
		info "downloading $url"
		download "$url" "$TMP/kasa" || fatal "could not download $url"
		chmod 0755 "$TMP/kasa"
		if [ -z "${INSTALL_KASA_SHA256:-}" ]; then
			download "$url.sha256" "$TMP/kasa.sha256" || fatal "could not download $url.sha256 to check the binary"
			INSTALL_KASA_SHA256=$(cut -d' ' -f1 <"$TMP/kasa.sha256")
		fi
		NEW_BIN=$TMP/kasa
	fi
	if [ -n "${INSTALL_KASA_SHA256:-}" ]; then
		got=$(sha256_of "$NEW_BIN")
		[ "$got" = "$INSTALL_KASA_SHA256" ] || fatal "the binary's sha256 is $got, not $INSTALL_KASA_SHA256: refusing to install it"
	fi
	if [ ! -x "$NEW_BIN" ]; then
		cp "$NEW_BIN" "$TMP/kasa.x"
		chmod 0755 "$TMP/kasa.x"
		NEW_BIN=$TMP/kasa.x
	fi
	"$NEW_BIN" --version >/dev/null 2>&1 || fatal "$NEW_BIN does not run here: is it kasa for $ARCH?"
}

# write_if_changed FILE MODE writes standard input to FILE unless it holds
# the same; it sets CHANGED=1 when it wrote.
write_if_changed() {
	cat >"$TMP/new"
	if [ -f "$1" ] && cmp -s "$TMP/new" "$1"; then
		return
	fi
	mkdir -p "$(dirname "$1")"
	install -m "$2" "$TMP/new" "$1"
	CHANGED=1
}

install_binary() {
	mkdir -p "$BIN_DIR"
	if [ -f "$BIN_DIR/kasa" ] && cmp -s "$NEW_BIN" "$BIN_DIR/kasa"; then
		return
	fi
	info "installing kasa $("$NEW_BIN" --version | head -n 1) to $BIN_DIR/kasa"
	install -m 0755 "$NEW_BIN" "$BIN_DIR/.kasa.new"
	mv -f "$BIN_DIR/.kasa.new" "$BIN_DIR/kasa"
	CHANGED=1
}

create_symlinks() {
	[ "${INSTALL_KASA_SYMLINK:-}" = skip ] && return
	for cmd in kubectl crictl ctr; do
		link=$BIN_DIR/$cmd
		if [ -L "$link" ] && [ "$(readlink "$link")" = "$BIN_DIR/kasa" ]; then
			continue
		fi
		if [ -e "$link" ] || [ -L "$link" ]; then
			if [ "${INSTALL_KASA_SYMLINK:-}" != force ]; then
				info "$link exists: no $cmd link (INSTALL_KASA_SYMLINK=force replaces it); kasa $cmd works"
				continue
			fi
		fi
		info "linking $link to kasa"
		ln -sf "$BIN_DIR/kasa" "$link"
	done
}

create_env_file() {
	# Every KASA_* setting, one KEY="VALUE" line each, for systemd (which
	# expands nothing there); the temporary folder is the installer's own
	# (mode 0700). The names come from env, the values from the shell, so
	# that a value with a line break stays one setting.
	value=""
	for key in $(env | sed -n 's/^\(KASA_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
		eval "[ -n \"\${$key+set}\" ]" || continue
		eval "value=\$$key"
		printf '%s="%s"\n' "$key" "$(printf '%s' "$value" | sed 's/[\\"$`]/\\&/g')"
	done >"$TMP/env"
	write_if_changed "$FILE_ENV" 0600 <"$TMP/env"
}

create_service() {
	write_if_changed "$FILE_SERVICE" 0644 <<EOF
[Unit]
Description=kasa ($CMD): lightweight Kubernetes
Documentation=https://github.com/kasa-io/kasa
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=exec
EnvironmentFile=-$FILE_ENV
KillMode=process
Delegate=yes
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$(unit_word "$BIN_DIR/kasa") $CMD$ARGS
EOF
}

create_killall() {
	write_if_changed "$KILLALL" 0755 <<EOF
#!/bin/sh
# Written by kasa's installer: stops kasa and everything it runs on this
# machine (pods included), and undoes its network changes; data is kept.
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
for unit in kasa kasa-agent; do
	systemctl stop "\$unit" 2>/dev/null || true
done
exec $BIN_DIR/kasa killall --data-dir $(quote "$DATA_DIR") "\$@"
EOF
}

create_uninstall() {
	write_if_changed "$UNINSTALL" 0755 <<EOF
#!/bin/sh
# Written by kasa's installer: removes the $SYSTEM_NAME service and
# everything of kasa's on this machine: processes, pods, network changes,
# data ($DATA_DIR), settings (/etc/kasa), links and scripts.
set -e
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
$KILLALL
systemctl disable $SYSTEM_NAME >/dev/null 2>&1 || true
rm -f $FILE_SERVICE $FILE_ENV
systemctl daemon-reload
systemctl reset-failed $SYSTEM_NAME 2>/dev/null || true
if [ -e $SYSTEMD_DIR/kasa.service ] || [ -e $SYSTEMD_DIR/kasa-agent.service ]; then
	echo "another kasa service remains: its binary and data stay"
	rm -f "\$0"
	exit 0
fi
for cmd in kubectl crictl ctr; do
	if [ -L $BIN_DIR/\$cmd ] && [ "\$(readlink $BIN_DIR/\$cmd)" = $BIN_DIR/kasa ]; then
		rm -f $BIN_DIR/\$cmd
	fi
done
# The kubelet keeps its device-plugin socket and the pods' logs here
# whatever its root dir.
rm -rf $(quote "$DATA_DIR") /etc/kasa /run/kasa /var/lib/kubelet /var/log/pods /var/log/containers
rm -f $BIN_DIR/kasa $KILLALL "\$0"
echo "kasa is uninstalled"
EOF
}

start_service() {
	# A re-run that changes nothing spends no second on systemd's reload.
	if [ "$CHANGED" = 1 ] || ! systemctl is-enabled --quiet "$SYSTEM_NAME" 2>/dev/null; then
		systemctl daemon-reload
		systemctl enable "$SYSTEM_NAME" >/dev/null 2>&1
	fi
	if [ "${INSTALL_KASA_SKIP_START:-}" = true ]; then
		info "installed; not started (INSTALL_KASA_SKIP_START): systemctl start $SYSTEM_NAME"
		return
	fi
	if [ "$CHANGED" = 0 ] && systemctl is-active --quiet "$SYSTEM_NAME"; then
		info "no change: $SYSTEM_NAME is installed as asked and running"
		return
	fi
	info "starting $SYSTEM_NAME"
	systemctl restart "$SYSTEM_NAME"
}

main() {
	verify_system
	setup_env "$@"
	CHANGED=0
	get_binary
	install_binary
	create_symlinks
	create_env_file
	create_service
	create_killall
	create_uninstall
	start_service
	info "done: $FILE_SERVICE; $UNINSTALL removes it"
}

main "$@"
