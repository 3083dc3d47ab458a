package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/agent"
)

// The operator's tools against a lab: podnet check, podnet capture read back by tshark, and
// podnet flows --follow.

const operationsLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: ops}
spec:
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-b
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
`

// TestCheck: podnet check passes on a healthy lab, removing what it made; with a NetworkPolicy
// that denies every ingress in its namespace it fails, names the broken cases and says which
// policy denied them.
func TestCheck(t *testing.T) {
	requireLab(t)
	l := startLab(t, operationsLab)
	out, err := l.podnet("check")
	if err != nil {
		t.Fatalf("podnet check failed on a healthy lab: %v", err)
	}
	rows := checkRows(out)
	for _, want := range []string{"pod to pod, same node", "pod to pod, across nodes", "client address kept", "ClusterIP",
		"NodePort from a node", "DNS A", "DNS SRV", "DNS PTR", "Ingress", "NetworkPolicy allows", "NetworkPolicy denies", "egress to the host"} {
		if rows[want] != "pass" {
			t.Errorf("case %q: %q, want pass\n%s", want, rows[want], out)
		}
	}
	if r := rows["DNS outside name"]; r != "pass" && r != "skip" {
		t.Errorf("case DNS outside name: %q\n%s", r, out)
	}
	if left := l.must(t, "get", "pods", "-n", "podnet-check"); strings.Contains(left, "client") {
		t.Errorf("podnet check left its pods:\n%s", left)
	}

	deny := `apiVersion: v1
kind: Namespace
metadata: {name: broken, labels: {kubernetes.io/metadata.name: broken}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress, namespace: broken}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`
	file := filepath.Join(t.TempDir(), "deny.yaml")
	os.WriteFile(file, []byte(deny), 0o644)
	l.must(t, "apply", "-f", file)
	out, err = l.podnet("check", "--namespace", "broken")
	if err == nil {
		t.Fatalf("podnet check passed with every ingress denied:\n%s", out)
	}
	rows = checkRows(out)
	for _, broken := range []string{"pod to pod, same node", "pod to pod, across nodes", "ClusterIP"} {
		if rows[broken] != "fail" {
			t.Errorf("case %q: %q, want fail\n%s", broken, rows[broken], out)
		}
	}
	if !strings.Contains(out, "denied by NetworkPolicy broken/deny-all-ingress") {
		t.Errorf("the failures do not name the policy:\n%s", out)
	}
	if rows["NetworkPolicy allows"] != "pass" || rows["DNS A"] != "pass" {
		t.Errorf("paths the policy does not break failed:\n%s", out)
	}
}

// checkRows maps each case of podnet check's table to its result.
func checkRows(out string) map[string]string {
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		for _, res := range []string{"  pass  ", "  fail  ", "  skip  "} {
			if name, _, ok := strings.Cut(line, res); ok {
				rows[strings.TrimSpace(name)] = strings.TrimSpace(res)
				break
			}
		}
	}
	return rows
}

// TestCapture: a capture of a curl, written as pcap by podnet capture and read back by tshark:
// the whole exchange, every segment of the GSO super-frames within the MTU and with a good
// checksum; and an overlay capture of the same across nodes.
func TestCapture(t *testing.T) {
	requireLab(t)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (apt-get install tshark): it reads the captures back")
	}
	l := startLab(t, operationsLab)
	web := l.pods()["web"].Status.PodIP
	dir := t.TempDir()

	for _, tc := range []struct {
		name string
		args []string
		mtu  int // the largest IP packet
	}{
		{"pod", []string{"capture", "client", "tcp", "port", "80"}, 1500},
		{"overlay", []string{"capture", "--node", "node-a", "--overlay", "host", web}, 1500}, // the lab's MTU
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".pcap")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, podnetBin, append([]string{"--name", l.name}, append(tc.args, "-w", file)...)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The capture is running once its file has the pcap header.
			waitFor(t, "the capture to start", func() bool {
				st, err := os.Stat(file)
				return err == nil && st.Size() >= 24
			})
			// 2 MB from the server: the client's kernel gets GRO super-frames, written as their
			// segments.
			l.must(t, "exec", "client", "--", "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "http://"+web+"/bytes?n=2000000")
			time.Sleep(300 * time.Millisecond)
			cmd.Process.Signal(os.Interrupt)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("podnet capture: %v\n%s", err, stderr.String())
			}
			tsh := exec.Command(tshark, "-r", file, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields",
				"-e", "ip.len", "-e", "tcp.checksum.status", "-e", "ip.checksum.status", "-e", "http.request.method", "-e", "tcp.len", "-e", "ip.src")
			b, err := tsh.Output()
			if err != nil {
				t.Fatalf("tshark -r: %v", err)
			}
			var packets, bad, get, payload, long int
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				f := strings.Split(line, "\t")
				if len(f) < 6 {
					continue
				}
				packets++
				if n, _ := strconv.Atoi(f[0]); n > tc.mtu {
					long++
				}
				if f[1] != "1" || f[2] != "1" && f[2] != "" {
					bad++
				}
				if f[3] == "GET" {
					get++
				}
				if n, _ := strconv.Atoi(f[4]); f[5] == web {
					payload += n
				}
			}
			if long > 0 {
				t.Errorf("%d of %d packets longer than the MTU %d (GSO frames written whole)", long, packets, tc.mtu)
			}
			if packets == 0 || get != 1 || bad != 0 {
				t.Errorf("tshark read %d packets, %d GET requests (want 1), %d with a bad checksum (want 0)", packets, get, bad)
			}
			if payload < 2000000 {
				t.Errorf("the capture holds %d bytes of the server's payload, want at least 2000000", payload)
			}
		})
	}
	if _, err := l.podnet("capture", "nosuchpod"); err == nil || !strings.Contains(err.Error(), "nosuchpod") {
		t.Errorf("capture of a pod that does not exist: %v; want an error naming it", err)
	}
	if _, err := l.podnet("capture", "client", "tcp", "port", "x"); err == nil || !strings.Contains(err.Error(), `"x" is not a port number`) {
		t.Errorf("capture with a bad filter: %v", err)
	}
}

// TestFlowsFollow: podnet flows --follow streams an allowed and a denied connection as they
// happen.
func TestFlowsFollow(t *testing.T) {
	requireLab(t)
	l := startLab(t, flowsLab)
	web := l.pods()["web"].Status.PodIP
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, podnetBin, "--name", l.name, "flows", "--follow", "-o", "json", "--pod", "default/web")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	recs := make(chan agent.FlowRecord, 100)
	go func() {
		defer close(recs)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r agent.FlowRecord
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				recs <- r
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // let it subscribe
	start := time.Now()
	if out, err := l.podnet("exec", "friend", "--", "curl", "-sS", "--max-time", "3", "http://"+web+"/"); err != nil {
		t.Errorf("friend → web: %q %v", out, err)
	}
	l.podnet("exec", "stranger", "--", "curl", "-sS", "--max-time", "1", "http://"+web+"/")
	var allowed, denied bool
	deadline := time.After(20 * time.Second)
	for !allowed || !denied {
		select {
		case r, ok := <-recs:
			if !ok {
				t.Fatal("podnet flows --follow ended")
			}
			if r.Time.Before(start) || r.Dest != "default/web" {
				continue
			}
			allowed = allowed || r.Source == "default/friend" && r.Verdict == "forwarded"
			denied = denied || r.Source == "default/stranger" && r.Verdict == "denied" && len(r.Policies) == 1
		case <-deadline:
			t.Fatalf("podnet flows --follow: allowed seen %v, denied seen %v", allowed, denied)
		}
	}
}
