package cluster

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// DefaultNamespace is the namespace of a namespaced object that names none.
const DefaultNamespace = "default"

// Defaults of pod fields, as the Kubernetes API server sets them.
const (
	defaultTerminationGracePeriodSeconds = 30
	defaultProbeTimeoutSeconds           = 1
	defaultProbePeriodSeconds            = 10
	defaultProbeSuccessThreshold         = 1
	defaultProbeFailureThreshold         = 3
)

// SetDefaults fills in the fields of obj that have a default, as Decode
// does: the namespace "default" for a namespaced object, a pod's
// restartPolicy (Always), dnsPolicy (ClusterFirst), terminationGracePeriod,
// port protocols (TCP) and probe timings, a Deployment's replicas (1) and
// its template's pod defaults, a Service's defaults as the API server sets
// them (see setServiceDefaults), an EndpointSlice's port protocols and
// names, a NetworkPolicy's port protocols and policyTypes (see
// setNetworkPolicyDefaults), an Ingress's namespace, an IngressClass's
// parameters scope, a Secret's type (Opaque), and a Lab's network defaults.
// Objects of other types are left alone. A Secret's stringData is not merged
// into its data here: see MergeSecretStringData.
func SetDefaults(obj runtime.Object) {
	switch o := obj.(type) {
	case *Lab:
		setLabDefaults(&o.Spec)
	case *corev1.Pod:
		if o.Namespace == "" {
			o.Namespace = DefaultNamespace
		}
		setPodSpecDefaults(&o.Spec)
	case *appsv1.Deployment:
		if o.Namespace == "" {
			o.Namespace = DefaultNamespace
		}
		if o.Spec.Replicas == nil {
			one := int32(1)
			o.Spec.Replicas = &one
		}
		setPodSpecDefaults(&o.Spec.Template.Spec)
	case *corev1.Service:
		setServiceDefaults(o)
	case *discoveryv1.EndpointSlice:
		setEndpointSliceDefaults(o)
	case *networkingv1.NetworkPolicy:
		setNetworkPolicyDefaults(o)
	case *networkingv1.Ingress:
		setIngressDefaults(o)
	case *networkingv1.IngressClass:
		setIngressClassDefaults(o)
	case *corev1.Secret:
		setSecretDefaults(o)
	}
}

func setPodSpecDefaults(spec *corev1.PodSpec) {
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	if spec.TerminationGracePeriodSeconds == nil {
		grace := int64(defaultTerminationGracePeriodSeconds)
		spec.TerminationGracePeriodSeconds = &grace
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			c := &cs[i]
			for j := range c.Ports {
				if c.Ports[j].Protocol == "" {
					c.Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				setProbeDefaults(p)
			}
		}
	}
}

func setProbeDefaults(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = defaultProbeTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = defaultProbePeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = defaultProbeSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = defaultProbeFailureThreshold
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = corev1.URISchemeHTTP
		}
	}
}

// Validate checks obj, a *Lab, *corev1.Namespace, *corev1.Pod,
// *appsv1.Deployment, *corev1.Service, *discoveryv1.EndpointSlice,
// *networkingv1.NetworkPolicy, *networkingv1.Ingress,
// *networkingv1.IngressClass or *corev1.Secret, and returns everything wrong
// with it. Unset fields that have a default are
// accepted; whether a pod's node or namespace exists, and whether a
// Service's clusterIP and NodePorts are free, is left to the caller.
func Validate(obj runtime.Object) field.ErrorList {
	switch o := obj.(type) {
	case *Lab:
		l := *o // setLabDefaults changes only scalar fields of the copy
		setLabDefaults(&l.Spec)
		return validateLab(&l)
	case *corev1.Namespace:
		return validateObjectMeta(&o.ObjectMeta, KindNamespace, validation.IsDNS1123Label, field.NewPath("metadata"))
	case *corev1.Pod:
		errs := validateObjectMeta(&o.ObjectMeta, KindPod, validation.IsDNS1123Subdomain, field.NewPath("metadata"))
		return append(errs, validatePodSpec(&o.Spec, field.NewPath("spec"), podRestartPolicies)...)
	case *appsv1.Deployment:
		return validateDeployment(o)
	case *corev1.Service:
		return validateService(o)
	case *discoveryv1.EndpointSlice:
		return validateEndpointSlice(o)
	case *networkingv1.NetworkPolicy:
		return validateNetworkPolicy(o)
	case *networkingv1.Ingress:
		return validateIngress(o)
	case *networkingv1.IngressClass:
		return validateIngressClass(o)
	case *corev1.Secret:
		return validateSecret(o)
	default:
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("podnet cannot validate %T", obj))}
	}
}

// validateObjectMeta checks the metadata of an object of kind k, whose name
// must pass nameFn.
func validateObjectMeta(m *metav1.ObjectMeta, k Kind, nameFn func(string) []string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	namePath := path.Child("name")
	switch {
	case m.Name == "" && m.GenerateName != "":
		errs = append(errs, field.Forbidden(path.Child("generateName"), "generateName is not supported: set metadata.name"))
	case m.Name == "":
		errs = append(errs, field.Required(namePath, ""))
	default:
		for _, msg := range nameFn(m.Name) {
			errs = append(errs, field.Invalid(namePath, m.Name, msg))
		}
	}
	nsPath := path.Child("namespace")
	switch {
	case !k.Namespaced() && m.Namespace != "":
		article := "a"
		if strings.ContainsRune("AEIOU", rune(k.String()[0])) {
			article = "an"
		}
		errs = append(errs, field.Forbidden(nsPath, fmt.Sprintf("%s %s is not namespaced: remove metadata.namespace", article, k)))
	case m.Namespace != "":
		for _, msg := range validation.IsDNS1123Label(m.Namespace) {
			errs = append(errs, field.Invalid(nsPath, m.Namespace, msg))
		}
	}
	errs = append(errs, validateLabels(m.Labels, path.Child("labels"))...)
	return append(errs, apivalidation.ValidateAnnotations(m.Annotations, path.Child("annotations"))...)
}

var (
	podRestartPolicies        = []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}
	deploymentRestartPolicies = []corev1.RestartPolicy{corev1.RestartPolicyAlways}
	dnsPolicies               = []corev1.DNSPolicy{corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone}
	protocols                 = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	uriSchemes                = []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}
)

// validatePodSpec checks a pod spec at path. restartPolicies are the
// restart policies allowed besides the empty one (which defaults to Always).
func validatePodSpec(spec *corev1.PodSpec, path *field.Path, restartPolicies []corev1.RestartPolicy) field.ErrorList {
	var errs field.ErrorList
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), "a pod needs at least one container"))
	}
	names := make(map[string]bool)
	for i := range spec.InitContainers {
		errs = append(errs, validateContainer(&spec.InitContainers[i], path.Child("initContainers").Index(i), true, names)...)
	}
	for i := range spec.Containers {
		errs = append(errs, validateContainer(&spec.Containers[i], path.Child("containers").Index(i), false, names)...)
	}
	if len(spec.EphemeralContainers) > 0 {
		errs = append(errs, field.Forbidden(path.Child("ephemeralContainers"), "ephemeral containers are not supported by podnet"))
	}
	if p := spec.RestartPolicy; p != "" && !slices.Contains(restartPolicies, p) {
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), p, restartPolicies))
	}
	if spec.HostNetwork {
		errs = append(errs, field.Forbidden(path.Child("hostNetwork"),
			"hostNetwork is not supported in the lab: every podnet pod gets its own network namespace and IP"))
	}
	if spec.NodeName != "" {
		for _, msg := range validation.IsDNS1123Label(spec.NodeName) {
			errs = append(errs, field.Invalid(path.Child("nodeName"), spec.NodeName, msg))
		}
	}
	if p := spec.DNSPolicy; p != "" && !slices.Contains(dnsPolicies, p) {
		errs = append(errs, field.NotSupported(path.Child("dnsPolicy"), p, dnsPolicies))
	}
	errs = append(errs, validateDNSConfig(spec.DNSConfig, spec.DNSPolicy, path.Child("dnsConfig"))...)
	if g := spec.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(path.Child("terminationGracePeriodSeconds"), *g, apivalidation.IsNegativeErrorMsg))
	}
	return errs
}

// Bounds of a pod's dnsConfig, as in Kubernetes.
const (
	maxDNSNameservers = 3
	maxDNSSearches    = 32
)

func validateDNSConfig(c *corev1.PodDNSConfig, policy corev1.DNSPolicy, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if policy == corev1.DNSNone && (c == nil || len(c.Nameservers) == 0) {
		errs = append(errs, field.Required(path.Child("nameservers"), "dnsPolicy None needs at least one nameserver"))
	}
	if c == nil {
		return errs
	}
	if len(c.Nameservers) > maxDNSNameservers {
		errs = append(errs, field.TooMany(path.Child("nameservers"), len(c.Nameservers), maxDNSNameservers))
	}
	for i, ns := range c.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			errs = append(errs, field.Invalid(path.Child("nameservers").Index(i), ns, "must be an IP address"))
		}
	}
	if len(c.Searches) > maxDNSSearches {
		errs = append(errs, field.TooMany(path.Child("searches"), len(c.Searches), maxDNSSearches))
	}
	for i, s := range c.Searches {
		for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(s, ".")) {
			errs = append(errs, field.Invalid(path.Child("searches").Index(i), s, msg))
		}
	}
	for i, o := range c.Options {
		if o.Name == "" {
			errs = append(errs, field.Required(path.Child("options").Index(i).Child("name"), ""))
		}
	}
	return errs
}

// validateContainer checks one container at path. names holds the names of
// the pod's containers seen so far.
func validateContainer(c *corev1.Container, path *field.Path, init bool, names map[string]bool) field.ErrorList {
	var errs field.ErrorList
	namePath := path.Child("name")
	switch {
	case c.Name == "":
		errs = append(errs, field.Required(namePath, ""))
	case names[c.Name]:
		errs = append(errs, field.Duplicate(namePath, c.Name))
	default:
		names[c.Name] = true
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(namePath, c.Name, msg))
		}
	}

	switch {
	case len(c.Command) == 0:
		errs = append(errs, field.Required(path.Child("command"),
			`podnet runs a container's command from the host's filesystem and does not use its image: set command, e.g. ["podnet", "serve", "--http", "80"]`))
	case c.Command[0] == "":
		errs = append(errs, field.Invalid(path.Child("command").Index(0), "", "must name the program to run"))
	}

	portNames := make(map[string]bool)
	for i, p := range c.Ports {
		pp := path.Child("ports").Index(i)
		for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
			errs = append(errs, field.Invalid(pp.Child("containerPort"), p.ContainerPort, msg))
		}
		if p.Protocol != "" && !slices.Contains(protocols, p.Protocol) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, protocols))
		}
		if p.Name != "" {
			msgs := validation.IsValidPortName(p.Name)
			for _, msg := range msgs {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if len(msgs) == 0 && portNames[p.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			portNames[p.Name] = true
		}
		if p.HostPort != 0 {
			errs = append(errs, field.Forbidden(pp.Child("hostPort"), "hostPort is not supported by podnet: expose the port with a NodePort Service"))
		}
		if p.HostIP != "" {
			errs = append(errs, field.Forbidden(pp.Child("hostIP"), "hostIP is not supported by podnet: expose the port with a NodePort Service"))
		}
	}

	for i, e := range c.Env {
		errs = append(errs, validateEnvVar(e, path.Child("env").Index(i))...)
	}
	if len(c.EnvFrom) > 0 {
		errs = append(errs, field.Forbidden(path.Child("envFrom"), "envFrom is not supported by podnet: set env"))
	}

	sidecar := init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
	switch {
	case c.RestartPolicy == nil:
	case !init:
		errs = append(errs, field.Forbidden(path.Child("restartPolicy"), "only init containers may set restartPolicy"))
	case !sidecar:
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), *c.RestartPolicy, []corev1.ContainerRestartPolicy{corev1.ContainerRestartPolicyAlways}))
	}

	for _, probe := range []struct {
		name       string
		p          *corev1.Probe
		succeedOne bool // successThreshold must be 1
	}{
		{"readinessProbe", c.ReadinessProbe, false},
		{"livenessProbe", c.LivenessProbe, true},
		{"startupProbe", c.StartupProbe, true},
	} {
		if probe.p == nil {
			continue
		}
		pp := path.Child(probe.name)
		if init && !sidecar {
			errs = append(errs, field.Forbidden(pp, "an init container may not have probes, unless its restartPolicy is Always"))
			continue
		}
		errs = append(errs, validateProbe(probe.p, pp, c, probe.succeedOne)...)
	}
	return errs
}

// fieldRefPaths are the pod fields an environment variable may refer to;
// metadata.labels['KEY'] and metadata.annotations['KEY'] are allowed too.
var fieldRefPaths = []string{
	"metadata.name", "metadata.namespace", "metadata.uid",
	"spec.nodeName", "spec.serviceAccountName",
	"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}

var fieldRefSubscript = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']+)'\]$`)

func validateEnvVar(e corev1.EnvVar, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if e.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	} else {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			errs = append(errs, field.Invalid(path.Child("name"), e.Name, msg))
		}
	}
	src := e.ValueFrom
	if src == nil {
		return errs
	}
	vp := path.Child("valueFrom")
	if e.Value != "" {
		errs = append(errs, field.Invalid(vp, "", "may not be set when `value` is not empty"))
	}
	unsupported := func(name string) {
		errs = append(errs, field.Forbidden(vp.Child(name), name+" is not supported by podnet: use value or fieldRef"))
	}
	if src.ResourceFieldRef != nil {
		unsupported("resourceFieldRef")
	}
	if src.ConfigMapKeyRef != nil {
		unsupported("configMapKeyRef")
	}
	if src.SecretKeyRef != nil {
		unsupported("secretKeyRef")
	}
	if src.FileKeyRef != nil {
		unsupported("fileKeyRef")
	}
	ref := src.FieldRef
	if ref == nil {
		if len(errs) == 0 {
			errs = append(errs, field.Required(vp.Child("fieldRef"), ""))
		}
		return errs
	}
	rp := vp.Child("fieldRef")
	if ref.APIVersion != "" && ref.APIVersion != "v1" {
		errs = append(errs, field.NotSupported(rp.Child("apiVersion"), ref.APIVersion, []string{"v1"}))
	}
	switch m := fieldRefSubscript.FindStringSubmatch(ref.FieldPath); {
	case ref.FieldPath == "":
		errs = append(errs, field.Required(rp.Child("fieldPath"), ""))
	case m != nil:
		for _, msg := range content.IsLabelKey(m[2]) {
			errs = append(errs, field.Invalid(rp.Child("fieldPath"), ref.FieldPath, msg))
		}
	case !slices.Contains(fieldRefPaths, ref.FieldPath):
		errs = append(errs, field.NotSupported(rp.Child("fieldPath"), ref.FieldPath,
			slices.Concat(fieldRefPaths, []string{"metadata.labels['KEY']", "metadata.annotations['KEY']"})))
	}
	return errs
}

// validateProbe checks a probe of container c at path.
func validateProbe(p *corev1.Probe, path *field.Path, c *corev1.Container, succeedOnce bool) field.ErrorList {
	var errs field.ErrorList
	var handlers []string
	h := p.ProbeHandler
	if h.TCPSocket != nil {
		handlers = append(handlers, "tcpSocket")
	}
	if h.HTTPGet != nil {
		handlers = append(handlers, "httpGet")
	}
	if h.Exec != nil {
		handlers = append(handlers, "exec")
	}
	if h.GRPC != nil {
		handlers = append(handlers, "grpc")
	}
	switch len(handlers) {
	case 0:
		errs = append(errs, field.Required(path, "must set one handler: tcpSocket, httpGet, exec or grpc"))
	case 1:
	default:
		for _, extra := range handlers[1:] {
			errs = append(errs, field.Forbidden(path.Child(extra), "may not set more than one handler: "+handlers[0]+" is set"))
		}
	}
	if h.TCPSocket != nil {
		errs = append(errs, validateProbePort(h.TCPSocket.Port, path.Child("tcpSocket", "port"), c)...)
	}
	if g := h.HTTPGet; g != nil {
		hp := path.Child("httpGet")
		errs = append(errs, validateProbePort(g.Port, hp.Child("port"), c)...)
		if g.Path != "" && !strings.HasPrefix(g.Path, "/") {
			errs = append(errs, field.Invalid(hp.Child("path"), g.Path, "must be an absolute path, starting with /"))
		}
		if g.Scheme != "" && !slices.Contains(uriSchemes, g.Scheme) {
			errs = append(errs, field.NotSupported(hp.Child("scheme"), g.Scheme, uriSchemes))
		}
		for i, hdr := range g.HTTPHeaders {
			for _, msg := range validation.IsHTTPHeaderName(hdr.Name) {
				errs = append(errs, field.Invalid(hp.Child("httpHeaders").Index(i).Child("name"), hdr.Name, msg))
			}
		}
	}
	if h.Exec != nil && len(h.Exec.Command) == 0 {
		errs = append(errs, field.Required(path.Child("exec", "command"), ""))
	}
	if h.GRPC != nil {
		for _, msg := range validation.IsValidPortNum(int(h.GRPC.Port)) {
			errs = append(errs, field.Invalid(path.Child("grpc", "port"), h.GRPC.Port, msg))
		}
	}
	for _, t := range []struct {
		name  string
		value int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds},
		{"timeoutSeconds", p.TimeoutSeconds},
		{"periodSeconds", p.PeriodSeconds},
		{"successThreshold", p.SuccessThreshold},
		{"failureThreshold", p.FailureThreshold},
	} {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(t.value), path.Child(t.name))...)
	}
	if succeedOnce && p.SuccessThreshold > 1 {
		errs = append(errs, field.Invalid(path.Child("successThreshold"), p.SuccessThreshold, "must be 1 for liveness and startup probes"))
	}
	if g := p.TerminationGracePeriodSeconds; g != nil && *g <= 0 {
		errs = append(errs, field.Invalid(path.Child("terminationGracePeriodSeconds"), *g, "must be greater than 0"))
	}
	return errs
}

// validateProbePort checks a probe's port: a port number, or the name of one
// of c's ports.
func validateProbePort(port intstr.IntOrString, path *field.Path, c *corev1.Container) field.ErrorList {
	var errs field.ErrorList
	if port.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(int(port.IntVal)) {
			errs = append(errs, field.Invalid(path, port.IntVal, msg))
		}
		return errs
	}
	msgs := validation.IsValidPortName(port.StrVal)
	for _, msg := range msgs {
		errs = append(errs, field.Invalid(path, port.StrVal, msg))
	}
	if len(msgs) > 0 {
		return errs
	}
	var named []string
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return nil
		}
		if p.Name != "" {
			named = append(named, p.Name)
		}
	}
	detail := "must be a port number or the name of one of the container's ports, and the container has no named ports"
	if len(named) > 0 {
		detail = "must be a port number or the name of one of the container's ports: " + strings.Join(named, ", ")
	}
	return append(errs, field.Invalid(path, port.StrVal, detail))
}

func validateDeployment(d *appsv1.Deployment) field.ErrorList {
	errs := validateObjectMeta(&d.ObjectMeta, KindDeployment, validation.IsDNS1123Subdomain, field.NewPath("metadata"))
	spec := field.NewPath("spec")
	if r := d.Spec.Replicas; r != nil && *r < 0 {
		errs = append(errs, field.Invalid(spec.Child("replicas"), *r, apivalidation.IsNegativeErrorMsg))
	}
	if d.Spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(spec.Child("minReadySeconds"), d.Spec.MinReadySeconds, apivalidation.IsNegativeErrorMsg))
	}

	tmpl := spec.Child("template")
	tlabels := d.Spec.Template.Labels
	sp := spec.Child("selector")
	switch sel := d.Spec.Selector; {
	case sel == nil:
		errs = append(errs, field.Required(sp, "a Deployment needs a selector that matches spec.template.metadata.labels"))
	case len(sel.MatchLabels)+len(sel.MatchExpressions) == 0:
		errs = append(errs, field.Invalid(sp, sel, "empty selector is invalid for deployment"))
	default:
		serrs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, sp)
		errs = append(errs, serrs...)
		if len(serrs) > 0 {
			break
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			errs = append(errs, field.Invalid(sp, sel, err.Error()))
		} else if !s.Matches(labels.Set(tlabels)) {
			errs = append(errs, field.Invalid(tmpl.Child("metadata", "labels"), tlabels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, validateLabels(tlabels, tmpl.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(d.Spec.Template.Annotations, tmpl.Child("metadata", "annotations"))...)
	errs = append(errs, validatePodSpec(&d.Spec.Template.Spec, tmpl.Child("spec"), deploymentRestartPolicies)...)

	st := spec.Child("strategy")
	switch d.Spec.Strategy.Type {
	case "", appsv1.RollingUpdateDeploymentStrategyType:
	case appsv1.RecreateDeploymentStrategyType:
		if d.Spec.Strategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(st.Child("rollingUpdate"), "may not be set when strategy `type` is 'Recreate'"))
		}
	default:
		errs = append(errs, field.NotSupported(st.Child("type"), d.Spec.Strategy.Type,
			[]appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType}))
	}
	return errs
}
