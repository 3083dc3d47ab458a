package policy_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/podnet/podnet/policy"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// decode parses NetworkPolicies written as YAML documents, as a user
// writes them (so the tests read like the documentation's examples).
func decode(t testing.TB, docs string) []*networkingv1.NetworkPolicy {
	t.Helper()
	var out []*networkingv1.NetworkPolicy
	for _, doc := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
			t.Fatalf("decode policy: %v\n%s", err, doc)
		}
		if errs := policy.Validate(np); len(errs) > 0 {
			t.Fatalf("policy %s is not valid: %v", np.Name, errs.ToAggregate())
		}
		out = append(out, np)
	}
	return out
}

// The model of the upstream e2e tests (kubernetes/test/e2e/network/netpol):
// namespaces x, y, z labelled ns=<name>; pods a, b, c in each labelled
// pod=<name>, each serving TCP and UDP on 80 and 81 with the port names
// serve-<port>-<proto>.
var (
	modelNamespaces = []policy.Namespace{
		{Name: "x", Labels: map[string]string{"ns": "x"}},
		{Name: "y", Labels: map[string]string{"ns": "y"}},
		{Name: "z", Labels: map[string]string{"ns": "z"}},
	}
	modelPods = func() []policy.Pod {
		var pods []policy.Pod
		for i, ns := range []string{"x", "y", "z"} {
			for j, name := range []string{"a", "b", "c"} {
				pods = append(pods, policy.Pod{
					Namespace: ns, Name: name,
					IP:     netip.AddrFrom4([4]byte{10, 244, byte(i + 1), byte(j + 1)}),
					Labels: map[string]string{"pod": name},
					Ports: []policy.NamedPort{
						{Name: "serve-80-tcp", Protocol: policy.TCP, Port: 80},
						{Name: "serve-80-udp", Protocol: policy.UDP, Port: 80},
						{Name: "serve-81-tcp", Protocol: policy.TCP, Port: 81},
						{Name: "serve-81-udp", Protocol: policy.UDP, Port: 81},
					},
				})
			}
		}
		return pods
	}()
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// podAddr returns the address of model pod "ns/name".
func podAddr(t testing.TB, pods []policy.Pod, name string) netip.Addr {
	t.Helper()
	for _, p := range pods {
		if p.Namespace+"/"+p.Name == name {
			return p.IP
		}
	}
	t.Fatalf("no pod %s", name)
	return netip.Addr{}
}

// allows is the overall verdict the data path reaches: egress at the
// source and ingress at the destination.
func allows(tb *policy.Table, f policy.Flow) bool {
	e, _ := tb.Allows(f, policy.Egress)
	i, _ := tb.Allows(f, policy.Ingress)
	return e && i
}

// probe is one port and protocol of a truth table.
type probe struct {
	port  uint16
	proto policy.Protocol
}

func (p probe) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

// checkTruthTable compares the verdict on every pair of pods, for each
// probe, with want, and prints both tables as the upstream e2e tests do
// when they differ ("." allowed, "X" denied).
func checkTruthTable(t *testing.T, tb *policy.Table, pods []policy.Pod, probes []probe, want func(from, to policy.Pod, p probe) bool) {
	t.Helper()
	for _, pr := range probes {
		var got, exp strings.Builder
		bad := 0
		header := "      "
		for _, to := range pods {
			header += fmt.Sprintf("%-4s", to.Namespace+"/"+to.Name)
		}
		got.WriteString(header + "\n")
		exp.WriteString(header + "\n")
		for _, from := range pods {
			got.WriteString(fmt.Sprintf("%-6s", from.Namespace+"/"+from.Name))
			exp.WriteString(fmt.Sprintf("%-6s", from.Namespace+"/"+from.Name))
			for _, to := range pods {
				f := policy.Flow{Src: from.IP, Dst: to.IP, Proto: pr.proto, Port: pr.port}
				// A pod's traffic to itself is always allowed (the
				// upstream model's AllowLoopback).
				g, w := allows(tb, f), from.IP == to.IP || want(from, to, pr)
				if g != w {
					bad++
				}
				got.WriteString(mark(g) + "   ")
				exp.WriteString(mark(w) + "   ")
				// Explain must agree with Allows.
				if e := tb.Explain(f); e.Allowed() != g {
					t.Errorf("%v: Explain says %v, Allows %v\n%v", f, e.Allowed(), g, e)
				}
			}
			got.WriteString("\n")
			exp.WriteString("\n")
		}
		if bad > 0 {
			t.Errorf("probe %v: %d pairs differ\ngot:\n%s\nwant:\n%s", pr, bad, got.String(), exp.String())
		}
	}
}

func mark(ok bool) string {
	if ok {
		return "."
	}
	return "X"
}

var (
	tcp80 = probe{80, policy.TCP}
	tcp81 = probe{81, policy.TCP}
	udp80 = probe{80, policy.UDP}
	udp81 = probe{81, policy.UDP}

	allProbes = []probe{tcp80, tcp81, udp80, udp81}
)
