#!/usr/bin/env bash
# Soak: a 2-node lab under mixed traffic for DURATION seconds (default 1800) while pods come and
# go, with the lab daemon's resident memory, goroutines and open file descriptors sampled every
# 30 s (both nodes' agents and the pod runtime run in the daemon). After the warm-up (WARMUP
# seconds, default 300) each figure must stay flat: the median of the last third of the samples
# within 10% of the median of the first third (goroutines and descriptors: within 10% or 20, for
# the pods that come and go); the script prints the samples and a verdict, and exits 1 if a
# figure grew.
# Traffic, all the time, from pods of both nodes: HTTP to a Service (curl), pod to pod across
# nodes (curl to a pod IP), DNS (getent hosts of a Service name), Ingress from the host (curl to a
# node's Ingress port). Every 20 s a pod is created and the one before deleted.
# Run as root: sudo bench/soak.sh   (DURATION=600 for a short one; needs curl, jq, go)
set -euo pipefail
cd "$(dirname "$0")/.."

LAB=pnsoak
DURATION=${DURATION:-1800}
WARMUP=${WARMUP:-300}
INTERVAL=${INTERVAL:-30}

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in curl jq go; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnsoak.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet"
LAB_STARTED=0
LOOPS=()
cleanup() {
	set +e
	for p in "${LOOPS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$LAB_STARTED" = 1 ]; then "$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$PODNET" ./cmd/podnet
pn() { "$PODNET" --name "$LAB" "$@"; }

cat >"$TMP/lab.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: $LAB}
spec:
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, command: ["$PODNET", "serve", "--http", "80"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
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
pn lab up -f "$TMP/lab.yaml" --timeout 120s >/dev/null
LAB_STARTED=1
pid=$(pn lab status | sed -n 's/.*daemon pid \([0-9]*\).*/\1/p')
NODEA=$(pn get nodes -o json | jq -r '.items[] | select(.metadata.name=="node-a") | .status.addresses[] | select(.type=="InternalIP") | .address')
INGRESS_PORT=$(pn lab status | awk '/^Ingress:/{print $4}')
podips() { pn get pods -o json | jq -r '.items[] | select(.metadata.labels.app=="web") | .status.podIP // empty'; }

# The traffic loops; each runs until killed, ignoring failures (a pod may be going).
loop() { while true; do "$@" >/dev/null 2>&1 || true; done; }
loop pn exec client-a -- sh -c 'for i in $(seq 50); do curl -s -o /dev/null --max-time 2 http://web/; done' &
LOOPS+=($!)
loop pn exec client-b -- sh -c 'for i in $(seq 50); do getent hosts web.default.svc.cluster.local; done' &
LOOPS+=($!)
loop sh -c "for ip in \$($PODNET --name $LAB get pods -o json | jq -r '.items[] | select(.metadata.labels.app==\"web\") | .status.podIP // empty'); do $PODNET --name $LAB exec client-a -- curl -s -o /dev/null --max-time 2 http://\$ip/; done" &
LOOPS+=($!)
loop curl -s -o /dev/null --max-time 2 "http://$NODEA:$INGRESS_PORT/" &
LOOPS+=($!)
churn() {
	i=0
	while true; do
		i=$((i + 1))
		cat <<EOF | pn apply -f - || true
apiVersion: v1
kind: Pod
metadata: {name: churn-$i}
spec:
  containers: [{name: c, command: ["$PODNET", "serve", "--http", "80"]}]
EOF
		[ "$i" -gt 1 ] && { pn delete pod "churn-$((i - 1))" || true; }
		sleep 20
	done >/dev/null 2>&1
}
churn &
LOOPS+=($!)

metric() { curl -s --unix-socket "/run/podnet/$LAB/lab.sock" http://lab/metrics | awk -v m="$1" '$1 == m {print $2}'; }
echo "nproc $(nproc), $(uname -r); $DURATION s, warm-up $WARMUP s, samples every $INTERVAL s"
printf '%6s %8s %11s %6s\n' "t (s)" "RSS MiB" "goroutines" "fds"
SAMPLES="$TMP/samples"
: >"$SAMPLES"
start=$(date +%s)
while true; do
	t=$(($(date +%s) - start))
	rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status")
	gr=$(metric go_goroutines)
	fds=$(ls "/proc/$pid/fd" | wc -l)
	printf '%6d %8s %11s %6s\n' "$t" "$rss" "$gr" "$fds" | tee -a "$SAMPLES"
	[ "$t" -ge "$DURATION" ] && break
	sleep "$INTERVAL"
done
echo
# The verdict compares the first and the last third of the samples after the warm-up by their
# medians: resident memory moves by tens of MB between samples as the collector and the
# scavenger take turns (a sawtooth, not growth), so one sample against another says little.
awk -v w="$WARMUP" '
	function median(a, lo, hi,   n, i, j, t, b) {
		n = 0
		for (i = lo; i <= hi; i++) b[++n] = a[i]
		for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]; b[j + 1] = t }
		return b[int((n + 1) / 2)]
	}
	$1 ~ /^[0-9]+$/ && $1 >= w { n++; r[n] = $2; g[n] = $3; f[n] = $4 }
	END {
		if (n < 3) { print "fewer than 3 samples after the warm-up"; exit 1 }
		k = int(n / 3)
		r1 = median(r, 1, k); r2 = median(r, n - k + 1, n)
		g1 = median(g, 1, k); g2 = median(g, n - k + 1, n)
		f1 = median(f, 1, k); f2 = median(f, n - k + 1, n)
		printf "after warm-up, median of the first third -> of the last third (%d samples each): RSS %.1f -> %.1f MiB, goroutines %d -> %d, fds %d -> %d\n", k, r1, r2, g1, g2, f1, f2
		bad = 0
		if (r2 > r1 * 1.10) { print "RSS grew more than 10%"; bad = 1 }
		if (g2 > g1 * 1.10 && g2 > g1 + 20) { print "goroutines grew more than 10% (and 20)"; bad = 1 }
		if (f2 > f1 * 1.10 && f2 > f1 + 20) { print "file descriptors grew more than 10% (and 20)"; bad = 1 }
		if (!bad) print "flat: every figure within 10% after the warm-up"
		exit bad
	}' "$SAMPLES"
