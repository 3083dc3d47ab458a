package integration

import (
	"os"
	"strings"
	"testing"
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

	flows := l.must(t, "flows")
	var allowed, denied bool
	for _, line := range strings.Split(flows, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[1] != "node-b" || f[3] != "default/web" || f[4] != "80/TCP" || f[5] != "Ingress" {
			continue
		}
		switch {
		case f[2] == "default/friend" && f[6] == "allowed" && f[7] == "default/web-from-friends":
			allowed = true
		case f[2] == "default/stranger" && f[6] == "denied" && f[7] == "default/web-from-friends":
			denied = true
		}
	}
	if !allowed || !denied {
		t.Errorf("podnet flows lacks the allowed friend and the denied stranger at node-b's ingress:\n%s", flows)
	}
	if d := l.must(t, "flows", "--denied"); strings.Contains(d, "allowed") || !strings.Contains(d, "default/stranger") {
		t.Errorf("podnet flows --denied:\n%s", d)
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
