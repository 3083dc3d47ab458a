package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podnet/podnet/agent"
)

const flowsLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: flows}
spec:
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-b
  containers:
  - {name: web, command: ["podnet", "serve", "--http", "80"], ports: [{name: http, containerPort: 80}], readinessProbe: {tcpSocket: {port: 80}}}
---
apiVersion: v1
kind: Pod
metadata: {name: friend, labels: {role: friend}}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: stranger}
spec:
  nodeName: node-a
  containers: [{name: c, command: ["sleep", "infinity"]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-friends}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: friend}}}]
    ports: [{port: http}]
`

// TestPolicyFlowsAndExplain checks what users see of NetworkPolicy: podnet flows, the deny
// counter per policy, podnet policy explain, and the refusal of a bad policy.
func TestPolicyFlowsAndExplain(t *testing.T) {
	requireLab(t)
	l := startLab(t, flowsLab)
	web := l.pods()["web"].Status.PodIP
	if out, err := l.podnet("exec", "friend", "--", "curl", "-sS", "--max-time", "3", "http://"+web+"/"); err != nil || strings.TrimSpace(out) != "web" {
		t.Errorf("friend -> web: %q %v, want allowed", out, err)
	}
	if out, err := l.podnet("exec", "stranger", "--", "curl", "-sS", "--max-time", "1", "http://"+web+"/"); err == nil {
		t.Errorf("stranger -> web answered %q, want denied", out)
	}

	var allowed, denied bool
	for _, r := range flowRecords(t, l.must(t, "flows", "-o", "json")) {
		if r.Node != "node-b" || r.Dest != "default/web" || r.Port != 80 || r.Protocol != "TCP" || r.Direction != "ingress" {
			continue
		}
		switch {
		case r.Source == "default/friend" && r.Verdict == "forwarded" && strings.Join(r.Policies, ",") == "default/web-from-friends":
			allowed = true
		case r.Source == "default/stranger" && r.Verdict == "denied" && r.DeniedBy == "Ingress" && strings.Join(r.Policies, ",") == "default/web-from-friends":
			denied = true
		}
	}
	if !allowed || !denied {
		t.Errorf("podnet flows lacks the allowed friend and the denied stranger at node-b's ingress:\n%s", l.must(t, "flows"))
	}
	if d := l.must(t, "flows", "--verdict", "denied"); strings.Contains(d, "forwarded") || !strings.Contains(d, "default/stranger") {
		t.Errorf("podnet flows --verdict denied:\n%s", d)
	}
	// The picture draws the denied flow red, and names the policy.
	svg := filepath.Join(t.TempDir(), "lab.svg")
	l.must(t, "lab", "graph", "-o", svg)
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if pic := string(b); !strings.Contains(pic, "<svg") || !strings.Contains(pic, "#e03131") ||
		!strings.Contains(pic, "default/web-from-friends") || !strings.Contains(pic, "default/stranger") {
		t.Errorf("podnet lab graph: no red flow from the stranger denied by default/web-from-friends in the SVG")
	}
	if dot := l.must(t, "lab", "graph", "--format", "dot"); !strings.HasPrefix(strings.TrimSpace(dot), "//") || !strings.Contains(dot, "digraph") {
		t.Errorf("podnet lab graph --format dot:\n%.300s", dot)
	}
	if n := l.metric(t, "podnet_policy_denied_total"); n < 1 {
		t.Errorf("podnet_policy_denied_total = %v, want at least 1", n)
	}

	out := l.must(t, "policy", "explain", "--from", "default/stranger", "--to", "default/web", "--port", "80/TCP")
	if !strings.Contains(out, "denied") || !strings.Contains(out, "default/web-from-friends") {
		t.Errorf("explain stranger -> web:\n%s", out)
	}
	out = l.must(t, "policy", "explain", "--from", "default/friend", "--to", "default/web", "--port", "80/TCP")
	if first := strings.SplitN(out, "\n", 2)[0]; !strings.HasSuffix(first, "allowed") || !strings.Contains(out, "ingress[0]") {
		t.Errorf("explain friend -> web:\n%s", out)
	}

	bad := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-except}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]
`
	file := t.TempDir() + "/bad.yaml"
	os.WriteFile(file, []byte(bad), 0o644)
	if _, err := l.podnet("apply", "-f", file); err == nil || !strings.Contains(err.Error(), "spec.ingress[0].from[0].ipBlock.except[0]") {
		t.Errorf("a policy with an except outside its cidr: %v; want an error naming spec.ingress[0].from[0].ipBlock.except[0]", err)
	}
	if out := l.must(t, "get", "netpol"); strings.Contains(out, "bad-except") {
		t.Errorf("the refused policy was stored:\n%s", out)
	}
}

// flowRecords decodes the output of podnet flows -o json: one flow per line.
func flowRecords(t *testing.T, out string) []agent.FlowRecord {
	t.Helper()
	var recs []agent.FlowRecord
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r agent.FlowRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("podnet flows -o json: %v in %q", err, line)
		}
		recs = append(recs, r)
	}
	return recs
}
