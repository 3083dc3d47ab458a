package cluster

import (
	"fmt"
	"net/netip"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podnet's IngressClass.
const (
	// IngressClassName is the name of the IngressClass a lab creates for podnet's Ingress
	// controller, and marks as the cluster's default class.
	IngressClassName = "podnet"
	// IngressController is the spec.controller of the lab's IngressClass.
	IngressController = "podnet.dev/ingress-controller"
	// AnnotationIngressClass is the annotation that named an Ingress's class before
	// spec.ingressClassName existed; controllers still honour it.
	AnnotationIngressClass = "kubernetes.io/ingress.class"
)

// maxIngressClassControllerLen is the longest spec.controller of an IngressClass, as in
// Kubernetes.
const maxIngressClassControllerLen = 250

// PodnetIngressClass returns the IngressClass a lab creates: IngressClassName, served by
// IngressController, marked as the default class. The caller fills in UID and creation time.
func PodnetIngressClass() *networkingv1.IngressClass {
	return &networkingv1.IngressClass{
		TypeMeta: metav1.TypeMeta{APIVersion: KindIngressClass.APIVersion(), Kind: KindIngressClass.String()},
		ObjectMeta: metav1.ObjectMeta{
			Name:        IngressClassName,
			Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"},
		},
		Spec: networkingv1.IngressClassSpec{Controller: IngressController},
	}
}

// IsDefaultIngressClass reports whether c is marked as the default class, as the API server's
// DefaultIngressClass admission plugin reads it: annotation
// ingressclass.kubernetes.io/is-default-class "true".
func IsDefaultIngressClass(c *networkingv1.IngressClass) bool {
	return c.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true"
}

// IngressClassOf returns the name of the class an Ingress asks for: spec.ingressClassName, or
// else its legacy annotation kubernetes.io/ingress.class. It returns "" for an Ingress that
// names no class, which belongs to the default class.
func IngressClassOf(ing *networkingv1.Ingress) string {
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName
	}
	return ing.Annotations[AnnotationIngressClass]
}

// ServedByPodnet reports whether podnet's Ingress controller serves ing, given the cluster's
// IngressClasses: whether ing is of class IngressClassName. As ingress-nginx decides it, the
// legacy annotation kubernetes.io/ingress.class decides when it is present, then
// spec.ingressClassName; an Ingress that names no class is podnet's when the IngressClass
// IngressClassName is among classes and marked as the default class. Other classes are other
// controllers', whatever their spec.controller. The lab's store uses it for
// status.loadBalancer; the controller decides the same way.
func ServedByPodnet(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	if v, ok := ing.Annotations[AnnotationIngressClass]; ok {
		return v == IngressClassName
	}
	if c := ing.Spec.IngressClassName; c != nil {
		return *c == IngressClassName
	}
	for _, c := range classes {
		if c.Name == IngressClassName {
			return IsDefaultIngressClass(c)
		}
	}
	return false
}

// setIngressDefaults fills in what the API server stores for an Ingress: its namespace.
// networking.k8s.io/v1 defaults nothing else (pathType is required); the class is defaulted at
// creation from the cluster's default IngressClass, which is the store's to do.
func setIngressDefaults(ing *networkingv1.Ingress) {
	if ing.Namespace == "" {
		ing.Namespace = DefaultNamespace
	}
}

// pathTypes are the supported values of an Ingress path's pathType.
var pathTypes = []networkingv1.PathType{networkingv1.PathTypeExact, networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific}

// invalidPathSequences and invalidPathSuffixes are what an Exact or Prefix path may not hold,
// as in Kubernetes.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

// validateIngress checks an Ingress as the API server does on create, and rejects resource
// backends, which podnet's controller cannot serve. Whether its Services and Secrets exist, and
// whether a Secret holds a usable certificate, is the controller's to report.
func validateIngress(ing *networkingv1.Ingress) field.ErrorList {
	errs := validateObjectMeta(&ing.ObjectMeta, KindIngress, validation.IsDNS1123Subdomain, field.NewPath("metadata"))
	spec := &ing.Spec
	sp := field.NewPath("spec")
	if len(spec.Rules) == 0 && spec.DefaultBackend == nil {
		errs = append(errs, field.Invalid(sp, field.OmitValueType{}, "either `defaultBackend` or `rules` must be specified"))
	}
	if spec.DefaultBackend != nil {
		errs = append(errs, validateIngressBackend(spec.DefaultBackend, sp.Child("defaultBackend"))...)
	}
	for i := range spec.Rules {
		rule := &spec.Rules[i]
		rp := sp.Child("rules").Index(i)
		errs = append(errs, validateIngressHost(rule.Host, rp.Child("host"))...)
		if rule.HTTP == nil {
			continue
		}
		hp := rp.Child("http")
		if len(rule.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(hp.Child("paths"), ""))
		}
		for j := range rule.HTTP.Paths {
			errs = append(errs, validateIngressPath(&rule.HTTP.Paths[j], hp.Child("paths").Index(j))...)
		}
	}
	for i, tls := range spec.TLS {
		tp := sp.Child("tls").Index(i)
		for j, host := range tls.Hosts {
			for _, msg := range hostMessages(host) {
				errs = append(errs, field.Invalid(tp.Child("hosts").Index(j), host, msg))
			}
		}
		if tls.SecretName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(tls.SecretName) {
				errs = append(errs, field.Invalid(tp.Child("secretName"), tls.SecretName, msg))
			}
		}
	}
	if c := spec.IngressClassName; c != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*c) {
			errs = append(errs, field.Invalid(sp.Child("ingressClassName"), *c, msg))
		}
	}
	if a, ok := ing.Annotations[AnnotationIngressClass]; ok && spec.IngressClassName != nil && a != *spec.IngressClassName {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "annotations").Key(AnnotationIngressClass), a,
			"must match `ingressClassName` when both are specified"))
	}
	return errs
}

// hostMessages returns what is wrong with a host name of an Ingress rule or TLS entry: a DNS-1123
// subdomain, or one with a leading "*." wildcard label.
func hostMessages(host string) []string {
	if strings.Contains(host, "*") {
		return validation.IsWildcardDNS1123Subdomain(host)
	}
	return validation.IsDNS1123Subdomain(host)
}

// validateIngressHost checks the host of a rule: empty (every host), or a name.
func validateIngressHost(host string, path *field.Path) field.ErrorList {
	if host == "" {
		return nil
	}
	var errs field.ErrorList
	if _, err := netip.ParseAddr(host); err == nil {
		errs = append(errs, field.Invalid(path, host, "must be a DNS name, not an IP address"))
	}
	for _, msg := range hostMessages(host) {
		errs = append(errs, field.Invalid(path, host, msg))
	}
	return errs
}

// validateIngressPath checks one path of an HTTP rule.
func validateIngressPath(p *networkingv1.HTTPIngressPath, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	pp := path.Child("path")
	switch {
	case p.PathType == nil:
		errs = append(errs, field.Required(path.Child("pathType"), "pathType must be specified: Exact, Prefix or ImplementationSpecific"))
	case *p.PathType == networkingv1.PathTypeExact || *p.PathType == networkingv1.PathTypePrefix:
		if !strings.HasPrefix(p.Path, "/") {
			errs = append(errs, field.Invalid(pp, p.Path, "must be an absolute path"))
		}
		if p.Path != "" {
			for _, seq := range invalidPathSequences {
				if strings.Contains(p.Path, seq) {
					errs = append(errs, field.Invalid(pp, p.Path, fmt.Sprintf("must not contain '%s'", seq)))
				}
			}
			for _, suffix := range invalidPathSuffixes {
				if strings.HasSuffix(p.Path, suffix) {
					errs = append(errs, field.Invalid(pp, p.Path, fmt.Sprintf("cannot end with '%s'", suffix)))
				}
			}
		}
	case *p.PathType == networkingv1.PathTypeImplementationSpecific:
		if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			errs = append(errs, field.Invalid(pp, p.Path, "must be an absolute path"))
		}
	default:
		errs = append(errs, field.NotSupported(path.Child("pathType"), *p.PathType, pathTypes))
	}
	return append(errs, validateIngressBackend(&p.Backend, path.Child("backend"))...)
}

// validateIngressBackend checks a backend: a Service and exactly one of its port's number and
// name. Resource backends are valid in Kubernetes, but podnet's controller has nothing to send
// their traffic to.
func validateIngressBackend(b *networkingv1.IngressBackend, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Resource != nil && b.Service != nil:
		return field.ErrorList{field.Invalid(path, field.OmitValueType{}, "cannot set both resource and service backends")}
	case b.Resource != nil:
		return field.ErrorList{field.Forbidden(path.Child("resource"), "resource backends are not supported by podnet: use a service backend")}
	case b.Service == nil:
		return field.ErrorList{field.Invalid(path, field.OmitValueType{}, "resource or service backend is required")}
	}
	svc := b.Service
	sp := path.Child("service")
	if svc.Name == "" {
		errs = append(errs, field.Required(sp.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1035Label(svc.Name) {
			errs = append(errs, field.Invalid(sp.Child("name"), svc.Name, msg))
		}
	}
	hasName, hasNumber := svc.Port.Name != "", svc.Port.Number != 0
	switch {
	case hasName && hasNumber:
		errs = append(errs, field.Invalid(sp.Child("port"), field.OmitValueType{}, "cannot set both port name & port number"))
	case hasName:
		for _, msg := range validation.IsValidPortName(svc.Port.Name) {
			errs = append(errs, field.Invalid(sp.Child("port", "name"), svc.Port.Name, msg))
		}
	case hasNumber:
		for _, msg := range validation.IsValidPortNum(int(svc.Port.Number)) {
			errs = append(errs, field.Invalid(sp.Child("port", "number"), svc.Port.Number, msg))
		}
	default:
		errs = append(errs, field.Required(sp.Child("port"), "port name or number is required"))
	}
	return errs
}

// setIngressClassDefaults fills in what the API server stores for an IngressClass: the scope
// Cluster of a parameters reference that names none.
func setIngressClassDefaults(c *networkingv1.IngressClass) {
	if p := c.Spec.Parameters; p != nil && p.Scope == nil {
		scope := networkingv1.IngressClassParametersReferenceScopeCluster
		p.Scope = &scope
	}
}

// parameterScopes are the supported scopes of an IngressClass's parameters.
var parameterScopes = []string{networkingv1.IngressClassParametersReferenceScopeCluster, networkingv1.IngressClassParametersReferenceScopeNamespace}

// validateIngressClass checks an IngressClass as the API server does. That the lab's own class
// keeps its spec is the store's to check.
func validateIngressClass(c *networkingv1.IngressClass) field.ErrorList {
	errs := validateObjectMeta(&c.ObjectMeta, KindIngressClass, validation.IsDNS1123Subdomain, field.NewPath("metadata"))
	sp := field.NewPath("spec")
	cp := sp.Child("controller")
	switch {
	case c.Spec.Controller == "":
		errs = append(errs, field.Required(cp, "the name of the controller that serves the class, e.g. "+IngressController))
	case len(c.Spec.Controller) > maxIngressClassControllerLen:
		errs = append(errs, field.TooLong(cp, "", maxIngressClassControllerLen))
	default:
		errs = append(errs, validation.IsDomainPrefixedPath(cp, c.Spec.Controller)...)
	}
	p := c.Spec.Parameters
	if p == nil {
		return errs
	}
	pp := sp.Child("parameters")
	if p.APIGroup != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*p.APIGroup) {
			errs = append(errs, field.Invalid(pp.Child("apiGroup"), *p.APIGroup, msg))
		}
	}
	for _, f := range []struct{ name, value string }{{"kind", p.Kind}, {"name", p.Name}} {
		if f.value == "" {
			errs = append(errs, field.Required(pp.Child(f.name), ""))
			continue
		}
		for _, msg := range content.IsPathSegmentName(f.value) {
			errs = append(errs, field.Invalid(pp.Child(f.name), f.value, msg))
		}
	}
	switch scope := p.Scope; {
	case scope == nil:
		errs = append(errs, field.Required(pp.Child("scope"), ""))
	case *scope == networkingv1.IngressClassParametersReferenceScopeNamespace:
		if p.Namespace == nil {
			errs = append(errs, field.Required(pp.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
		} else {
			for _, msg := range validation.IsDNS1123Label(*p.Namespace) {
				errs = append(errs, field.Invalid(pp.Child("namespace"), *p.Namespace, msg))
			}
		}
	case *scope == networkingv1.IngressClassParametersReferenceScopeCluster:
		if p.Namespace != nil {
			errs = append(errs, field.Forbidden(pp.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
		}
	default:
		errs = append(errs, field.NotSupported(pp.Child("scope"), *scope, parameterScopes))
	}
	return errs
}
