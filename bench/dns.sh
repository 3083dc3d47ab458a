#!/usr/bin/env bash
# Cluster DNS: dnsperf from a pod against podnet's cluster DNS (answered by the node agent at the
# Lab's dnsIP) and, in the same run, against CoreDNS (built from the Go module proxy) serving the
# same names from a zone file in a pod on the same node. Both answer from memory, authoritatively,
# with no cache in front.
#   1. a 2-node lab: a `podnet serve` pod behind $NSVC ClusterIP Services svc-0..svc-$((NSVC - 1))
#      (so every Service has an endpoint), a client pod and a coredns pod on node-a;
#   2. the zone file cluster.local with the same A records (svc-N.default.svc.cluster.local. -> its
#      ClusterIP, read back from `podnet get svc -o json`), checked name by name with dig;
#   3. dnsperf (UDP, A queries for the $NSVC names in a loop) from the client pod: maximum throughput
#      with $OUTSTANDING queries outstanding for $DURATION s, alternated podnet, CoreDNS, CoreDNS,
#      podnet; then latency at a light load (-Q $LIGHT_QPS) in the same order.
#   For context, a second CoreDNS with the same zone on the host's loopback, queried by dnsperf on
#   the host (no pod network in the path), measured between the two CoreDNS-in-a-pod runs.
# Run as root: sudo bench/dns.sh   (needs dnsperf, dig, jq, go; apt-get install dnsperf dnsutils jq)
# COREDNS_VERSION selects the CoreDNS release (default below; "latest" asks the module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

LAB=pndns
NSVC=100
DURATION=10
OUTSTANDING=100     # dnsperf -q, its default
LIGHT_QPS=1000
LIGHT_DURATION=5
DNS_IP=10.96.0.10   # the Lab's dnsIP (its default)
HOST_PORT=15353     # the host-loopback CoreDNS (context row)
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}   # the latest release on 2026-11-21

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in jq go dig; do command -v "$c" >/dev/null || { echo "missing $c (apt-get install jq dnsutils; Go from go.dev)" >&2; exit 1; }; done
DNSPERF=$(command -v dnsperf) || { echo "missing dnsperf: apt-get install dnsperf (Debian/Ubuntu package)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pndns.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet" COREDNS="$TMP/coredns"
LAB_STARTED=0
HOST_PID=
cleanup() {
	set +e
	[ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null
	if [ "$LAB_STARTED" = 1 ]; then "$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_START=$(cat /proc/loadavg)
echo "-- building podnet and CoreDNS $COREDNS_VERSION" >&2
go build -o "$PODNET" ./cmd/podnet
# CoreDNS: the whole server with every plugin of its plugin.cfg, from a throwaway module in $TMP
# (the Go module and build caches are the user's, as for any go build; nothing goes into the repo).
mkdir "$TMP/coredns-mod"
build_start=$(date +%s.%N)
(
	cd "$TMP/coredns-mod"
	go mod init podnet.invalid/corednsbench >/dev/null 2>&1
	go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1 || go get "github.com/coredns/coredns@$COREDNS_VERSION"
	go build -o "$COREDNS" github.com/coredns/coredns
)
BUILD_S=$(awk -v a="$build_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
COREDNS_MOD=$(cd "$TMP/coredns-mod" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
echo "CoreDNS $COREDNS_MOD (full build, all plugins): $("$COREDNS" -version | head -1), built in $BUILD_S s" >&2
pn() { "$PODNET" --name "$LAB" "$@"; }

cat >"$TMP/lab.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: $LAB}
spec:
  dnsIP: $DNS_IP
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-b
  containers:
  - name: web
    command: ["podnet", "serve", "--http", "80"]
    readinessProbe: {tcpSocket: {port: 80}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
EOF
for i in $(seq 0 $((NSVC - 1))); do
	printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-%s}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n' "$i"
done >>"$TMP/lab.yaml"
LAB_STARTED=1
pn lab up -f "$TMP/lab.yaml" >"$TMP/labup.log" 2>&1 || { cat "$TMP/labup.log" >&2; exit 1; }

# The zone: the same names and addresses as the lab's Services, TTL 5 s (CoreDNS's kubernetes
# plugin's default TTL), with the SOA and NS records a zone needs. The minimal plugin leaves the
# zone's NS record out of the authority section of answers, so that CoreDNS's answers carry what
# podnet's carry (the question and the A record).
pn get svc -o json | jq -r '.items[] | select(.metadata.name | startswith("svc-")) | "\(.metadata.name) \(.spec.clusterIP)"' >"$TMP/services.txt"
[ "$(wc -l <"$TMP/services.txt")" = "$NSVC" ] || { echo "expected $NSVC Services, got $(wc -l <"$TMP/services.txt")" >&2; exit 1; }
{
	printf '$ORIGIN cluster.local.\n$TTL 5\n'
	printf '@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n'
	printf '@ IN NS ns.dns.cluster.local.\n'
	printf 'ns.dns IN A %s\n' "$DNS_IP"
	awk '{ printf "%s.default.svc IN A %s\n", $1, $2 }' "$TMP/services.txt"
} >"$TMP/cluster.local.zone"
printf 'cluster.local:53 {\n    minimal\n    file %s cluster.local\n}\n' "$TMP/cluster.local.zone" >"$TMP/Corefile"
printf 'cluster.local:%s {\n    bind 127.0.0.1\n    minimal\n    file %s cluster.local\n}\n' "$HOST_PORT" "$TMP/cluster.local.zone" >"$TMP/Corefile.host"
awk '{ printf "%s.default.svc.cluster.local A\n", $1 }' "$TMP/services.txt" >"$TMP/queries.txt"

cat >"$TMP/coredns.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: coredns}
spec:
  nodeName: node-a
  containers:
  - name: coredns
    command: ["$COREDNS", "-conf", "$TMP/Corefile", "-dns.port", "53"]
    readinessProbe: {tcpSocket: {port: 53}}
EOF
pn apply -f "$TMP/coredns.yaml" >/dev/null
COREDNS_IP=
for _ in $(seq 100); do
	COREDNS_IP=$(pn get pod coredns -o json | jq -r '.status.podIP // empty')
	[ -n "$COREDNS_IP" ] && pn exec client -- dig +short +time=1 +tries=1 svc-0.default.svc.cluster.local "@$COREDNS_IP" 2>/dev/null | grep -q . && break
	sleep 0.2
done
[ -n "$COREDNS_IP" ] || { echo "the coredns pod got no address" >&2; pn logs coredns >&2 || true; exit 1; }

"$COREDNS" -conf "$TMP/Corefile.host" >"$TMP/coredns-host.log" 2>&1 &
HOST_PID=$!
for _ in $(seq 50); do
	dig +short +time=1 +tries=1 -p "$HOST_PORT" svc-0.default.svc.cluster.local @127.0.0.1 2>/dev/null | grep -q . && break
	kill -0 "$HOST_PID" 2>/dev/null || { echo "CoreDNS on 127.0.0.1:$HOST_PORT did not start:" >&2; cat "$TMP/coredns-host.log" >&2; exit 1; }
	sleep 0.2
done

# Every server must give the same address for every name.
pn exec client -- dig +short +time=2 +tries=2 "@$DNS_IP" -f "$TMP/queries.txt" >"$TMP/podnet.answers" 2>&1 || true
pn exec client -- dig +short +time=2 +tries=2 "@$COREDNS_IP" -f "$TMP/queries.txt" >"$TMP/coredns.answers" 2>&1 || true
dig +short +time=2 +tries=2 -p "$HOST_PORT" @127.0.0.1 -f "$TMP/queries.txt" >"$TMP/coredns-host.answers" 2>&1 || true
awk '{ print $2 }' "$TMP/services.txt" >"$TMP/want.answers"
for s in podnet coredns coredns-host; do
	cmp -s "$TMP/want.answers" "$TMP/$s.answers" || {
		echo "$s does not answer every name with its ClusterIP:" >&2
		diff "$TMP/want.answers" "$TMP/$s.answers" | head >&2
		exit 1
	}
done
echo "all three servers answer the $NSVC names with the Services' ClusterIPs" >&2

LAB_PID=$(pgrep -f -- "daemon --name $LAB" | head -1)
COREDNS_PID=$(pgrep -f -- "^$COREDNS -conf $TMP/Corefile -dns.port" | head -1)
cpu_s() { # PID -> user+system CPU seconds
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# perf p|c|h ARGS... -> one line: qps avg_us max_us stddev_us lost_pct rcodes req_bytes resp_bytes
# lab_cpu_s coredns_cpu_s cpu_us_per_query, for podnet (p), CoreDNS in the pod (c) or CoreDNS on the host's loopback (h,
# queried from the host); coredns_cpu_s is that of the CoreDNS queried (0 for podnet).
perf() {
	local out l0 c0 l1 c1 cpid=
	case $1 in
	c) cpid=$COREDNS_PID ;;
	h) cpid=$HOST_PID ;;
	esac
	l0=$(cpu_s "$LAB_PID") c0=0 c1=0
	[ -n "$cpid" ] && c0=$(cpu_s "$cpid")
	case $1 in
	p) out=$(pn exec client -- "$DNSPERF" -s "$DNS_IP" -d "$TMP/queries.txt" "${@:2}" 2>&1) || true ;;
	c) out=$(pn exec client -- "$DNSPERF" -s "$COREDNS_IP" -d "$TMP/queries.txt" "${@:2}" 2>&1) || true ;;
	h) out=$("$DNSPERF" -s 127.0.0.1 -p "$HOST_PORT" -d "$TMP/queries.txt" "${@:2}" 2>&1) || true ;;
	esac
	l1=$(cpu_s "$LAB_PID")
	[ -n "$cpid" ] && c1=$(cpu_s "$cpid")
	awk -v l="$(awk -v a="$l0" -v b="$l1" 'BEGIN { print b - a }')" -v c="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" '
		/Queries per second:/ { qps = $4 }
		/Queries completed:/ { done = $3 }
		/Queries lost:/ { lost = $4; gsub(/[()%]/, "", lost) }
		/Response codes:/ { sub(/^ *Response codes: */, ""); rc = $0; gsub(/ /, "_", rc) }
		/Average packet size:/ { req = $5; sub(/,/, "", req); resp = $7 }
		/Average Latency/ { avg = $4 * 1e6; mx = $8 * 1e6 }
		/Latency StdDev/ { sd = $4 * 1e6 }
		END {
			if (qps == "") { print "failed"; exit }
			if (rc == "") rc = "-"
			printf "%.0f %.1f %.0f %.1f %s %s %s %s %.2f %.2f %.1f\n", qps, avg, mx, sd, lost, rc, req, resp, l, c, (done > 0 ? (l + c) * 1e6 / done : 0)
		}' <<<"$out"
}
col() { awk -v n="$1" '{ print $n }'; }
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "failed" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }

echo "-- warm-up" >&2
for k in p c h; do perf "$k" -l 2 >/dev/null; done
declare -A R
echo "-- throughput: $OUTSTANDING outstanding, ${DURATION}s each, podnet, CoreDNS (pod), CoreDNS (host) twice, CoreDNS (pod), podnet" >&2
for k in p c h; do R[$k,max,1]=$(perf "$k" -l "$DURATION" -q "$OUTSTANDING"); done
for k in h c p; do R[$k,max,2]=$(perf "$k" -l "$DURATION" -q "$OUTSTANDING"); done
echo "-- light load: $LIGHT_QPS queries/s, ${LIGHT_DURATION}s each, same order" >&2
for k in p c h; do R[$k,light,1]=$(perf "$k" -l "$LIGHT_DURATION" -Q "$LIGHT_QPS"); done
for k in h c p; do R[$k,light,2]=$(perf "$k" -l "$LIGHT_DURATION" -Q "$LIGHT_QPS"); done

for k in "${!R[@]}"; do [ -n "${R[$k]}" ] && [ "${R[$k]}" != failed ] || { echo "dnsperf run $k failed" >&2; exit 1; }; done
m() { printf '%s\n%s\n' "${R[$1,$2,1]}" "${R[$1,$2,2]}" | col "$3" | mean; }   # SERVER LOAD FIELD -> mean of the two runs
both() { echo "$(printf '%s\n' "${R[$1,$2,1]}" | col "$3") $(printf '%s\n' "${R[$1,$2,2]}" | col "$3")"; }
FMT='%-*s %-24s %-24s %-8s   %-24s %s\n'
row() { # LABEL LOAD FIELD
	local p c h w=30
	p=$(m p "$2" "$3") c=$(m c "$2" "$3") h=$(m h "$2" "$3")
	[[ $1 == *µ* ]] && w=31   # printf pads bytes; µ is two
	# shellcheck disable=SC2059
	printf "$FMT" "$w" "$1" "$p ($(both p "$2" "$3"))" "$c ($(both c "$2" "$3"))" "$(ratio "$p" "$c")" \
		"$h ($(both h "$2" "$3"))" "$(ratio "$p" "$h")"
}

echo
echo "dnsperf $("$DNSPERF" -h 2>&1 | awk '/^Version/ { print $2 }'), UDP, A queries for $NSVC names in a loop, from pod client on node-a;"
echo "podnet at $DNS_IP (node-a's agent), CoreDNS $COREDNS_MOD (file plugin) in pod coredns on node-a at $COREDNS_IP."
echo "Each figure is the mean of two runs (the runs in parentheses), order podnet, CoreDNS, CoreDNS (host),"
echo "then the reverse. A ratio podnet/CoreDNS above 1 is better for queries per second, worse for latency and CPU."
echo
# shellcheck disable=SC2059
printf "$FMT" 30 "" "podnet" "CoreDNS" "podnet/" "CoreDNS, host loopback [3]" "podnet/"
# shellcheck disable=SC2059
printf "$FMT" 30 "" "(pod -> node agent)" "(pod -> pod)" "CoreDNS" "(context)" "host"
echo "max throughput (-q $OUTSTANDING, ${DURATION}s)"
row "  queries per second" max 1
row "  avg latency (µs)" max 2
row "  max latency (µs)" max 3
row "  latency stddev (µs)" max 4
row "  queries lost (%)" max 5
row "  CPU s, lab daemon [1]" max 9
row "  CPU s, CoreDNS process [1]" max 10
row "  both, CPU µs per query [1]" max 11
echo "light load (-Q $LIGHT_QPS, ${LIGHT_DURATION}s)"
row "  avg latency (µs)" light 2
row "  max latency (µs)" light 3
row "  latency stddev (µs)" light 4
echo
echo "response codes: podnet $(col 6 <<<"${R[p,max,1]}" | tr _ ' '); CoreDNS $(col 6 <<<"${R[c,max,1]}" | tr _ ' ')"
echo "average packet size (bytes), request/response: podnet $(awk '{ print $7 "/" $8 }' <<<"${R[p,max,1]}"); CoreDNS $(awk '{ print $7 "/" $8 }' <<<"${R[c,max,1]}") [2]"
echo "CoreDNS build: $BUILD_S s (full build, all plugins, $(cd "$TMP/coredns-mod" && go env GOVERSION))"
echo "CPU: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "loadavg: start $LOAD_START; end $(cat /proc/loadavg)"
echo
echo "[1] podnet's DNS is answered inside the node agent (the lab daemon), from the pod's TAP reader. CoreDNS's"
echo "    queries and answers go pod to pod through the same agent's fast path, so in the CoreDNS column the"
echo "    lab daemon's CPU is that forwarding, and CoreDNS's own work is the CoreDNS process. dnsperf's CPU is"
echo "    not counted; the three share the $(nproc) CPUs."
echo "[2] With the minimal plugin both answer with the question and the A record only. CoreDNS does not"
echo "    compress names in its answers; podnet does."
echo "[3] The same zone served by a second CoreDNS on 127.0.0.1:$HOST_PORT, queried by dnsperf on the host: no pod"
echo "    network in the path (what CoreDNS does alone on this machine). The lab daemon's CPU there is idle load."
