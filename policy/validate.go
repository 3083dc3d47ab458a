package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks np as the API server does when it is created and returns
// the errors, each naming its field (spec.ingress[0].ports[1].endPort).
// It follows upstream's ValidateNetworkPolicy, with the
// StrictIPCIDRValidation checks on: a CIDR must parse, must not have
// leading zeros, an IPv4-mapped IPv6 address, or bits set beyond its
// prefix length; each except must be a strict subset of its cidr. A
// namespace is checked only when it is set (the caller may default it).
func Validate(np *networkingv1.NetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	if np == nil {
		return field.ErrorList{field.Required(field.NewPath(""), "a NetworkPolicy")}
	}
	meta := field.NewPath("metadata")
	if np.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), "name or generateName is required"))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(np.Name) {
			errs = append(errs, field.Invalid(meta.Child("name"), np.Name, msg))
		}
	}
	if np.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(np.Namespace) {
			errs = append(errs, field.Invalid(meta.Child("namespace"), np.Namespace, msg))
		}
	}
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(&np.Spec.PodSelector, spec.Child("podSelector"))...)
	for i, r := range np.Spec.Ingress {
		path := spec.Child("ingress").Index(i)
		for j := range r.Ports {
			errs = append(errs, validatePort(&r.Ports[j], path.Child("ports").Index(j))...)
		}
		for j := range r.From {
			errs = append(errs, validatePeer(&r.From[j], path.Child("from").Index(j))...)
		}
	}
	for i, r := range np.Spec.Egress {
		path := spec.Child("egress").Index(i)
		for j := range r.Ports {
			errs = append(errs, validatePort(&r.Ports[j], path.Child("ports").Index(j))...)
		}
		for j := range r.To {
			errs = append(errs, validatePeer(&r.To[j], path.Child("to").Index(j))...)
		}
	}
	types := spec.Child("policyTypes")
	supported := []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}
	if len(np.Spec.PolicyTypes) > len(supported) {
		return append(errs, field.Invalid(types, np.Spec.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, pt := range np.Spec.PolicyTypes {
		if pt != networkingv1.PolicyTypeIngress && pt != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(types.Index(i), pt, supported))
		}
	}
	return errs
}

func validateSelector(ls *metav1.LabelSelector, path *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(ls, metav1validation.LabelSelectorValidationOptions{}, path)
}

func validatePort(p *networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if p.Protocol != nil {
		switch *p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(path.Child("protocol"), *p.Protocol,
				[]string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}))
		}
	}
	switch {
	case p.Port == nil:
		if p.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, "may not be specified when `port` is not specified"))
		}
	case p.Port.Type == intstr.Int:
		for _, msg := range validation.IsValidPortNum(int(p.Port.IntVal)) {
			errs = append(errs, field.Invalid(path.Child("port"), p.Port.IntVal, msg))
		}
		if p.EndPort != nil {
			if *p.EndPort < p.Port.IntVal {
				errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, "must be greater than or equal to `port`"))
			}
			for _, msg := range validation.IsValidPortNum(int(*p.EndPort)) {
				errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, msg))
			}
		}
	default:
		if p.EndPort != nil {
			errs = append(errs, field.Invalid(path.Child("endPort"), *p.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(p.Port.StrVal) {
			errs = append(errs, field.Invalid(path.Child("port"), p.Port.StrVal, msg))
		}
	}
	return errs
}

func validatePeer(p *networkingv1.NetworkPolicyPeer, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if p.PodSelector != nil {
		n++
		errs = append(errs, validateSelector(p.PodSelector, path.Child("podSelector"))...)
	}
	if p.NamespaceSelector != nil {
		n++
		errs = append(errs, validateSelector(p.NamespaceSelector, path.Child("namespaceSelector"))...)
	}
	if p.IPBlock != nil {
		n++
		errs = append(errs, validateIPBlock(p.IPBlock, path.Child("ipBlock"))...)
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(path, "must specify a peer"))
	case n > 1 && p.IPBlock != nil:
		errs = append(errs, field.Forbidden(path, "may not specify both ipBlock and another peer"))
	}
	return errs
}

func validateIPBlock(b *networkingv1.IPBlock, path *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(path.Child("cidr"), "")}
	}
	errs := validation.IsValidCIDRForLegacyField(path.Child("cidr"), b.CIDR, true, nil)
	cidr, err := netip.ParsePrefix(b.CIDR)
	cidrOK := len(errs) == 0 && err == nil
	for i, e := range b.Except {
		p := path.Child("except").Index(i)
		eerrs := validation.IsValidCIDRForLegacyField(p, e, true, nil)
		errs = append(errs, eerrs...)
		x, err := netip.ParsePrefix(e)
		if !cidrOK || len(eerrs) > 0 || err != nil {
			continue
		}
		if !cidr.Contains(x.Addr()) || cidr.Bits() >= x.Bits() {
			errs = append(errs, field.Invalid(p, e, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}
