#!/usr/bin/env bash
# Runs the end-to-end suite (integration/) in every mode podnet must pass, and prints a summary:
#
#   root           as root
#   rootless       as the unprivileged user $TEST_USER (a rootless lab)
#   no-netfilter   as root on a kernel that looks built without netfilter and XFRM
#                  (internal/nonetfilter: a seccomp filter, and failing stand-ins for iptables,
#                  nft, modprobe, sysctl and the like first on PATH); the run fails if anything
#                  tried them
#
# As another user than root it runs the suite once, as that user. Every mode runs even if one
# fails; the exit status is non-zero if any failed. Extra arguments go to the test binary
# (for example -test.run TestServices).
set -u
cd "$(dirname "$0")/.."
GO=${GO:-go}
TEST_USER=${TEST_USER:-podnettest}

dir=$(mktemp -d /tmp/podnet-e2e.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
echo "== building podnet, podnet-cni, the end-to-end test binary and nonetfilter into $dir"
"$GO" build -o "$dir/podnet" ./cmd/podnet || exit 1
"$GO" build -o "$dir/podnet-cni" ./cmd/podnet-cni || exit 1
"$GO" test -c -o "$dir/integration.test" ./integration/ || exit 1
"$GO" build -o "$dir/nonetfilter" ./internal/nonetfilter/cmd/nonetfilter || exit 1
chmod 755 "$dir"/*
# deploy/podnet.yaml, for the tests that apply its RBAC, and the real Kubernetes components
# (make kube-bin), copied where every mode's user can read them: the checkout and the build cache
# may be in root's home.
mkdir -p "$dir/deploy" "$dir/hack" && cp deploy/podnet.yaml "$dir/deploy/" && cp hack/smoke-focus.txt "$dir/hack/" &&
	chmod -R a+rX "$dir/deploy" "$dir/hack"
kube_env=(PODNET_REPO="$dir")
if [ -d bin/kube ] && [ -n "$(ls bin/kube 2>/dev/null)" ]; then
	mkdir -p "$dir/kube"
	for f in bin/kube/*; do
		[ -f "$f" ] && cp -L "$f" "$dir/kube/"
	done
	if [ -d bin/kube/cni ]; then
		mkdir -p "$dir/kube/cni" && cp -L bin/kube/cni/* "$dir/kube/cni/"
	fi
	chmod -R a+rX "$dir/kube"
	chmod 755 "$dir/kube"/*
	kube_env+=(PODNET_KUBE_BIN="$dir/kube")
fi

flags=(-test.v -test.count=1 -test.timeout 20m "$@")
summary=()
failed=0

# run MODE COMMAND...: runs one mode in $dir, keeps its output, and counts its top-level tests.
run() {
	local mode=$1
	shift
	echo "== end-to-end tests, $mode"
	local status=0
	(cd "$dir" && "$@") 2>&1 | tee "$dir/$mode.log"
	status=${PIPESTATUS[0]}
	local pass fail skip
	pass=$(grep -c '^--- PASS' "$dir/$mode.log" || true)
	fail=$(grep -c '^--- FAIL' "$dir/$mode.log" || true)
	skip=$(grep -c '^--- SKIP' "$dir/$mode.log" || true)
	pass=${pass:-0} fail=${fail:-0} skip=${skip:-0}
	if [ "$status" -ne 0 ] || [ "$pass" -eq 0 ]; then
		failed=1
		summary+=("$mode: $pass passed, $fail failed, $skip skipped (FAILED, exit status $status)")
	else
		summary+=("$mode: $pass passed, $fail failed, $skip skipped")
	fi
	total_pass=$((${total_pass:-0} + pass))
	total_fail=$((${total_fail:-0} + fail))
	total_skip=$((${total_skip:-0} + skip))
}

if [ "$(id -u)" != 0 ]; then
	run "as-$(id -un)" env PODNET_BIN="$dir/podnet" "${kube_env[@]}" ./integration.test "${flags[@]}"
else
	run root env PODNET_BIN="$dir/podnet" PODNET_TEST_USER="$TEST_USER" "${kube_env[@]}" ./integration.test "${flags[@]}"
	run rootless runuser -u "$TEST_USER" -- env -i PATH="$PATH" PODNET_BIN="$dir/podnet" "${kube_env[@]}" \
		./integration.test "${flags[@]}"
	# tshark's dumpcap (the overlay test's capture) lists nflog capture interfaces through
	# NETLINK_NETFILTER and carries on without them: its refusals are printed, not failed.
	run no-netfilter ./nonetfilter -tolerate dumpcap -- env PODNET_BIN="$dir/podnet" PODNET_TEST_USER="$TEST_USER" \
		"${kube_env[@]}" ./integration.test "${flags[@]}"
fi

echo
echo "== end-to-end summary"
for line in "${summary[@]}"; do echo "$line"; done
echo "e2e: ${total_pass} passed, ${total_fail} failed, ${total_skip} skipped"
exit $failed
