package policy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/policy"
)

// flowCase is one flow and its expected overall verdict; an end is
// "ns/pod" or an address.
type flowCase struct {
	from, to string
	port     uint16
	proto    policy.Protocol
	want     bool
}

type truthCase struct {
	name     string
	policies string
	// namespaces and pods default to the upstream e2e model.
	namespaces []policy.Namespace
	pods       []policy.Pod
	probes     []probe // default: TCP and UDP on 80 and 81
	// want is the verdict on every pair of pods, loopback aside (nil: no
	// truth table).
	want  func(from, to policy.Pod, p probe) bool
	flows []flowCase
}

func name(p policy.Pod) string { return p.Namespace + "/" + p.Name }

// Policies are written as users write them, after the API reference and
// the examples of https://kubernetes.io/docs/concepts/services-networking/network-policies/,
// on the model of the upstream e2e tests.
var truthCases = []truthCase{
	{
		name: "default deny ingress",
		policies: `
metadata: {name: default-deny-ingress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]`,
		want: func(from, to policy.Pod, _ probe) bool { return to.Namespace != "x" },
		flows: []flowCase{
			{"192.168.5.5", "x/a", 80, policy.TCP, false},
			{"x/a", "192.168.5.5", 80, policy.TCP, true},
		},
	},
	{
		name: "default deny egress",
		policies: `
metadata: {name: default-deny-egress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]`,
		want: func(from, to policy.Pod, _ probe) bool { return from.Namespace != "x" },
		flows: []flowCase{
			{"x/a", "8.8.8.8", 53, policy.UDP, false},
			{"8.8.8.8", "x/a", 53, policy.UDP, true},
		},
	},
	{
		name: "default deny all ingress and all egress",
		policies: `
metadata: {name: default-deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]`,
		want: func(from, to policy.Pod, _ probe) bool { return from.Namespace != "x" && to.Namespace != "x" },
	},
	{
		name: "allow all ingress beside a default deny",
		policies: `
metadata: {name: default-deny-ingress, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
metadata: {name: allow-all-ingress, namespace: x}
spec:
  podSelector: {}
  ingress: [{}]
  policyTypes: [Ingress]`,
		want:  func(from, to policy.Pod, _ probe) bool { return true },
		flows: []flowCase{{"192.168.5.5", "x/a", 80, policy.TCP, true}},
	},
	{
		name: "allow all egress beside a default deny",
		policies: `
metadata: {name: default-deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
---
metadata: {name: allow-all-egress, namespace: x}
spec:
  podSelector: {}
  egress: [{}]
  policyTypes: [Egress]`,
		want:  func(from, to policy.Pod, _ probe) bool { return true },
		flows: []flowCase{{"x/a", "1.1.1.1", 443, policy.TCP, true}},
	},
	{
		name: "policyTypes unset and no rules: ingress isolation only",
		policies: `
metadata: {name: deny-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}`,
		want: func(from, to policy.Pod, _ probe) bool { return name(to) != "x/a" },
	},
	{
		name: "policyTypes unset with egress rules: Ingress and Egress",
		policies: `
metadata: {name: a-to-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress:
  - to: [{podSelector: {matchLabels: {pod: b}}}]`,
		want: func(from, to policy.Pod, _ probe) bool {
			return name(to) != "x/a" && (name(from) != "x/a" || name(to) == "x/b")
		},
	},
	{
		name: "policyTypes Egress only: ingress rules are ignored",
		policies: `
metadata: {name: egress-only, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]`,
		want: func(from, to policy.Pod, _ probe) bool { return name(from) != "x/a" },
	},
	{
		name: "podSelector peer: the policy's namespace only",
		policies: `
metadata: {name: from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]`,
		want: func(from, to policy.Pod, _ probe) bool { return name(to) != "x/a" || name(from) == "x/b" },
	},
	{
		name: "namespaceSelector peer: all pods of the namespaces",
		policies: `
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]`,
		want:  func(from, to policy.Pod, _ probe) bool { return name(to) != "x/a" || from.Namespace == "y" },
		flows: []flowCase{{"10.244.2.99", "x/a", 80, policy.TCP, false}}, // in y's range, not a pod
	},
	{
		name: "namespaceSelector AND podSelector in one peer",
		policies: `
metadata: {name: from-y-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: "y"}}
      podSelector: {matchLabels: {pod: b}}`,
		want: func(from, to policy.Pod, _ probe) bool { return name(to) != "x/a" || name(from) == "y/b" },
	},
	{
		name: "namespaceSelector OR podSelector as two peers",
		policies: `
metadata: {name: from-y-or-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: "y"}}
    - podSelector: {matchLabels: {pod: b}}`,
		want: func(from, to policy.Pod, _ probe) bool {
			return name(to) != "x/a" || from.Namespace == "y" || name(from) == "x/b"
		},
	},
	{
		name: "empty namespaceSelector: pods of every namespace",
		policies: `
metadata: {name: from-any-b, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector: {matchLabels: {pod: b}}`,
		want:  func(from, to policy.Pod, _ probe) bool { return to.Namespace != "x" || from.Name == "b" },
		flows: []flowCase{{"192.168.5.5", "x/a", 80, policy.TCP, false}},
	},
	{
		name: "kubernetes.io/metadata.name is implied",
		policies: `
metadata: {name: from-z, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]`,
		want: func(from, to policy.Pod, _ probe) bool { return to.Namespace != "x" || from.Namespace == "z" },
	},
	{
		name: "matchExpressions",
		policies: `
metadata: {name: expressions, namespace: x}
spec:
  podSelector:
    matchExpressions: [{key: pod, operator: NotIn, values: [a]}]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions: [{key: ns, operator: In, values: ["y", z]}]
      podSelector:
        matchExpressions: [{key: pod, operator: Exists}, {key: team, operator: DoesNotExist}]`,
		want: func(from, to policy.Pod, _ probe) bool {
			return to.Namespace != "x" || to.Name == "a" || from.Namespace != "x"
		},
	},
	{
		name: "port by number, protocol defaulting to TCP",
		policies: `
metadata: {name: tcp-80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{port: 80}]`,
		want:  func(from, to policy.Pod, p probe) bool { return name(to) != "x/a" || p == tcp80 },
		flows: []flowCase{{"192.168.5.5", "x/a", 80, policy.TCP, true}},
	},
	{
		name: "protocol without a port: every port of it",
		policies: `
metadata: {name: udp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: UDP}]`,
		want: func(from, to policy.Pod, p probe) bool { return name(to) != "x/a" || p.proto == policy.UDP },
		flows: []flowCase{
			{"y/a", "x/a", 5353, policy.UDP, true},
			{"y/a", "x/a", 5353, policy.TCP, false},
			{"y/a", "x/a", 0, 1, false}, // ICMP: only rules without ports
		},
	},
	{
		name: "SCTP",
		policies: `
metadata: {name: sctp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: SCTP, port: 80}]`,
		probes: []probe{tcp80, {80, policy.SCTP}, {81, policy.SCTP}},
		want: func(from, to policy.Pod, p probe) bool {
			return name(to) != "x/a" || p == probe{80, policy.SCTP}
		},
	},
	{
		name: "rule without ports allows every protocol",
		policies: `
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]`,
		flows: []flowCase{
			{"y/a", "x/a", 0, 1, true}, // ICMP
			{"z/a", "x/a", 0, 1, false},
		},
	},
	{
		name: "endPort range",
		policies: `
metadata: {name: range, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - ports: [{protocol: TCP, port: 81, endPort: 82}]`,
		probes: []probe{{79, policy.TCP}, tcp80, tcp81, {82, policy.TCP}, {83, policy.TCP}, udp81},
		want: func(from, to policy.Pod, p probe) bool {
			return name(to) != "x/a" || p.proto == policy.TCP && (p.port == 81 || p.port == 82)
		},
	},
	{
		name: "named port at ingress: the selected pod's port",
		policies: `
metadata: {name: named, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: serve-81-tcp}, {protocol: UDP, port: serve-80-udp}]`,
		want: func(from, to policy.Pod, p probe) bool {
			return to.Namespace != "x" || p == tcp81 || p == udp80
		},
	},
	{
		name: "named port at ingress resolves per pod",
		policies: `
metadata: {name: http, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: http}]`,
		pods:   perPodHTTP(),
		probes: []probe{tcp80, tcp81, udp80},
		want: func(from, to policy.Pod, p probe) bool {
			switch name(to) {
			case "x/a":
				return p == tcp80
			case "x/b":
				return p == tcp81
			case "x/c": // no port named http
				return false
			}
			return true
		},
	},
	{
		name: "named port at egress: the destination pod's port",
		policies: `
metadata: {name: to-x-http, namespace: "y"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: x}}}]
    ports: [{port: http}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: http}]`,
		pods:   perPodHTTP(),
		probes: []probe{tcp80, tcp81, udp80},
		want: func(from, to policy.Pod, p probe) bool {
			if from.Namespace != "y" {
				return true
			}
			switch {
			case name(to) == "x/a":
				return p == tcp80
			case name(to) == "x/b":
				return p == tcp81
			}
			return false
		},
		flows: []flowCase{
			{"y/a", "8.8.8.8", 80, policy.TCP, false}, // not a pod: no named port
		},
	},
	{
		name: "several policies add up",
		policies: `
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]
---
metadata: {name: from-z-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: z}}}]
    ports: [{port: 81}]`,
		want: func(from, to policy.Pod, p probe) bool {
			return name(to) != "x/a" || from.Namespace == "y" || from.Namespace == "z" && p == tcp81
		},
	},
	{
		name: "egress and ingress must both allow",
		policies: `
metadata: {name: x-egress-to-y, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]
---
metadata: {name: y-ingress-from-x-a, namespace: "y"}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: x}}
      podSelector: {matchLabels: {pod: a}}`,
		want: func(from, to policy.Pod, p probe) bool {
			egress := from.Namespace != "x" || to.Namespace == "y"
			ingress := to.Namespace != "y" || name(from) == "x/a"
			return egress && ingress
		},
	},
	{
		name: "egress denied except DNS",
		policies: `
metadata: {name: default-deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
---
metadata: {name: allow-dns, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]`,
		want: func(from, to policy.Pod, p probe) bool { return from.Namespace != "x" },
		flows: []flowCase{
			{"x/a", "10.96.0.10", 53, policy.UDP, true},
			{"x/a", "8.8.8.8", 53, policy.TCP, true},
			{"x/a", "y/b", 53, policy.UDP, true},
			{"x/a", "8.8.8.8", 80, policy.TCP, false},
			{"x/a", "8.8.8.8", 53, policy.SCTP, false},
		},
	},
	{
		name: "ipBlock with except matches pod IPs",
		policies: `
metadata: {name: from-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.2/32]}}]
---
metadata: {name: b-egress-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.3.0/24]}}]`,
		want: func(from, to policy.Pod, p probe) bool {
			in := name(to) != "x/a" || from.Namespace == "y" && from.Name != "b"
			out := name(from) != "x/b" || to.Namespace != "z"
			return in && out
		},
		flows: []flowCase{
			{"10.244.2.200", "x/a", 80, policy.TCP, true}, // in the block, not a pod
			{"192.168.1.1", "x/a", 80, policy.TCP, false},
			{"x/b", "10.244.9.9", 80, policy.TCP, true},
			{"x/b", "10.244.3.9", 80, policy.TCP, false},
			{"x/b", "8.8.8.8", 80, policy.TCP, false},
		},
	},
	{
		name: "ipBlock for the outside world, except the pod network",
		policies: `
metadata: {name: from-outside, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.244.0.0/16]}}]`,
		want: func(from, to policy.Pod, p probe) bool { return to.Namespace != "x" },
		flows: []flowCase{
			{"192.168.1.1", "x/a", 80, policy.TCP, true},
			{"10.244.200.1", "x/a", 80, policy.TCP, false},
			{"255.255.255.255", "x/a", 80, policy.UDP, true},
			{"2001:db8::1", "x/a", 80, policy.TCP, false}, // an IPv4 block
		},
	},
}

// perPodHTTP is the model with a port named http on x/a (80) and x/b (81)
// and none on x/c.
func perPodHTTP() []policy.Pod {
	pods := slices.Clone(modelPods)
	for i := range pods {
		switch name(pods[i]) {
		case "x/a":
			pods[i].Ports = []policy.NamedPort{{Name: "http", Protocol: policy.TCP, Port: 80}}
		case "x/b":
			pods[i].Ports = []policy.NamedPort{{Name: "http", Port: 81}} // protocol 0: TCP
		default:
			pods[i].Ports = nil
		}
	}
	return pods
}

func TestTruthTables(t *testing.T) {
	for _, c := range truthCases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			namespaces, pods, probes := c.namespaces, c.pods, c.probes
			if namespaces == nil {
				namespaces = modelNamespaces
			}
			if pods == nil {
				pods = modelPods
			}
			if probes == nil {
				probes = allProbes
			}
			tb := policy.Compile(decode(t, c.policies), namespaces, pods)
			if c.want != nil {
				checkTruthTable(t, tb, pods, probes, c.want)
			}
			for _, fc := range c.flows {
				f := policy.Flow{Src: endpoint(t, pods, fc.from), Dst: endpoint(t, pods, fc.to), Proto: fc.proto, Port: fc.port}
				if got := allows(tb, f); got != fc.want {
					t.Errorf("%s -> %s %d/%v: allowed %v, want %v\n%v", fc.from, fc.to, fc.port, fc.proto, got, fc.want, tb.Explain(f))
				}
				if e := tb.Explain(f); e.Allowed() != fc.want {
					t.Errorf("%s -> %s: Explain disagrees with Allows:\n%v", fc.from, fc.to, e)
				}
			}
		})
	}
}

func endpoint(t testing.TB, pods []policy.Pod, s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a
	}
	return podAddr(t, pods, s)
}

// TestDocsExample is the documentation's test-network-policy: ingress to
// role=db from the ipBlock 172.17.0.0/16 except 172.17.1.0/24, from
// namespaces labelled project=myproject, and from role=frontend pods of
// its namespace, on TCP 6379; egress from role=db to 10.0.0.0/24 on TCP
// 5978.
func TestDocsExample(t *testing.T) {
	policies := decode(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978`)
	namespaces := []policy.Namespace{
		{Name: "default"},
		{Name: "myproject", Labels: map[string]string{"project": "myproject"}},
		{Name: "other"},
	}
	pods := []policy.Pod{
		{Namespace: "default", Name: "db", IP: addr("10.0.0.10"), Labels: map[string]string{"role": "db"}},
		{Namespace: "default", Name: "frontend", IP: addr("10.0.0.11"), Labels: map[string]string{"role": "frontend"}},
		{Namespace: "default", Name: "backend", IP: addr("10.0.0.12"), Labels: map[string]string{"role": "backend"}},
		{Namespace: "myproject", Name: "p", IP: addr("10.0.1.5"), Labels: map[string]string{"role": "anything"}},
		{Namespace: "other", Name: "q", IP: addr("10.0.2.5"), Labels: map[string]string{"role": "frontend"}},
	}
	tb := policy.Compile(policies, namespaces, pods)
	for _, fc := range []flowCase{
		{"default/frontend", "default/db", 6379, policy.TCP, true},
		{"default/frontend", "default/db", 6379, policy.UDP, false},
		{"default/frontend", "default/db", 80, policy.TCP, false},
		{"default/backend", "default/db", 6379, policy.TCP, false},
		{"myproject/p", "default/db", 6379, policy.TCP, true},
		{"other/q", "default/db", 6379, policy.TCP, false}, // role=frontend, but in another namespace
		{"172.17.0.5", "default/db", 6379, policy.TCP, true},
		{"172.17.1.5", "default/db", 6379, policy.TCP, false},
		{"172.18.0.5", "default/db", 6379, policy.TCP, false},
		{"default/db", "10.0.0.77", 5978, policy.TCP, true},
		{"default/db", "10.0.0.77", 80, policy.TCP, false},
		{"default/db", "10.0.1.77", 5978, policy.TCP, false},
		{"default/db", "default/frontend", 5978, policy.TCP, true}, // ipBlock matches pod IPs
		{"default/db", "myproject/p", 5978, policy.TCP, false},
		{"default/backend", "default/frontend", 80, policy.TCP, true}, // not isolated
	} {
		f := policy.Flow{Src: endpoint(t, pods, fc.from), Dst: endpoint(t, pods, fc.to), Proto: fc.proto, Port: fc.port}
		if got := allows(tb, f); got != fc.want {
			t.Errorf("%s -> %s %d/%v: allowed %v, want %v\n%v", fc.from, fc.to, fc.port, fc.proto, got, fc.want, tb.Explain(f))
		}
	}
}
