#!/usr/bin/env bash
# The upstream Kubernetes network suites against a fresh podnet cluster (make conformance):
#
#   hack/conformance.sh [SUITE...]      suites: netpol conformance (default: both)
#
#   netpol       the NetworkPolicy suite, [Feature:NetworkPolicy] (49 specs in v1.37.2)
#   conformance  every [sig-network] spec labelled [Conformance] (47 in v1.37.2)
#   smoke        six specs of both (hack/smoke-focus.txt), as make test runs them (FOCUS overrides)
#
# It builds podnet and the Kubernetes components and e2e.test (make kube-bin; cached), brings up
# a 2-node cluster named "conformance" (podnet cluster up), runs e2e.test for each suite with its
# JUnit report in $OUT (default _output/conformance/<time>), prints passed / failed / skipped for
# each, and takes the cluster down. It exits non-zero if any spec failed. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "conformance: run as root (kubelet and containerd run as root)" >&2; exit 1; }
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(netpol conformance)
out=${OUT:-_output/conformance/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

missing=""
for p in runc busybox-static curl dnsutils netcat-openbsd iproute2 util-linux; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
go build -o bin/podnet ./cmd/podnet
go build -o bin/podnet-cni ./cmd/podnet-cni
hack/kube-bin.sh etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl containerd cni-plugins agnhost e2e.test ginkgo

name=${CLUSTER:-conformance}
bin/podnet cluster down --name "$name" >/dev/null 2>&1 || true
start=$(date +%s)
bin/podnet cluster up --name "$name" --nodes 2
echo "conformance: cluster up in $(($(date +%s) - start)) s"
trap 'bin/podnet cluster down --name "$name"' EXIT
kubeconfig=/var/lib/podnet-cluster/$name/kubeconfig

# The smoke set (six specs: pod to pod, node to pod, a Service, DNS, a NodePort, a default-deny
# NetworkPolicy), shared with TestCluster, which runs it in make test.
smoke_focus=$(cat hack/smoke-focus.txt)
# Disruptive specs (which restart nodes or components) are not run.
skip='\[Disruptive\]'
status=0
summary=""
for suite in "${suites[@]}"; do
	case $suite in
	netpol) focus='\[Feature:NetworkPolicy\]' ;;
	conformance) focus='\[sig-network\].*\[Conformance\]' ;;
	smoke) focus=${FOCUS:-$smoke_focus} ;;
	*) echo "conformance: unknown suite $suite (netpol, conformance, smoke)" >&2; exit 2 ;;
	esac
	mkdir -p "$out/$suite"
	echo "conformance: running $suite (log: $out/$suite.log)"
	t0=$(date +%s)
	set +e
	# ginkgo runs e2e.test's specs in $PROCS processes at once ([Serial] ones alone, at the end).
	bin/kube/ginkgo --procs "${PROCS:-3}" --focus "$focus" --skip "$skip" \
		--no-color --timeout 4h --output-dir "$out/$suite" --junit-report junit.xml \
		bin/kube/e2e.test -- --kubeconfig "$kubeconfig" --provider local --num-nodes 2 \
		--report-dir "$out/$suite" --disable-log-dump --dump-logs-on-failure=false >"$out/$suite.log" 2>&1
	rc=$?
	set -e
	secs=$(($(date +%s) - t0))
	line=$(grep -aE '^(Ran [0-9]+ of|(SUCCESS|FAIL)! -- )' "$out/$suite.log" | tr '\n' ' ')
	# Skipped: specs of the suite that did not run (skipped at run time, for a feature this
	# cluster lacks), as the suite's size in a dry run less those that ran.
	total=$(bin/kube/e2e.test --ginkgo.dry-run --ginkgo.no-color --ginkgo.focus "$focus" --ginkgo.skip "$skip" 2>&1 | sed -n 's/^Ran \([0-9]*\) of.*/\1/p')
	ran=$(echo "$line" | sed -n 's/.*Ran \([0-9]*\) of.*/\1/p')
	counts=$(echo "$line" | sed -n 's/.*-- \([0-9]*\) Passed | \([0-9]*\) Failed | .*/\1 passed, \2 failed/p')
	[ -z "$counts" ] || counts="$counts, $((${total:-0} - ${ran:-0})) skipped of $total"
	summary+="$suite: ${counts:-no result ($line)} in ${secs} s (JUnit: $out/$suite)"$'\n'
	grep -aE '^\s*\[FAIL\] ' "$out/$suite.log" | sort -u | sed 's/^/  /' >>"$out/failed-$suite.txt" || true
	[ $rc -eq 0 ] || status=1
done
echo
printf '%s' "$summary" | tee "$out/summary.txt"
for f in "$out"/failed-*.txt; do [ -s "$f" ] && { echo "failed specs ($(basename "$f" .txt)):"; cat "$f"; }; done
exit $status
