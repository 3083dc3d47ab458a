package printer

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// WireGuardKeyAnnotation is the Node annotation that carries the node's
// WireGuard public key, shown in the WIREGUARD-KEY column of the wide view.
const WireGuardKeyAnnotation = "podnet.dev/wireguard-public-key"

// row returns the table of obj's kind and obj's cells for every column,
// wide ones included (Table drops those unless asked for).
func row(obj runtime.Object, now time.Time, wide bool) (*kindTable, []string, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &podTable, podRow(o, now), nil
	case *corev1.Node:
		return &nodeTable, nodeRow(o, now), nil
	case *corev1.Namespace:
		return &namespaceTable, []string{o.Name, string(o.Status.Phase), age(o.CreationTimestamp, now)}, nil
	case *corev1.Service:
		return &serviceTable, serviceRow(o, now, wide), nil
	case *appsv1.Deployment:
		return &deploymentTable, deploymentRow(o, now), nil
	case *discoveryv1.EndpointSlice:
		return &endpointSliceTable, endpointSliceRow(o, now), nil
	case *networkingv1.NetworkPolicy:
		return &networkPolicyTable, []string{o.Name, metav1.FormatLabelSelector(&o.Spec.PodSelector), age(o.CreationTimestamp, now)}, nil
	case *networkingv1.Ingress:
		return &ingressTable, ingressRow(o, now, wide), nil
	case *networkingv1.IngressClass:
		return &ingressClassTable, []string{o.Name, o.Spec.Controller, ingressClassParameters(o.Spec.Parameters), age(o.CreationTimestamp, now)}, nil
	case *corev1.Secret:
		return &secretTable, []string{o.Name, string(o.Type), strconv.Itoa(len(o.Data)), age(o.CreationTimestamp, now)}, nil
	default:
		return nil, nil, fmt.Errorf("print table: no table columns for objects of type %T", obj)
	}
}

// Nodes.

// kubectl's node role labels (k8s.io/kubernetes/pkg/printers/internalversion).
const (
	labelNodeRolePrefix = "node-role.kubernetes.io/"
	nodeLabelRole       = "kubernetes.io/role"
)

var nodeTable = kindTable{
	columns: []column{
		{header: "NAME"},
		{header: "STATUS"},
		{header: "ROLES"},
		{header: "AGE"},
		{header: "VERSION"},
		{header: "INTERNAL-IP", wide: true},
		{header: "EXTERNAL-IP", wide: true},
		{header: "OS-IMAGE", wide: true},
		{header: "KERNEL-VERSION", wide: true},
		{header: "CONTAINER-RUNTIME", wide: true},
		{header: "POD-CIDR", wide: true},      // podnet's addition
		{header: "WIREGUARD-KEY", wide: true}, // podnet's addition
	},
}

func nodeRow(node *corev1.Node, now time.Time) []string {
	// kubectl looks only at the Ready condition.
	var status []string
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			status = []string{string(c.Type)}
		} else {
			status = []string{"Not" + string(c.Type)}
		}
	}
	if len(status) == 0 {
		status = append(status, "Unknown")
	}
	if node.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}

	info := node.Status.NodeInfo
	podCIDR := strings.Join(node.Spec.PodCIDRs, ",")
	if podCIDR == "" {
		podCIDR = node.Spec.PodCIDR
	}
	return []string{
		node.Name,
		strings.Join(status, ","),
		orNone(strings.Join(nodeRoles(node), ",")),
		age(node.CreationTimestamp, now),
		info.KubeletVersion,
		nodeAddress(node, corev1.NodeInternalIP),
		nodeAddress(node, corev1.NodeExternalIP),
		orUnknown(info.OSImage),
		orUnknown(info.KernelVersion),
		orUnknown(info.ContainerRuntimeVersion),
		orNone(podCIDR),
		orNone(node.Annotations[WireGuardKeyAnnotation]),
	}
}

// nodeRoles returns the sorted roles named by the node's
// node-role.kubernetes.io/<role> and kubernetes.io/role=<role> labels.
func nodeRoles(node *corev1.Node) []string {
	set := make(map[string]bool)
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, labelNodeRolePrefix):
			if role := strings.TrimPrefix(k, labelNodeRolePrefix); role != "" {
				set[role] = true
			}
		case k == nodeLabelRole && v != "":
			set[v] = true
		}
	}
	return sortedKeys(set)
}

// nodeAddress returns the node's first address of type t, or "<none>".
func nodeAddress(node *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range node.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return none
}

// orUnknown returns s, or "<unknown>" if s is empty.
func orUnknown(s string) string {
	if s == "" {
		return unknown
	}
	return s
}

// Namespaces.

var namespaceTable = kindTable{
	columns: []column{{header: "NAME"}, {header: "STATUS"}, {header: "AGE"}},
}

// Deployments.

var deploymentTable = kindTable{
	namespaced: true,
	columns: []column{
		{header: "NAME"},
		{header: "READY"},
		{header: "UP-TO-DATE"},
		{header: "AVAILABLE"},
		{header: "AGE"},
		{header: "CONTAINERS", wide: true},
		{header: "IMAGES", wide: true},
		{header: "SELECTOR", wide: true},
	},
}

func deploymentRow(d *appsv1.Deployment, now time.Time) []string {
	desired := int32(1) // the API server's default for an unset spec.replicas
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	selector := "<invalid>"
	if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		selector = s.String()
	}
	names, images := containerCells(d.Spec.Template.Spec.Containers)
	return []string{
		d.Name,
		fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desired),
		strconv.Itoa(int(d.Status.UpdatedReplicas)),
		strconv.Itoa(int(d.Status.AvailableReplicas)),
		age(d.CreationTimestamp, now),
		names,
		images,
		selector,
	}
}

// containerCells returns the CONTAINERS and IMAGES cells: the names and the
// images, comma-separated, as kubectl lays them out. podnet's containers are
// host processes and usually have no image; when none of them has one,
// IMAGES is "<none>" rather than kubectl's empty cell.
func containerCells(containers []corev1.Container) (names, images string) {
	n := make([]string, len(containers))
	im := make([]string, len(containers))
	anyImage := false
	for i, c := range containers {
		n[i] = c.Name
		im[i] = c.Image
		anyImage = anyImage || c.Image != ""
	}
	if !anyImage {
		return strings.Join(n, ","), none
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// Services.

// loadBalancerWidth is the width kubectl clips load balancer addresses to
// outside the wide view.
const loadBalancerWidth = 16

var serviceTable = kindTable{
	namespaced: true,
	columns: []column{
		{header: "NAME"},
		{header: "TYPE"},
		{header: "CLUSTER-IP"},
		{header: "EXTERNAL-IP"},
		{header: "PORT(S)"},
		{header: "AGE"},
		{header: "SELECTOR", wide: true},
	},
}

func serviceRow(svc *corev1.Service, now time.Time, wide bool) []string {
	svcType := svc.Spec.Type
	if svcType == "" {
		svcType = corev1.ServiceTypeClusterIP // the API server's default
	}
	clusterIP := svc.Spec.ClusterIP
	if len(svc.Spec.ClusterIPs) > 0 {
		clusterIP = svc.Spec.ClusterIPs[0]
	}
	return []string{
		svc.Name,
		string(svcType),
		orNone(clusterIP),
		serviceExternalIP(svc, svcType, wide),
		orNone(servicePorts(svc.Spec.Ports)),
		age(svc.CreationTimestamp, now),
		labels.FormatLabels(svc.Spec.Selector),
	}
}

// serviceExternalIP computes the EXTERNAL-IP column as kubectl's
// getServiceExternalIP does.
func serviceExternalIP(svc *corev1.Service, svcType corev1.ServiceType, wide bool) string {
	switch svcType {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return none
	case corev1.ServiceTypeLoadBalancer:
		var ingress []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ingress = append(ingress, firstNonEmpty(in.IP, in.Hostname))
		}
		lbIPs := loadBalancerString(ingress, wide)
		if len(svc.Spec.ExternalIPs) > 0 {
			var results []string
			if lbIPs != "" {
				results = append(results, strings.Split(lbIPs, ",")...)
			}
			results = append(results, svc.Spec.ExternalIPs...)
			return strings.Join(results, ",")
		}
		if lbIPs != "" {
			return lbIPs
		}
		return "<pending>"
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return unknown
}

// loadBalancerString joins the distinct non-empty addresses in sorted order,
// clipped to loadBalancerWidth outside the wide view.
func loadBalancerString(addrs []string, wide bool) string {
	set := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if a != "" {
			set[a] = true
		}
	}
	r := strings.Join(sortedKeys(set), ",")
	if !wide && len(r) > loadBalancerWidth {
		r = r[:loadBalancerWidth-3] + "..."
	}
	return r
}

// servicePorts formats ports as kubectl's PORT(S) column: 80/TCP, or
// 80:30080/TCP with a node port.
func servicePorts(ports []corev1.ServicePort) string {
	pieces := make([]string, len(ports))
	for i, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP // the API server's default
		}
		if p.NodePort > 0 {
			pieces[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto)
		} else {
			pieces[i] = fmt.Sprintf("%d/%s", p.Port, proto)
		}
	}
	return strings.Join(pieces, ",")
}

// EndpointSlices.

var endpointSliceTable = kindTable{
	namespaced: true,
	columns: []column{
		{header: "NAME"},
		{header: "ADDRESSTYPE"},
		{header: "PORTS"},
		{header: "ENDPOINTS"},
		{header: "AGE"},
	},
}

// maxListed is how many ports, endpoints or hosts kubectl lists before
// "+ N more...".
const maxListed = 3

func endpointSliceRow(s *discoveryv1.EndpointSlice, now time.Time) []string {
	var ports []string
	for _, p := range s.Ports {
		switch {
		case p.Port != nil:
			ports = append(ports, strconv.Itoa(int(*p.Port)))
		case p.Name != nil:
			ports = append(ports, *p.Name)
		default:
			ports = append(ports, "*")
		}
	}
	var addrs []string
	for _, e := range s.Endpoints {
		addrs = append(addrs, e.Addresses...)
	}
	return []string{
		s.Name,
		string(s.AddressType),
		listWithMore(ports),
		listWithMore(addrs),
		age(s.CreationTimestamp, now),
	}
}

// listWithMore joins the first maxListed items and counts the rest, as
// kubectl's listWithMoreString: "a,b,c + 2 more...", or "<unset>" if empty.
func listWithMore(items []string) string {
	if len(items) > maxListed {
		return fmt.Sprintf("%s + %d more...", strings.Join(items[:maxListed], ","), len(items)-maxListed)
	}
	if len(items) == 0 {
		return unset
	}
	return strings.Join(items, ",")
}

// NetworkPolicies.

var networkPolicyTable = kindTable{
	namespaced: true,
	columns:    []column{{header: "NAME"}, {header: "POD-SELECTOR"}, {header: "AGE"}},
}

// Ingresses.

var ingressTable = kindTable{
	namespaced: true,
	columns: []column{
		{header: "NAME"},
		{header: "CLASS"},
		{header: "HOSTS"},
		{header: "ADDRESS"},
		{header: "PORTS"},
		{header: "AGE"},
	},
}

func ingressRow(in *networkingv1.Ingress, now time.Time, wide bool) []string {
	class := none
	if in.Spec.IngressClassName != nil {
		class = *in.Spec.IngressClassName
	}
	var addrs []string
	for _, lb := range in.Status.LoadBalancer.Ingress {
		addrs = append(addrs, firstNonEmpty(lb.IP, lb.Hostname))
	}
	ports := "80"
	if len(in.Spec.TLS) != 0 {
		ports = "80, 443"
	}
	return []string{
		in.Name,
		class,
		ingressHosts(in.Spec.Rules),
		loadBalancerString(addrs, wide),
		ports,
		age(in.CreationTimestamp, now),
	}
}

// ingressHosts formats the HOSTS column as kubectl's formatHosts, quirks
// included: rules without a host are skipped, yet counted in "+ N more...".
func ingressHosts(rules []networkingv1.IngressRule) string {
	var list []string
	more := false
	for _, rule := range rules {
		if len(list) == maxListed {
			more = true
		}
		if !more && rule.Host != "" {
			list = append(list, rule.Host)
		}
	}
	if len(list) == 0 {
		return "*"
	}
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, len(rules)-maxListed)
	}
	return ret
}

// IngressClasses.

var ingressClassTable = kindTable{
	columns: []column{{header: "NAME"}, {header: "CONTROLLER"}, {header: "PARAMETERS"}, {header: "AGE"}},
}

// ingressClassParameters formats the PARAMETERS column as kubectl does:
// KIND[.APIGROUP]/NAME, or "<none>".
func ingressClassParameters(p *networkingv1.IngressClassParametersReference) string {
	if p == nil {
		return none
	}
	s := p.Kind
	if p.APIGroup != nil {
		s += "." + *p.APIGroup
	}
	return s + "/" + p.Name
}

// Secrets.

// secretTable is kubectl's: DATA counts the keys of data (a stored Secret has
// no stringData).
var secretTable = kindTable{
	namespaced: true,
	columns:    []column{{header: "NAME"}, {header: "TYPE"}, {header: "DATA"}, {header: "AGE"}},
}

// Helpers.

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func sortedKeys(set map[string]bool) []string {
	return slices.Sorted(maps.Keys(set))
}
