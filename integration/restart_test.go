package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const restartLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: restart}
spec:
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: a1}
spec:
  nodeName: node-a
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Pod
metadata: {name: a2}
spec:
  nodeName: node-a
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Pod
metadata: {name: b1, labels: {app: sink}}
spec:
  nodeName: node-b
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80"], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Service
metadata: {name: sink}
spec:
  selector: {app: sink}
  ports: [{port: 9000}] # transfer dials port 9000
`

// TestAgentRestart: a node's agent restarts (podnet lab restart-agent: closed as if killed, a
// new one takes the pods back) in the middle of a 200 MB transfer on one node, across nodes to
// the restarted node, and from the restarted node through a ClusterIP. Each transfer completes
// with the SHA-256 the sender computed, and the pods keep their addresses. Then the pods still
// answer new connections and the lab goes down clean.
func TestAgentRestart(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	l := startLab(t, restartLab)
	pods := l.pods()
	ip := map[string]string{}
	for _, n := range []string{"a1", "a2", "b1"} {
		p := pods[n]
		if p == nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
			t.Fatalf("pod %s not running: %+v", n, p)
		}
		ip[n] = p.Status.PodIP
	}
	sink := l.services(t)["sink"]
	if sink == nil || sink.Spec.ClusterIP == "" {
		t.Fatalf("the Service sink has no ClusterIP: %+v", sink)
	}
	svc := sink.Spec.ClusterIP
	const size, pauseMS = 200 << 20, 10 // 200 MB, at least two seconds long
	gapRE := regexp.MustCompile(`\((\S+) without an agent\)`)
	// restart restarts node-a's agent once the sender has sent a tenth of the transfer, and
	// checks that it had not sent it all by the time the new agent was up.
	restart := func(t *testing.T, sent func() int) {
		for deadline := time.Now().Add(30 * time.Second); sent() < size/10; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("the sender never sent %d bytes", size/10)
				return
			}
		}
		out := l.must(t, "lab", "restart-agent", "node-a")
		after := sent()
		m := gapRE.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("restart-agent printed %q", out)
			return
		}
		t.Logf("node-a had no agent for %s; %d of %d MiB sent when it was back", m[1], after>>20, size>>20)
		if after >= size {
			t.Errorf("the sender had sent everything before the agent was back: the restart was not during the transfer")
		}
	}
	for _, c := range []struct{ name, from, to, addr string }{
		{"same node", "a1", "a2", ip["a2"]},
		{"across nodes, into the restarted node", "b1", "a1", ip["a1"]},
		{"through a ClusterIP, from the restarted node", "a2", "b1", svc},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					b, err := os.ReadFile(filepath.Join(stateBase(), l.name, "daemon.log"))
					t.Logf("lab daemon log (%v):\n%s", err, b)
				}
			})
			start := time.Now()
			stall := l.transfer(t, c.from, c.to, c.addr, size, pauseMS, func(sent func() int) { restart(t, sent) })
			t.Logf("%s: 200 MB in %v with a restart; the receiver's longest wait for data %v",
				c.name, time.Since(start).Round(time.Millisecond), stall)
		})
	}
	after := l.pods()
	for n, want := range ip {
		if p := after[n]; p == nil || p.Status.PodIP != want {
			t.Errorf("pod %s after the restarts: %+v, want address %s", n, p, want)
		}
	}
	for _, from := range []string{"a1", "b1"} {
		out := l.must(t, "exec", from, "--", "curl", "-sS", "--max-time", "5", "http://"+ip["a2"]+"/clientip")
		if strings.TrimSpace(out) != ip[from] {
			t.Errorf("a new connection %s -> a2 after the restarts: %q, want %s", from, out, ip[from])
		}
	}
	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}
