#!/usr/bin/env bash
# meshnode demo: a coordinator and two nodes, each behind its own home NAT,
# all in Linux network namespaces on this machine. Shows `meshnode status`,
# pings across the overlay and removes everything it made on any exit.
# Needs root. Run it with `make demo`.
#
#   internet (bridge, 198.18.0.0/15)
#     coordinator 198.18.0.1 (+ 198.18.0.2 for NAT type tests)
#     NAT 198.18.1.1 ── LAN 10.1.0.0/24 ── alice 10.1.0.2
#     NAT 198.18.2.1 ── LAN 10.2.0.0/24 ── bob   10.2.0.2
#
# Environment: MESHNODE_BIN uses that binary instead of building one.
set -euo pipefail

readonly PREFIX=mndemo
readonly PORT=41820
# Bounded waits: tries of 0.1 s each.
readonly READY_TRIES=300   # 30 s for the coordinator and each node to start
readonly PATH_TRIES=450    # 45 s for the direct path

cd "$(dirname "$0")/.."
if [[ -t 1 ]]; then
	say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
else
	say() { printf '==> %s\n' "$*"; }
fi
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[[ $(uname -s) == Linux ]] || die "the demo uses Linux network namespaces; run it on Linux"
[[ $EUID -eq 0 ]] || die "needs root to create network namespaces and TUN devices: sudo make demo"

# --- tools -----------------------------------------------------------------
scripts/deps.sh

# --- binary ----------------------------------------------------------------
BIN=${MESHNODE_BIN:-}
if [[ -z $BIN ]]; then
	command -v "${GO:-go}" >/dev/null || die "building meshnode needs Go (see go.mod for the version): https://go.dev/dl/"
	say "Building meshnode"
	make -s build GO="${GO:-go}" >/dev/null
	BIN=$PWD/bin/meshnode
fi
[[ -x $BIN ]] || die "no meshnode binary at $BIN"

# --- lab -------------------------------------------------------------------
RUN="$PREFIX-$$-$(printf '%04x' $((RANDOM)))"
DIR=$(mktemp -d "/tmp/$PREFIX.XXXXXX")
NSES=()
PIDS=()

cleanup() {
	local rc=$? pid ns
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	if ((rc != 0 && rc != 130 && rc != 143)) && [[ -d $DIR ]]; then
		for f in "$DIR"/*.log; do
			[[ -f $f ]] || continue
			printf '\n--- %s (last 15 lines)\n' "$(basename "$f")"
			tail -n 15 "$f"
		done
	fi
	rm -rf "$DIR"
	say "Cleaned up"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Namespaces an earlier demo left behind when it was killed (its PID is gone).
for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
	owner=${ns#"$PREFIX-"}; owner=${owner%%-*}
	[[ $owner =~ ^[0-9]+$ ]] || continue
	kill -0 "$owner" 2>/dev/null && continue
	for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
done

nsysctl() { # nsysctl ROLE KEY VALUE: a sysctl inside a namespace (no procps needed)
	ip netns exec "$RUN-$1" sh -c "echo $3 > /proc/sys/${2//.//}"
}
netns() { # netns ROLE: create a namespace with loopback up
	local ns="$RUN-$1"
	ip netns add "$ns"
	NSES+=("$ns")
	ip -n "$ns" link set lo up
}
plug() { # plug ROLE IF ADDR...: connect to the internet bridge
	local ns="$RUN-$1" ifname=$2 port="p${#NSES[@]}"
	shift 2
	ip -n "$RUN-inet" link add "$port" type veth peer name "$ifname" netns "$ns"
	ip -n "$RUN-inet" link set "$port" master br0 up
	for a in "$@"; do ip -n "$ns" addr add "$a" dev "$ifname"; done
	ip -n "$ns" link set "$ifname" up
}
home() { # home N NAME: a home router (masquerade) with one host behind it
	local i=$1 name=$2 r="$RUN-nat$1" h="$RUN-$2"
	netns "nat$i"
	nsysctl "nat$i" net.ipv4.ip_forward 1
	nsysctl "nat$i" net.ipv6.conf.all.disable_ipv6 1
	plug "nat$i" wan0 "198.18.$i.1/15"
	netns "$name"
	ip -n "$r" link add lan0 type veth peer name eth0 netns "$h"
	ip -n "$r" addr add "10.$i.0.1/24" dev lan0
	ip -n "$r" link set lan0 up
	nsysctl "$name" net.ipv6.conf.eth0.disable_ipv6 1
	ip -n "$h" addr add "10.$i.0.2/24" dev eth0
	ip -n "$h" link set eth0 up
	ip -n "$h" route add default via "10.$i.0.1"
	ip netns exec "$r" nft -f - <<-EOF
		table ip demo {
			chain postrouting {
				type nat hook postrouting priority srcnat; policy accept;
				oifname "wan0" masquerade
			}
			chain input {
				type filter hook input priority filter; policy accept;
				iifname "wan0" ct state established,related accept
				iifname "wan0" drop
			}
			chain forward {
				type filter hook forward priority filter; policy drop;
				ct state established,related accept
				iifname "lan0" oifname "wan0" accept
			}
		}
	EOF
}

say "Building the lab: an internet on 198.18.0.0/15, two home NATs (masquerade)"
netns inet
nsysctl inet net.ipv6.conf.all.disable_ipv6 1
nsysctl inet net.ipv6.conf.default.disable_ipv6 1
ip -n "$RUN-inet" link add br0 type bridge stp_state 0 forward_delay 0
ip -n "$RUN-inet" link set br0 up
netns coord
plug coord eth0 198.18.0.1/15 198.18.0.2/15
home 1 alice
home 2 bob

waitfor() { # waitfor TRIES WHAT PID CMD...: poll CMD every 0.1 s while PID lives
	local tries=$1 what=$2 pid=$3
	shift 3
	for _ in $(seq "$tries"); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || die "$what: process $pid exited (logs below)"
		sleep 0.1
	done
	die "$what: not ready after $((tries / 10)) s"
}

say "Starting the coordinator on 198.18.0.1"
ip netns exec "$RUN-coord" "$BIN" coordinator --data-dir "$DIR/coordinator" \
	--listen 198.18.0.1:8443 --stun-listen 198.18.0.1:3478 --stun-alternate 198.18.0.2:3479 \
	--public-url https://198.18.0.1:8443 >"$DIR/coordinator.log" 2>&1 &
PIDS+=($!)
waitfor "$READY_TRIES" "coordinator" "${PIDS[-1]}" ip netns exec "$RUN-coord" bash -c 'exec 3<>/dev/tcp/198.18.0.1/8443'
TOKEN=$("$BIN" token create --data-dir "$DIR/coordinator" --reusable --expiry 1h | tail -n 1)

for name in alice bob; do
	say "Starting $name behind its NAT"
	mkdir -p "$DIR/$name"
	ip netns exec "$RUN-$name" "$BIN" up --token "$TOKEN" --state-dir "$DIR/$name" \
		--socket "$DIR/$name/meshnode.sock" --listen-port "$PORT" --name "$name" >"$DIR/$name.log" 2>&1 &
	PIDS+=($!)
	waitfor "$READY_TRIES" "$name" "${PIDS[-1]}" "$BIN" status --socket "$DIR/$name/meshnode.sock"
done

direct() { # direct NAME: NAME sees its peer over a direct path
	"$BIN" status --json --socket "$DIR/$1/meshnode.sock" | grep -Eq '"path": *"direct"'
}
both_direct() { direct alice && direct bob; }
say "Waiting for a direct path through both NATs"
start=$(date +%s%N)
waitfor "$PATH_TRIES" "direct path" "${PIDS[-1]}" both_direct
say "Direct path up after $(((($(date +%s%N) - start) / 1000000))) ms"

echo
say "meshnode status (on alice)"
"$BIN" status --socket "$DIR/alice/meshnode.sock"
echo
BOB=$(ip -n "$RUN-bob" -4 -o addr show dev mesh0 | awk '{split($4, a, "/"); print a[1]}')
say "ping -c 3 bob ($BOB) from alice, across the overlay"
ip netns exec "$RUN-alice" ping -c 3 "$BOB"
echo
say "Demo done: alice and bob talk directly through two NATs"
