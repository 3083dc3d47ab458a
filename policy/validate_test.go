package policy_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/policy"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name, spec string
		// want is the field of each expected error, with its type.
		want []string
	}{
		{"valid: the documentation's example", `
podSelector: {matchLabels: {role: db}}
policyTypes: [Ingress, Egress]
ingress:
- from:
  - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
  - namespaceSelector: {matchLabels: {project: myproject}}
  - podSelector: {matchLabels: {role: frontend}}
  ports: [{protocol: TCP, port: 6379}]
egress:
- to: [{ipBlock: {cidr: 10.0.0.0/24}}]
  ports: [{protocol: TCP, port: 5978}]`, nil},
		{"valid: endPort, named port, SCTP, IPv6", `
podSelector: {}
ingress:
- ports: [{port: 32000, endPort: 32768}, {port: http}, {protocol: SCTP}]
  from: [{ipBlock: {cidr: "2001:db8::/64", except: ["2001:db8::/96"]}}]`, nil},
		{"bad cidr", `
podSelector: {}
ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]`,
			[]string{"Invalid value: spec.ingress[0].from[0].ipBlock.cidr"}},
		{"cidr that is not a cidr", `
podSelector: {}
egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]`,
			[]string{"Invalid value: spec.egress[0].to[0].ipBlock.cidr"}},
		{"cidr with bits beyond the prefix", `
podSelector: {}
ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/24}}]}]`,
			[]string{"Invalid value: spec.ingress[0].from[0].ipBlock.cidr"}},
		{"cidr missing", `
podSelector: {}
ingress: [{from: [{ipBlock: {except: [10.0.0.0/24]}}]}]`,
			[]string{"Required value: spec.ingress[0].from[0].ipBlock.cidr"}},
		{"except outside its cidr", `
podSelector: {}
ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.1.0.0/24]}}]}]`,
			[]string{"Invalid value: spec.ingress[0].from[0].ipBlock.except[1]"}},
		{"except equal to its cidr", `
podSelector: {}
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]`,
			[]string{"Invalid value: spec.egress[0].to[0].ipBlock.except[0]"}},
		{"except larger than its cidr", `
podSelector: {}
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/8]}}]}]`,
			[]string{"Invalid value: spec.egress[0].to[0].ipBlock.except[0]"}},
		{"except of the other family", `
podSelector: {}
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: ["2001:db8::/64"]}}]}]`,
			[]string{"Invalid value: spec.egress[0].to[0].ipBlock.except[0]"}},
		{"bad except", `
podSelector: {}
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.300.0/24]}}]}]`,
			[]string{"Invalid value: spec.egress[0].to[0].ipBlock.except[0]"}},
		{"endPort below port", `
podSelector: {}
ingress: [{ports: [{port: 80}, {port: 8080, endPort: 8000}]}]`,
			[]string{"Invalid value: spec.ingress[0].ports[1].endPort"}},
		{"endPort without a port", `
podSelector: {}
egress: [{ports: [{protocol: UDP, endPort: 8000}]}]`,
			[]string{"Invalid value: spec.egress[0].ports[0].endPort"}},
		{"endPort with a named port", `
podSelector: {}
ingress: [{ports: [{port: http, endPort: 8000}]}]`,
			[]string{"Invalid value: spec.ingress[0].ports[0].endPort"}},
		{"endPort out of range", `
podSelector: {}
ingress: [{ports: [{port: 80, endPort: 65536}]}]`,
			[]string{"Invalid value: spec.ingress[0].ports[0].endPort"}},
		{"unknown protocol", `
podSelector: {}
ingress: [{ports: [{protocol: ICMP, port: 80}]}]`,
			[]string{"Unsupported value: spec.ingress[0].ports[0].protocol"}},
		{"lower-case protocol", `
podSelector: {}
egress: [{ports: [{protocol: tcp}]}]`,
			[]string{"Unsupported value: spec.egress[0].ports[0].protocol"}},
		{"port out of range", `
podSelector: {}
ingress: [{ports: [{port: 65536}, {port: 0}]}]`,
			[]string{"Invalid value: spec.ingress[0].ports[0].port", "Invalid value: spec.ingress[0].ports[1].port"}},
		{"bad port name", `
podSelector: {}
ingress: [{ports: [{port: "-http"}, {port: a-very-long-port-name}, {port: "8080"}]}]`,
			[]string{"Invalid value: spec.ingress[0].ports[0].port", "Invalid value: spec.ingress[0].ports[1].port", "Invalid value: spec.ingress[0].ports[2].port"}},
		{"bad podSelector label", `
podSelector: {matchLabels: {"bad key!": x}}`,
			[]string{"Invalid value: spec.podSelector.matchLabels"}},
		{"bad selector operator", `
podSelector: {}
ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Near, values: [a]}]}}]}]`,
			[]string{"Invalid value: spec.ingress[0].from[0].podSelector.matchExpressions[0].operator"}},
		{"In without values", `
podSelector: {}
egress: [{to: [{namespaceSelector: {matchExpressions: [{key: team, operator: In}]}}]}]`,
			[]string{"Required value: spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values"}},
		{"Exists with values", `
podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}`,
			[]string{"Forbidden: spec.podSelector.matchExpressions[0].values"}},
		{"bad label value", `
podSelector: {}
ingress: [{from: [{podSelector: {matchLabels: {app: "no spaces"}}}]}]`,
			[]string{"Invalid value: spec.ingress[0].from[0].podSelector.matchLabels"}},
		{"ipBlock with a podSelector in one peer", `
podSelector: {}
ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]`,
			[]string{"Forbidden: spec.ingress[0].from[0]"}},
		{"ipBlock with a namespaceSelector in one peer", `
podSelector: {}
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, namespaceSelector: {}}]}]`,
			[]string{"Forbidden: spec.egress[0].to[0]"}},
		{"empty peer", `
podSelector: {}
ingress: [{from: [{}]}]`,
			[]string{"Required value: spec.ingress[0].from[0]"}},
		{"unknown policyType", `
podSelector: {}
policyTypes: [Ingress, ingress]`,
			[]string{"Unsupported value: spec.policyTypes[1]"}},
		{"too many policyTypes", `
podSelector: {}
policyTypes: [Ingress, Egress, Ingress]`,
			[]string{"Invalid value: spec.policyTypes"}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			np := &networkingv1.NetworkPolicy{}
			np.Name, np.Namespace = "p", "default"
			if err := yaml.UnmarshalStrict([]byte(c.spec), &np.Spec); err != nil {
				t.Fatal(err)
			}
			errs := policy.Validate(np)
			var got []string
			for _, e := range errs {
				got = append(got, e.Type.String()+": "+e.Field)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("errors:\n%v\nwant fields:\n%s", errs.ToAggregate(), strings.Join(c.want, "\n"))
			}
			// A clear message names the field.
			for _, e := range errs {
				if !strings.Contains(e.Error(), e.Field) {
					t.Errorf("%q does not name %s", e.Error(), e.Field)
				}
			}
		})
	}
}

func TestValidateMetadata(t *testing.T) {
	for _, c := range []struct {
		name, namespace string
		want            []string
	}{
		{"web", "", nil},
		{"web.v1", "prod", nil},
		{"", "prod", []string{"metadata.name"}},
		{"Web", "prod", []string{"metadata.name"}},
		{"web", "Prod_1", []string{"metadata.namespace"}},
	} {
		np := &networkingv1.NetworkPolicy{}
		np.Name, np.Namespace = c.name, c.namespace
		var got []string
		for _, e := range policy.Validate(np) {
			got = append(got, e.Field)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%q/%q: errors on %v, want %v", c.namespace, c.name, got, c.want)
		}
	}
	if errs := policy.Validate(nil); len(errs) != 1 || errs[0].Type != field.ErrorTypeRequired {
		t.Errorf("Validate(nil) = %v", errs)
	}
}
