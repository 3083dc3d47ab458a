package cluster

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// netpol is a NetworkPolicy document named np with the given spec lines
// (indented by two spaces).
func netpol(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n" + spec
}

// renamed returns doc with its name np replaced by name.
func renamed(doc, name string) string { return strings.Replace(doc, "name: np}", "name: "+name+"}", 1) }

var networkPolicyCases = []struct {
	name  string
	in    string
	docs  int
	wants []string
}{
	// Good policies.
	{name: "default deny", in: netpol("  podSelector: {}\n"), docs: 1},
	{name: "every peer and port form", in: netpol(`  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchExpressions: [{key: role, operator: In, values: [api]}]}
      namespaceSelector: {matchLabels: {team: a}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 5432}
    - {port: http, protocol: TCP}
    - {port: 8000, endPort: 8080, protocol: UDP}
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: 53, protocol: UDP}]
`), docs: 1},
	{name: "in a List", in: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: a, namespace: dev}\n  spec: {podSelector: {}}\n", docs: 1},

	// Bad policies: every rule of the API server (policy.Validate), each naming its field.
	{name: "bad CIDR", in: netpol("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]\n"), wants: []string{
		`lab.yaml: document 1 (line 1): networkpolicy.networking.k8s.io/np: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33"`}},
	{name: "CIDR with host bits", in: netpol("  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.1/8}}]}]\n"), wants: []string{
		`networkpolicy.networking.k8s.io/np: spec.egress[0].to[0].ipBlock.cidr: Invalid value: "10.0.0.1/8"`}},
	{name: "except outside its cidr", in: netpol("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 192.168.0.0/24, 10.0.0.0/16, nonsense]}}]}]\n"), wants: []string{
		"networkpolicy.networking.k8s.io/np: spec.ingress[0].from[0].ipBlock.except[1]: Invalid value: \"192.168.0.0/24\": must be a strict subset of `cidr`",
		"networkpolicy.networking.k8s.io/np: spec.ingress[0].from[0].ipBlock.except[2]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`",
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].from[0].ipBlock.except[3]: Invalid value: "nonsense"`}},
	{name: "endPort below port", in: netpol("  podSelector: {}\n  egress: [{ports: [{port: 8080, endPort: 80}, {port: http, endPort: 90}, {endPort: 90}]}]\n"), wants: []string{
		"networkpolicy.networking.k8s.io/np: spec.egress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`",
		"networkpolicy.networking.k8s.io/np: spec.egress[0].ports[1].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
		"networkpolicy.networking.k8s.io/np: spec.egress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is not specified"}},
	{name: "unknown protocol", in: netpol("  podSelector: {}\n  ingress: [{ports: [{port: 80, protocol: ICMP}, {port: 81, protocol: tcp}]}]\n"), wants: []string{
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[1].protocol: Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP"`}},
	{name: "bad ports", in: netpol("  podSelector: {}\n  ingress: [{ports: [{port: 0}, {port: 70000}, {port: not_a_name}]}]\n"), wants: []string{
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[2].port: Invalid value: "not_a_name"`}},
	{name: "bad peers and selectors", in: netpol(`  podSelector: {matchExpressions: [{key: app, operator: Near, values: [a]}]}
  ingress:
  - from:
    - {}
    - {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}
    - namespaceSelector: {matchLabels: {"bad key!": x}}
`), wants: []string{
		`networkpolicy.networking.k8s.io/np: spec.podSelector.matchExpressions[0].operator: Invalid value: "Near"`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].from[0]: Required value: must specify a peer`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].from[2].namespaceSelector.matchLabels: Invalid value: "bad key!"`}},
	{name: "bad policyTypes", in: netpol("  podSelector: {}\n  policyTypes: [Ingress, Both]\n"), wants: []string{
		`networkpolicy.networking.k8s.io/np: spec.policyTypes[1]: Unsupported value: "Both": supported values: "Ingress", "Egress"`}},
	{name: "every bad policy of a stream, each at its position", in: netpol("  podSelector: {}\n") + "---\n" +
		renamed(netpol("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 300.0.0.0/8}}]}]\n"), "second") + "---\n" +
		renamed(netpol("  podSelector: {}\n  egress: [{ports: [{port: 9, endPort: 8}]}]\n"), "third"), wants: []string{
		`lab.yaml: document 2 (line 7): networkpolicy.networking.k8s.io/second: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "300.0.0.0/8"`,
		"lab.yaml: document 3 (line 14): networkpolicy.networking.k8s.io/third: spec.egress[0].ports[0].endPort: Invalid value: 8: must be greater than or equal to `port`"}},

	// Bad policies: what Decode itself finds.
	{name: "bad name", in: renamed(netpol("  podSelector: {}\n"), "Bad_Name"), wants: []string{
		`lab.yaml: document 1 (line 1): networkpolicy.networking.k8s.io/Bad_Name: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain`}},
	{name: "unknown field", in: netpol("  podSelector: {}\n  ingress: [{form: [{podSelector: {}}]}]\n"), wants: []string{
		`lab.yaml: document 1 (line 1): networkpolicy.networking.k8s.io/np: unknown field "spec.ingress[0].form"`}},
	{name: "wrong types", in: netpol("  podSelector: {}\n  ingress: [{ports: [{port: [80], endPort: \"90\"}]}]\n"), wants: []string{
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[0].port: Invalid value: must be an integer or a string, not a list`,
		`networkpolicy.networking.k8s.io/np: spec.ingress[0].ports[0].endPort: Invalid value: "90": must be an integer: remove the quotes`}},
	{name: "old apiVersion", in: strings.Replace(netpol("  podSelector: {}\n"), "networking.k8s.io/v1", "extensions/v1beta1", 1), wants: []string{
		`apiVersion: Unsupported value: "extensions/v1beta1": supported values: "networking.k8s.io/v1"`}},
	{name: "defined twice", in: netpol("  podSelector: {}\n") + "---\n" + netpol("  podSelector: {}\n"), wants: []string{
		`lab.yaml: document 2 (line 7): networkpolicy.networking.k8s.io/np: metadata.name: Duplicate value: "np": networkpolicy.networking.k8s.io/np is defined twice in namespace default`}},
}

func TestDecodeNetworkPolicies(t *testing.T) {
	for _, tt := range networkPolicyCases {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, tt.in, tt.docs, tt.wants) })
	}
}

func TestNetworkPolicyDefaults(t *testing.T) {
	docs := checkDecode(t, netpol("  podSelector: {}\n  ingress: [{ports: [{port: 80}, {port: 53, protocol: UDP}]}]\n")+"---\n"+
		renamed(netpol("  podSelector: {}\n  egress: [{ports: [{port: 443}]}]\n"), "out")+"---\n"+
		renamed(netpol("  podSelector: {}\n  egress: []\n"), "empty-egress")+"---\n"+
		renamed(netpol("  podSelector: {}\n  policyTypes: [Egress]\n  ingress: [{}]\n"), "explicit"), 4, nil)
	want := []string{`ingress:
- ports:
  - port: 80
    protocol: TCP
  - port: 53
    protocol: UDP
podSelector: {}
policyTypes:
- Ingress
`, `egress:
- ports:
  - port: 443
    protocol: TCP
podSelector: {}
policyTypes:
- Ingress
- Egress
`, `podSelector: {}
policyTypes:
- Ingress
`, `ingress:
- {}
podSelector: {}
policyTypes:
- Egress
`}
	for i, w := range want {
		np := docs[i].Object.(*networkingv1.NetworkPolicy)
		b, err := yaml.Marshal(np.Spec)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != w {
			t.Errorf("defaulted spec of %s:\n%s\nwant:\n%s", ObjectName(np), b, w)
		}
		if np.Namespace != DefaultNamespace {
			t.Errorf("%s: namespace = %q", ObjectName(np), np.Namespace)
		}
	}
}
