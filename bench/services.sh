#!/usr/bin/env bash
# Services: what a ClusterIP costs next to the pod IP directly, and what 10,000 Services cost.
#   1. TCP throughput (iperf3, 8 s, 1 stream) to the server pod's IP and to its ClusterIP, from a
#      pod on the same node and from a pod on the other node, alternated twice;
#   2. new connections per second and connect+request latency (rr -new-conns: connect, 64-byte
#      request and response, close; 4 concurrent clients) to the pod IP and to the ClusterIP;
#   (3 runs first, before any bulk traffic, so that its memory figures are not those of buffers the
#   data path and wireguard-go keep after a transfer.)
#   3. 10 pods behind 10,000 Services (10 endpoints each): time from `podnet apply` until every
#      node's agent has them all programmed (podnet_services metric), connect latency to one
#      Service with 10 Services and with 10,000 loaded, and the lab daemon's memory (RSS) with
#      10 and with 10,000 (all node agents run in the one daemon process).
# Run as root: sudo bench/services.sh   (needs iperf3, jq, curl, go)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
RR_PORT=47400
LAB=pnsvc
MANY=10000

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in iperf3 jq curl go; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnsvc.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet" RR="$TMP/rr"
LAB_STARTED=0
cleanup() {
	set +e
	if [ "$LAB_STARTED" = 1 ]; then "$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$PODNET" ./cmd/podnet
go build -o "$RR" ./bench/rr
pn() { "$PODNET" --name "$LAB" "$@"; }

cat >"$TMP/lab.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: $LAB}
spec:
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: node-a
  containers:
  - {name: iperf, command: ["iperf3", "-s"]}
  - {name: rr, command: ["$RR", "-listen", ":$RR_PORT"]}
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: iperf, port: 5201}, {name: rr, port: $RR_PORT}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-a}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-b}
spec:
  nodeName: node-b
  containers: [{name: c, command: ["sleep", "infinity"]}]
EOF
for i in $(seq 0 9); do
	node=node-a; [ $((i % 2)) = 1 ] && node=node-b
	cat >>"$TMP/lab.yaml" <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: many-$i, labels: {app: many}}
spec:
  nodeName: $node
  containers: [{name: rr, command: ["$RR", "-listen", ":$RR_PORT"]}]
EOF
done
LAB_STARTED=1
pn lab up -f "$TMP/lab.yaml" >"$TMP/labup.log" 2>&1 || { cat "$TMP/labup.log" >&2; exit 1; }
DIR=$(pn lab status | awk '/^Dir:/ {print $2}')
SERVER_IP=$(pn get pod server -o json | jq -r .status.podIP)
VIP=$(pn get svc server -o json | jq -r .spec.clusterIP)
DAEMON_PID=$(pgrep -f -- "daemon --name $LAB" | head -1)
# Tens of thousands of connections to one address would run the clients out of ephemeral ports
# held in TIME_WAIT (connect() then searches for a free port, adding milliseconds): let them
# reuse TIME_WAIT ports and widen the range, inside the client pods' own network namespaces.
for c in client-a client-b; do
	pn exec "$c" -- sysctl -q -w net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=1024 65535"
done
sleep 1

gbps() { # CLIENT ADDR -> Gbit/s
	local i out
	for i in 1 2 3; do
		out=$(pn exec "$1" -- iperf3 -J -t "$DURATION" -c "$2" 2>/dev/null | jq -r 'if .error then empty else (.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) end' 2>/dev/null || true)
		[ -n "$out" ] && { echo "$out"; return 0; }
		sleep 1
	done
	echo failed
}
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.2f", s / n; else print "failed" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }
rr_conns() { # CLIENT ADDR N CONC -> JSON
	pn exec "$1" -- "$RR" -connect "$2:$RR_PORT" -new-conns -n "$3" -c "$4" -warmup 200 2>/dev/null || echo '{}'
}
metric_min() { # NAME -> the smallest value over the nodes
	curl -s --unix-socket "$DIR/lab.sock" http://lab/metrics | awk -v m="$1" '$1 ~ "^"m"\\{" { v = $2 + 0; if (min == "" || v < min) min = v } END { print (min == "" ? -1 : min) }'
}
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$DAEMON_PID/status"; }

echo "-- $MANY Services" >&2
svc_doc() { # NAME
	printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  selector: {app: many}\n  ports: [{port: %s}]\n' "$1" "$RR_PORT"
}
: >"$TMP/ten.yaml"
for i in $(seq 0 9); do svc_doc "svc-$i" >>"$TMP/ten.yaml"; done
pn apply -f "$TMP/ten.yaml" >/dev/null
for _ in $(seq 100); do [ "$(metric_min podnet_services)" -ge 11 ] && break; sleep 0.1; done
sleep 1
VIP0=$(pn get svc svc-0 -o json | jq -r .spec.clusterIP)
LAT10=$(rr_conns client-a "$VIP0" 4000 1)
RSS10=$(rss_mb)

: >"$TMP/rest.yaml"
for i in $(seq 10 $((MANY - 1))); do svc_doc "svc-$i"; done >>"$TMP/rest.yaml"
cat "$TMP/ten.yaml" "$TMP/rest.yaml" >"$TMP/many.yaml"
heap_mb() { # live heap: the pprof endpoint collects garbage first (gc=1); twice, to empty sync.Pools
	curl -s --unix-socket "$DIR/lab.sock" "http://lab/debug/pprof/heap?gc=1" -o /dev/null
	curl -s --unix-socket "$DIR/lab.sock" "http://lab/debug/pprof/heap?gc=1" -o /dev/null
	curl -s --unix-socket "$DIR/lab.sock" http://lab/metrics | awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%.0f", $2 / 1048576 }'
}
HEAP10=$(heap_mb)
# Twice: apply the 10,000 (timed until every node has them), measure, delete all but ten, measure.
declare -a PROG LATK LAT1
for round in 1 2; do
	start=$(date +%s.%N)
	pn apply -f "$TMP/many.yaml" >/dev/null
	[ "$round" = 1 ] && APPLY_S=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	want=$((MANY + 1))
	until [ "$(metric_min podnet_services)" -ge "$want" ]; do
		sleep 0.02
		if awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - s > 60) }'; then echo "not programmed in 60 s" >&2; break; fi
	done
	done_at=$(date +%s.%N)
	PROG+=("$(awk -v a="$start" -v b="$done_at" 'BEGIN { printf "%.2f", b - a }')")
	[ "$round" = 1 ] && { RSS10K=$(rss_mb); HEAP10K=$(heap_mb); }
	sleep 1
	LATK+=("$(rr_conns client-a "$VIP0" 4000 1 | jq -r '.p50_us // "failed"')")
	pn delete -f "$TMP/rest.yaml" >/dev/null
	until [ "$(metric_min podnet_services)" -le 11 ]; do sleep 0.05; done
	sleep 1
	LAT1+=("$(rr_conns client-a "$VIP0" 4000 1 | jq -r '.p50_us // "failed"')")
done
L10=$(printf '%s\n' "$(jq -r '.p50_us // "failed"' <<<"$LAT10")" "${LAT1[@]}" | mean)
L10K=$(printf '%s\n' "${LATK[@]}" | mean)
echo "-- throughput and connection rate" >&2
declare -A T
for client in client-a client-b; do
	d=() v=()
	for round in 1 2; do
		d+=("$(gbps "$client" "$SERVER_IP")")
		v+=("$(gbps "$client" "$VIP")")
	done
	T[$client,direct]=$(printf '%s\n' "${d[@]}" | mean)
	T[$client,vip]=$(printf '%s\n' "${v[@]}" | mean)
	T[$client,rr_direct]=$(rr_conns "$client" "$SERVER_IP" 5000 4)
	T[$client,rr_vip]=$(rr_conns "$client" "$VIP" 5000 4)
done


echo
printf '%-34s %-12s %-12s %s\n' "TCP throughput, 1 stream" "pod IP" "ClusterIP" "ClusterIP/pod IP"
for client in client-a client-b; do
	label="same node"; [ "$client" = client-b ] && label="other node"
	printf '%-34s %-12s %-12s %s\n' "  from a pod on the $label (Gbit/s)" "${T[$client,direct]}" "${T[$client,vip]}" "$(ratio "${T[$client,vip]}" "${T[$client,direct]}")"
done
printf '%-34s %-12s %-12s %s\n' "New connections per second" "pod IP" "ClusterIP" "ClusterIP/pod IP"
for client in client-a client-b; do
	label="same node"; [ "$client" = client-b ] && label="other node"
	cd=$(jq -r '.conns_per_s // "failed"' <<<"${T[$client,rr_direct]}") cv=$(jq -r '.conns_per_s // "failed"' <<<"${T[$client,rr_vip]}")
	printf '%-34s %-12s %-12s %s\n' "  from the $label (conns/s)" "$cd" "$cv" "$(ratio "$cv" "$cd")"
	pd=$(jq -r '.p50_us // "failed"' <<<"${T[$client,rr_direct]}") pv=$(jq -r '.p50_us // "failed"' <<<"${T[$client,rr_vip]}")
	printf '%-34s %-12s %-12s %s\n' "  p50 connect+request (µs)" "$pd" "$pv" "$(ratio "$pv" "$pd")"
done
echo
printf '%-44s %s\n' "$MANY Services x 10 endpoints: apply returned" "$APPLY_S s"
printf '%-44s %s\n' "  programmed on every node (apply to last)" "${PROG[0]} s, again ${PROG[1]} s"
printf '%-44s %s\n' "  connect+request p50, 10 Services (µs)" "$L10 (mean of $(jq -r .p50_us <<<"$LAT10") ${LAT1[*]})"
printf '%-44s %s\n' "  same Service, $MANY Services (µs)" "$L10K (mean of ${LATK[*]}), ratio $(ratio "$L10K" "$L10")"
printf '%-44s %s\n' "  lab daemon live heap, 10 / $MANY" "$HEAP10 MB / $HEAP10K MB (2 node agents and the lab store, after a GC)"
printf '%-44s %s\n' "  lab daemon RSS, 10 / $MANY" "$RSS10 MB / $RSS10K MB"
echo "loadavg (end): $(cat /proc/loadavg)"
