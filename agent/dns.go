package agent

import (
	"net/netip"
	"slices"

	"github.com/podnet/podnet/clusterdns"
	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// dnsPort is where the cluster DNS answers, at the Lab's dnsIP.
const dnsPort = 53

// dnsDatagrams lets the stack hand UDP queries to the DNS server.
type dnsDatagrams struct{ s *clusterdns.Server }

var _ stack.DatagramHandler = dnsDatagrams{}

func (d dnsDatagrams) ServeDatagram(src, dst netip.AddrPort, payload []byte, w stack.DatagramWriter) {
	d.s.ServeDatagram(src, dst, payload, w)
}

// dnsState is what the last syncDNS saw.
type dnsState struct {
	svcs   []*corev1.Service
	slices []*discoveryv1.EndpointSlice
	pods   []*corev1.Pod
}

// syncDNS gives the DNS server the cluster's records if Services, EndpointSlices or pods changed.
func (a *Agent) syncDNS() {
	src := a.opts.Source
	svcs, eps := src.Services(), src.EndpointSlices()
	pods := src.Pods()
	st := &a.dnsState
	if slices.Equal(svcs, st.svcs) && slices.Equal(eps, st.slices) && slices.Equal(pods, st.pods) {
		return
	}
	st.svcs, st.slices, st.pods = svcs, eps, pods
	a.dns.Update(dnsRecords(svcs, eps, pods))
}

// dnsRecords converts Services, their EndpointSlices and the pods into the DNS server's records.
func dnsRecords(svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice, pods []*corev1.Pod) clusterdns.Records {
	bySvc := make(map[string][]*discoveryv1.EndpointSlice, len(svcs))
	for _, s := range eps {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" && s.AddressType == discoveryv1.AddressTypeIPv4 {
			bySvc[s.Namespace+"/"+name] = append(bySvc[s.Namespace+"/"+name], s)
		}
	}
	var r clusterdns.Records
	for _, svc := range svcs {
		ds := clusterdns.Service{
			Namespace:       svc.Namespace,
			Name:            svc.Name,
			Headless:        svc.Spec.ClusterIP == corev1.ClusterIPNone,
			PublishNotReady: svc.Spec.PublishNotReadyAddresses,
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			ds.ExternalName = svc.Spec.ExternalName
		}
		for _, ip := range svc.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				ds.ClusterIPs = append(ds.ClusterIPs, a)
			}
		}
		if len(ds.ClusterIPs) == 0 {
			if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
				ds.ClusterIPs = append(ds.ClusterIPs, a)
			}
		}
		for _, p := range svc.Spec.Ports {
			ds.Ports = append(ds.Ports, clusterdns.Port{Name: p.Name, Protocol: string(p.Protocol), Port: uint16(p.Port)})
		}
		if ds.Headless {
			ds.Endpoints = dnsEndpoints(bySvc[svc.Namespace+"/"+svc.Name])
		}
		r.Services = append(r.Services, ds)
	}
	for _, p := range pods {
		a, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil {
			continue
		}
		r.Pods = append(r.Pods, clusterdns.Pod{Namespace: p.Namespace, Name: p.Name, IP: a, Hostname: p.Spec.Hostname, Subdomain: p.Spec.Subdomain})
	}
	return r
}

// dnsEndpoints returns the endpoints of a headless Service's slices, each address once, with the
// ports their slice resolved.
func dnsEndpoints(slices []*discoveryv1.EndpointSlice) []clusterdns.Endpoint {
	var out []clusterdns.Endpoint
	seen := map[netip.Addr]bool{}
	for _, s := range slices {
		var ports []clusterdns.Port
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			dp := clusterdns.Port{Protocol: string(corev1.ProtocolTCP), Port: uint16(*p.Port)}
			if p.Name != nil {
				dp.Name = *p.Name
			}
			if p.Protocol != nil {
				dp.Protocol = string(*p.Protocol)
			}
			ports = append(ports, dp)
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || seen[a] {
				continue
			}
			seen[a] = true
			de := clusterdns.Endpoint{Addr: a, Ready: e.Conditions.Ready == nil || *e.Conditions.Ready, Ports: ports}
			if e.Hostname != nil {
				de.Hostname = *e.Hostname
			}
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
				de.PodNamespace, de.PodName = e.TargetRef.Namespace, e.TargetRef.Name
			}
			out = append(out, de)
		}
	}
	return out
}
