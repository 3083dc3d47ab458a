package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/stack"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// ingressDialer opens the Ingress controller's connections to pods through the node's data path,
// from the node's gateway address (NetworkPolicy judges them at the backend's ingress).
type ingressDialer struct{ s *stack.Stack }

func (d ingressDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("ingress dial %s %s: want tcp to IP:port", network, addr)
	}
	return d.s.DialTCP(ctx, netip.Addr{}, ap)
}

// ingressState is what the last syncIngress saw.
type ingressState struct {
	ings     []*networkingv1.Ingress
	secrets  []*corev1.Secret
	svcs     []*corev1.Service
	slices   []*discoveryv1.EndpointSlice
	problems string // the last problems logged
}

// syncIngress gives the Ingress controller the cluster's Ingresses, TLS Secrets and the Services'
// ready endpoints when any of them changed, and logs the problems of invalid Ingresses.
func (a *Agent) syncIngress() {
	if a.ingress == nil {
		return
	}
	src := a.opts.Source
	ings, secrets, svcs, eps := src.Ingresses(), src.Secrets(), src.Services(), src.EndpointSlices()
	st := &a.ingressState
	if slices.Equal(ings, st.ings) && slices.Equal(secrets, st.secrets) && slices.Equal(svcs, st.svcs) && slices.Equal(eps, st.slices) {
		return
	}
	st.ings, st.secrets, st.svcs, st.slices = ings, secrets, svcs, eps
	problems := a.ingress.Update(ingress.Config{
		Ingresses:    ings,
		Secrets:      secrets,
		Services:     ingressServices(svcs, eps, a.opts.NodeName),
		DefaultClass: true,
	})
	var lines []string
	for _, p := range problems {
		lines = append(lines, fmt.Sprintf("ingress %s/%s: %s: %s", p.Namespace, p.Name, p.Field, p.Message))
	}
	if msg := strings.Join(lines, "; "); msg != st.problems {
		st.problems = msg
		for _, l := range lines {
			a.log.Warn("invalid Ingress rule skipped", "problem", l)
		}
	}
	if a.opts.Ingress != nil {
		a.opts.Ingress.ReportIngressProblems(a.opts.NodeName, problems)
	}
}

// ingressServices converts Services and their EndpointSlices into the controller's view: each
// port's ready endpoints.
func ingressServices(svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice, node string) []ingress.Service {
	table := proxyServices(svcs, eps, node)
	out := make([]ingress.Service, 0, len(table))
	for _, s := range table {
		is := ingress.Service{Namespace: s.Namespace, Name: s.Name}
		for _, p := range s.Ports {
			if p.Protocol != 6 {
				continue
			}
			ip := ingress.ServicePort{Name: p.Name, Port: int32(p.Port)}
			for _, e := range p.Endpoints {
				if e.Ready {
					ip.Endpoints = append(ip.Endpoints, ingress.Endpoint{Addr: e.Addr})
				}
			}
			is.Ports = append(is.Ports, ip)
		}
		out = append(out, is)
	}
	return out
}
