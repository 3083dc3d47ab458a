package clusterdns

import "net/netip"

// Fixture is the cluster of the golden tests, shared with the internal
// tests (fuzzing, the fast path's equivalence).
func Fixture() Records {
	a := netip.MustParseAddr
	pg := []Port{{Name: "pg", Protocol: "TCP", Port: 5432}}
	return Records{
		Namespaces: []string{"default", "empty"},
		Services: []Service{
			{Namespace: "default", Name: "kubernetes", ClusterIPs: []netip.Addr{a("10.96.0.1")}, Ports: []Port{{Name: "https", Protocol: "TCP", Port: 443}}},
			{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{a("10.96.0.20")}, Ports: []Port{
				{Name: "http", Protocol: "TCP", Port: 80},
				{Name: "metrics", Protocol: "TCP", Port: 9090},
				{Protocol: "UDP", Port: 53},
			}},
			{Namespace: "default", Name: "dual", ClusterIPs: []netip.Addr{a("10.96.0.30"), a("fd00::30")}, Ports: []Port{{Name: "http", Port: 80}}},
			{Namespace: "default", Name: "db", Headless: true, Ports: pg, Endpoints: []Endpoint{
				{Addr: a("10.244.1.5"), Hostname: "db-0", Ready: true, Ports: pg, PodNamespace: "default", PodName: "db-0"},
				{Addr: a("10.244.2.6"), Ready: true, Ports: []Port{{Name: "pg", Protocol: "TCP", Port: 5433}}},
				{Addr: a("10.244.3.7"), Ready: false, Ports: pg},
			}},
			{Namespace: "default", Name: "pnr", Headless: true, PublishNotReady: true, Endpoints: []Endpoint{
				{Addr: a("10.244.3.8"), Ready: false},
			}},
			{Namespace: "default", Name: "ext", ExternalName: "web.default.svc.cluster.local"},
			{Namespace: "default", Name: "extout", ExternalName: "www.example.org"},
			{Namespace: "default", Name: "noip"},
		},
		Pods: []Pod{
			{Namespace: "default", Name: "web-1", IP: a("10.244.1.10")},
			{Namespace: "default", Name: "db-0", IP: a("10.244.1.5"), Hostname: "db-0", Subdomain: "db"},
			{Namespace: "default", Name: "sub-1", IP: a("10.244.1.11"), Hostname: "h1", Subdomain: "db"},
		},
	}
}
