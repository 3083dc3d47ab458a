package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The test binary doubles as a bulk TCP sink and source that run inside pods.
func init() {
	if port := os.Getenv("PODNET_TEST_SINK"); port != "" {
		os.Exit(tcpSink(port))
	}
	if addr := os.Getenv("PODNET_TEST_SOURCE"); addr != "" {
		os.Exit(tcpSource(addr))
	}
}

// tcpSink accepts one connection, reads it to the end and prints the byte count and SHA-256,
// and on stderr the longest time it waited for data ("longest stall D").
func tcpSink(port string) int {
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "listening")
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := sha256.New()
	n, err := io.Copy(h, &stallReader{r: c, last: time.Now()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	return 0
}

// stallReader reports, when r ends, the longest wait between two reads that returned data.
type stallReader struct {
	r       io.Reader
	last    time.Time
	longest time.Duration
	started bool
}

func (s *stallReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	now := time.Now()
	if n > 0 {
		if d := now.Sub(s.last); s.started && d > s.longest {
			s.longest = d
		}
		s.last, s.started = now, true
	}
	if err == io.EOF {
		fmt.Fprintf(os.Stderr, "longest stall %v\n", s.longest.Round(time.Millisecond))
	}
	return n, err
}

// tcpSource sends PODNET_TEST_BYTES pseudo-random bytes (seeded, so reproducible) to addr,
// pausing PODNET_TEST_PAUSE_MS after each MiB, and prints the count and SHA-256. If
// PODNET_TEST_PROGRESS names a file, it writes the bytes sent so far there after each MiB.
func tcpSource(addr string) int {
	total, _ := strconv.Atoi(os.Getenv("PODNET_TEST_BYTES"))
	pause, _ := strconv.Atoi(os.Getenv("PODNET_TEST_PAUSE_MS"))
	var c net.Conn
	var err error
	for try := 0; try < 50; try++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rng := mrand.NewChaCha8([32]byte{1, 2, 3})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for sent := 0; sent < total; {
		n := min(len(buf), total-sent)
		rng.Read(buf[:n])
		if _, err := c.Write(buf[:n]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		h.Write(buf[:n])
		sent += n
		if p := os.Getenv("PODNET_TEST_PROGRESS"); p != "" {
			os.WriteFile(p, []byte(strconv.Itoa(sent)), 0o644)
		}
		if pause > 0 {
			time.Sleep(time.Duration(pause) * time.Millisecond)
		}
	}
	c.Close()
	fmt.Printf("%d %s\n", total, hex.EncodeToString(h.Sum(nil)))
	return 0
}

const threeNodeLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: cross}
spec:
  nodes: [{name: node-a}, {name: node-b}, {name: node-c}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-a}
spec:
  nodeName: node-a
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80", "--udp", "7001"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-b}
spec:
  nodeName: node-b
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80", "--udp", "7001"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-c}
spec:
  nodeName: node-c
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80", "--udp", "7001"], readinessProbe: {tcpSocket: {port: 80}}}
`

// transfer sends size bytes from pod from to pod to over TCP (port 9000) and checks that what
// arrived has the sender's SHA-256. during, if set, runs while the transfer is under way; sent
// reports how many bytes the sender has written so far.
//
// It returns the longest time the receiver waited for data once it had started.
func (l *labRun) transfer(t *testing.T, from, to string, toIP string, size, pauseMS int, during func(sent func() int)) time.Duration {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	progress := filepath.Join(t.TempDir(), "sent")
	sentSoFar := func() int {
		b, _ := os.ReadFile(progress)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	sink := exec.Command(podnetBin, "--name", l.name, "exec", to, "--", "env", "PODNET_TEST_SINK=9000", self)
	var sinkOut, sinkErr bytes.Buffer
	sink.Stdout, sink.Stderr = &sinkOut, &sinkErr
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer sink.Process.Kill()
	srcDone := make(chan string, 1)
	go func() {
		out, err := l.podnet("exec", from, "--", "env", "PODNET_TEST_SOURCE="+toIP+":9000",
			"PODNET_TEST_BYTES="+strconv.Itoa(size), "PODNET_TEST_PAUSE_MS="+strconv.Itoa(pauseMS),
			"PODNET_TEST_PROGRESS="+progress, self)
		if err != nil {
			out = "error: " + err.Error()
		}
		srcDone <- out
	}()
	if during != nil {
		during(sentSoFar)
	}
	var sent string
	select {
	case sent = <-srcDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("transfer did not finish in 3 minutes")
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- sink.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("sink: %v\n%s", err, sinkErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sink did not finish (the source said %q)", sent)
	}
	want := fmt.Sprintf("%d ", size)
	if !strings.HasPrefix(sent, want) || strings.TrimSpace(sent) != strings.TrimSpace(sinkOut.String()) {
		t.Fatalf("transfer %s -> %s: sent %q, received %q", from, to, sent, sinkOut.String())
	}
	var stall time.Duration
	for _, line := range strings.Split(sinkErr.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "longest stall "); ok {
			stall, _ = time.ParseDuration(v)
		}
	}
	return stall
}

// metric returns the sum of a counter over all its label sets in the lab's metrics.
func (l *labRun) metric(t *testing.T, name string) float64 {
	t.Helper()
	return l.metricWhere(t, name, "")
}

// metricWhere returns the sum of a counter over its label sets that contain label (as
// `reason="spoofed"`; "" for all) in the lab's metrics.
func (l *labRun) metricWhere(t *testing.T, name, label string) float64 {
	t.Helper()
	st := l.must(t, "lab", "status")
	dir := ""
	for _, line := range strings.Split(st, "\n") {
		if strings.HasPrefix(line, "Dir:") {
			dir = strings.TrimSpace(strings.TrimPrefix(line, "Dir:"))
		}
	}
	out, err := exec.Command("curl", "-s", "--unix-socket", filepath.Join(dir, "lab.sock"), "http://lab/metrics").Output()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	var sum float64
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? ([0-9.e+]+)$`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		if !strings.Contains(m[1], label) {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

func TestCrossNodePods(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	l := startLab(t, threeNodeLab)
	pods := l.pods()
	names := []string{"web-a", "web-b", "web-c"}
	ip := map[string]string{}
	for _, n := range names {
		p := pods[n]
		if p == nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
			t.Fatalf("pod %s not running: %+v", n, p)
		}
		ip[n] = p.Status.PodIP
	}
	wide := l.must(t, "get", "nodes", "-o", "wide")
	if strings.Count(wide, "=") < 3 { // three base64 public keys
		t.Errorf("get nodes -o wide lacks WireGuard keys:\n%s", wide)
	}

	t.Run("every pair: curl keeps the source IP, ping", func(t *testing.T) {
		for _, from := range names {
			for _, to := range names {
				if from == to {
					continue
				}
				out := l.must(t, "exec", from, "--", "curl", "-sS", "--max-time", "5", "http://"+ip[to]+"/clientip")
				if strings.TrimSpace(out) != ip[from] {
					t.Errorf("%s -> %s: /clientip = %q, want %s", from, to, out, ip[from])
				}
				l.must(t, "exec", from, "--", "ping", "-c", "1", "-W", "3", ip[to])
			}
		}
	})
	t.Run("UDP across nodes", func(t *testing.T) {
		self, _ := os.Executable()
		out := l.must(t, "exec", "web-a", "--", "env", "PODNET_TEST_UDP_CLIENT="+ip["web-c"]+":7001", self)
		if strings.TrimSpace(out) != "web-c" {
			t.Errorf("UDP answer %q, want web-c", out)
		}
	})
	t.Run("100 MB with the right checksum", func(t *testing.T) {
		l.transfer(t, "web-a", "web-b", ip["web-b"], 100<<20, 0, nil)
	})
	t.Run("the underlay carries no clear text", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("skipped: capturing on loopback needs root; the root run checks this")
		}
		if _, err := exec.LookPath("tshark"); err != nil {
			t.Skip("skipped: tshark is not installed (apt-get install tshark)")
		}
		pcap := filepath.Join(t.TempDir(), "underlay.pcap")
		cap := exec.Command("tshark", "-q", "-i", "lo", "-f", "udp port 51820", "-w", pcap)
		var capErr bytes.Buffer
		cap.Stderr = &capErr
		if err := cap.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until tshark captures.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(capErr.String(), "Capturing on") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		marker := make([]byte, 24)
		rand.Read(marker)
		msg := "podnet-secret-" + hex.EncodeToString(marker)
		for i := 0; i < 20; i++ {
			out := l.must(t, "exec", "web-a", "--", "curl", "-sS", "--max-time", "5", "http://"+ip["web-b"]+"/echo?msg="+msg)
			if strings.TrimSpace(out) != msg {
				t.Fatalf("echo answered %q", out)
			}
		}
		time.Sleep(time.Second)
		cap.Process.Signal(os.Interrupt)
		cap.Wait()
		data, err := os.ReadFile(pcap)
		if err != nil {
			t.Fatalf("read capture: %v (%s)", err, capErr.String())
		}
		out, _ := exec.Command("tshark", "-r", pcap).Output()
		if packets := strings.Count(string(out), "\n"); packets < 40 {
			t.Fatalf("the capture holds %d packets: the check would prove nothing (%s)", packets, capErr.String())
		}
		if bytes.Contains(data, []byte(msg)) || bytes.Contains(data, []byte("podnet-secret")) {
			t.Errorf("the payload crossed the underlay in clear")
		}
	})
	t.Run("a key that is not a peer is dropped and counted", func(t *testing.T) {
		expectRejected(t, l, "node-a", ip["web-a"], nil)
	})
	t.Run("key rotation keeps a connection", func(t *testing.T) {
		l.transfer(t, "web-a", "web-c", ip["web-c"], 40<<20, 100, func(func() int) {
			time.Sleep(time.Second)
			out := l.must(t, "lab", "rotate-key", "node-a")
			if !strings.Contains(out, "new WireGuard public key") {
				t.Errorf("rotate-key: %q", out)
			}
		})
		out := l.must(t, "exec", "web-c", "--", "curl", "-sS", "--max-time", "5", "http://"+ip["web-a"]+"/clientip")
		if strings.TrimSpace(out) != ip["web-c"] {
			t.Errorf("after rotation: %q", out)
		}
	})
	t.Run("a removed node reaches no pod", func(t *testing.T) {
		stateDir := filepath.Join(stateBase(), l.name)
		oldKey, err := os.ReadFile(filepath.Join(stateDir, "nodes", "node-c", "wireguard.key"))
		if err != nil {
			t.Fatal(err)
		}
		two := strings.Replace(threeNodeLab, ", {name: node-c}]", "]", 1)
		two = two[:strings.Index(two, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-c}")]
		file := filepath.Join(t.TempDir(), "two.yaml")
		os.WriteFile(file, []byte(two), 0o644)
		l.must(t, "apply", "-f", file)
		if nodes := l.must(t, "get", "nodes"); strings.Contains(nodes, "node-c") {
			t.Fatalf("node-c still listed:\n%s", nodes)
		}
		expectRejected(t, l, "node-a", ip["web-a"], oldKey)
		// The remaining nodes still talk.
		out := l.must(t, "exec", "web-a", "--", "curl", "-sS", "--max-time", "5", "http://"+ip["web-b"]+"/clientip")
		if strings.TrimSpace(out) != ip["web-a"] {
			t.Errorf("a -> b after removing c: %q", out)
		}
	})

	t.Run("a node added later joins", func(t *testing.T) {
		pidBefore := l.must(t, "lab", "status")
		file := filepath.Join(t.TempDir(), "three.yaml")
		os.WriteFile(file, []byte(threeNodeLab), 0o644)
		l.must(t, "apply", "-f", file)
		var c *corev1.Pod
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if c = l.pods()["web-c"]; c != nil && podIsReady(c) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if c == nil || !podIsReady(c) {
			t.Fatalf("web-c on the re-added node-c is not ready: %+v", c)
		}
		for _, from := range []string{"web-a", "web-b"} {
			out := l.must(t, "exec", from, "--", "curl", "-sS", "--max-time", "5", "http://"+c.Status.PodIP+"/clientip")
			if strings.TrimSpace(out) != ip[from] {
				t.Errorf("%s -> re-added web-c: %q", from, out)
			}
		}
		// The daemon (and with it nodes a and b) kept running.
		if after := l.must(t, "lab", "status"); daemonLine(after) != daemonLine(pidBefore) {
			t.Errorf("the lab restarted: %q -> %q", daemonLine(pidBefore), daemonLine(after))
		}
	})

	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func daemonLine(status string) string {
	for _, line := range strings.Split(status, "\n") {
		if strings.HasPrefix(line, "State:") {
			return line
		}
	}
	return ""
}

// expectRejected sends a handshake to node from a key it does not accept (nil: a fresh one) and
// checks that the lab counts it as rejected.
func expectRejected(t *testing.T, l *labRun, node, podIP string, key []byte) {
	t.Helper()
	const m = "podnet_overlay_rejected_handshakes_total"
	before := l.metric(t, m)
	strangerHandshake(t, l, node, podIP, key)
	deadline := time.Now().Add(10 * time.Second)
	for l.metric(t, m) <= before && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if after := l.metric(t, m); after <= before {
		t.Errorf("%s %v -> %v: the handshake from a key that is not a peer was not counted", m, before, after)
	}
}
