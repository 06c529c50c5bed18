#!/usr/bin/env bash
# Installs the Debian packages kasa needs on a fresh machine of this kind:
# iptables and ipset (kube-proxy, the kubelet, the CNI plugins and the network
# policy controller call them); to build
# runc for the bundle, libseccomp-dev; for the tests, zstd, mariadb-server
# and postgresql (the databases that the datastore tests start themselves,
# on loopback; the packages' own services are not needed). Safe to run again.
set -euo pipefail
want=(iptables ipset nftables libseccomp-dev zstd mariadb-server postgresql)
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "kasa needs: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
