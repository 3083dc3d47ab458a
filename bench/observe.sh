#!/usr/bin/env bash
# The cost of seeing the network on its data path, each row measured in the same run:
#
#   - flows and metrics: two 2-node labs alike but for spec.flowLog, the first with its metrics
#     scraped every second as well, measured in turn, ROUNDS times; the medians and their ratio;
#   - a running capture: the first lab with and without `podnet capture` of the client pod
#     (written to /dev/null), in turn.
#
# Each measurement: iperf3 TCP across nodes and on one node, iperf3 UDP across nodes (every
# datagram passes the flow log's check), and new TCP connections per second across nodes (each
# one a new flow that the log names and keeps). The goal for flows and metrics is at least 0.97x.
# Run as root: sudo bench/observe.sh   (needs iperf3, jq, go, curl)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-3000}

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in iperf3 jq go curl; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnobserve.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet"
RR="$TMP/rr"
LABS=()
SCRAPER=
CAPTURE=
cleanup() {
	set +e
	[ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null
	[ -n "$CAPTURE" ] && kill "$CAPTURE" 2>/dev/null
	for l in "${LABS[@]}"; do "$PODNET" lab down --name "$l" >/dev/null 2>&1 || echo "warning: lab down $l failed" >&2; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building podnet and rr"
go build -o "$PODNET" ./cmd/podnet
go build -o "$RR" ./bench/rr
chmod 755 "$PODNET" "$RR"

# lab NAME FLOWLOG: a 2-node lab: the client and a same-node server on node-a, the cross-node
# server on node-b; iperf3 and rr servers in each server pod.
lab() {
	local name=$1 flowlog=$2
	cat >"$TMP/$name.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: $name}
spec:
  flowLog: $flowlog
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeName: node-b
  containers:
  - {name: iperf, command: ["iperf3", "-s"]}
  - {name: rr, command: ["$RR", "-listen", ":47400"]}
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec:
  nodeName: node-a
  containers: [{name: iperf, command: ["iperf3", "-s"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
EOF
	"$PODNET" lab up --name "$name" -f "$TMP/$name.yaml" --timeout 60s >/dev/null
	LABS+=("$name")
}

pod_ip() { "$PODNET" --name "$1" get pod "$2" -o json | jq -r .status.podIP; }

# measure LAB KIND -> one number: Gbit/s for tcp-far, tcp-near, udp-far; connections/s for conns
measure() {
	local l=$1 kind=$2 out="$TMP/m.json" i
	for i in 1 2 3 4 5; do
		case $kind in
		tcp-far) "$PODNET" --name "$l" exec client -- iperf3 -c "${FAR[$l]}" -J -t "$DURATION" >"$out" 2>/dev/null || true ;;
		tcp-near) "$PODNET" --name "$l" exec client -- iperf3 -c "${NEAR[$l]}" -J -t "$DURATION" >"$out" 2>/dev/null || true ;;
		udp-far) "$PODNET" --name "$l" exec client -- iperf3 -c "${FAR[$l]}" -u -b 0 -l 1200 -J -t "$DURATION" >"$out" 2>/dev/null || true ;;
		conns)
			"$PODNET" --name "$l" exec client -- "$RR" -connect "${FAR[$l]}:47400" -new-conns -n "$CONNS" -c 4 -warmup 100 >"$out" 2>/dev/null || true
			v=$(jq -r '.conns_per_s // empty | round' "$out" 2>/dev/null || true)
			[ -n "$v" ] && { echo "$v"; return; }
			sleep 1; continue ;;
		esac
		v=$(jq -r 'if .error then empty else (.end.sum_received.bits_per_second // .end.sum.bits_per_second) / 1e9 * 100 | round / 100 end' "$out" 2>/dev/null || true)
		[ -n "$v" ] && { echo "$v"; return; }
		sleep 1
	done
	echo "nan"
}

median() { printf '%s\n' "$@" | grep -v nan | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="nan" || b=="nan" || b==0) print "n/a"; else printf "%.2fx", a/b }'; }

echo "starting the labs"
declare -A FAR NEAR
lab pnobs-on true
lab pnobs-off false
for l in "${LABS[@]}"; do FAR[$l]=$(pod_ip "$l" far); NEAR[$l]=$(pod_ip "$l" near); done
ON_SOCK=$("$PODNET" lab status --name pnobs-on | awk '/^Dir:/ {print $2}')/lab.sock

# The flows-and-metrics lab is scraped every second, as Prometheus would (more often than its
# default 15 s).
( while :; do curl -s --unix-socket "$ON_SOCK" http://lab/metrics >/dev/null; sleep 1; done ) &
SCRAPER=$!

KINDS=(tcp-far tcp-near udp-far conns)
declare -A R
for round in $(seq "$ROUNDS"); do
	for k in "${KINDS[@]}"; do
		for l in pnobs-on pnobs-off; do
			v=$(measure "$l" "$k")
			R[$l,$k]="${R[$l,$k]:-} $v"
			echo "round $round  $k  $l: $v"
		done
	done
done
kill "$SCRAPER"; SCRAPER=

echo "a running capture (pnobs-on, capture of the client pod to /dev/null)"
for round in $(seq "$ROUNDS"); do
	for k in tcp-far conns; do
		v=$(measure pnobs-on "$k")
		R[nocap,$k]="${R[nocap,$k]:-} $v"
		"$PODNET" --name pnobs-on capture client -w /dev/null 2>/dev/null &
		CAPTURE=$!
		sleep 0.5
		v=$(measure pnobs-on "$k")
		kill "$CAPTURE"; wait "$CAPTURE" 2>/dev/null || true; CAPTURE=
		R[cap,$k]="${R[cap,$k]:-} $v"
		echo "round $round  $k  capture: $v"
	done
done

unit() { case $1 in conns) echo "conn/s" ;; *) echo "Gbit/s" ;; esac; }
echo
echo "Flows and metrics on (flow log, metrics scraped every second) against both off, medians of $ROUNDS:"
printf '%-34s %14s %14s %8s\n' "measure" "on" "off" "ratio"
for k in "${KINDS[@]}"; do
	on=$(median ${R[pnobs-on,$k]}); off=$(median ${R[pnobs-off,$k]})
	printf '%-34s %14s %14s %8s\n' "$k ($(unit "$k"))" "$on" "$off" "$(ratio "$on" "$off")"
done
echo
echo "A running capture of the client pod against none, medians of $ROUNDS:"
printf '%-34s %14s %14s %8s\n' "measure" "capture" "none" "ratio"
for k in tcp-far conns; do
	c=$(median ${R[cap,$k]}); n=$(median ${R[nocap,$k]})
	printf '%-34s %14s %14s %8s\n' "$k ($(unit "$k"))" "$c" "$n" "$(ratio "$c" "$n")"
done
