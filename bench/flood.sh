#!/usr/bin/env bash
# Floods against a 2-node lab (or, with --cluster, a real 2-node `podnet cluster`: kubelets,
# containerd, podnet as its DaemonSet), each measured against the same network without it, in
# one run:
#   - the agents' resident memory (lab: the daemon, where both nodes' agents run; cluster: the
#     two `podnet node` processes, summed): idle before, the peak while the flood runs (sampled
#     every 0.5 s), and 30 s after it ends;
#   - an established iperf3 flow (pod on node A to pod on node B, 10 s) during the flood, against
#     the same flow without a flood just before it (a busy machine drifts over a run); then
#     again while the same flood comes from an attacker held to ATTACKER_CPU (default 100m) of
#     CPU, as a pod's CPU limit holds it on a real node: three such pairs, the median ratio;
#   - new connections from another pod during the flood: curl's connect time to a ClusterIP
#     (20 tries, median and worst), against the same without a flood;
#   - what the agents dropped or held back, by reason (their metrics, before and after).
# The floods (hping3 --flood, 12 s each), from the pod `attacker` on node A unless said:
#   syn-clusterip  SYN flood to the ClusterIP of `web` (one source address, ports counting up)
#   syn-pod        SYN flood to the pod `web` (on node B) directly
#   udp-pod        UDP flood to the pod `web`
#   udp-dns        UDP flood (DNS port) to the cluster DNS address
#   spoofed        SYN flood to `web` from random source addresses (anti-spoofing drops them)
#   fragments      UDP flood of fragments to `web`
#   syn-nodeport   SYN flood from outside (lab: the host; cluster: its bridge) to node A's NodePort
#   syn-ingress    SYN flood from outside to node A's Ingress port
# The reference, in the same run: the kernel's own network (three namespaces on a bridge), an
# iperf3 flow between two of them, alone and during a SYN flood and a UDP flood from the third,
# hping3 unlimited and then held to ATTACKER_CPU. On a machine with few cores, an unlimited hping3
# takes a core, and any network's flows lose that core.
# REALTIME=N runs the data paths under SCHED_RR at priority N, so that they wake ahead of every
# ordinary process, as the kernel's softirq does: the lab's daemon (the Lab's
# spec.realtimePriority), or the cluster's agents (the DaemonSet's podnet node
# --realtime-priority, which gives the agents' cgroups a real-time budget where the kernel wants one).
# Run as root: sudo bench/flood.sh [--cluster]   (needs hping3, iperf3, curl, jq, go, nsenter; FLOODS="a b"
# to pick; the cluster needs `make kube-bin`; the limit needs cgroup v1's cpu controller or cgroup v2)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=lab
[ "${1:-}" = --cluster ] && MODE=cluster
LAB=pnflood
SECS=12
FLOODS=${FLOODS:-"syn-clusterip syn-pod udp-pod udp-dns spoofed fragments syn-nodeport syn-ingress"}
ATTACKER_CPU=${ATTACKER_CPU:-100m}
REALTIME=${REALTIME:-0}

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in hping3 iperf3 jq curl go; do command -v "$c" >/dev/null || { echo "missing $c (apt-get install hping3 iperf3 jq curl)" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnflood.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet"
LAB_STARTED=0
KNS="pnfk-$$"
CG=""
cleanup() {
	set +e
	pkill -f "hping3 .*--flood" 2>/dev/null
	[ -n "${HOLDER:-}" ] && kill "$HOLDER" 2>/dev/null
	for n in c s a br; do ip netns pids "$KNS-$n" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$KNS-$n" 2>/dev/null; done
	if [ -n "$CG" ]; then
		sleep 0.5
		rmdir "$CG" 2>/dev/null || echo "warning: could not remove the cgroup $CG" >&2
	fi
	if [ "$LAB_STARTED" = 1 ]; then
		if [ "$MODE" = lab ]; then
			"$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2
		else
			bin/podnet cluster down --name "$LAB" >/dev/null 2>&1 || echo "warning: cluster down failed" >&2
		fi
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$PODNET" ./cmd/podnet
pn() { "$PODNET" --name "$LAB" "$@"; }

# The CPU limit of the held attacker: a cgroup with a CFS quota of ATTACKER_CPU (100m: 10 ms in
# every 100 ms), as the kubelet gives a pod with that limit.
case $ATTACKER_CPU in
*m) QUOTA=$(( ${ATTACKER_CPU%m} * 100 )) ;;
*) QUOTA=$(awk -v c="$ATTACKER_CPU" 'BEGIN {printf "%d", c * 100000}') ;;
esac
if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
	CG=/sys/fs/cgroup/cpu/pnflood-$$
	mkdir "$CG"
	echo 100000 >"$CG/cpu.cfs_period_us"
	echo "$QUOTA" >"$CG/cpu.cfs_quota_us"
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	CG=/sys/fs/cgroup/pnflood-$$
	echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
	mkdir "$CG"
	echo "$QUOTA 100000" >"$CG/cpu.max"
else
	echo "no cgroup cpu controller: cannot hold an attacker to ATTACKER_CPU" >&2
	exit 1
fi
# held CMD...: runs CMD in the attacker's cgroup.
held() { sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }

if [ "$MODE" = lab ]; then
	cat >"$TMP/lab.yaml" <<-EOF
	apiVersion: podnet.dev/v1alpha1
	kind: Lab
	metadata: {name: $LAB}
	spec:
	  realtimePriority: $REALTIME
	  nodes: [{name: node-a}, {name: node-b}]
	---
	apiVersion: v1
	kind: Pod
	metadata: {name: attacker}
	spec:
	  nodeName: node-a
	  containers: [{name: c, command: ["sleep", "infinity"]}]
	---
	apiVersion: v1
	kind: Pod
	metadata: {name: client}
	spec:
	  nodeName: node-a
	  containers: [{name: c, command: ["sleep", "infinity"]}]
	---
	apiVersion: v1
	kind: Pod
	metadata: {name: prober}
	spec:
	  nodeName: node-a
	  containers: [{name: c, command: ["sleep", "infinity"]}]
	---
	apiVersion: v1
	kind: Pod
	metadata: {name: web, labels: {app: web}}
	spec:
	  nodeName: node-b
	  containers:
	  - {name: web, command: ["$PODNET", "serve", "--http", "80"], readinessProbe: {tcpSocket: {port: 80}}}
	---
	apiVersion: v1
	kind: Pod
	metadata: {name: server}
	spec:
	  nodeName: node-b
	  containers: [{name: iperf, command: ["iperf3", "-s"]}]
	---
	apiVersion: v1
	kind: Service
	metadata: {name: web}
	spec:
	  type: NodePort
	  selector: {app: web}
	  ports: [{port: 80, nodePort: 30080}]
	---
	apiVersion: networking.k8s.io/v1
	kind: Ingress
	metadata: {name: web}
	spec:
	  rules:
	  - http:
	      paths:
	      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
	EOF
	pn lab up -f "$TMP/lab.yaml" --timeout 120s >/dev/null
	LAB_STARTED=1
	pid=$(pn lab status | sed -n 's/.*daemon pid \([0-9]*\).*/\1/p')
	[ -n "$pid" ] || { echo "no daemon pid" >&2; exit 1; }
	pexec() { pn exec "$1" -- "${@:2}"; }
	OUTSIDE=""
	# The held attacker: the same pod's network namespace, entered from the attacker's cgroup.
	pexec attacker sleep 3601 >/dev/null 2>&1 &
	HOLDER=$!
	APID=""
	for _ in $(seq 100); do APID=$(pgrep -n -x -f "sleep 3601") && break; sleep 0.1; done
	[ -n "$APID" ] || { echo "cannot find a process of the pod attacker" >&2; exit 1; }
	held_pod() { held nsenter -t "$APID" -n "$@"; }
	podip() { pn get pods -o json | jq -r --arg n "$1" '.items[] | select(.metadata.name==$n) | .status.podIP'; }
	WEB=$(podip web) SERVER=$(podip server)
	VIP=$(pn get svc web -o json | jq -r '.items[0].spec.clusterIP // .spec.clusterIP')
	NODEA=$(pn get nodes -o json | jq -r '.items[] | select(.metadata.name=="node-a") | .status.addresses[] | select(.type=="InternalIP") | .address')
	INGRESS_PORT=$(pn lab status | awk '/^Ingress:/{print $4}')
	DNS=10.96.0.10
	metrics() { curl -s --unix-socket "/run/podnet/$LAB/lab.sock" http://lab/metrics; }
	rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status"; }
else
	go build -o bin/podnet ./cmd/podnet
	go build -o bin/podnet-cni ./cmd/podnet-cni
	hack/kube-bin.sh etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl containerd cni-plugins >/dev/null
	K=bin/kube/kubectl
	bin/podnet cluster down --name "$LAB" >/dev/null 2>&1 || true
	bin/podnet cluster up --name "$LAB" >/dev/null
	LAB_STARTED=1
	export KUBECONFIG=/var/lib/podnet-cluster/$LAB/kubeconfig
	if [ "$REALTIME" != 0 ]; then
		$K -n podnet-system patch daemonset podnet --type=json \
			-p "[{\"op\": \"add\", \"path\": \"/spec/template/spec/containers/0/command/-\", \"value\": \"--realtime-priority=$REALTIME\"}]" >/dev/null
		$K -n podnet-system rollout status daemonset podnet --timeout=180s >/dev/null
		for p in $(pgrep -f '^/podnet node'); do
			chrt -p "$p" 2>/dev/null | grep -q SCHED_RR || [ ! -e "/proc/$p" ] || { echo "agent $p is not under SCHED_RR" >&2; exit 1; }
		done
	fi
	tb() { echo "{name: $1, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [$2]}"; }
	# The measured pods request CPU, as a workload whose throughput matters does: a BestEffort
	# pod gets cpu.shares 2 and loses its CPU to any busy neighbour, whatever the network does.
	tbr() { echo "{name: $1, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [$2], resources: {requests: {cpu: 500m}}}"; }
	$K apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: attacker}
spec: {nodeName: node-1, containers: [$(tb c 'sleep, "3600"')]}
---
apiVersion: v1
kind: Pod
metadata: {name: attacker-held}
spec:
  nodeName: node-1
  containers:
  - {name: c, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [sleep, "3600"],
     resources: {limits: {cpu: "$ATTACKER_CPU"}}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-1, containers: [$(tbr c 'sleep, "3600"')]}
---
apiVersion: v1
kind: Pod
metadata: {name: prober}
spec: {nodeName: node-1, containers: [$(tb c 'sleep, "3600"')]}
---
apiVersion: v1
kind: Pod
metadata: {name: server}
spec: {nodeName: node-2, containers: [$(tbr c 'iperf3, -s')]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-2
  containers:
  - {name: web, image: docker.io/library/podnet:dev, imagePullPolicy: Never, command: [/podnet, serve, --http, "80"],
     readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 30080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: podnet
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
	$K wait --for=condition=Ready pod/attacker pod/attacker-held pod/client pod/prober pod/server pod/web --timeout=180s >/dev/null
	pexec() { $K exec "$1" -- "${@:2}"; }
	held_pod() { pexec attacker-held "$@"; }
	podip() { $K get pod "$1" -o jsonpath='{.status.podIP}'; }
	WEB=$(podip web) SERVER=$(podip server)
	VIP=$($K get svc web -o jsonpath='{.spec.clusterIP}')
	NODEA=$($K get node node-1 -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
	INGRESS_PORT=80
	DNS=$($K -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
	DNS=${DNS:-10.96.0.10}
	OUTSIDE="ip netns exec podnet-$LAB"
	# The agents' memory: the two `podnet node` processes, summed.
	rss() { for p in $(pgrep -f '^/podnet node'); do awk '/VmRSS/{print int($2/1024)}' "/proc/$p/status"; done | awk '{s += $1} END {print s}'; }
	NODEB=$($K get node node-2 -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
	# Both agents' metrics (podnet node --metrics-addr, on each node's address), from outside.
	metrics() { for ip in "$NODEA" "$NODEB"; do $OUTSIDE curl -s "http://$ip:9962/metrics"; done; }
fi
# drops: "reason=value" lines of every drop and hold-back counter, summed over the nodes.
drops() {
	metrics | awk '
		/^podnet_(stack_dropped_frames_total|overlay_dropped_packets_total|overlay_window_waits_total)/ {
			match($0, /reason="[^"]*"|direction="[^"]*"/); r = substr($0, RSTART, RLENGTH); sub(/^[a-z]*=/, "", r); gsub(/"/, "", r)
			split($1, n, "{"); k = n[1] "/" r; v[k] += $2 }
		/^podnet_service_flows_total/ && !/translated/ {
			match($0, /result="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9); v["service_flows/" r] += $2 }
		END { for (k in v) print k, v[k] }' | sed 's/^podnet_//; s/_total\//\//' | sort
}
iperf() { pexec client iperf3 -c "$SERVER" -t 10 -J | jq '.end.sum_received.bits_per_second / 1e9'; }
# connects: 20 connect times (ms) to the ClusterIP from the pod prober, one per line.
connects() {
	for _ in $(seq 20); do
		pexec prober curl -s -o /dev/null --max-time 5 -w '%{time_connect}\n' "http://$VIP/" || echo 5
		sleep 0.2
	done | awk '{printf "%.1f\n", $1 * 1000}' | sort -n
}
median() { awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
worst() { tail -1; }

flood_cmd() {
	case $1 in
	syn-clusterip) echo "pod hping3 -q -S --flood -p 80 $VIP" ;;
	syn-pod) echo "pod hping3 -q -S --flood -p 80 $WEB" ;;
	udp-pod) echo "pod hping3 -q --udp --flood -p 9 $WEB" ;;
	udp-dns) echo "pod hping3 -q --udp --flood -p 53 $DNS" ;;
	spoofed) echo "pod hping3 -q -S --flood --rand-source -p 80 $WEB" ;;
	fragments) echo "pod hping3 -q --udp --flood -f -d 1200 -p 9 $WEB" ;;
	syn-nodeport) echo "host hping3 -q -S --flood -p 30080 $NODEA" ;;
	syn-ingress) echo "host hping3 -q -S --flood -p $INGRESS_PORT $NODEA" ;;
	*) echo "unknown flood $1" >&2; exit 1 ;;
	esac
}
# start_flood FLOOD [held]: starts it in the background (FLOOD_PID), from the attacker held to
# ATTACKER_CPU if asked.
start_flood() {
	read -r where cmd < <(flood_cmd "$1")
	if [ "$where" = pod ] && [ "${2:-}" = held ]; then
		(held_pod timeout "$SECS" $cmd) >/dev/null 2>&1 &
	elif [ "$where" = pod ]; then
		(pexec attacker timeout "$SECS" $cmd) >/dev/null 2>&1 &
	elif [ "${2:-}" = held ]; then
		held timeout "$SECS" $OUTSIDE $cmd >/dev/null 2>&1 &
	else
		timeout "$SECS" $OUTSIDE $cmd >/dev/null 2>&1 &
	fi
	FLOOD_PID=$!
}

# kernel_ref: the reference. Three namespaces on a bridge (made in a fourth; nothing in the
# host's), iperf3 from c to s, alone and during floods from a, unlimited and held.
kernel_ref() {
	ip netns add "$KNS-br"
	ip -n "$KNS-br" link add br0 type bridge
	ip -n "$KNS-br" link set br0 up
	local i=1 n
	for n in c s a; do
		ip netns add "$KNS-$n"
		ip -n "$KNS-br" link add "v$n" type veth peer name eth0 netns "$KNS-$n"
		ip -n "$KNS-br" link set "v$n" master br0 up
		ip -n "$KNS-$n" addr add "10.251.0.$i/24" dev eth0
		ip -n "$KNS-$n" link set eth0 up
		ip -n "$KNS-$n" link set lo up
		i=$((i + 1))
	done
	ip netns exec "$KNS-s" iperf3 -s >/dev/null 2>&1 &
	ip netns exec "$KNS-s" "$PODNET" serve --http 80 >/dev/null 2>&1 &
	sleep 1
	kiperf() { ip netns exec "$KNS-c" iperf3 -c 10.251.0.2 -t 10 -J | jq '.end.sum_received.bits_per_second / 1e9'; }
	# kflood [held] ARGS...: an iperf3 during hping3 ARGS from a (held: the median of three runs,
	# as podnet's held rows); prints "Gbit/s ratio".
	kflood() {
		local pre=() runs=1
		[ "$1" = held ] && pre=(held) runs=3
		shift
		local t
		t=$(for _ in $(seq $runs); do
			timeout "$SECS" "${pre[@]}" ip netns exec "$KNS-a" hping3 -q --flood "$@" 10.251.0.2 >/dev/null 2>&1 &
			local fp=$!
			sleep 1
			kiperf
			wait "$fp" || true
		done | sort -n | median)
		awk -v a="$t" -v b="$kbase" 'BEGIN {printf "%.2f Gbit/s (%.2fx)", a, a / b}'
	}
	kbase=$( (kiperf; kiperf; kiperf) | sort -n | sed -n 2p)
	printf 'kernel reference (veth and a bridge): iperf3 %.2f Gbit/s alone (median of 3)\n' "$kbase"
	printf '  during a SYN flood: %s; hping3 held to %s: %s\n' "$(kflood free -S -p 80)" "$ATTACKER_CPU" "$(kflood held -S -p 80)"
	printf '  during a UDP flood: %s; hping3 held to %s: %s\n' "$(kflood free --udp -p 9)" "$ATTACKER_CPU" "$(kflood held --udp -p 9)"
}

echo "nproc $(nproc), $(uname -r), $(hping3 --version 2>&1 | head -1); the held attacker: $ATTACKER_CPU of CPU$([ "$REALTIME" != 0 ] && echo "; the data paths under SCHED_RR at priority $REALTIME")"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
kernel_ref
sleep 5
IDLE=$(rss)
# The flow alone: the median of three runs, as one run on a busy 2-vCPU machine can be 20% off.
BASE_TPUT=$( (iperf; iperf; iperf) | sort -n | sed -n 2p)
BASE_CONN=$(connects)
base_med=$(median <<<"$BASE_CONN") base_worst=$(worst <<<"$BASE_CONN")
echo
echo "without a flood: the agents ${IDLE} MiB resident; iperf3 $(printf %.2f "$BASE_TPUT") Gbit/s (median of 3); new connection to a ClusterIP: median ${base_med} ms, worst ${base_worst} ms"
echo
printf '%-14s %6s %6s %6s %7s %9s %6s %9s %6s %9s %7s  %s\n' flood "idle" "peak" "+30s" "alone" "Gbit/s" "ratio" "held" "ratio" "conn-med" "worst" "drops and waits during the unlimited flood (by reason)"
# ratio A B: A/B to two places.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
for f in $FLOODS; do
	# Each flooded run is paired with a run of the flow alone just before it, so that the ratio
	# is not the drift of a busy machine over the run (the flow alone moved by a fifth in 20 min).
	alone1=$(iperf)
	before=$(drops)
	idle=$(rss)
	peakf="$TMP/peak"
	echo "$idle" >"$peakf"
	start_flood "$f"
	(for _ in $(seq $((SECS * 2))); do rss >>"$peakf"; sleep 0.5; done) &
	sampler=$!
	sleep 1
	tput=$(iperf)
	conn=$(connects)
	wait "$sampler" || true
	wait "$FLOOD_PID" || true
	peak=$(sort -n "$peakf" | tail -1)
	after=$(drops)
	# Held: three pairs, each "alone held"; the row gives the median held flow and the median of
	# the three ratios.
	pairs=$(for _ in 1 2 3; do
		a=$(iperf)
		start_flood "$f" held
		sleep 1
		echo "$a $(iperf)"
		wait "$FLOOD_PID" || true
	done)
	held_tput=$(awk '{print $2}' <<<"$pairs" | sort -n | median)
	held_ratio=$(awk '{printf "%.4f\n", $2 / $1}' <<<"$pairs" | sort -n | median)
	sleep 30
	later=$(rss)
	delta=$(join -a2 -e0 -o 0,1.2,2.2 <(echo "$before") <(echo "$after") | awk '$3 - $2 > 0 {printf "%s %d; ", $1, $3 - $2}')
	printf '%-14s %6s %6s %6s %7.2f %9.2f %6s %9.2f %6.2f %9s %7s  %s\n' "$f" "$idle" "$peak" "$later" "$alone1" "$tput" "$(ratio "$tput" "$alone1")" "$held_tput" "$held_ratio" "$(median <<<"$conn")" "$(worst <<<"$conn")" "$delta"
done
echo
echo "memory in MiB (both nodes' agents: the lab daemon, or the two podnet node processes), peak during the unlimited flood, +30s after the last held one; alone: the flow without a flood just before the unlimited one (Gbit/s), its ratio's base; held: the iperf3 flow while the attacker is held to $ATTACKER_CPU of CPU, the median of three runs, and the median of their ratios, each to a run alone just before it; conn-med and worst: curl connect time in ms to a ClusterIP from another pod of node A during the unlimited flood"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
