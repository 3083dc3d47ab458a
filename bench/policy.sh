#!/usr/bin/env bash
# NetworkPolicy: what 1,000 policies cost.
#   1. Compile time of 1,000 policies over 1,000 pods and the verdict cost per new connection:
#      the policy package's benchmarks (go test -bench), on a synthetic cluster of 15 namespaces.
#   2. In a 2-node lab: TCP throughput (iperf3, 8 s, one stream) and new connections per second
#      (rr -new-conns, 4 concurrent clients) from a client pod on each node to a server pod, with
#      no NetworkPolicy and with 1,000 policies loaded that isolate the server (and the clients,
#      for egress) and allow the clients among 999 other rules; alternated three times, means shown.
#      The agents' own compile time of those policies comes from their metrics.
# Run as root: sudo bench/policy.sh   (needs iperf3, jq, curl, go)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
RR_PORT=47400
LAB=pnpol
POLICIES=1000

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in iperf3 jq curl go; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnpol.XXXXXX)
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

echo "-- policy package benchmarks" >&2
go test ./policy -run '^$' -bench 'Compile1000x1000$|Allows$' -benchtime 2s -count 1 >"$TMP/gobench.txt"
COMPILE_MS=$(awk '/^BenchmarkCompile1000x1000/ { printf "%.1f", $3 / 1e6 }' "$TMP/gobench.txt")
ALLOWS_NS=$(awk '/^BenchmarkAllows/ { print $3 }' "$TMP/gobench.txt")
ALLOWS_ALLOCS=$(awk '/^BenchmarkAllows/ { for (i = 1; i <= NF; i++) if ($i == "allocs/op") print $(i-1) }' "$TMP/gobench.txt")

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
kind: Namespace
metadata: {name: bench, labels: {team: bench}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec:
  nodeName: node-a
  containers:
  - {name: iperf, command: ["iperf3", "-s"], ports: [{name: iperf, containerPort: 5201}]}
  - {name: rr, command: ["$RR", "-listen", ":$RR_PORT"], ports: [{name: rr, containerPort: $RR_PORT}]}
EOF
for n in a b; do
	cat >>"$TMP/lab.yaml" <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: client-$n, namespace: bench, labels: {app: client}}
spec:
  nodeName: node-$n
  containers: [{name: c, command: ["sleep", "infinity"]}]
EOF
done
LAB_STARTED=1
pn lab up -f "$TMP/lab.yaml" >"$TMP/labup.log" 2>&1 || { cat "$TMP/labup.log" >&2; exit 1; }
DIR=$(pn lab status | awk '/^Dir:/ {print $2}')
SERVER_IP=$(pn get pod server -n bench -o json | jq -r .status.podIP)
for c in client-a client-b; do
	pn exec -n bench "$c" -- sysctl -q -w net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=1024 65535"
done

# The policies: 998 that select the server with ingress rules that do not match the clients (other
# labels, other namespaces, ipBlocks outside the cluster, other ports), one that allows the clients
# to the server's named ports, and one egress policy for the clients that allows them to the server.
{
	for i in $(seq 1 $((POLICIES - 2))); do
		case $((i % 4)) in
		0) peer="{podSelector: {matchLabels: {app: other-$i}}}" ;;
		1) peer="{namespaceSelector: {matchLabels: {team: t-$i}}}" ;;
		2) peer="{ipBlock: {cidr: 198.18.$((i % 250)).0/24}}" ;;
		3) peer="{namespaceSelector: {matchLabels: {team: bench}}, podSelector: {matchExpressions: [{key: app, operator: In, values: [x-$i, y-$i]}]}}" ;;
		esac
		printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p-%d, namespace: bench}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - from: [%s]\n    ports: [{port: %d, endPort: %d}]\n' \
			"$i" "$peer" $((1000 + i)) $((1000 + i + 10))
	done
	printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-clients, namespace: bench}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: iperf}, {port: rr}]\n'
	printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: clients-egress, namespace: bench}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: server}}}]\n'
} >"$TMP/policies.yaml"

gbps() { # CLIENT -> Gbit/s
	local i out
	for i in 1 2 3; do
		out=$(pn exec -n bench "$1" -- iperf3 -J -t "$DURATION" -c "$SERVER_IP" 2>/dev/null | jq -r 'if .error then empty else (.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) end' 2>/dev/null || true)
		[ -n "$out" ] && { echo "$out"; return 0; }
		sleep 1
	done
	echo failed
}
conns() { # CLIENT -> conns/s
	pn exec -n bench "$1" -- "$RR" -connect "$SERVER_IP:$RR_PORT" -new-conns -n 5000 -c 4 -warmup 200 2>/dev/null | jq -r '.conns_per_s // "failed"' || echo failed
}
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.2f", s / n; else print "failed" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }
metric() { curl -s --unix-socket "$DIR/lab.sock" http://lab/metrics | awk -v m="$1" '$1 ~ "^"m"\\{" { s += $2 } END { print s + 0 }'; }

declare -A R
echo "-- throughput and connection rate, without and with $POLICIES policies" >&2
for round in 1 2 3; do
	for mode in none policies; do
		if [ "$mode" = policies ]; then
			pn apply -f "$TMP/policies.yaml" >/dev/null
		else
			pn delete -f "$TMP/policies.yaml" >/dev/null 2>&1 || true
		fi
		sleep 2
		for c in client-a client-b; do
			R[$mode,$c,gbps]+="$(gbps "$c") "
			R[$mode,$c,conns]+="$(conns "$c") "
		done
	done
done
DENIED=$(metric podnet_policy_denied_total)
COMPILES=$(metric podnet_policy_compile_seconds_count)
COMPILE_SUM=$(metric podnet_policy_compile_seconds_sum)

echo
printf '%-46s %s\n' "Compile $POLICIES policies over 1,000 pods (go bench)" "$COMPILE_MS ms (goal <= 100 ms)"
printf '%-46s %s\n' "Verdict per new connection (go bench Allows)" "$ALLOWS_NS ns, $ALLOWS_ALLOCS allocs (goal <= 1 µs)"
printf '%-46s %s\n' "Agent compiles in the lab (all policies, 3 pods)" "$(awk -v s="$COMPILE_SUM" -v n="$COMPILES" 'BEGIN { if (n > 0) printf "%.1f ms mean over %d compiles", s / n * 1000, n; else print "-" }')"
echo
printf '%-36s %-14s %-18s %s\n' "" "no policy" "$POLICIES policies" "with/without"
for c in client-a client-b; do
	label="same node"; [ "$c" = client-b ] && label="other node"
	g0=$(echo "${R[none,$c,gbps]}" | tr ' ' '\n' | grep . | mean) g1=$(echo "${R[policies,$c,gbps]}" | tr ' ' '\n' | grep . | mean)
	c0=$(echo "${R[none,$c,conns]}" | tr ' ' '\n' | grep . | mean) c1=$(echo "${R[policies,$c,conns]}" | tr ' ' '\n' | grep . | mean)
	printf '%-36s %-14s %-18s %s\n' "TCP Gbit/s, client on the $label" "$g0" "$g1" "$(ratio "$g1" "$g0") (goal >= 0.95)"
	printf '%-36s %-14s %-18s %s\n' "new conns/s, client on the $label" "$c0" "$c1" "$(ratio "$c1" "$c0")"
done
echo "runs: ${R[none,client-a,gbps]}| ${R[policies,client-a,gbps]}| ${R[none,client-b,gbps]}| ${R[policies,client-b,gbps]}(Gbit/s: none a, policies a, none b, policies b)"
echo "denied flows counted during the run: $DENIED (0 expected: every measured flow is allowed)"
echo "loadavg (end): $(cat /proc/loadavg)"
