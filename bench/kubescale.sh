#!/usr/bin/env bash
# The node agent's memory and CPU against a real API server with 1,000 pods, 10,000 Services
# (an EndpointSlice each) and 100 NetworkPolicies, beside kube-proxy (nftables mode) in the same
# run (issue 14). Run as root:
#   sudo bench/kubescale.sh [-pods N] [-services N] [-policies N] [-nodes N]
# Everything runs in a network namespace the script makes (control plane on its loopback,
# kube-proxy's rules in its nftables) and removes. It builds podnet, and etcd, kube-apiserver,
# kube-controller-manager, kubectl and kube-proxy (make kube-bin) if they are not built yet, and
# installs Debian's nftables for kube-proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v nft >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
go build -o bin/podnet ./cmd/podnet
go build -o bin/kubescale ./bench/kubescale
hack/kube-bin.sh etcd kube-apiserver kube-controller-manager kubectl kube-proxy >/dev/null
ns=podnet-kubescale-$$
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
ip -n "$ns" link set lo up
ip netns exec "$ns" bin/kubescale -podnet "$PWD/bin/podnet" -kube-bin "$PWD/bin/kube" "$@"
