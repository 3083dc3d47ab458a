#!/usr/bin/env bash
# CNI ADD to first packet (issue 14's goal: median under 50 ms): podnet-cni against a podnet agent,
# beside the reference bridge + host-local plugins, in the same run. Run as root:
#   sudo bench/cniadd.sh [-n PODS]
# It builds podnet-cni and the reference plugins (make kube-bin's cni-plugins) first.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in go nsenter ping; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done
go build -o bin/podnet-cni ./cmd/podnet-cni
hack/kube-bin.sh cni-plugins >/dev/null
go run ./bench/cniadd -podnet-cni "$PWD/bin/podnet-cni" -ref "$PWD/bin/kube/cni" "$@"
