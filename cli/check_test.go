package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/agent"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeCheckEnv answers the check's probes from a table: a probe whose target contains a key of
// fail fails with its error, any other passes with a plausible answer.
type fakeCheckEnv struct {
	nodeList  []checkNode
	fail      map[string]error
	hostFail  map[string]error
	flowLog   []agent.FlowRecord
	noIngress bool
	noHost    string
	created   bool
	removed   bool
}

func (e *fakeCheckEnv) describe() string                                  { return "fake" }
func (e *fakeCheckEnv) command() string                                   { return "podnet" }
func (e *fakeCheckEnv) image(context.Context) (string, error)             { return "", nil }
func (e *fakeCheckEnv) nodes(context.Context) ([]checkNode, error)        { return e.nodeList, nil }
func (e *fakeCheckEnv) flows(context.Context) ([]agent.FlowRecord, error) { return e.flowLog, nil }

func (e *fakeCheckEnv) create(_ context.Context, _ string, objs checkObjects) error {
	if len(objs.pods) != 4 || len(objs.services) != 2 || len(objs.policies) != 1 || len(objs.ingresses) != 1 {
		return fmt.Errorf("objects %+v", objs)
	}
	e.created = true
	return nil
}

var fakeIPs = map[string]string{"client": "10.244.0.2", "server-a": "10.244.0.3", "server-b": "10.244.1.2", "guarded": "10.244.1.3"}

func (e *fakeCheckEnv) pods(_ context.Context, ns string) (map[string]*corev1.Pod, error) {
	if !e.created {
		return nil, nil
	}
	out := map[string]*corev1.Pod{}
	for name, ip := range fakeIPs {
		out[name] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Status: corev1.PodStatus{
			PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	}
	return out, nil
}

func (e *fakeCheckEnv) service(_ context.Context, ns, name string) (*corev1.Service, error) {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.7",
		Ports: []corev1.ServicePort{{Port: 80}}}}
	if name == "echo-nodeport" {
		s.Spec.ClusterIP, s.Spec.Ports[0].NodePort = "10.96.0.8", 30007
	}
	return s, nil
}

func (e *fakeCheckEnv) exec(_ context.Context, _, pod string, argv []string) (string, error) {
	target := strings.Join(argv, " ")
	for k, err := range e.fail {
		if strings.Contains(target, k) {
			return "", err
		}
	}
	switch {
	case strings.Contains(target, fakeIPs["guarded"]) && pod == "client":
		return "", errors.New("timed out (no answer: dropped on the way?)")
	case strings.Contains(target, "/clientip"):
		return fakeIPs[pod] + ":40000", nil
	case strings.Contains(target, "--type A"):
		return "10.96.0.7", nil
	case strings.Contains(target, "--type SRV"):
		return "echo.podnet-check.svc.cluster.local. 80", nil
	case strings.Contains(target, "--type PTR"):
		return "echo.podnet-check.svc.cluster.local.", nil
	}
	return "ok", nil
}

func (e *fakeCheckEnv) hostProbe(_ context.Context, _, kind, target, _, _ string) (string, error) {
	for k, err := range e.hostFail {
		if strings.Contains(kind+" "+target, k) {
			return "", err
		}
	}
	return "ok", nil
}

func (e *fakeCheckEnv) hostTarget(context.Context, checkNode) (string, func(), string, error) {
	if e.noHost != "" {
		return "", nil, e.noHost, nil
	}
	return "10.244.0.1:1234", func() {}, "", nil
}

func (e *fakeCheckEnv) ingressPort(context.Context) (uint16, error) {
	if e.noIngress {
		return 0, nil
	}
	return 80, nil
}

func (e *fakeCheckEnv) remove(context.Context, string, checkObjects) error {
	e.removed = true
	return nil
}

func twoNodes() []checkNode {
	return []checkNode{{"node-a", "192.0.2.1"}, {"node-b", "192.0.2.2"}}
}

// TestCheckVerdicts: the check's table from what the probes answer, with the reasons for its
// failures from the flow log, and its skips.
func TestCheckVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *fakeCheckEnv
		want map[string]string // case → status, and a fragment of its detail after a space
	}{
		{"healthy", &fakeCheckEnv{nodeList: twoNodes()}, map[string]string{
			"pod to pod, same node": "pass", "pod to pod, across nodes": "pass", "client address kept": "pass the server saw 10.244.0.2",
			"ClusterIP": "pass", "NodePort from a node": "pass 192.0.2.2:30007", "DNS A": "pass", "DNS SRV": "pass", "DNS PTR": "pass",
			"DNS outside name": "pass", "Ingress": "pass", "NetworkPolicy allows": "pass", "NetworkPolicy denies": "pass timed out",
			"egress to the host": "pass",
		}},
		{"one node, no Ingress, no outside DNS, no host loopback", &fakeCheckEnv{nodeList: twoNodes()[:1], noIngress: true,
			hostFail: map[string]error{"dns kubernetes.io": errors.New("no such name")}, noHost: "no hostLoopback"}, map[string]string{
			"pod to pod, across nodes": "skip one node", "client address kept": "pass", "Ingress": "skip no Ingress controller",
			"DNS outside name": "skip cannot resolve kubernetes.io", "egress to the host": "skip no hostLoopback",
		}},
		{"a policy denies ingress to server-b; the client's address is lost", &fakeCheckEnv{nodeList: twoNodes(),
			fail: map[string]error{"http://10.244.1.2:8080": errors.New("timed out (no answer: dropped on the way?)")},
			flowLog: []agent.FlowRecord{{Time: time.Now().Add(time.Hour), Node: "node-b", SourceIP: "10.244.0.2", DestIP: "10.244.1.2",
				Dest: "x/server-b", Verdict: "denied", DeniedBy: "Ingress", Policies: []string{"x/deny"}}}}, map[string]string{
			"pod to pod, across nodes": "fail denied by NetworkPolicy x/deny (ingress of x/server-b)",
			"client address kept":      "skip no connection across nodes",
			"pod to pod, same node":    "pass",
		}},
		{"the guarded pod lets the client in", &fakeCheckEnv{nodeList: twoNodes(), fail: map[string]error{}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				// The client reaches the guarded pod: the deny case must fail.
				env := &fakeCheckEnv{nodeList: twoNodes()}
				res := runFakeCheck(t, &allowAll{env})
				if got := find(res, "NetworkPolicy denies"); got.status != checkFail {
					t.Errorf("NetworkPolicy denies: %+v, want fail", got)
				}
				return
			}
			res := runFakeCheck(t, tc.env)
			for name, want := range tc.want {
				status, detail, _ := strings.Cut(want, " ")
				got := find(res, name)
				if got.status != status || !strings.Contains(got.detail, detail) {
					t.Errorf("%s: %s %q, want %s with %q", name, got.status, got.detail, status, detail)
				}
			}
			if !tc.env.removed {
				t.Error("the check did not remove what it made")
			}
		})
	}
}

// allowAll is an environment where every probe from a pod succeeds, the denied one too.
type allowAll struct{ *fakeCheckEnv }

func (e *allowAll) exec(_ context.Context, _, pod string, argv []string) (string, error) {
	if strings.Contains(strings.Join(argv, " "), "/clientip") {
		return fakeIPs[pod], nil
	}
	return "ok", nil
}

func runFakeCheck(t *testing.T, env checkEnv) []checkResult {
	t.Helper()
	res, err := runCheck(context.Background(), env, checkOptions{namespace: "podnet-check", timeout: 5 * time.Second, external: "kubernetes.io", log: io.Discard, retry: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func find(res []checkResult, name string) checkResult {
	for _, r := range res {
		if r.name == name {
			return r
		}
	}
	return checkResult{name: name, status: "missing"}
}
