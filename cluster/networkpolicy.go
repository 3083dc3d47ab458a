package cluster

import (
	"strings"

	"github.com/podnet/podnet/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// setNetworkPolicyDefaults fills in what the API server stores for a
// NetworkPolicy: the namespace, protocol TCP for every port of a rule that
// names none, and policyTypes when none is given: [Ingress], plus Egress if
// spec.egress holds a rule. An egress list that is present but empty does
// not make a policy an egress policy, as in Kubernetes.
func setNetworkPolicyDefaults(np *networkingv1.NetworkPolicy) {
	if np.Namespace == "" {
		np.Namespace = DefaultNamespace
	}
	setPorts := func(ports []networkingv1.NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				tcp := corev1.ProtocolTCP
				ports[i].Protocol = &tcp
			}
		}
	}
	for i := range np.Spec.Ingress {
		setPorts(np.Spec.Ingress[i].Ports)
	}
	for i := range np.Spec.Egress {
		setPorts(np.Spec.Egress[i].Ports)
	}
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
}

// validateNetworkPolicy checks a NetworkPolicy: its metadata as for every
// kind, and the rest as the API server does (policy.Validate: selectors,
// peers, CIDRs and their excepts, ports, endPorts, protocols, policyTypes).
func validateNetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	errs := validateObjectMeta(&np.ObjectMeta, KindNetworkPolicy, validation.IsDNS1123Subdomain, field.NewPath("metadata"))
	for _, e := range policy.Validate(np) {
		if e.Field != "metadata" && !strings.HasPrefix(e.Field, "metadata.") { // checked above
			errs = append(errs, e)
		}
	}
	return errs
}
