package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The NodePort range of a lab, as the API server's default
// --service-node-port-range. NodePorts and healthCheckNodePorts come from it.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// Service session affinity bounds, as in Kubernetes.
const (
	maxClientIPAffinitySeconds = 86400
)

// Labels and names of the EndpointSlices that the lab's EndpointSlice
// controller makes, as kube-controller-manager's.
const (
	// EndpointSliceControllerName is the value of the
	// endpointslice.kubernetes.io/managed-by label of the controller's
	// EndpointSlices. A user may not apply a slice that claims it.
	EndpointSliceControllerName = "endpointslice-controller.k8s.io"
	// MaxEndpointsPerSlice is how many endpoints the controller puts in one
	// EndpointSlice (kube-controller-manager's --max-endpoints-per-slice
	// default).
	MaxEndpointsPerSlice = 100
	// LabelHeadless marks the controller's slices of a headless Service.
	LabelHeadless = "service.kubernetes.io/headless"

	maxSliceEndpoints = 1000 // of any EndpointSlice, as the API server allows
	maxSlicePorts     = 100
	maxSliceAddresses = 100
)

var (
	serviceTypes = []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort,
		corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}
	serviceAffinities       = []corev1.ServiceAffinity{corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP}
	externalTrafficPolicies = []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}
	internalTrafficPolicies = []corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}
	ipFamilyPolicies        = []corev1.IPFamilyPolicy{corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}
	serviceProtocols        = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}
)

// IsHeadless reports whether svc is a headless Service: clusterIP None.
func IsHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// NeedsClusterIP reports whether svc gets a virtual IP from the service
// CIDR: every Service but ExternalName and headless ones.
func NeedsClusterIP(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && !IsHeadless(svc)
}

// NeedsNodePorts reports whether each port of svc gets a NodePort: type
// NodePort, and type LoadBalancer unless allocateLoadBalancerNodePorts is
// false.
func NeedsNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		a := svc.Spec.AllocateLoadBalancerNodePorts
		return a == nil || *a
	}
	return false
}

// NeedsHealthCheckNodePort reports whether svc gets a healthCheckNodePort,
// as Kubernetes gives one: type LoadBalancer with externalTrafficPolicy
// Local.
func NeedsHealthCheckNodePort(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// ResolveTargetPort returns the port of pod that the Service port sp sends
// to, as the EndpointSlice controller resolves it: a numeric targetPort as
// it is (the port itself if targetPort is unset), a named one by the
// container port of that name and sp's protocol, looked up in the pod's
// containers and then its sidecar (restartable init) containers. It reports
// false if the pod has no such port.
func ResolveTargetPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	if tp.Type == intstr.Int {
		if tp.IntVal == 0 {
			return sp.Port, true
		}
		return tp.IntVal, true
	}
	if tp.StrVal == "" {
		return sp.Port, true
	}
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	find := func(cs []corev1.Container, sidecarsOnly bool) (int32, bool) {
		for i := range cs {
			c := &cs[i]
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range c.Ports {
				pp := p.Protocol
				if pp == "" {
					pp = corev1.ProtocolTCP
				}
				if p.Name == tp.StrVal && pp == proto {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	}
	if n, ok := find(pod.Spec.Containers, false); ok {
		return n, true
	}
	return find(pod.Spec.InitContainers, true)
}

// setServiceDefaults fills in what the API server defaults on a Service: the
// type (ClusterIP), sessionAffinity (None; ClientIP's timeout 10800 s), each
// port's protocol (TCP) and targetPort (the port), externalTrafficPolicy
// (Cluster, for NodePort and LoadBalancer), internalTrafficPolicy (Cluster),
// allocateLoadBalancerNodePorts (true, for LoadBalancer), the IP families
// (IPv4, SingleStack) and clusterIPs from clusterIP (and back).
func setServiceDefaults(svc *corev1.Service) {
	if svc.Namespace == "" {
		svc.Namespace = DefaultNamespace
	}
	spec := &svc.Spec
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		c := spec.SessionAffinityConfig
		if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
			timeout := corev1.DefaultClientIPServiceAffinitySeconds
			spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
		}
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == intstr.FromInt32(0) || p.TargetPort == intstr.FromString("") {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	external := spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer
	if external && spec.ExternalTrafficPolicy == "" {
		spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if spec.Type == corev1.ServiceTypeLoadBalancer && spec.AllocateLoadBalancerNodePorts == nil {
		yes := true
		spec.AllocateLoadBalancerNodePorts = &yes
	}
	if spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if spec.InternalTrafficPolicy == nil {
		p := corev1.ServiceInternalTrafficPolicyCluster
		spec.InternalTrafficPolicy = &p
	}
	if spec.ClusterIP == "" && len(spec.ClusterIPs) > 0 {
		spec.ClusterIP = spec.ClusterIPs[0]
	}
	if spec.ClusterIP != "" && len(spec.ClusterIPs) == 0 {
		spec.ClusterIPs = []string{spec.ClusterIP}
	}
	if len(spec.IPFamilies) == 0 {
		spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if spec.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		spec.IPFamilyPolicy = &p
	}
}

// validateService checks a Service as the API server does, and rejects
// what podnet cannot honour: SCTP, IPv6 and dual-stack, externalIPs,
// loadBalancerIP, loadBalancerClass, trafficDistribution. It also rejects a
// selector on an ExternalName Service (which Kubernetes ignores) and
// NodePorts outside the lab's range. Allocation (a clusterIP inside the
// service CIDR, NodePorts not taken) is the lab's to check.
func validateService(svc *corev1.Service) field.ErrorList {
	errs := validateObjectMeta(&svc.ObjectMeta, KindService, validation.IsDNS1035Label, field.NewPath("metadata"))
	spec := &svc.Spec
	sp := field.NewPath("spec")
	typ := spec.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	if !slices.Contains(serviceTypes, typ) {
		errs = append(errs, field.NotSupported(sp.Child("type"), typ, serviceTypes))
	}
	headless := spec.ClusterIP == corev1.ClusterIPNone
	externalName := typ == corev1.ServiceTypeExternalName

	// Addresses.
	switch {
	case externalName:
		if spec.ClusterIP != "" {
			errs = append(errs, field.Forbidden(sp.Child("clusterIP"), "may not be set for ExternalName services"))
		} else if len(spec.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(sp.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if spec.ExternalName == "" {
			errs = append(errs, field.Required(sp.Child("externalName"), "an ExternalName Service needs the DNS name it stands for"))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(spec.ExternalName, ".")) {
				errs = append(errs, field.Invalid(sp.Child("externalName"), spec.ExternalName, msg))
			}
		}
		if len(spec.Selector) > 0 {
			errs = append(errs, field.Forbidden(sp.Child("selector"),
				"may not be set for ExternalName services: an ExternalName Service has no endpoints, it is a DNS alias for spec.externalName"))
		}
		if len(spec.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(sp.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		if spec.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(sp.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
	default:
		if spec.ExternalName != "" {
			errs = append(errs, field.Forbidden(sp.Child("externalName"), "may only be set when `type` is 'ExternalName'"))
		}
		errs = append(errs, validateClusterIP(spec, sp)...)
		if headless && (typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer) {
			errs = append(errs, field.Invalid(sp.Child("clusterIP"), spec.ClusterIP, fmt.Sprintf("may not be set to 'None' for %s services", typ)))
		}
		errs = append(errs, validateIPFamilies(spec, sp)...)
	}

	// Ports.
	if len(spec.Ports) == 0 && !headless && !externalName {
		errs = append(errs, field.Required(sp.Child("ports"), "a Service needs at least one port, unless it is headless (clusterIP: None) or an ExternalName"))
	}
	nodePorts := typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer
	names := map[string]bool{}
	type portKey struct {
		port  int32
		proto corev1.Protocol
	}
	seenPorts := map[portKey]bool{}
	seenNodePorts := map[portKey]bool{}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		pp := sp.Child("ports").Index(i)
		errs = append(errs, validateServicePort(p, len(spec.Ports) > 1, names, pp)...)
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if k := (portKey{p.Port, proto}); p.Port != 0 && seenPorts[k] {
			errs = append(errs, field.Duplicate(pp, fmt.Sprintf("%d/%s", p.Port, proto)))
		} else {
			seenPorts[k] = true
		}
		if p.NodePort == 0 {
			continue
		}
		if !nodePorts {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), fmt.Sprintf("may not be used when `type` is '%s'", typ)))
			continue
		}
		if msgs := validateNodePortRange(p.NodePort); len(msgs) > 0 {
			for _, msg := range msgs {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), p.NodePort, msg))
			}
			continue
		}
		if k := (portKey{p.NodePort, proto}); seenNodePorts[k] {
			errs = append(errs, field.Duplicate(pp.Child("nodePort"), p.NodePort))
		} else {
			seenNodePorts[k] = true
		}
	}

	if len(spec.Selector) > 0 && !externalName {
		errs = append(errs, validateLabels(spec.Selector, sp.Child("selector"))...)
	}
	errs = append(errs, validateSessionAffinity(spec, sp)...)
	errs = append(errs, validateTrafficPolicies(spec, typ, sp)...)

	// LoadBalancer.
	lb := typ == corev1.ServiceTypeLoadBalancer
	if len(spec.LoadBalancerSourceRanges) > 0 && !lb {
		errs = append(errs, field.Forbidden(sp.Child("loadBalancerSourceRanges"), "may only be used when `type` is 'LoadBalancer'"))
	}
	for i, r := range spec.LoadBalancerSourceRanges {
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			errs = append(errs, field.Invalid(sp.Child("loadBalancerSourceRanges").Index(i), r, "must be a CIDR, e.g. 192.168.0.0/16"))
		}
	}
	if spec.AllocateLoadBalancerNodePorts != nil && !lb {
		errs = append(errs, field.Forbidden(sp.Child("allocateLoadBalancerNodePorts"), "may only be used when `type` is 'LoadBalancer'"))
	}
	if spec.LoadBalancerIP != "" {
		errs = append(errs, field.Forbidden(sp.Child("loadBalancerIP"),
			"is not supported by podnet: a lab's LoadBalancer Services are served on every node's address, set in status.loadBalancer.ingress"))
	}
	if spec.LoadBalancerClass != nil {
		errs = append(errs, field.Forbidden(sp.Child("loadBalancerClass"), "is not supported by podnet: the lab itself serves every LoadBalancer Service"))
	}
	if len(spec.ExternalIPs) > 0 {
		errs = append(errs, field.Forbidden(sp.Child("externalIPs"), "is not supported by podnet: use a NodePort or LoadBalancer Service"))
	}
	if spec.TrafficDistribution != nil {
		errs = append(errs, field.Forbidden(sp.Child("trafficDistribution"), "is not supported by podnet: a lab has no zones; use internalTrafficPolicy: Local to stay on the node"))
	}
	return errs
}

// validateClusterIP checks clusterIP and clusterIPs of a Service that is not
// an ExternalName: empty, None or an IPv4 address, and clusterIPs only
// repeating clusterIP.
func validateClusterIP(spec *corev1.ServiceSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ip := spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		a, err := netip.ParseAddr(ip)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(sp.Child("clusterIP"), ip, `must be "None", empty (to have one allocated) or an IPv4 address of the lab's serviceCIDR`))
		case !a.Is4():
			errs = append(errs, field.Invalid(sp.Child("clusterIP"), ip, "must be an IPv4 address: podnet's service network is IPv4 only"))
		}
	}
	switch {
	case len(spec.ClusterIPs) > 1:
		errs = append(errs, field.Invalid(sp.Child("clusterIPs"), spec.ClusterIPs, "may hold only one address: podnet's service network is IPv4 only (no dual-stack)"))
	case len(spec.ClusterIPs) == 1 && spec.ClusterIPs[0] != spec.ClusterIP:
		errs = append(errs, field.Invalid(sp.Child("clusterIPs").Index(0), spec.ClusterIPs[0], "must be the same as spec.clusterIP"))
	}
	return errs
}

func validateIPFamilies(spec *corev1.ServiceSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, f := range spec.IPFamilies {
		switch {
		case f == corev1.IPv4Protocol && i == 0:
		case f == corev1.IPv6Protocol || f == corev1.IPv4Protocol:
			errs = append(errs, field.Invalid(sp.Child("ipFamilies").Index(i), f, "podnet's service network is IPv4 only: ipFamilies may only be [IPv4]"))
		default:
			errs = append(errs, field.NotSupported(sp.Child("ipFamilies").Index(i), f, []corev1.IPFamily{corev1.IPv4Protocol}))
		}
	}
	if p := spec.IPFamilyPolicy; p != nil {
		switch {
		case !slices.Contains(ipFamilyPolicies, *p):
			errs = append(errs, field.NotSupported(sp.Child("ipFamilyPolicy"), *p, ipFamilyPolicies))
		case *p == corev1.IPFamilyPolicyRequireDualStack:
			errs = append(errs, field.Invalid(sp.Child("ipFamilyPolicy"), *p, "podnet's service network is IPv4 only: use SingleStack or PreferDualStack"))
		}
	}
	return errs
}

// validateServicePort checks one port of a Service at path. names holds the
// port names seen so far; requireName is set when the Service has more than
// one port.
func validateServicePort(p *corev1.ServicePort, requireName bool, names map[string]bool, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case p.Name == "" && requireName:
		errs = append(errs, field.Required(path.Child("name"), "a Service with more than one port must name each of them"))
	case p.Name == "":
	case names[p.Name]:
		errs = append(errs, field.Duplicate(path.Child("name"), p.Name))
	default:
		names[p.Name] = true
		for _, msg := range validation.IsDNS1123Label(p.Name) {
			errs = append(errs, field.Invalid(path.Child("name"), p.Name, msg))
		}
	}
	for _, msg := range validation.IsValidPortNum(int(p.Port)) {
		errs = append(errs, field.Invalid(path.Child("port"), p.Port, msg))
	}
	errs = append(errs, validateProtocol(p.Protocol, path.Child("protocol"))...)
	errs = append(errs, validatePortNumOrName(p.TargetPort, path.Child("targetPort"))...)
	if a := p.AppProtocol; a != nil {
		for _, msg := range validation.IsQualifiedName(*a) {
			errs = append(errs, field.Invalid(path.Child("appProtocol"), *a, msg))
		}
	}
	return errs
}

// validateProtocol checks a Service or EndpointSlice port's protocol: TCP or
// UDP; empty means TCP. SCTP is valid in Kubernetes but podnet cannot carry
// it.
func validateProtocol(proto corev1.Protocol, path *field.Path) field.ErrorList {
	switch proto {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP:
		return nil
	case corev1.ProtocolSCTP:
		return field.ErrorList{field.Invalid(path, proto, "SCTP is not supported by podnet: its Services carry TCP and UDP")}
	}
	return field.ErrorList{field.NotSupported(path, proto, serviceProtocols)}
}

// validatePortNumOrName checks a targetPort: a port number, or an
// IANA_SVC_NAME naming a container port. Zero and "" are unset (defaulted
// to the port).
func validatePortNumOrName(port intstr.IntOrString, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case port.Type == intstr.Int && port.IntVal != 0:
		for _, msg := range validation.IsValidPortNum(int(port.IntVal)) {
			errs = append(errs, field.Invalid(path, port.IntVal, msg))
		}
	case port.Type == intstr.String && port.StrVal != "":
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(path, port.StrVal, msg))
		}
	}
	return errs
}

func validateNodePortRange(port int32) []string {
	if port < NodePortMin || port > NodePortMax {
		return []string{fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", NodePortMin, NodePortMax)}
	}
	return nil
}

func validateSessionAffinity(spec *corev1.ServiceSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	a := spec.SessionAffinity
	if a != "" && !slices.Contains(serviceAffinities, a) {
		return append(errs, field.NotSupported(sp.Child("sessionAffinity"), a, serviceAffinities))
	}
	cp := sp.Child("sessionAffinityConfig")
	c := spec.SessionAffinityConfig
	if a != corev1.ServiceAffinityClientIP {
		if c != nil {
			errs = append(errs, field.Invalid(cp, c, fmt.Sprintf("must not be set when session affinity is %s", corev1.ServiceAffinityNone)))
		}
		return errs
	}
	if spec.Type == corev1.ServiceTypeExternalName {
		return append(errs, field.Forbidden(sp.Child("sessionAffinity"), "may not be ClientIP for ExternalName services"))
	}
	if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
		return errs // defaulted
	}
	if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPAffinitySeconds {
		errs = append(errs, field.Invalid(cp.Child("clientIP", "timeoutSeconds"), t,
			fmt.Sprintf("must be greater than 0 and less than or equal to %d", maxClientIPAffinitySeconds)))
	}
	return errs
}

func validateTrafficPolicies(spec *corev1.ServiceSpec, typ corev1.ServiceType, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	external := typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer
	switch p := spec.ExternalTrafficPolicy; {
	case p == "":
	case !external:
		errs = append(errs, field.Invalid(sp.Child("externalTrafficPolicy"), p, "may only be set for externally-accessible services (type NodePort or LoadBalancer)"))
	case !slices.Contains(externalTrafficPolicies, p):
		errs = append(errs, field.NotSupported(sp.Child("externalTrafficPolicy"), p, externalTrafficPolicies))
	}
	if p := spec.InternalTrafficPolicy; p != nil && !slices.Contains(internalTrafficPolicies, *p) {
		errs = append(errs, field.NotSupported(sp.Child("internalTrafficPolicy"), *p, internalTrafficPolicies))
	}
	if hc := spec.HealthCheckNodePort; hc != 0 {
		hp := sp.Child("healthCheckNodePort")
		if typ != corev1.ServiceTypeLoadBalancer || spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			errs = append(errs, field.Invalid(hp, hc, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
		} else {
			for _, msg := range validateNodePortRange(hc) {
				errs = append(errs, field.Invalid(hp, hc, msg))
			}
			for i, p := range spec.Ports {
				if p.NodePort == hc {
					errs = append(errs, field.Duplicate(hp, fmt.Sprintf("%d: also spec.ports[%d].nodePort", hc, i)))
				}
			}
		}
	}
	return errs
}

// setEndpointSliceDefaults fills in the namespace and each port's protocol
// (TCP) and name (""), as the API server does.
func setEndpointSliceDefaults(s *discoveryv1.EndpointSlice) {
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Name == nil {
			empty := ""
			p.Name = &empty
		}
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
	}
}

// validateEndpointSlice checks an EndpointSlice a user applies: for a
// Service without a selector, whose endpoints the user manages. It must
// name its Service in the kubernetes.io/service-name label, hold IPv4
// addresses, and not claim to be the EndpointSlice controller's.
func validateEndpointSlice(s *discoveryv1.EndpointSlice) field.ErrorList {
	mp := field.NewPath("metadata")
	errs := validateObjectMeta(&s.ObjectMeta, KindEndpointSlice, validation.IsDNS1123Subdomain, mp)
	lp := mp.Child("labels")
	switch svc, ok := s.Labels[discoveryv1.LabelServiceName]; {
	case !ok || svc == "":
		errs = append(errs, field.Required(lp.Key(discoveryv1.LabelServiceName), "an EndpointSlice must name its Service in this label"))
	default:
		for _, msg := range validation.IsDNS1035Label(svc) {
			errs = append(errs, field.Invalid(lp.Key(discoveryv1.LabelServiceName), svc, msg))
		}
	}
	if s.Labels[discoveryv1.LabelManagedBy] == EndpointSliceControllerName {
		errs = append(errs, field.Forbidden(lp.Key(discoveryv1.LabelManagedBy),
			"the lab's EndpointSlice controller manages the slices of Services with a selector: apply slices only for a Service without one, with another managed-by value (or none)"))
	}
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
	case "":
		errs = append(errs, field.Required(field.NewPath("addressType"), "podnet takes IPv4"))
	case discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
		errs = append(errs, field.Invalid(field.NewPath("addressType"), s.AddressType, "podnet's pod and service networks are IPv4 only: addressType must be IPv4"))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4}))
	}

	ep := field.NewPath("endpoints")
	if len(s.Endpoints) > maxSliceEndpoints {
		errs = append(errs, field.TooMany(ep, len(s.Endpoints), maxSliceEndpoints))
	}
	for i := range s.Endpoints {
		errs = append(errs, validateEndpoint(&s.Endpoints[i], ep.Index(i))...)
	}

	pp := field.NewPath("ports")
	if len(s.Ports) > maxSlicePorts {
		errs = append(errs, field.TooMany(pp, len(s.Ports), maxSlicePorts))
	}
	names := map[string]bool{}
	for i, p := range s.Ports {
		ip := pp.Index(i)
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			for _, msg := range validation.IsDNS1123Label(name) {
				errs = append(errs, field.Invalid(ip.Child("name"), name, msg))
			}
		}
		if names[name] {
			errs = append(errs, field.Duplicate(ip.Child("name"), name))
		}
		names[name] = true
		if p.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*p.Port)) {
				errs = append(errs, field.Invalid(ip.Child("port"), *p.Port, msg))
			}
		}
		if p.Protocol != nil {
			errs = append(errs, validateProtocol(*p.Protocol, ip.Child("protocol"))...)
		}
		if a := p.AppProtocol; a != nil {
			for _, msg := range validation.IsQualifiedName(*a) {
				errs = append(errs, field.Invalid(ip.Child("appProtocol"), *a, msg))
			}
		}
	}
	return errs
}

func validateEndpoint(e *discoveryv1.Endpoint, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	ap := path.Child("addresses")
	switch n := len(e.Addresses); {
	case n == 0:
		errs = append(errs, field.Required(ap, "an endpoint needs its address"))
	case n > maxSliceAddresses:
		errs = append(errs, field.TooMany(ap, n, maxSliceAddresses))
	}
	for i, a := range e.Addresses {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() || ip.String() != a {
			errs = append(errs, field.Invalid(ap.Index(i), a, "must be an IPv4 address in dotted-decimal form, e.g. 10.244.0.5"))
		}
	}
	if e.Hostname != nil {
		for _, msg := range validation.IsDNS1123Label(*e.Hostname) {
			errs = append(errs, field.Invalid(path.Child("hostname"), *e.Hostname, msg))
		}
	}
	if e.NodeName != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*e.NodeName) {
			errs = append(errs, field.Invalid(path.Child("nodeName"), *e.NodeName, msg))
		}
	}
	if e.Zone != nil {
		for _, msg := range content.IsLabelValue(*e.Zone) {
			errs = append(errs, field.Invalid(path.Child("zone"), *e.Zone, msg))
		}
	}
	if r := e.TargetRef; r != nil {
		rp := path.Child("targetRef")
		if r.Name != "" {
			for _, msg := range apivalidation.NameIsDNSSubdomain(r.Name, false) {
				errs = append(errs, field.Invalid(rp.Child("name"), r.Name, msg))
			}
		}
		if r.Namespace != "" {
			for _, msg := range validation.IsDNS1123Label(r.Namespace) {
				errs = append(errs, field.Invalid(rp.Child("namespace"), r.Namespace, msg))
			}
		}
	}
	return errs
}
