#!/usr/bin/env bash
# Cross-node pod-to-pod TCP throughput and request/response latency: the reference is a pair of
# userspace wireguard-go processes on kernel TUN devices, one in each of two network namespaces
# joined by a veth underlay; the plain veth underlay is measured too, for context. The podnet row
# (run_podnet): a 2-node lab, the server pod on node-a, the client pod on node-b, pod MTU 1420.
# Run as root: sudo bench/crossnode.sh
# Needs iperf3, jq, ip, go, ping and wg (apt-get install --no-install-recommends wireguard-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
RR_N=2000
RR_PORT=47400
NS_A=pncross-$$-a NS_B=pncross-$$-b
WG_A=wgpc$$a WG_B=wgpc$$b          # TUN names; distinct per run: the UAPI sockets share /var/run/wireguard
WG_PORT=51820
UNDER_A=10.251.0.1 UNDER_B=10.251.0.2
TUN_A=10.252.0.1 TUN_B=10.252.0.2
UNDER_MTU=1500 TUN_MTU=1420        # 1500 - 80 (IPv6 + UDP + WireGuard header), as wg-quick does
WG_MOD=golang.zx2c4.com/wireguard
WG_SOCK_DIR=/var/run/wireguard
LAB=pncross

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in iperf3 jq ip go ping; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done
command -v wg >/dev/null || { echo "missing wg (apt-get install --no-install-recommends wireguard-tools)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pncross.XXXXXX)
chmod 711 "$TMP"
WGGO="$TMP/wireguard-go"
RR="$TMP/rr"
PODNET="$TMP/podnet"
PIDS=()          # processes we started (killed by pid)
WG_PIDS=()       # the two wireguard-go processes (also in PIDS)
LAB_STARTED=0
SOCK_DIR_CREATED=0
[ -d "$WG_SOCK_DIR" ] || SOCK_DIR_CREATED=1

cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	if [ "$LAB_STARTED" = 1 ] && [ -x "$PODNET" ]; then
		"$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2
	fi
	for ns in "$NS_A" "$NS_B"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
		ip netns del "$ns" 2>/dev/null # takes the veth pair and the TUN devices with it
	done
	rm -f "$WG_SOCK_DIR/$WG_A.sock" "$WG_SOCK_DIR/$WG_B.sock"
	[ "$SOCK_DIR_CREATED" = 1 ] && rmdir "$WG_SOCK_DIR" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# gbps_of JSONFILE -> Gbit/s with 2 decimals, or empty on error
gbps_of() {
	jq -r 'if .error then empty else (.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) end' "$1" 2>/dev/null || true
}

# run_client OUTFILE CMD... : runs an iperf3 -J client command, retrying the connect a few times
run_client() {
	local out=$1; shift
	local i
	for i in 1 2 3 4 5; do
		# in the background + wait, so that a signal runs the traps at once; cleanup ends the
		# client with its namespace
		"$@" >"$out" 2>"$out.err" </dev/null &
		wait $! || true
		if [ -n "$(gbps_of "$out")" ]; then return 0; fi
		sleep 1
	done
	return 1
}

declare -A RES    # RES[scenario,1|4]=Gbit/s, RES[scenario,p50|p99]=µs, or "failed: ..."
SCENARIOS=()

record() { # scenario streams outfile
	local v; v=$(gbps_of "$3")
	if [ -z "$v" ]; then
		v="failed: $(jq -r '.error // "no output"' "$3" 2>/dev/null | head -c 100 || echo 'no output')"
	fi
	RES["$1,$2"]=$v
}

# measure SCENARIO TAG HOST CMD-PREFIX... : iperf3 1 and 4 streams, then rr, against HOST
# (iperf3 -s and rr -listen already running there), the clients run under CMD-PREFIX
measure() {
	local sc=$1 tag=$2 host=$3; shift 3
	local P
	for P in 1 4; do
		run_client "$TMP/$tag-$P.json" "$@" iperf3 -c "$host" -J -t "$DURATION" -P "$P" || true
		record "$sc" "$P" "$TMP/$tag-$P.json"
	done
	"$@" "$RR" -connect "$host:$RR_PORT" -n "$RR_N" >"$TMP/$tag-rr.json" 2>"$TMP/$tag-rr.err" </dev/null &
	if wait $! && jq -e '.p50_us and .p99_us' "$TMP/$tag-rr.json" >/dev/null 2>&1; then
		RES["$sc,p50"]=$(jq -r .p50_us "$TMP/$tag-rr.json")
		RES["$sc,p99"]=$(jq -r .p99_us "$TMP/$tag-rr.json")
	else
		RES["$sc,p50"]="failed: rr: $(tail -1 "$TMP/$tag-rr.err" | head -c 100)"
	fi
}

# build_wireguard_go: from the module cache, without network. If go.mod does not require the
# module yet, add it to a temporary copy of go.mod/go.sum (-modfile); /work/main's are untouched.
build_wireguard_go() {
	if go build -o "$WGGO" "$WG_MOD" 2>"$TMP/wgbuild.err"; then return 0; fi
	local ver=${WG_VERSION:-}
	if [ -z "$ver" ]; then
		ver=$(find "$(go env GOMODCACHE)/cache/download/$WG_MOD/@v" -name '*.info' -printf '%f\n' 2>/dev/null |
			sed 's/\.info$//' | sort | tail -1)
	fi
	[ -n "$ver" ] || { echo "no $WG_MOD in the module cache (and go build: $(head -1 "$TMP/wgbuild.err"))" >&2; return 1; }
	mkdir "$TMP/mod"
	cp go.mod go.sum "$TMP/mod/"
	GOPROXY=off GOFLAGS=-mod=mod go get -modfile="$TMP/mod/go.mod" "$WG_MOD@$ver" >"$TMP/wgbuild.err" 2>&1 &&
		GOPROXY=off GOFLAGS=-mod=mod go build -modfile="$TMP/mod/go.mod" -o "$WGGO" "$WG_MOD" >>"$TMP/wgbuild.err" 2>&1 ||
		{ echo "building wireguard-go $ver failed:" >&2; cat "$TMP/wgbuild.err" >&2; return 1; }
}

# start_wg NS IFNAME : wireguard-go in the foreground inside NS (kernel TUN IFNAME, UAPI socket
# $WG_SOCK_DIR/IFNAME.sock), and wait until both exist
start_wg() {
	local ns=$1 ifn=$2 i
	[ ! -e "$WG_SOCK_DIR/$ifn.sock" ] || { echo "$WG_SOCK_DIR/$ifn.sock already exists" >&2; return 1; }
	ip netns exec "$ns" env LOG_LEVEL=error WG_PROCESS_FOREGROUND=1 "$WGGO" -f "$ifn" >"$TMP/$ifn.log" 2>&1 &
	PIDS+=($!)
	WG_PIDS+=($!)
	for ((i = 0; i < 50; i++)); do
		[ -S "$WG_SOCK_DIR/$ifn.sock" ] && ip -n "$ns" link show "$ifn" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "wireguard-go $ifn in $ns did not come up: $(tail -3 "$TMP/$ifn.log")" >&2
	return 1
}

echo "== crossnode bench $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc) kernel=$(uname -r) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "iperf3: $(iperf3 --version | head -1)"
echo "loadavg (start): $(cat /proc/loadavg)"

echo "-- build" >&2
go build -o "$RR" ./bench/rr
build_wireguard_go
echo "wireguard-go: $(go version -m "$WGGO" | awk -v m="$WG_MOD" '($1 == "mod" || $1 == "dep") && $2 == m {print $3}')" \
	"($(go version -m "$WGGO" | awk '$1 == "dep" && $2 ~ /^golang.org\/x\/(crypto|sys)$/ {printf "%s %s ", $2, $3}')$(go env GOVERSION))"

############ underlay: two namespaces joined by a veth pair (nothing in the host namespace)
for ns in "$NS_A" "$NS_B"; do
	if ip netns list | grep -qw "$ns"; then echo "namespace $ns already exists; remove it first" >&2; exit 1; fi
done
ip netns add "$NS_A"; ip netns add "$NS_B"
ip -n "$NS_A" link add eth0 mtu "$UNDER_MTU" type veth peer name eth0 netns "$NS_B"
n=1
for ns in "$NS_A" "$NS_B"; do
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "10.251.0.$n/24" dev eth0
	ip -n "$ns" link set eth0 up
	n=$((n + 1))
done

# servers in A, on every address (the underlay and, later, the tunnel)
ip netns exec "$NS_A" iperf3 -s >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$NS_A" "$RR" -listen ":$RR_PORT" >"$TMP/rr-server.log" 2>&1 &
PIDS+=($!)
sleep 1

############ 1. veth underlay
echo "-- veth underlay" >&2
SC_V="veth underlay (no encryption)"; SCENARIOS+=("$SC_V")
measure "$SC_V" veth "$UNDER_A" ip netns exec "$NS_B"

############ 2. wireguard-go pair on kernel TUN devices
echo "-- wireguard-go pair" >&2
SC_W="wireguard-go pair (kernel TUN)"; SCENARIOS+=("$SC_W")
umask 077
wg genkey >"$TMP/a.key"; wg genkey >"$TMP/b.key"
umask 022
PUB_A=$(wg pubkey <"$TMP/a.key") PUB_B=$(wg pubkey <"$TMP/b.key")
wg_ok=1
start_wg "$NS_A" "$WG_A" && start_wg "$NS_B" "$WG_B" || wg_ok=0
if [ "$wg_ok" = 1 ]; then
	# wg talks to a userspace device through $WG_SOCK_DIR/IFNAME.sock (UAPI), found by name
	ip netns exec "$NS_A" wg set "$WG_A" private-key "$TMP/a.key" listen-port "$WG_PORT" \
		peer "$PUB_B" endpoint "$UNDER_B:$WG_PORT" allowed-ips "$TUN_B/32"
	ip netns exec "$NS_B" wg set "$WG_B" private-key "$TMP/b.key" listen-port "$WG_PORT" \
		peer "$PUB_A" endpoint "$UNDER_A:$WG_PORT" allowed-ips "$TUN_A/32"
	ip -n "$NS_A" addr add "$TUN_A/24" dev "$WG_A"
	ip -n "$NS_B" addr add "$TUN_B/24" dev "$WG_B"
	ip -n "$NS_A" link set "$WG_A" mtu "$TUN_MTU" up
	ip -n "$NS_B" link set "$WG_B" mtu "$TUN_MTU" up
	# first packets start the handshake
	for i in 1 2 3 4 5; do
		ip netns exec "$NS_B" ping -c 1 -W 1 "$TUN_A" >/dev/null 2>&1 && break
		[ "$i" = 5 ] && wg_ok=0
	done
fi
if [ "$wg_ok" = 1 ]; then
	measure "$SC_W" wg "$TUN_A" ip netns exec "$NS_B"
	# both directions' transfer counters, as a check that the traffic went through the tunnel
	echo "wireguard-go $WG_B transfer (rx tx bytes): $(wg show "$WG_B" transfer | cut -f2- | tr '\t' ' ')"
	# user+system CPU seconds of each wireguard-go process over its life (mostly the measurements)
	echo "wireguard-go CPU (user+sys s): $(for p in "${WG_PIDS[@]}"; do
		awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f ", ($14 + $15) / hz }' "/proc/$p/stat"; done)(server $WG_A, client $WG_B)"
else
	RES["$SC_W,1"]="failed: tunnel not up ($(cat "$TMP/$WG_A.log" "$TMP/$WG_B.log" 2>/dev/null | tail -1))"
fi

############ 3. podnet cross-node
SC_N="podnet cross-node"; SCENARIOS+=("$SC_N")

# run_podnet: HOOK for the lead; fills RES["$SC_N,1"], RES["$SC_N,4"], RES["$SC_N,p50"] and
# RES["$SC_N,p99"] (the measure function does all four). Until cross-node traffic lands it only
# reports that it did not run.
run_podnet() {
	echo "-- podnet cross-node" >&2
	go build -o "$PODNET" ./cmd/podnet
	cat >"$TMP/lab.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: $LAB}
spec:
  mtu: $TUN_MTU
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: node-a
  containers:
  - {name: iperf, command: ["iperf3", "-s"]}
  - {name: rr, command: ["$RR", "-listen", ":$RR_PORT"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-b
  containers: [{name: c, command: ["sleep", "infinity"]}]
EOF
	LAB_STARTED=1
	if ! "$PODNET" lab up -f "$TMP/lab.yaml" --name "$LAB" >"$TMP/labup.log" 2>&1; then
		RES["$SC_N,1"]="failed: lab up: $(tail -1 "$TMP/labup.log")"; return 0
	fi
	SERVER_IP=$("$PODNET" get pod server -o json --name "$LAB" | jq -r .status.podIP)
	sleep 1
	measure "$SC_N" podnet "$SERVER_IP" "$PODNET" exec --name "$LAB" client --
}
run_podnet

############ table
# ratio = value / wireguard-go's value for the same column: > 1 is more throughput, or more latency
fmt_ratio() { # value reference
	if [[ $1 =~ ^[0-9.]+$ ]] && [[ $2 =~ ^[0-9.]+$ ]]; then
		awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2fx", a/b; else printf "n/a" }'
	else
		printf -- "-"
	fi
}
echo
# (µ is two bytes: the header's widths are one more where it appears)
printf '%-31s %-16s %-16s %-9s %-9s %-12s %-12s %-8s %s\n' scenario "1-stream Gbit/s" "4-stream Gbit/s" \
	"p50 µs" "p99 µs" "1-stream/wg" "4-stream/wg" "p50/wg" "p99/wg"
NOTES=()
num() { [[ $1 =~ ^[0-9.]+$ ]] && printf %s "$1" || printf failed; }
for sc in "${SCENARIOS[@]}"; do
	v1=${RES["$sc,1"]:-n/a} v4=${RES["$sc,4"]:-n/a} p50=${RES["$sc,p50"]:-n/a} p99=${RES["$sc,p99"]:-n/a}
	if [[ ! $v1 =~ ^[0-9.]+$ ]] && [[ ! $v4 =~ ^[0-9.]+$ ]] && [[ ! $p50 =~ ^[0-9.]+$ ]]; then
		printf '%-31s %s\n' "$sc" "$v1"
		continue
	fi
	for k in 1 4 p50 p99; do
		v=${RES["$sc,$k"]:-}
		[[ -z $v || $v =~ ^[0-9.]+$ ]] || NOTES+=("$sc ($k): $v")
	done
	printf '%-31s %-16s %-16s %-8s %-8s %-12s %-12s %-8s %s\n' "$sc" "$(num "$v1")" "$(num "$v4")" \
		"$(num "$p50")" "$(num "$p99")" \
		"$(fmt_ratio "$v1" "${RES["$SC_W,1"]:-}")" "$(fmt_ratio "$v4" "${RES["$SC_W,4"]:-}")" \
		"$(fmt_ratio "$p50" "${RES["$SC_W,p50"]:-}")" "$(fmt_ratio "$p99" "${RES["$SC_W,p99"]:-}")"
done
for n in "${NOTES[@]}"; do echo "note: $n"; done
echo "X/wg = value / the wireguard-go pair's value: above 1 is more throughput (Gbit/s) or more latency (µs)"
echo "MTU: underlay $UNDER_MTU, tunnel $TUN_MTU; rr: $RR_N round trips of 64 bytes over one TCP connection"
echo "loadavg (end): $(cat /proc/loadavg)"
