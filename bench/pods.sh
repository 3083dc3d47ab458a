#!/usr/bin/env bash
# Pod start-up: time for 50 pods on one node to become Running, median per-pod network
# setup (daemon metrics) and the lab daemon's resident memory. Run as root: sudo bench/pods.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LAB=pnpods
REPLICAS=${REPLICAS:-50}
GOAL_MS=50

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in jq curl go; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnpods.XXXXXX)
PODNET="$TMP/podnet"
LAB_STARTED=0
cleanup() {
	set +e
	if [ "$LAB_STARTED" = 1 ]; then
		"$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$PODNET" ./cmd/podnet
cat >"$TMP/lab.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: pods}
spec:
  mtu: 1500
  nodes: [{name: node-a}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper}
spec:
  replicas: $REPLICAS
  selector:
    matchLabels: {app: sleeper}
  template:
    metadata:
      labels: {app: sleeper}
    spec:
      containers: [{name: sleep, command: ["sleep", "infinity"]}]
EOF

echo "== pods bench $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc) kernel=$(uname -r)"
echo "loadavg (start): $(cat /proc/loadavg)"

LAB_STARTED=1
start=$(date +%s.%N)
"$PODNET" lab up -f "$TMP/lab.yaml" --name "$LAB" >"$TMP/labup.log" 2>&1 || {
	echo "lab up failed:" >&2; tail -20 "$TMP/labup.log" >&2; exit 1; }
end=$(date +%s.%N)

running=$("$PODNET" get pods -o json --name "$LAB" 2>/dev/null |
	jq '[(.items // [.])[] | select(.status.phase == "Running")] | length' 2>/dev/null || echo "?")
total=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}')
rate=$(awk -v t="$total" -v n="$REPLICAS" 'BEGIN{printf "%.1f", n/t}')

sock=/run/podnet/$LAB/lab.sock
metric=$(curl -s --unix-socket "$sock" http://lab/metrics | grep 'podnet_pod_network_setup_seconds{.*quantile="0.5"' || true)
if [ -n "$metric" ]; then
	median_ms=$(awk '{printf "%.1f", $NF * 1000}' <<<"$(head -1 <<<"$metric")")
	verdict=$(awk -v m="$median_ms" -v g="$GOAL_MS" 'BEGIN{print (m < g) ? "MET" : "MISSED"}')
else
	median_ms="n/a (metric not found)"; verdict="?"
fi

pid=$(cat "/run/podnet/$LAB/daemon.pid")
rss=$(awk '/^VmRSS/{print $2, $3}' "/proc/$pid/status")

echo
printf '%-34s %s\n' "pods (Deployment replicas)" "$REPLICAS (Running: $running)"
printf '%-34s %s s\n' "lab up until all ready" "$total"
printf '%-34s %s\n' "pods/s" "$rate"
printf '%-34s %s ms   (goal < %d ms: %s)\n' "median pod network setup" "$median_ms" "$GOAL_MS" "$verdict"
printf '%-34s %s\n' "lab daemon VmRSS (pid $pid)" "$rss"
echo "metric line(s): ${metric:-none}"
echo "loadavg (end): $(cat /proc/loadavg)"
