#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests and the demo use and this
# machine lacks. The one list, shared by `make test`, `make demo` and CI.
# Without root or apt-get it only says what is missing: the tests that need
# those tools skip and say so.
set -euo pipefail

# make; the real-kernel NAT lab (iproute2, nftables, conntrack, ping); the
# package checks (rpm, dpkg-dev, systemd for systemd-analyze); kmod for the
# tun module; independent STUN clients the STUN server is checked against
# (coturn's turnutils_natdiscovery, stun-client's classic RFC 3489 client);
# the real-kernel throughput comparison (make perf, and its smoke test in
# make e2e): iperf3, and ethtool for the veths' offloads; PostgreSQL, whose
# binaries the coordinator's store tests run as throwaway clusters
# (internal/pgtest); chromium, the headless browser the web page's test
# drives (coordinator/ui).
packages=(make ca-certificates iproute2 nftables conntrack iputils-ping rpm dpkg-dev systemd kmod coturn stun-client iperf3 ethtool postgresql chromium)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "deps: missing ${missing[*]}; as root this would install them (the tests that need them skip)" >&2
	exit 0
fi
# The tests start clusters of their own: Debian's package need not create
# and start its system-wide one (postgresql-common reads createcluster.d).
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
	mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/meshnode-tests.conf
fi
echo "deps: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
