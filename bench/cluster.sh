#!/usr/bin/env bash
# podnet in a real cluster (issue 15), beside the reference CNI plugins in the same run. Run as root:
#   sudo bench/cluster.sh
# It brings up a 2-node `podnet cluster`, and measures:
#   - same-node pod-to-pod TCP throughput (iperf3, 10 s, one stream, two pods on node-1);
#   - time from `kubectl apply` of a 50-pod Deployment to all 50 Ready;
#   - time from creating a Service to its first answer from a client pod;
# then the same cluster with the reference bridge + host-local plugins (`--cni bridge`: no Service
# proxy there, so only the first two), and prints both with the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for p in runc busybox-static iperf3 curl dnsutils; do dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }; done
go build -o bin/podnet ./cmd/podnet
go build -o bin/podnet-cni ./cmd/podnet-cni
hack/kube-bin.sh etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl containerd cni-plugins >/dev/null
K=bin/kube/kubectl
now() { date +%s.%N; }
declare -A result

measure() { # measure CNI
	local cni=$1 name=bench-$1
	bin/podnet cluster down --name "$name" >/dev/null 2>&1 || true
	bin/podnet cluster up --name "$name" --cni "$cni" >/dev/null
	trap "bin/podnet cluster down --name $name" EXIT
	export KUBECONFIG=/var/lib/podnet-cluster/$name/kubeconfig
	# Two pods on node-1 for iperf3.
	$K apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: iperf-server}
spec:
  nodeName: node-1
  containers: [{name: c, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [iperf3, -s]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: docker.io/library/toolbox:1, imagePullPolicy: Never, command: [sleep, "3600"]}]
YAML
	$K wait --for=condition=Ready pod/iperf-server pod/client --timeout=120s >/dev/null
	local ip
	ip=$($K get pod iperf-server -o jsonpath='{.status.podIP}')
	sleep 1
	result[$cni,tput]=$($K exec client -- iperf3 -c "$ip" -t 10 -J | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1 | awk '{printf "%.2f", $1/1e9}')
	# 50 pods from apply to Ready.
	local t0 t1
	t0=$(now)
	$K apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 50
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: docker.io/library/podnet:dev, imagePullPolicy: Never, command: [/podnet, serve, --http, "8080"],
         ports: [{containerPort: 8080}], readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}}
YAML
	$K rollout status deployment/web --timeout=600s >/dev/null
	t1=$(now)
	result[$cni,deploy]=$(echo "$t1 - $t0" | bc -l | awk '{printf "%.1f", $1}')
	if [ "$cni" = podnet ]; then
		# A Service's first answer: the client polls its name until it answers.
		$K exec client -- sh -c 'until curl -s --max-time 1 -o /dev/null http://web-svc:8080/; do :; done' &
		local poll=$!
		sleep 2
		t0=$(now)
		$K expose deployment web --name web-svc --port 8080 >/dev/null
		wait $poll
		t1=$(now)
		result[$cni,svc]=$(echo "$t1 - $t0" | bc -l | awk '{printf "%.2f", $1}')
	fi
	bin/podnet cluster down --name "$name"
	trap - EXIT
}

measure podnet
measure bridge
printf '\n%-52s %14s %22s %8s\n' "" "podnet" "bridge + host-local" "ratio"
printf '%-52s %11s Gb/s %17s Gb/s %8s\n' "same-node pod-to-pod TCP, iperf3 10 s, 1 stream" "${result[podnet,tput]}" "${result[bridge,tput]}" \
	"$(echo "${result[podnet,tput]} / ${result[bridge,tput]}" | bc -l | awk '{printf "%.2f", $1}')"
printf '%-52s %13s s %19s s %8s\n' "50-pod Deployment, apply to all Ready" "${result[podnet,deploy]}" "${result[bridge,deploy]}" \
	"$(echo "${result[podnet,deploy]} / ${result[bridge,deploy]}" | bc -l | awk '{printf "%.2f", $1}')"
printf '%-52s %13s s %19s %8s\n' "new Service to its first answer (DNS name)" "${result[podnet,svc]}" "(no Service proxy)" "-"
