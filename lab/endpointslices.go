package lab

import (
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// The Service controllers: LoadBalancer status and EndpointSlices.
//
// The EndpointSlice controller does what kube-controller-manager's does. For every Service with
// a selector (not an ExternalName), it keeps EndpointSlices named <service>-<5 random
// characters>, labelled kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by
// (plus the Service's own labels, and service.kubernetes.io/headless for a headless Service),
// owned by the Service, with one endpoint per pod of the namespace that the selector matches,
// that has a pod IP, has not terminated (Succeeded, Failed) and is not being deleted. An endpoint
// is ready and serving when the pod is Ready (ready always with publishNotReadyAddresses), and
// carries the pod's node, a reference to the pod, and the pod's hostname when its subdomain is
// the Service's name. Each Service port becomes a slice port whose number is the targetPort,
// resolved per pod for a named one (cluster.ResolveTargetPort); pods are grouped into slices by
// the set of ports they resolve (a pod without a port of that name is in a group without that
// port), at most 100 endpoints to a slice. A Service that has no endpoint gets one empty
// placeholder slice, as in Kubernetes. Services without a selector get no slices: a user applies
// their own.
//
// Slices are stable: an endpoint stays in the slice that has it, a new one goes to a slice with
// room before a new slice is made, and a slice object is replaced only when its content changes
// (objects are immutable: a change is a new object with the same name and UID, generation one
// more). So `podnet get` does not churn, and a node agent that compares pointers rebuilds only
// what changed.
//
// The controllers run on every change of the store, so they are incremental: they compare the
// new version of the state with the last one (pointers: unchanged objects are the same
// objects), and look only at the Services that changed, whose slices changed, or that select a
// pod that changed in a way endpoints show (labels, IP, readiness, phase, node, hostname). With
// the Services grouped by namespace and selector, a pod's change costs one selector match per
// group, not per Service.

// selectorGroup is the Services of one namespace that have the same selector.
type selectorGroup struct {
	selector map[string]string
	services []string // keys
}

// selectorIndex returns next's Services with a selector grouped by namespace and selector,
// building it if need be.
func (st *state) selectorIndex() map[string][]*selectorGroup {
	if st.selectors != nil {
		return st.selectors
	}
	idx := map[string][]*selectorGroup{}
	byKey := map[string]*selectorGroup{}
	var sb strings.Builder
	for k, svc := range st.Services {
		sel := svc.Spec.Selector
		if len(sel) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		sb.Reset()
		sb.WriteString(svc.Namespace)
		for _, lk := range sortedKeys(sel) {
			sb.WriteByte(0)
			sb.WriteString(lk)
			sb.WriteByte(0)
			sb.WriteString(sel[lk])
		}
		g := byKey[sb.String()]
		if g == nil {
			g = &selectorGroup{selector: sel}
			byKey[sb.String()] = g
			idx[svc.Namespace] = append(idx[svc.Namespace], g)
		}
		g.services = append(g.services, k)
	}
	st.selectors = idx
	return idx
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// sliceOwnerIndex returns the keys of the controller's EndpointSlices by the key of their
// Service, building it if need be. The lists may name slices that are gone.
func (st *state) sliceOwnerIndex() map[string][]string {
	if st.sliceOwners != nil {
		return st.sliceOwners
	}
	idx := map[string][]string{}
	for k, sl := range st.EndpointSlices {
		if owner, ok := controllerSliceOwner(sl); ok {
			idx[owner] = append(idx[owner], k)
		}
	}
	for _, ks := range idx {
		slices.Sort(ks)
	}
	st.sliceOwners = idx
	return idx
}

// controllerSliceOwner returns the key of the Service of a slice the controller made.
func controllerSliceOwner(sl *discoveryv1.EndpointSlice) (string, bool) {
	if sl.Labels[discoveryv1.LabelManagedBy] != cluster.EndpointSliceControllerName {
		return "", false
	}
	return key(sl.Namespace, sl.Labels[discoveryv1.LabelServiceName]), true
}

// syncServices runs the Service controllers over next, which was prev: LoadBalancer status and
// EndpointSlices. With all set, every Service's slices are derived again.
func (s *Store) syncServices(prev, next *state, all bool) {
	dirty := map[string]bool{}
	servicesChanged := false
	for k, svc := range next.Services {
		if prev.Services[k] != svc {
			dirty[k], servicesChanged = true, true
		}
	}
	for k := range prev.Services {
		if _, ok := next.Services[k]; !ok {
			dirty[k], servicesChanged = true, true
		}
	}
	if servicesChanged {
		next.serviceList, next.selectors = nil, nil
	}
	if syncLoadBalancers(next, dirty, nodesChanged(prev, next)) {
		next.serviceList = nil
	}

	// Slices applied or deleted: the controller re-makes its own.
	slicesChanged := len(prev.EndpointSlices) != len(next.EndpointSlices)
	for k, sl := range next.EndpointSlices {
		if prev.EndpointSlices[k] != sl {
			slicesChanged = true
		}
	}
	for k, sl := range prev.EndpointSlices {
		if _, ok := next.EndpointSlices[k]; !ok {
			slicesChanged = true
			if owner, ok := controllerSliceOwner(sl); ok {
				dirty[owner] = true
			}
		}
	}

	// Pods that changed what their endpoints show: the Services that select them (before or
	// after the change) are dirty.
	type podChange struct{ old, new *corev1.Pod }
	var changed []podChange
	for k, p := range next.Pods {
		if old := prev.Pods[k]; old != p && !sameForEndpoints(old, p) {
			changed = append(changed, podChange{old, p})
		}
	}
	for k, old := range prev.Pods {
		if _, ok := next.Pods[k]; !ok {
			changed = append(changed, podChange{old, nil})
		}
	}
	if len(changed) > 0 {
		idx := next.selectorIndex()
		for _, c := range changed {
			for _, p := range []*corev1.Pod{c.old, c.new} {
				if p == nil {
					continue
				}
				for _, g := range idx[p.Namespace] {
					if selects(g.selector, p.Labels) {
						for _, k := range g.services {
							dirty[k] = true
						}
					}
				}
			}
		}
	}

	if all {
		for k := range next.Services {
			dirty[k] = true
		}
		next.sliceOwners = nil
		for k := range next.sliceOwnerIndex() {
			dirty[k] = true
		}
	}
	if len(dirty) > 0 && syncEndpointSlices(next, dirty, s.now) {
		slicesChanged = true
	}
	if slicesChanged {
		next.sliceList = nil
	}
	next.reconciled = true
}

// nodesChanged reports whether the nodes or their addresses changed.
func nodesChanged(prev, next *state) bool {
	if prev.Lab == nil || len(prev.Lab.Spec.Nodes) != len(next.Lab.Spec.Nodes) || len(prev.Nodes) != len(next.Nodes) {
		return true
	}
	for i, n := range next.Lab.Spec.Nodes {
		if prev.Lab.Spec.Nodes[i].Name != n.Name {
			return true
		}
		a, b := prev.Nodes[n.Name], next.Nodes[n.Name]
		if (a == nil) != (b == nil) || (a != nil && nodeAddress(a) != nodeAddress(b)) {
			return true
		}
	}
	return false
}

// sameForEndpoints reports whether two versions of a pod have the same endpoints.
func sameForEndpoints(a, b *corev1.Pod) bool {
	if a == nil || b == nil {
		return false
	}
	return a.UID == b.UID && a.Status.PodIP == b.Status.PodIP && endpointEligible(a) == endpointEligible(b) &&
		podReady(a) == podReady(b) &&
		a.Spec.NodeName == b.Spec.NodeName && a.Spec.Hostname == b.Spec.Hostname && a.Spec.Subdomain == b.Spec.Subdomain &&
		maps.Equal(a.Labels, b.Labels)
}

// endpointEligible reports whether a pod may be an endpoint: it has an IPv4 address, has not
// terminated and is not being deleted.
func endpointEligible(p *corev1.Pod) bool {
	if p.Status.PodIP == "" || p.DeletionTimestamp != nil || strings.Contains(p.Status.PodIP, ":") {
		return false
	}
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// sliceSync is one run of the EndpointSlice controller.
type sliceSync struct {
	next      *state
	now       metav1.Time
	byNS      map[string][]*corev1.Pod              // built when first needed
	owners    map[string][]string                   // a copy of next.sliceOwners, being changed
	endpoints map[*corev1.Pod]*discoveryv1.Endpoint // each pod's endpoint, shared by its slices
	ready     *bool                                 // true, for publishNotReadyAddresses
	hostnames map[*corev1.Pod]*string               // each pod's spec.hostname
	changed   bool                                  // a slice was made, replaced or removed
	// shared holds the endpoint groups of Services that select and resolve alike (the same
	// namespace, selector, ports and publishNotReadyAddresses): they are computed once.
	shared map[string]*commonGroups
}

// commonGroups is the endpoint groups of the Services that select and resolve alike.
type commonGroups struct {
	groups []*endpointGroup
	// subdomains are the subdomains of the selected pods that have a hostname: a Service of such
	// a name gives those pods a hostname, and cannot use the shared groups.
	subdomains map[string]bool
}

// syncEndpointSlices brings the slices of the Services in dirty up to date (a key whose Service
// is gone loses its slices). It reports whether it changed any.
func syncEndpointSlices(next *state, dirty map[string]bool, now func() time.Time) bool {
	c := &sliceSync{
		next:      next,
		now:       metav1.NewTime(now()),
		owners:    maps.Clone(next.sliceOwnerIndex()),
		endpoints: map[*corev1.Pod]*discoveryv1.Endpoint{},
		hostnames: map[*corev1.Pod]*string{},
		ready:     ptr(true),
		shared:    map[string]*commonGroups{},
	}
	keys := make([]string, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	slices.Sort(keys) // slice names are random, but the order of their making is not
	for _, k := range keys {
		c.service(k)
	}
	next.sliceOwners = c.owners
	return c.changed
}

// endpointGroup is the endpoints of a Service that resolve the same ports.
type endpointGroup struct {
	key       string // portsKey(ports)
	ports     []discoveryv1.EndpointPort
	endpoints []discoveryv1.Endpoint
	uids      []types.UID // the pod of each endpoint
}

// service brings the slices of the Service key up to date.
func (c *sliceSync) service(k string) {
	next := c.next
	var existing []*discoveryv1.EndpointSlice
	for _, sk := range c.owners[k] {
		if sl := next.EndpointSlices[sk]; sl != nil {
			existing = append(existing, sl)
		}
	}
	svc := next.Services[k]
	if svc == nil || len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName {
		for _, sl := range existing {
			c.remove(sl)
		}
		delete(c.owners, k)
		return
	}
	labels := sliceLabels(svc, existing)
	groups := c.sharedGroups(svc)

	// Slices of another Service of the same name (deleted and made again) go; the others are
	// matched to the group of their ports. An empty slice whose ports no group has (the
	// placeholder, once pods come) is a spare that a group takes before it makes a new slice.
	byKey := map[string][]*discoveryv1.EndpointSlice{}
	var spare, keep []*discoveryv1.EndpointSlice
	for _, sl := range existing {
		gk := portsKey(sl.Ports)
		switch {
		case !ownedBy(sl, svc):
			c.remove(sl)
		case slices.ContainsFunc(groups, func(g *endpointGroup) bool { return g.key == gk }):
			byKey[gk] = append(byKey[gk], sl)
		case len(sl.Endpoints) == 0:
			spare = append(spare, sl)
		default:
			c.remove(sl)
		}
	}
	for _, g := range groups {
		keep = append(keep, c.fill(svc, labels, g, byKey[g.key], &spare)...)
	}
	if len(groups) == 0 {
		keep = append(keep, c.placeholder(svc, labels, spare))
	} else {
		for _, sl := range spare {
			c.remove(sl)
		}
	}
	names := make([]string, len(keep))
	for i, sl := range keep {
		names[i] = key(sl.Namespace, sl.Name)
	}
	slices.Sort(names)
	c.owners[k] = names
}

// ownedBy reports whether a slice's controller is svc (the same UID, not an earlier Service of
// that name).
func ownedBy(sl *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	ref := metav1.GetControllerOfNoCopy(sl)
	return ref != nil && ref.Kind == "Service" && ref.UID == svc.UID
}

// sharedGroups returns c.groups(svc), computed once for the Services that select and resolve
// alike.
func (c *sliceSync) sharedGroups(svc *corev1.Service) []*endpointGroup {
	var b strings.Builder
	b.WriteString(svc.Namespace)
	for _, k := range sortedKeys(svc.Spec.Selector) {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(svc.Spec.Selector[k])
	}
	b.WriteByte(1)
	var num [12]byte
	for _, p := range svc.Spec.Ports {
		b.WriteString(p.Name)
		b.WriteByte('/')
		b.WriteString(string(p.Protocol))
		b.WriteByte('/')
		b.Write(strconv.AppendInt(num[:0], int64(p.Port), 10))
		b.WriteByte('/')
		if p.TargetPort.Type == intstr.Int {
			b.Write(strconv.AppendInt(num[:0], int64(p.TargetPort.IntVal), 10))
		} else {
			b.WriteString(p.TargetPort.StrVal)
		}
		b.WriteByte('/')
		b.WriteString(deref(p.AppProtocol))
		b.WriteByte(';')
	}
	if svc.Spec.PublishNotReadyAddresses {
		b.WriteByte(2)
	}
	k := b.String()
	sg := c.shared[k]
	if sg == nil {
		sg = &commonGroups{groups: c.groups(svc, false), subdomains: map[string]bool{}}
		for _, p := range c.byNS[svc.Namespace] {
			if p.Spec.Hostname != "" && p.Spec.Subdomain != "" && selects(svc.Spec.Selector, p.Labels) {
				sg.subdomains[p.Spec.Subdomain] = true
			}
		}
		c.shared[k] = sg
	}
	if sg.subdomains[svc.Name] {
		return c.groups(svc, true)
	}
	return sg.groups
}

// groups returns the endpoints of svc grouped by the ports they resolve, in order of their
// first pod's name; each group's endpoints are in the order of their pods' names.
// With hostnames unset, no endpoint has a hostname.
func (c *sliceSync) groups(svc *corev1.Service, hostnames bool) []*endpointGroup {
	if c.byNS == nil {
		c.byNS = podsByNamespace(c.next)
	}
	var groups []*endpointGroup
	byResolved := map[string]*endpointGroup{}
	resolved := make([]int32, len(svc.Spec.Ports))
	var rk []byte
	for _, p := range c.byNS[svc.Namespace] {
		if !endpointEligible(p) || !selects(svc.Spec.Selector, p.Labels) {
			continue
		}
		rk = rk[:0]
		for i := range svc.Spec.Ports {
			n, ok := cluster.ResolveTargetPort(p, &svc.Spec.Ports[i])
			if !ok {
				n = 0
			}
			resolved[i] = n
			rk = strconv.AppendInt(rk, int64(n), 10)
			rk = append(rk, ',')
		}
		g := byResolved[string(rk)]
		if g == nil {
			g = &endpointGroup{}
			for i := range svc.Spec.Ports {
				if resolved[i] == 0 {
					continue
				}
				sp := &svc.Spec.Ports[i]
				g.ports = append(g.ports, discoveryv1.EndpointPort{
					Name: ptr(sp.Name), Protocol: ptr(sp.Protocol), Port: ptr(resolved[i]), AppProtocol: sp.AppProtocol,
				})
			}
			g.key = portsKey(g.ports)
			byResolved[string(rk)] = g
			groups = append(groups, g)
		}
		g.endpoints = append(g.endpoints, c.endpoint(svc, p, hostnames))
		g.uids = append(g.uids, p.UID)
	}
	return groups
}

// endpoint returns the endpoint of pod p in a slice of svc; with hostnames set, with the pod's
// hostname if its subdomain is svc.
func (c *sliceSync) endpoint(svc *corev1.Service, p *corev1.Pod, hostnames bool) discoveryv1.Endpoint {
	base := c.endpoints[p]
	if base == nil {
		ready := podReady(p)
		base = &discoveryv1.Endpoint{
			Addresses:  []string{p.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(false)},
			NodeName:   ptr(p.Spec.NodeName),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		c.endpoints[p] = base
	}
	e := *base
	if svc.Spec.PublishNotReadyAddresses {
		e.Conditions.Ready = c.ready
	}
	if hostnames && p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
		h := c.hostnames[p]
		if h == nil {
			h = ptr(p.Spec.Hostname)
			c.hostnames[p] = h
		}
		e.Hostname = h
	}
	return e
}

// fill lays out the endpoints of group g over its existing slices, spare slices (taken from
// *spare) and new ones, and returns the slices the group keeps.
func (c *sliceSync) fill(svc *corev1.Service, labels map[string]string, g *endpointGroup, existing []*discoveryv1.EndpointSlice, spare *[]*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	// The common cases: one slice that has the same pods, or no slice yet, and room in one. The
	// group's endpoints are shared, not copied (Clip keeps a later append from writing into them).
	if len(g.endpoints) <= cluster.MaxEndpointsPerSlice {
		switch {
		case len(existing) == 1 && samePods(existing[0].Endpoints, g.uids):
			return []*discoveryv1.EndpointSlice{c.update(existing[0], labels, g.ports, slices.Clip(g.endpoints))}
		case len(existing) == 0 && len(*spare) == 0:
			return []*discoveryv1.EndpointSlice{c.create(svc, labels, g.ports, slices.Clip(g.endpoints))}
		}
	}
	index := make(map[types.UID]int, len(g.uids))
	for i, uid := range g.uids {
		index[uid] = i
	}
	placed := make([]bool, len(g.endpoints))
	contents := make([][]discoveryv1.Endpoint, len(existing))
	// An endpoint stays where it is.
	for si, sl := range existing {
		for _, e := range sl.Endpoints {
			if e.TargetRef == nil {
				continue
			}
			if i, ok := index[e.TargetRef.UID]; ok && !placed[i] && len(contents[si]) < cluster.MaxEndpointsPerSlice {
				contents[si] = append(contents[si], g.endpoints[i])
				placed[i] = true
			}
		}
	}
	// A new one goes where there is room, then to spare slices, then to new ones.
	var rest []discoveryv1.Endpoint
	for i, e := range g.endpoints {
		if !placed[i] {
			rest = append(rest, e)
		}
	}
	for si := range existing {
		n := min(cluster.MaxEndpointsPerSlice-len(contents[si]), len(rest))
		contents[si] = append(contents[si], rest[:n]...)
		rest = rest[n:]
	}
	var keep []*discoveryv1.EndpointSlice
	for si, sl := range existing {
		if len(contents[si]) == 0 {
			c.remove(sl)
			continue
		}
		keep = append(keep, c.update(sl, labels, g.ports, contents[si]))
	}
	for len(rest) > 0 {
		n := min(cluster.MaxEndpointsPerSlice, len(rest))
		eps := slices.Clip(rest[:n])
		rest = rest[n:]
		if len(*spare) > 0 {
			sl := (*spare)[0]
			*spare = (*spare)[1:]
			keep = append(keep, c.update(sl, labels, g.ports, eps))
			continue
		}
		keep = append(keep, c.create(svc, labels, g.ports, eps))
	}
	return keep
}

// samePods reports whether eps are the endpoints of the pods uids, in that order.
func samePods(eps []discoveryv1.Endpoint, uids []types.UID) bool {
	if len(eps) != len(uids) {
		return false
	}
	for i := range eps {
		if eps[i].TargetRef == nil || eps[i].TargetRef.UID != uids[i] {
			return false
		}
	}
	return true
}

// placeholder keeps the first spare slice as the one empty slice of a Service without
// endpoints, or makes one.
func (c *sliceSync) placeholder(svc *corev1.Service, labels map[string]string, spare []*discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	if len(spare) == 0 {
		return c.create(svc, labels, nil, nil)
	}
	for _, sl := range spare[1:] {
		c.remove(sl)
	}
	return c.update(spare[0], labels, nil, nil)
}

// update returns sl with the given labels, ports and endpoints: sl itself if it has them, else
// a new version of it, put in the state.
func (c *sliceSync) update(sl *discoveryv1.EndpointSlice, labels map[string]string, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	if sameMap(sl.Labels, labels) && portsKey(sl.Ports) == portsKey(ports) && endpointsEqual(sl.Endpoints, eps) {
		return sl
	}
	n := *sl // the metadata's maps and lists are shared: nobody modifies them
	n.Labels, n.Ports, n.Endpoints = labels, ports, eps
	n.Generation++
	c.next.EndpointSlices[key(n.Namespace, n.Name)] = &n
	c.changed = true
	return &n
}

// create makes a new slice of svc.
func (c *sliceSync) create(svc *corev1.Service, labels map[string]string, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	prefix := svc.Name + "-"
	if len(prefix) > maxGeneratedNameBase {
		prefix = prefix[:maxGeneratedNameBase]
	}
	name := prefix + randomSuffix()
	for c.next.EndpointSlices[key(svc.Namespace, name)] != nil {
		name = prefix + randomSuffix()
	}
	sl := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: svc.Namespace, UID: uuid.NewUUID(), CreationTimestamp: c.now, Generation: 1,
			Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       ports,
	}
	c.next.EndpointSlices[key(sl.Namespace, sl.Name)] = sl
	c.changed = true
	return sl
}

// maxGeneratedNameBase is how much of a name the API server keeps before a generated suffix.
const maxGeneratedNameBase = 63 - 5

func (c *sliceSync) remove(sl *discoveryv1.EndpointSlice) {
	k := key(sl.Namespace, sl.Name)
	if c.next.EndpointSlices[k] == sl {
		delete(c.next.EndpointSlices, k)
		c.changed = true
	}
}

// sliceLabels returns the labels of svc's slices: the Service's own, and the controller's. If one
// of existing has them, its map is returned (to be shared, not modified).
func sliceLabels(svc *corev1.Service, existing []*discoveryv1.EndpointSlice) map[string]string {
	for _, sl := range existing {
		if hasSliceLabels(sl.Labels, svc) {
			return sl.Labels
		}
	}
	l := make(map[string]string, len(svc.Labels)+3)
	for k, v := range svc.Labels {
		switch k {
		case discoveryv1.LabelServiceName, discoveryv1.LabelManagedBy, cluster.LabelHeadless:
		default:
			l[k] = v
		}
	}
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = cluster.EndpointSliceControllerName
	if cluster.IsHeadless(svc) {
		l[cluster.LabelHeadless] = ""
	}
	return l
}

// hasSliceLabels reports whether l are the labels of svc's slices.
func hasSliceLabels(l map[string]string, svc *corev1.Service) bool {
	_, headless := l[cluster.LabelHeadless]
	n := 2
	if headless {
		n++
	}
	if l[discoveryv1.LabelServiceName] != svc.Name || l[discoveryv1.LabelManagedBy] != cluster.EndpointSliceControllerName ||
		headless != cluster.IsHeadless(svc) {
		return false
	}
	for k, v := range svc.Labels {
		switch k {
		case discoveryv1.LabelServiceName, discoveryv1.LabelManagedBy, cluster.LabelHeadless:
			continue
		}
		if lv, ok := l[k]; !ok || lv != v {
			return false
		}
		n++
	}
	return len(l) == n
}

// portsKey identifies a list of slice ports.
func portsKey(ports []discoveryv1.EndpointPort) string {
	var b []byte
	for _, p := range ports {
		b = append(b, deref(p.Name)...)
		b = append(b, '/')
		if p.Protocol != nil {
			b = append(b, *p.Protocol...)
		}
		b = append(b, '/')
		if p.Port != nil {
			b = strconv.AppendInt(b, int64(*p.Port), 10)
		}
		b = append(b, '/')
		b = append(b, deref(p.AppProtocol)...)
		b = append(b, ';')
	}
	return string(b)
}

// sameMap reports whether two maps are equal, at once when they are the same map.
func sameMap(a, b map[string]string) bool {
	if reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() {
		return true
	}
	return maps.Equal(a, b)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func samePtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// endpointsEqual reports whether two lists of endpoints are the same.
func endpointsEqual(a, b []discoveryv1.Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true // the same array
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if !slices.Equal(x.Addresses, y.Addresses) ||
			!samePtr(x.Conditions.Ready, y.Conditions.Ready) || !samePtr(x.Conditions.Serving, y.Conditions.Serving) ||
			!samePtr(x.Conditions.Terminating, y.Conditions.Terminating) ||
			!samePtr(x.Hostname, y.Hostname) || !samePtr(x.NodeName, y.NodeName) || !samePtr(x.Zone, y.Zone) ||
			!samePtr(x.TargetRef, y.TargetRef) || !maps.Equal(x.DeprecatedTopology, y.DeprecatedTopology) ||
			((x.Hints != nil || y.Hints != nil) && !equality.Semantic.DeepEqual(x.Hints, y.Hints)) {
			return false
		}
	}
	return true
}
