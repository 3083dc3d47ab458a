package clusterdns_test

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns"
)

// TestRecordsEdgeCases: names that are not DNS labels are skipped without
// harming the rest; IPv6 pods; endpoints without their own ports; hostnames
// in capitals; duplicate endpoints.
func TestRecordsEdgeCases(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	http := []clusterdns.Port{{Name: "http", Protocol: "TCP", Port: 8080}}
	r := clusterdns.Records{
		Services: []clusterdns.Service{
			{Namespace: "default", Name: "bad name!", ClusterIPs: addrs("10.96.1.1")},
			{Namespace: "Bad.NS", Name: "x", ClusterIPs: addrs("10.96.1.2")},
			{Namespace: "default", Name: "ok", ClusterIPs: addrs("10.96.1.3"), Ports: []clusterdns.Port{{Name: "bad port name!", Port: 1}, {Name: "http", Protocol: "tcp", Port: 80}}},
			{Namespace: "default", Name: "hl", Headless: true, Ports: http, Endpoints: []clusterdns.Endpoint{
				{Addr: netip.MustParseAddr("10.244.5.1"), Hostname: "Pod-A", Ready: true},
				{Addr: netip.MustParseAddr("10.244.5.1"), Hostname: "Pod-A", Ready: true}, // duplicate
				{Addr: netip.MustParseAddr("fd00:10:244::5"), Ready: true},
				{Addr: netip.MustParseAddr("10.244.5.2"), Hostname: "bad host!", Ready: true},
			}},
			{Namespace: "default", Name: "extbad", ExternalName: "bad..name"},
		},
		Pods: []clusterdns.Pod{
			{Namespace: "default", Name: "v6", IP: netip.MustParseAddr("fd00:10:244::7")},
			{Namespace: "default", Name: "mapped", IP: netip.MustParseAddr("::ffff:10.244.5.9")},
		},
	}
	s.Update(r)
	for _, tt := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"ok.default.svc.cluster.local.", dns.TypeA, "ok.default.svc.cluster.local. 5 IN A 10.96.1.3"},
		{"_http._tcp.ok.default.svc.cluster.local.", dns.TypeSRV, "_http._tcp.ok.default.svc.cluster.local. 5 IN SRV 0 100 80 ok.default.svc.cluster.local."},
		{"pod-a.hl.default.svc.cluster.local.", dns.TypeA, "pod-a.hl.default.svc.cluster.local. 5 IN A 10.244.5.1"},
		{"hl.default.svc.cluster.local.", dns.TypeA, "hl.default.svc.cluster.local. 5 IN A 10.244.5.1"},
		{"hl.default.svc.cluster.local.", dns.TypeAAAA, "hl.default.svc.cluster.local. 5 IN AAAA fd00:10:244::5"},
		{"fd00-10-244--5.hl.default.svc.cluster.local.", dns.TypeAAAA, "fd00-10-244--5.hl.default.svc.cluster.local. 5 IN AAAA fd00:10:244::5"},
		{"fd00-10-244--7.default.pod.cluster.local.", dns.TypeAAAA, "fd00-10-244--7.default.pod.cluster.local. 5 IN AAAA fd00:10:244::7"},
		{"10-244-5-9.default.pod.cluster.local.", dns.TypeA, "10-244-5-9.default.pod.cluster.local. 5 IN A 10.244.5.9"},
		{"7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR fd00-10-244--7.default.pod.cluster.local."},
	} {
		m := exchange(t, s, query(tt.name, tt.qtype))
		if len(m.Answer) != 1 || render(&dns.Msg{Answer: m.Answer})[len("NOERROR\nAN "):] != tt.want+"\n" {
			t.Errorf("%s %s:\n%s\nwant %s", tt.name, dns.TypeToString[tt.qtype], render(m), tt.want)
		}
	}
	// Endpoints without ports take the Service's: SRV with 8080.
	m := exchange(t, s, query("_http._tcp.hl.default.svc.cluster.local.", dns.TypeSRV))
	if len(m.Answer) != 2 {
		t.Errorf("headless SRV:\n%s", render(m))
	}
	for _, name := range []string{"x.bad.ns.svc.cluster.local.", "extbad.default.svc.cluster.local.", "10-244-5-2.hl.default.svc.cluster.local."} {
		if m := exchange(t, s, query(name, dns.TypeA)); m.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %s, want NXDOMAIN", name, dns.RcodeToString[m.Rcode])
		}
	}
}

// TestConcurrentUpdate: queries during Updates see one snapshot or the
// other (run with -race).
func TestConcurrentUpdate(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	a, b := fixture(), fixture()
	b.Services[1].ClusterIPs = addrs("10.96.0.21")
	s.Update(a)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				s.Update(b)
			} else {
				s.Update(a)
			}
		}
	}()
	for range 2000 {
		m := exchange(t, s, query("web.default.svc.cluster.local.", dns.TypeA))
		if len(m.Answer) != 1 {
			t.Fatalf("answer during Update:\n%s", render(m))
		}
		if ip := m.Answer[0].(*dns.A).A.String(); ip != "10.96.0.20" && ip != "10.96.0.21" {
			t.Fatalf("address %s", ip)
		}
	}
	close(stop)
	wg.Wait()
}
