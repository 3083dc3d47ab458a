package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsLab: web pods behind a ClusterIP Service, a headless Service, a pod with hostname and
// subdomain, an ExternalName Service, a selectorless headless Service with 200 endpoints (a
// hand-written EndpointSlice), and a client. The upstream for other names is a server the test
// runs on the host's loopback (UPSTREAM).
const dnsLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: dns}
spec:
  dns: {upstreams: ["UPSTREAM"]}
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        command: ["podnet", "serve", "--http", "80"]
        ports: [{name: http, containerPort: 80}]
        readinessProbe: {tcpSocket: {port: 80}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  nodeName: node-b
  containers: [{name: db, command: ["podnet", "serve", "--tcp", "5432"], ports: [{name: pg, containerPort: 5432}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {name: big}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: big-1, labels: {kubernetes.io/service-name: big}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: BIG_ENDPOINTS
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
`

// upstreamServer answers A queries for *.example.test. with 192.0.2.1 and REFUSED otherwise,
// on a loopback UDP port; it returns the address.
func upstreamServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && strings.HasSuffix(q.Question[0].Name, "example.test.") && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeRefused
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// dig runs dig in pod client with args and returns its output.
func (l *labRun) dig(t *testing.T, args ...string) string {
	t.Helper()
	return l.must(t, append([]string{"exec", "client", "--", "dig", "+time=2", "+tries=1"}, args...)...)
}

func sortedFields(s string) string {
	f := strings.Fields(s)
	sort.Strings(f)
	return strings.Join(f, " ")
}

func TestClusterDNS(t *testing.T) {
	requireLab(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("skipped: dig is not installed (apt-get install dnsutils)")
	}
	before := snapshot(t)
	var eps []string
	for i := range 200 {
		eps = append(eps, fmt.Sprintf(`{addresses: ["10.250.%d.%d"], conditions: {ready: true}}`, i/200, i%200+1))
	}
	manifest := strings.ReplaceAll(dnsLab, "UPSTREAM", upstreamServer(t))
	manifest = strings.ReplaceAll(manifest, "BIG_ENDPOINTS", "["+strings.Join(eps, ", ")+"]")
	l := startLab(t, manifest)
	pods := l.pods()
	svcs := l.services(t)
	webIP := svcs["web"].Spec.ClusterIP
	var webPods []string
	for n, p := range pods {
		if strings.HasPrefix(n, "web-") {
			webPods = append(webPods, p.Status.PodIP)
		}
	}
	sort.Strings(webPods)
	db := pods["db-0"].Status.PodIP

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"A of a ClusterIP Service", []string{"+short", "web.default.svc.cluster.local"}, webIP},
		{"A of a headless Service: its ready pods", []string{"+short", "web-headless.default.svc.cluster.local"}, strings.Join(webPods, " ")},
		{"hostname.subdomain of a pod", []string{"+short", "db-0.db.default.svc.cluster.local"}, db},
		{"SRV of a named port", []string{"+short", "SRV", "_http._tcp.web.default.svc.cluster.local"}, "0 100 80 web.default.svc.cluster.local."},
		{"SRV of a headless Service", []string{"+short", "SRV", "_pg._tcp.db.default.svc.cluster.local"}, "0 100 5432 db-0.db.default.svc.cluster.local."},
		{"PTR of a ClusterIP", []string{"+short", "-x", webIP}, "web.default.svc.cluster.local."},
		{"PTR of a pod", []string{"+short", "-x", pods["client"].Status.PodIP}, strings.ReplaceAll(pods["client"].Status.PodIP, ".", "-") + ".default.pod.cluster.local."},
		{"CNAME of an ExternalName Service", []string{"+short", "alias.default.svc.cluster.local"}, "web.default.svc.cluster.local. " + webIP},
		{"pod record", []string{"+short", strings.ReplaceAll(db, ".", "-") + ".default.pod.cluster.local"}, db},
		{"a name forwarded upstream", []string{"+short", "www.example.test"}, "192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.dig(t, tc.args...); sortedFields(got) != sortedFields(tc.want) {
				t.Errorf("dig %s = %q, want %q", strings.Join(tc.args, " "), strings.TrimSpace(got), tc.want)
			}
		})
	}

	t.Run("NXDOMAIN and NODATA carry the SOA", func(t *testing.T) {
		out := l.dig(t, "nosuch.default.svc.cluster.local")
		if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "IN\tSOA\tns.dns.cluster.local.") {
			t.Errorf("NXDOMAIN answer:\n%s", out)
		}
		out = l.dig(t, "AAAA", "web.default.svc.cluster.local")
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0") || !strings.Contains(out, "SOA") {
			t.Errorf("NODATA answer:\n%s", out)
		}
	})

	t.Run("short names through the search path", func(t *testing.T) {
		out := l.must(t, "exec", "client", "--", "getent", "hosts", "web")
		if f := strings.Fields(out); len(f) < 2 || f[0] != webIP || !strings.HasPrefix(f[1], "web.default.svc.cluster.local") {
			t.Errorf("getent hosts web = %q, want %s web.default.svc.cluster.local", out, webIP)
		}
		got := l.must(t, "exec", "client", "--", "curl", "-sS", "--max-time", "5", "http://web/")
		if !strings.HasPrefix(strings.TrimSpace(got), "web-") {
			t.Errorf("curl http://web/ answered %q, want a web pod's name", got)
		}
	})

	t.Run("200 endpoints: truncated over UDP, whole over TCP", func(t *testing.T) {
		out := l.dig(t, "+noedns", "+ignore", "big.default.svc.cluster.local")
		if !strings.Contains(out, " tc") {
			t.Errorf("a 200-address answer without EDNS was not truncated:\n%.600s", out)
		}
		short := l.dig(t, "+short", "big.default.svc.cluster.local") // dig retries over TCP by itself
		if n := len(strings.Fields(short)); n != 200 {
			t.Errorf("got %d addresses, want 200", n)
		}
		short = l.dig(t, "+short", "+tcp", "big.default.svc.cluster.local")
		if n := len(strings.Fields(short)); n != 200 {
			t.Errorf("over TCP: got %d addresses, want 200", n)
		}
	})

	t.Run("a new Service is answered within a second", func(t *testing.T) {
		file := t.TempDir() + "/new.yaml"
		os.WriteFile(file, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec:\n  selector: {app: web}\n  ports: [{port: 81, targetPort: 80}]\n"), 0o644)
		l.must(t, "apply", "-f", file)
		applied := time.Now()
		ip := l.services(t)["fresh"].Spec.ClusterIP
		out := l.must(t, "exec", "client", "--", "sh", "-c",
			`for i in $(seq 100); do a=$(dig +short +time=1 +tries=1 fresh.default.svc.cluster.local); [ -n "$a" ] && { echo "$a"; exit 0; }; sleep 0.01; done; exit 1`)
		took := time.Since(applied)
		if strings.TrimSpace(out) != ip {
			t.Errorf("fresh.default.svc.cluster.local = %q, want %s", out, ip)
		}
		if took > time.Second {
			t.Errorf("the new Service was answered %v after the apply; the issue asks for under a second", took)
		}
	})

	t.Run("malformed queries do not take the server down", func(t *testing.T) {
		self, _ := os.Executable()
		l.must(t, "exec", "client", "--", "env", "PODNET_TEST_DNS_GARBAGE=10.96.0.10:53", self)
		if got := l.dig(t, "+short", "web.default.svc.cluster.local"); strings.TrimSpace(got) != webIP {
			t.Errorf("after garbage: %q", got)
		}
	})

	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}

// dnsGarbage sends malformed and odd queries to addr (run inside a pod by TestClusterDNS) and
// checks each gets a well-formed answer or none: FORMERR, NOTIMP or REFUSED as a real server gives.
func dnsGarbage(addr string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	send := func(b []byte) *dns.Msg {
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			return nil
		}
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil {
			return nil
		}
		return m
	}
	fail := 0
	// Random bytes and a truncated header: no crash; an answer, if any, parses.
	send([]byte{1, 2, 3})
	send([]byte("this is not a DNS message at all, but it is long enough"))
	// A header claiming two questions with one present: FORMERR.
	q := new(dns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	b, _ := q.Pack()
	b[5] = 2
	if m := send(b); m == nil || m.Rcode != dns.RcodeFormatError {
		fmt.Fprintf(os.Stderr, "two questions: %v\n", m)
		fail++
	}
	// An unknown opcode: NOTIMP.
	q.Opcode = dns.OpcodeUpdate + 5
	if m := send(mustPack(q)); m == nil || m.Rcode != dns.RcodeNotImplemented {
		fmt.Fprintf(os.Stderr, "unknown opcode: %v\n", m)
		fail++
	}
	// The CHAOS class: not served.
	q = new(dns.Msg)
	q.SetQuestion("version.bind.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	if m := send(mustPack(q)); m == nil || (m.Rcode != dns.RcodeNotImplemented && m.Rcode != dns.RcodeRefused) {
		fmt.Fprintf(os.Stderr, "CHAOS class: %v\n", m)
		fail++
	}
	if fail > 0 {
		return 1
	}
	fmt.Println("ok")
	return 0
}

func mustPack(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}
