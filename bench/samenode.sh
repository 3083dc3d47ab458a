#!/usr/bin/env bash
# Same-node pod-to-pod TCP throughput: kernel veth+bridge vs pasta vs podnet (root and rootless),
# one run. Run as root: sudo bench/samenode.sh
# pasta and rootless podnet run as the unprivileged user pnbench (created if missing); both need
# /dev/net/tun at mode 0666 (the Debian default), which the script sets for the run and restores.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=8
NS_A=pnbench-$$-a NS_B=pnbench-$$-b NS_BR=pnbench-$$-br
PASTA_PORT=47311
LAB=pnbench

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for c in iperf3 jq ip go; do command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/pnbench.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet"
UBIN="$TMP/user/podnet"
PIDS=()          # processes we started (killed by pid)
PGIDS=()         # process groups we started with setsid (pasta)
LAB_STARTED=0
ULAB_STARTED=0
TUN_MODE=$(stat -c %a /dev/net/tun)

cleanup() {
	set +e
	for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for g in "${PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	if [ "$ULAB_STARTED" = 1 ]; then
		runuser -u pnbench -- env -i PATH="$PATH" "$UBIN" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: rootless lab down failed" >&2
	fi
	[ "$(stat -c %a /dev/net/tun)" = "$TUN_MODE" ] || chmod "$TUN_MODE" /dev/net/tun
	if [ "$LAB_STARTED" = 1 ] && [ -x "$PODNET" ]; then
		"$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2
	fi
	for ns in "$NS_A" "$NS_B" "$NS_BR"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# grouped SECS CMD... : run CMD in its own session/process group (pasta leaves helper
# processes behind when it fails), kill the whole group when it ends or after SECS seconds.
grouped() {
	local secs=$1; shift
	setsid "$@" </dev/null &
	local pg=$! rc=0 i
	PGIDS+=("$pg")
	for ((i = 0; i < secs * 10; i++)); do kill -0 "$pg" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$pg" 2>/dev/null || true
	wait "$pg" || rc=$?
	return "$rc"
}

# gbps_of JSONFILE -> Gbit/s with 2 decimals, or empty on error
gbps_of() {
	jq -r 'if .error then empty else (.end.sum_received.bits_per_second / 1e9 * 100 | round / 100) end' "$1" 2>/dev/null || true
}

# run_client OUTFILE CMD... : runs an iperf3 -J client command, retrying the connect a few times
run_client() {
	local out=$1; shift
	local i
	for i in 1 2 3 4 5; do
		"$@" >"$out" 2>"$out.err" || true
		if [ -n "$(gbps_of "$out")" ]; then return 0; fi
		sleep 1
	done
	return 1
}

declare -A RES    # RES[scenario,streams]=Gbit/s or "unavailable: ..."
SCENARIOS=()

record() { # scenario streams outfile
	local v; v=$(gbps_of "$3")
	if [ -z "$v" ]; then
		v="failed: $(jq -r '.error // "no output"' "$3" 2>/dev/null | head -c 100 || echo 'no output')"
	fi
	RES["$1,$2"]=$v
}

echo "== samenode bench $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc=$(nproc) kernel=$(uname -r) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "iperf3: $(iperf3 --version | head -1)"
echo "loadavg (start): $(cat /proc/loadavg)"

############ 1. kernel veth + bridge (bridge in its own namespace)
echo "-- kernel veth+bridge" >&2
SC="kernel veth+bridge"; SCENARIOS+=("$SC")
for ns in "$NS_A" "$NS_B" "$NS_BR"; do
	if ip netns list | grep -qw "$ns"; then echo "namespace $ns already exists; remove it first" >&2; exit 1; fi
done
ip netns add "$NS_BR"; ip netns add "$NS_A"; ip netns add "$NS_B"
ip -n "$NS_BR" link add br0 mtu 1500 type bridge
ip -n "$NS_BR" link set br0 up
ip -n "$NS_BR" link set lo up
n=1
for ns in "$NS_A" "$NS_B"; do
	ip -n "$NS_BR" link add "veth$n" mtu 1500 type veth peer name eth0 netns "$ns"
	ip -n "$NS_BR" link set "veth$n" master br0 up
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 mtu 1500 up
	ip -n "$ns" addr add "10.250.0.$n/24" dev eth0
	n=$((n + 1))
done
ip netns exec "$NS_A" iperf3 -s -B 10.250.0.1 >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
for P in 1 4; do
	run_client "$TMP/veth-$P.json" ip netns exec "$NS_B" iperf3 -c 10.250.0.1 -J -t "$DURATION" -P "$P" || true
	record "$SC" "$P" "$TMP/veth-$P.json"
done

[ "$TUN_MODE" = 666 ] || { echo "note: /dev/net/tun is $TUN_MODE; 0666 for this run" >&2; chmod 0666 /dev/net/tun; }
id pnbench >/dev/null 2>&1 || useradd -r -m pnbench

############ 2. pasta (unprivileged, as user pnbench)
echo "-- pasta" >&2
SC_P="pasta (user pnbench)"; SCENARIOS+=("$SC_P")
PASTA=/usr/bin/pasta
PASTA_OPTS=(-f --config-net -t none -u none -T none -U none)
pasta_reason=""
if [ ! -x "$PASTA" ]; then
	pasta_reason="$PASTA not installed (apt-get install passt)"
else
	id pnbench >/dev/null 2>&1 || useradd -r -m pnbench
	# pasta opens /dev/net/tun from inside its own user namespace; if /dev/net/tun is not
	# world-accessible that fails ("Failed to open tun socket in namespace") and, without -f,
	# the daemonized pasta lingers holding stdout/stderr, which looks like a hang.
	probe_out="$TMP/pasta-probe.log"
	grouped 10 runuser -u pnbench -- "$PASTA" "${PASTA_OPTS[@]}" -- true >"$probe_out" 2>&1 || rc=$?
	if [ "${rc:-0}" -ne 0 ]; then
		err=$(grep -v 'syslog' "$probe_out" | grep -m1 -i -E 'fail|error|couldn|cannot' || true)
		pasta_reason="pasta exit status ${rc}${err:+: $err}; /dev/net/tun is $(stat -c '%A %U:%G' /dev/net/tun)"
	fi
fi

# run_pasta_bench SCENARIO PASTA-PREFIX... : server on host 127.0.0.1, client via pasta's gateway
run_pasta_bench() {
	local sc=$1; shift
	local P
	for P in 1 4; do
		# shellcheck disable=SC2016
		run_client "$TMP/pasta-$P.json" grouped 40 "$@" "$PASTA" "${PASTA_OPTS[@]}" -- \
			sh -c 'exec iperf3 -c "$(ip -4 route show default | cut -d" " -f3)" -p "$0" -J -t "$1" -P "$2"' \
			"$PASTA_PORT" "$DURATION" "$P" </dev/null || true
		record "$sc" "$P" "$TMP/pasta-$P.json"
	done
}

iperf3 -s -B 127.0.0.1 -p "$PASTA_PORT" >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
if [ -z "$pasta_reason" ]; then
	run_pasta_bench "$SC_P" runuser -u pnbench --
else
	RES["$SC_P,1"]="unavailable: $pasta_reason"; RES["$SC_P,4"]="(see above)"
	# Informative extra row: pasta started by root but kept root in its user namespace
	# (--runas 0), so it can open the 0600 /dev/net/tun. Not the unprivileged setup.
	SC_PR="pasta (root, --runas 0)"; SCENARIOS+=("$SC_PR")
	PASTA_OPTS=(--runas 0 "${PASTA_OPTS[@]}")
	run_pasta_bench "$SC_PR"
fi

############ 3. podnet (one node, two pods)
echo "-- podnet" >&2
SC_N="podnet"; SCENARIOS+=("$SC_N")
go build -o "$PODNET" ./cmd/podnet
cat >"$TMP/lab.yaml" <<'EOF'
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: bench}
spec:
  mtu: 1500
  nodes: [{name: node-a}]
---
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: node-a
  containers: [{name: iperf, command: ["iperf3", "-s"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
EOF
LAB_STARTED=1
if "$PODNET" lab up -f "$TMP/lab.yaml" --name "$LAB" >"$TMP/labup.log" 2>&1; then
	SERVER_IP=$("$PODNET" get pod server -o json --name "$LAB" | jq -r .status.podIP)
	sleep 1
	for P in 1 4; do
		run_client "$TMP/podnet-$P.json" "$PODNET" exec --name "$LAB" client -- \
			iperf3 -c "$SERVER_IP" -J -t "$DURATION" -P "$P" || true
		record "$SC_N" "$P" "$TMP/podnet-$P.json"
	done
else
	RES["$SC_N,1"]="failed: lab up: $(tail -1 "$TMP/labup.log")"; RES["$SC_N,4"]="(see above)"
fi

############ 4. podnet rootless (the same lab, run by the unprivileged user pnbench)
echo "-- podnet rootless" >&2
SC_R="podnet rootless (pnbench)"; SCENARIOS+=("$SC_R")
mkdir -m 755 "$TMP/user"
cp "$PODNET" "$UBIN"; chmod 755 "$UBIN"; chmod 644 "$TMP/lab.yaml"; cp "$TMP/lab.yaml" "$TMP/user/lab.yaml"
asuser() { runuser -u pnbench -- env -i PATH="$PATH" "$UBIN" "$@"; }
ULAB_STARTED=1
if (cd / && asuser lab up -f "$TMP/user/lab.yaml" --name "$LAB") >"$TMP/ulabup.log" 2>&1; then
	USERVER_IP=$(asuser get pod server -o json --name "$LAB" | jq -r .status.podIP)
	sleep 1
	for P in 1 4; do
		run_client "$TMP/rootless-$P.json" asuser exec --name "$LAB" client -- \
			iperf3 -c "$USERVER_IP" -J -t "$DURATION" -P "$P" || true
		record "$SC_R" "$P" "$TMP/rootless-$P.json"
	done
else
	RES["$SC_R,1"]="failed: lab up: $(tail -1 "$TMP/ulabup.log")"; RES["$SC_R,4"]="(see above)"
fi

############ table
echo
printf '%-26s %-8s %-10s %s\n' scenario streams Gbit/s "ratio vs veth"
for sc in "${SCENARIOS[@]}"; do
	for P in 1 4; do
		v=${RES["$sc,$P"]:-n/a}
		ref=${RES["kernel veth+bridge,$P"]:-}
		if [[ $v =~ ^[0-9.]+$ ]] && [[ $ref =~ ^[0-9.]+$ ]]; then
			ratio=$(awk -v a="$v" -v b="$ref" 'BEGIN{ if (b > 0) printf "%.2fx", a/b; else print "n/a" }')
			printf '%-26s %-8s %-10s %s\n' "$sc" "$P" "$v" "$ratio"
		else
			printf '%-26s %-8s %s\n' "$sc" "$P" "$v"
		fi
	done
done
echo
for P in 1 4; do
	r=${RES["$SC_R,$P"]:-} n=${RES["$SC_N,$P"]:-} pa=${RES["$SC_P,$P"]:-}
	if [[ $r =~ ^[0-9.]+$ ]] && [[ $n =~ ^[0-9.]+$ ]]; then
		line=$(awk -v a="$r" -v b="$n" 'BEGIN{ printf "%.2fx", a/b }')
		[[ $pa =~ ^[0-9.]+$ ]] && line="$line; rootless podnet / pasta (same user): $(awk -v a="$r" -v b="$pa" 'BEGIN{ printf "%.2fx", a/b }')"
		echo "$P stream(s): rootless podnet / root podnet: $line"
	fi
done
[[ ${RES["$SC_P,1"]} == unavailable:* ]] && echo "pasta: ${RES["$SC_P,1"]}"
echo "loadavg (end): $(cat /proc/loadavg)"
