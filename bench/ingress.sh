#!/usr/bin/env bash
# Ingress: requests per second and latency through podnet's Ingress, beside Debian's nginx proxying
# to the same backends on the same machine, in the same run.
#   1. a 2-node lab: three `podnet serve --http 8080` pods (two on node-a, one on node-b) behind the
#      Service web (port 80 -> 8080), type NodePort (nodePort $NODE_PORT), and an Ingress (class
#      podnet) for host bench.example, path / Prefix -> web:80, with TLS from a kubernetes.io/tls
#      Secret (a self-signed certificate for bench.example made here with openssl);
#   2. the reference: nginx run by this script as its own process (not the system service) on
#      127.0.0.1, 2 workers, upstream = the NodePort on every node address (keepalive 64, HTTP/1.1),
#      terminating TLS with the same certificate. nginx stands where an external load balancer in
#      front of NodePorts stands; podnet's Ingress is reached directly on node-a's address;
#   3. wrk -t2 -c64 -d${DURATION}s --latency with Host bench.example against podnet's Ingress and
#      against nginx, HTTP then HTTPS, after a ${WARMUP}s warm-up of each, alternated podnet, nginx,
#      nginx, podnet, podnet, nginx (means of the three shown): requests/s, p50 and p99, errors, and
#      the CPU time the lab daemon (both node agents) and nginx used, and the machine's idle time.
#      HTTPS runs in a private mount namespace whose /etc/hosts maps bench.example to the target,
#      so that both servers see SNI bench.example.
# PROFILE=DIR saves a CPU profile of the lab daemon during the first measured run of each target and
# protocol into DIR (go tool pprof DIR/podnet-http.pprof).
# Run as root: sudo bench/ingress.sh   (needs nginx, wrk, openssl, curl, jq, go;
#   apt-get install --no-install-recommends nginx-light wrk openssl curl jq)
set -euo pipefail
cd "$(dirname "$0")/.."

LAB=pning
DURATION=10
WARMUP=2
THREADS=2
CONNS=64
NODE_PORT=30080
INGRESS_HTTP=18080     # the Lab's spec.ingress ports, on every node's address
INGRESS_HTTPS=18443
NGINX_HTTP=28080       # nginx, on 127.0.0.1
NGINX_HTTPS=28443
HOST=bench.example
PODS="web-1 web-2 web-3"

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
need() { # COMMAND PACKAGE
	command -v "$1" >/dev/null || { echo "missing $1: apt-get install --no-install-recommends $2" >&2; exit 1; }
}
need nginx nginx-light
need wrk wrk
need openssl openssl
need curl curl
need jq jq
need unshare util-linux
command -v go >/dev/null || { echo "missing go (Go from go.dev)" >&2; exit 1; }
for p in "$NGINX_HTTP" "$NGINX_HTTPS"; do
	if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use on this host; change NGINX_HTTP/NGINX_HTTPS in $0" >&2; exit 1; fi
done

TMP=$(mktemp -d /tmp/pning.XXXXXX)
chmod 711 "$TMP"
PODNET="$TMP/podnet"
LAB_STARTED=0
NGINX_PID=
cleanup() {
	set +e
	if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null; fi
	if [ "$LAB_STARTED" = 1 ]; then "$PODNET" lab down --name "$LAB" >/dev/null 2>&1 || echo "warning: lab down failed" >&2; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_START=$(cat /proc/loadavg)
go build -o "$PODNET" ./cmd/podnet
pn() { "$PODNET" --name "$LAB" "$@"; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
	-keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null

cat >"$TMP/lab.yaml" <<EOF
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: $LAB}
spec:
  ingress: {httpPort: $INGRESS_HTTP, httpsPort: $INGRESS_HTTPS}
  nodes: [{name: node-a}, {name: node-b}]
EOF
i=0
for pod in $PODS; do
	node=node-a; [ $((i % 2)) = 1 ] && node=node-b
	i=$((i + 1))
	cat >>"$TMP/lab.yaml" <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $pod, labels: {app: web}}
spec:
  nodeName: $node
  containers:
  - name: web
    command: ["podnet", "serve", "--http", "8080"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}}
EOF
done
cat >>"$TMP/lab.yaml" <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: $NODE_PORT}]
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$TMP/tls.crt")
  tls.key: $(base64 -w0 "$TMP/tls.key")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: podnet
  tls: [{hosts: [$HOST], secretName: bench-tls}]
  rules:
  - host: $HOST
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
EOF
LAB_STARTED=1
pn lab up -f "$TMP/lab.yaml" >"$TMP/labup.log" 2>&1 || { cat "$TMP/labup.log" >&2; exit 1; }
DAEMON_PID=$(pgrep -f -- "daemon --name $LAB" | head -1)
node_addr() { pn get node "$1" -o json | jq -r '.status.addresses[] | select(.type == "InternalIP") | .address'; }
NODE_A=$(node_addr node-a)
NODE_B=$(node_addr node-b)

mkdir "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 100000;
    upstream web {
        server $NODE_A:$NODE_PORT;
        server $NODE_B:$NODE_PORT;
        keepalive 64;
        keepalive_requests 100000;
    }
    server {
        listen 127.0.0.1:$NGINX_HTTP;
        listen 127.0.0.1:$NGINX_HTTPS ssl;
        server_name $HOST;
        ssl_certificate $TMP/tls.crt;
        ssl_certificate_key $TMP/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        # The TLS 1.3 cipher Go's server picks on a CPU with AES instructions, so that both
        # encrypt alike (OpenSSL would follow wrk's preference, AES-256).
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
nginx -t -q -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!

PODNET_HTTP=http://$NODE_A:$INGRESS_HTTP/ NGINX_HTTP_URL=http://127.0.0.1:$NGINX_HTTP/
PODNET_HTTPS=https://$HOST:$INGRESS_HTTPS/ NGINX_HTTPS_URL=https://$HOST:$NGINX_HTTPS/
addr_of() { case "$1" in podnet) echo "$NODE_A" ;; nginx) echo 127.0.0.1 ;; esac; }
port_of() { case "$1" in podnet) echo "$INGRESS_HTTPS" ;; nginx) echo "$NGINX_HTTPS" ;; esac; } # HTTPS
url_of() { # TARGET PROTO
	case "$1,$2" in
	podnet,http) echo "$PODNET_HTTP" ;; nginx,http) echo "$NGINX_HTTP_URL" ;;
	podnet,https) echo "$PODNET_HTTPS" ;; nginx,https) echo "$NGINX_HTTPS_URL" ;;
	esac
}
get() { # TARGET PROTO -> the body of GET /
	if [ "$2" = http ]; then
		curl -sf --max-time 2 -H "Host: $HOST" "$(url_of "$1" http)"
	else
		curl -sf --max-time 2 --cacert "$TMP/tls.crt" --resolve "$HOST:$(port_of "$1"):$(addr_of "$1")" "$(url_of "$1" https)"
	fi
}
is_pod() { case " $PODS " in *" $1 "*) return 0 ;; esac; return 1; }

# Both must answer with a backend's name (the Ingress may take a moment after lab up), over HTTP
# and over HTTPS with the certificate checked; then 30 requests each show which backends answer.
for target in podnet nginx; do
	for proto in http https; do
		body=
		for _ in $(seq 100); do
			body=$(get "$target" "$proto" 2>/dev/null | tr -d '\r\n' || true)
			is_pod "$body" && break
			sleep 0.1
		done
		is_pod "$body" || { echo "$target over $proto did not answer with a backend's name (got: '$body')" >&2; [ "$target" = nginx ] && cat "$TMP/nginx/error.log" >&2; exit 1; }
		seen=$(for _ in $(seq 30); do get "$target" "$proto" | tr -d '\r'; echo; done | grep -v '^$' | sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }')
		echo "$target $proto: backends answering 30 requests: $seen" >&2
	done
done
tls_info() { # TARGET
	openssl s_client -connect "$(addr_of "$1"):$(port_of "$1")" -servername "$HOST" </dev/null 2>/dev/null |
		awk '/^New, / { gsub(",", ""); p = $2; c = $NF } END { printf "%s %s", p, c }'
}
TLS_PODNET=$(tls_info podnet)
TLS_NGINX=$(tls_info nginx)

cpu_ticks() { # PID... -> utime+stime, in clock ticks
	local p
	for p in "$@"; do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0; done | awk '{ s += $1 } END { print s + 0 }'
}
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; } # idle+iowait of all CPUs
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }
HZ=$(getconf CLK_TCK)

# wrk's output -> "rps p50_ms p99_ms requests errors": errors are socket errors plus non-2xx/3xx.
parse_wrk() {
	awk '
	function ms(v) {
		if (v ~ /us$/) return v * 0.001
		if (v ~ /ms$/) return v + 0
		if (v ~ /m$/) return v * 60000
		if (v ~ /s$/) return v * 1000
		return v
	}
	/^ *50%/ { p50 = ms($2) }
	/^ *99%/ { p99 = ms($2) }
	/requests in/ { n = $1 }
	/^Requests\/sec:/ { rps = $2 }
	/Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
	/Non-2xx or 3xx responses:/ { err += $NF }
	END { if (rps == "") print "failed failed failed 0 0"; else printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, n, err }'
}
run_wrk() { # TARGET PROTO SECONDS -> wrk's output
	local addr
	addr=$(addr_of "$1")
	if [ "$2" = http ]; then
		wrk -t"$THREADS" -c"$CONNS" -d"$3"s -H "Host: $HOST" --latency "$(url_of "$1" http)"
	else
		# SNI bench.example for both: bench.example resolves to the target in a mount namespace of
		# wrk's own, whose /etc/hosts is a file of this run (the host's is not touched).
		printf '%s %s\n' "$addr" "$HOST" >"$TMP/hosts.$1"
		unshare -m sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$TMP/hosts.$1" \
			wrk -t"$THREADS" -c"$CONNS" -d"$3"s --latency "$(url_of "$1" https)"
	fi
}
declare -A R   # R[target,proto] = lines of "rps p50 p99 requests errors daemon_cpu_s nginx_cpu_s idle_cpu_s"
measure() { # TARGET PROTO
	local d0 n0 out line
	local prof=
	if [ -n "${PROFILE:-}" ] && [ ! -e "$PROFILE/$1-$2.pprof" ]; then
		mkdir -p "$PROFILE"
		curl -s --unix-socket "/run/podnet/$LAB/lab.sock" -o "$PROFILE/$1-$2.pprof" \
			"http://lab/debug/pprof/profile?seconds=$((DURATION - 2))" &
		prof=$!
	fi
	d0=$(cpu_ticks "$DAEMON_PID") n0=$(cpu_ticks $(nginx_pids)) i0=$(idle_ticks)
	out=$(run_wrk "$1" "$2" "$DURATION" 2>&1 || true)
	[ -z "$prof" ] || wait "$prof" || true
	echo "$out" >>"$TMP/wrk.log"
	line="$(parse_wrk <<<"$out") $(awk -v a="$d0" -v b="$(cpu_ticks "$DAEMON_PID")" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }') $(awk -v a="$n0" -v b="$(cpu_ticks $(nginx_pids))" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }') $(awk -v a="$i0" -v b="$(idle_ticks)" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')"
	R[$1,$2]+="$line"$'\n'
	echo "$1 $2: rps p50_ms p99_ms requests errors daemon_cpu_s nginx_cpu_s idle_cpu_s = $line" >&2
}
for proto in http https; do
	echo "-- $proto" >&2
	for target in podnet nginx; do run_wrk "$target" "$proto" "$WARMUP" >/dev/null 2>&1 || true; done
	for target in podnet nginx nginx podnet podnet nginx; do
		measure "$target" "$proto"
	done
done

col() { # TARGET PROTO FIELD -> "mean (run1 run2 run3)"
	printf '%s' "${R[$1,$2]}" | awk -v f="$3" '$1 != "failed" { v[++n] = $f; s += $f } END {
		if (!n) { print "failed"; exit }
		d = (f == 1 || f == 4 || f == 5) ? 0 : 2
		printf "%.*f (", d, s / n
		for (i = 1; i <= n; i++) printf "%s%.*f", (i > 1 ? " " : ""), d, v[i]
		printf ")" }'
}
mean() { printf '%s' "${R[$1,$2]}" | awk -v f="$3" '$1 != "failed" { s += $f; n++ } END { if (n) printf "%.4f", s / n; else print "failed" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }
cpu_per_req() { # TARGET PROTO -> µs of (daemon + nginx) CPU per request
	printf '%s' "${R[$1,$2]}" | awk '$1 != "failed" { c += $6 + $7; n += $4 } END { if (n) printf "%.1f", c / n * 1e6; else print "-" }'
}

echo
printf '%-30s %-28s %-28s %s\n' "wrk -t$THREADS -c$CONNS -d${DURATION}s" "podnet Ingress [1]" "nginx -> NodePorts [2]" "podnet/nginx"
for proto in http https; do
	label=HTTP/1.1; [ "$proto" = https ] && label="HTTPS (HTTP/1.1 over TLS)"
	echo "$label"
	printf '%-30s %-28s %-28s %s\n' "  requests/s" "$(col podnet $proto 1)" "$(col nginx $proto 1)" "$(ratio "$(mean podnet $proto 1)" "$(mean nginx $proto 1)")"
	printf '%-30s %-28s %-28s %s\n' "  latency p50 (ms)" "$(col podnet $proto 2)" "$(col nginx $proto 2)" "$(ratio "$(mean podnet $proto 2)" "$(mean nginx $proto 2)")"
	printf '%-30s %-28s %-28s %s\n' "  latency p99 (ms)" "$(col podnet $proto 3)" "$(col nginx $proto 3)" "$(ratio "$(mean podnet $proto 3)" "$(mean nginx $proto 3)")"
	printf '%-30s %-28s %-28s %s\n' "  errors [3]" "$(col podnet $proto 5)" "$(col nginx $proto 5)" ""
	printf '%-30s %-28s %-28s %s\n' "  CPU s, lab daemon [4]" "$(col podnet $proto 6)" "$(col nginx $proto 6)" ""
	printf '%-30s %-28s %-28s %s\n' "  CPU s, nginx" "$(col podnet $proto 7)" "$(col nginx $proto 7)" ""
	printf '%-30s %-28s %-28s %s\n' "  CPU s, idle (machine) [5]" "$(col podnet $proto 8)" "$(col nginx $proto 8)" ""
	printf '%-30s %-28s %-28s %s\n' "  both, CPU µs per request" "$(cpu_per_req podnet $proto)" "$(cpu_per_req nginx $proto)" "$(ratio "$(cpu_per_req podnet $proto)" "$(cpu_per_req nginx $proto)")"
done
echo
echo "[1] http://$NODE_A:$INGRESS_HTTP/ and https://$HOST:$INGRESS_HTTPS/ (node-a's agent): the Ingress dials the pods directly from the node's data path."
echo "[2] nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 2 workers, on 127.0.0.1:$NGINX_HTTP/$NGINX_HTTPS, upstream $NODE_A:$NODE_PORT $NODE_B:$NODE_PORT (keepalive 64): an external"
echo "    load balancer in front of NodePorts. Its requests also cross podnet's NodePort splice (in the lab daemon) to reach the pods."
echo "[3] socket errors plus non-2xx/3xx responses, as wrk counts them."
echo "[4] both node agents (the Ingress, the NodePorts, the pod data path); the three backends are processes of their own, in neither column."
echo "[5] idle CPU time of the whole machine (all $(nproc) CPUs) during the run, out of $(nproc)×${DURATION}s."
echo "TLS: podnet $TLS_PODNET; nginx $TLS_NGINX; certificate RSA 2048, self-signed for $HOST"
echo "$(wrk --version 2>&1 | head -1 | awk '{ print $1, $2 }'); $(go version | awk '{ print $3 }'); nproc $(nproc); kernel $(uname -r)"
echo "loadavg: start $LOAD_START; end $(cat /proc/loadavg)"
