package clusterdns_test

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns"
)

// soa is the authority record of negative answers at the fixture's serial
// (the fake clock's Unix time at Update).
const soa = "NS cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1767225600 7200 1800 86400 5"

func TestGolden(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	s.Update(fixture())
	tests := []struct {
		name string
		q    *dns.Msg
		want string
	}{
		{"ClusterIP A", query("web.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q web.default.svc.cluster.local. IN A
			AN web.default.svc.cluster.local. 5 IN A 10.96.0.20`},
		{"ClusterIP AAAA NODATA", query("web.default.svc.cluster.local.", dns.TypeAAAA), `
			NOERROR qr aa rd ra
			Q web.default.svc.cluster.local. IN AAAA
			` + soa},
		{"dual-stack A", query("dual.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q dual.default.svc.cluster.local. IN A
			AN dual.default.svc.cluster.local. 5 IN A 10.96.0.30`},
		{"dual-stack AAAA", query("dual.default.svc.cluster.local.", dns.TypeAAAA), `
			NOERROR qr aa rd ra
			Q dual.default.svc.cluster.local. IN AAAA
			AN dual.default.svc.cluster.local. 5 IN AAAA fd00::30`},
		{"case preserved", query("WeB.Default.SVC.Cluster.Local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q WeB.Default.SVC.Cluster.Local. IN A
			AN WeB.Default.SVC.Cluster.Local. 5 IN A 10.96.0.20`},
		{"headless A: ready endpoints", query("db.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q db.default.svc.cluster.local. IN A
			AN db.default.svc.cluster.local. 5 IN A 10.244.1.5
			AN db.default.svc.cluster.local. 5 IN A 10.244.2.6`},
		{"headless publishNotReadyAddresses", query("pnr.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q pnr.default.svc.cluster.local. IN A
			AN pnr.default.svc.cluster.local. 5 IN A 10.244.3.8`},
		{"endpoint hostname A", query("db-0.db.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q db-0.db.default.svc.cluster.local. IN A
			AN db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5`},
		{"endpoint dashed-IP A", query("10-244-2-6.db.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q 10-244-2-6.db.default.svc.cluster.local. IN A
			AN 10-244-2-6.db.default.svc.cluster.local. 5 IN A 10.244.2.6`},
		{"not-ready endpoint NXDOMAIN", query("10-244-3-7.db.default.svc.cluster.local.", dns.TypeA), `
			NXDOMAIN qr aa rd ra
			Q 10-244-3-7.db.default.svc.cluster.local. IN A
			` + soa},
		{"pod hostname.subdomain A", query("h1.db.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q h1.db.default.svc.cluster.local. IN A
			AN h1.db.default.svc.cluster.local. 5 IN A 10.244.1.11`},
		{"SRV ClusterIP named port", query("_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV), `
			NOERROR qr aa rd ra
			Q _http._tcp.web.default.svc.cluster.local. IN SRV
			AN _http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local.
			AR web.default.svc.cluster.local. 5 IN A 10.96.0.20`},
		{"SRV dual-stack: one record, both addresses", query("_http._tcp.dual.default.svc.cluster.local.", dns.TypeSRV), `
			NOERROR qr aa rd ra
			Q _http._tcp.dual.default.svc.cluster.local. IN SRV
			AN _http._tcp.dual.default.svc.cluster.local. 5 IN SRV 0 100 80 dual.default.svc.cluster.local.
			AR dual.default.svc.cluster.local. 5 IN A 10.96.0.30
			AR dual.default.svc.cluster.local. 5 IN AAAA fd00::30`},
		{"SRV headless: one per ready endpoint, target ports", query("_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV), `
			NOERROR qr aa rd ra
			Q _pg._tcp.db.default.svc.cluster.local. IN SRV
			AN _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.
			AN _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5433 10-244-2-6.db.default.svc.cluster.local.
			AR db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5
			AR 10-244-2-6.db.default.svc.cluster.local. 5 IN A 10.244.2.6`},
		{"SRV of the Service name: every port", query("web.default.svc.cluster.local.", dns.TypeSRV), `
			NOERROR qr aa rd ra
			Q web.default.svc.cluster.local. IN SRV
			AN web.default.svc.cluster.local. 5 IN SRV 0 33 80 web.default.svc.cluster.local.
			AN web.default.svc.cluster.local. 5 IN SRV 0 33 9090 web.default.svc.cluster.local.
			AN web.default.svc.cluster.local. 5 IN SRV 0 33 53 web.default.svc.cluster.local.
			AR web.default.svc.cluster.local. 5 IN A 10.96.0.20`},
		{"SRV wrong protocol NXDOMAIN", query("_http._udp.web.default.svc.cluster.local.", dns.TypeSRV), `
			NXDOMAIN qr aa rd ra
			Q _http._udp.web.default.svc.cluster.local. IN SRV
			` + soa},
		{"SRV unknown port NXDOMAIN", query("_nope._tcp.web.default.svc.cluster.local.", dns.TypeSRV), `
			NXDOMAIN qr aa rd ra
			Q _nope._tcp.web.default.svc.cluster.local. IN SRV
			` + soa},
		{"SRV _proto empty non-terminal NODATA", query("_tcp.web.default.svc.cluster.local.", dns.TypeSRV), `
			NOERROR qr aa rd ra
			Q _tcp.web.default.svc.cluster.local. IN SRV
			` + soa},
		{"A at an SRV name NODATA", query("_http._tcp.web.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q _http._tcp.web.default.svc.cluster.local. IN A
			` + soa},
		{"PTR ClusterIP", query("20.0.96.10.in-addr.arpa.", dns.TypePTR), `
			NOERROR qr aa rd ra
			Q 20.0.96.10.in-addr.arpa. IN PTR
			AN 20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local.`},
		{"PTR IPv6 ClusterIP", query("0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR), `
			NOERROR qr aa rd ra
			Q 0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. IN PTR
			AN 0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.default.svc.cluster.local.`},
		{"PTR endpoint hostname (over the pod name)", query("5.1.244.10.in-addr.arpa.", dns.TypePTR), `
			NOERROR qr aa rd ra
			Q 5.1.244.10.in-addr.arpa. IN PTR
			AN 5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local.`},
		{"PTR endpoint dashed", query("6.2.244.10.in-addr.arpa.", dns.TypePTR), `
			NOERROR qr aa rd ra
			Q 6.2.244.10.in-addr.arpa. IN PTR
			AN 6.2.244.10.in-addr.arpa. 5 IN PTR 10-244-2-6.db.default.svc.cluster.local.`},
		{"PTR pod", query("10.1.244.10.in-addr.arpa.", dns.TypePTR), `
			NOERROR qr aa rd ra
			Q 10.1.244.10.in-addr.arpa. IN PTR
			AN 10.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-10.default.pod.cluster.local.`},
		{"A at a reverse name NODATA", query("10.1.244.10.in-addr.arpa.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q 10.1.244.10.in-addr.arpa. IN A
			NS in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1767225600 7200 1800 86400 5`},
		{"ExternalName in-cluster target", query("ext.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q ext.default.svc.cluster.local. IN A
			AN ext.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.
			AN web.default.svc.cluster.local. 5 IN A 10.96.0.20`},
		{"ExternalName in-cluster target, NODATA", query("ext.default.svc.cluster.local.", dns.TypeAAAA), `
			NOERROR qr aa rd ra
			Q ext.default.svc.cluster.local. IN AAAA
			AN ext.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.
			` + soa},
		{"ExternalName CNAME query", query("extout.default.svc.cluster.local.", dns.TypeCNAME), `
			NOERROR qr aa rd ra
			Q extout.default.svc.cluster.local. IN CNAME
			AN extout.default.svc.cluster.local. 5 IN CNAME www.example.org.`},
		{"pod A verified", query("10-244-1-10.default.pod.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q 10-244-1-10.default.pod.cluster.local. IN A
			AN 10-244-1-10.default.pod.cluster.local. 5 IN A 10.244.1.10`},
		{"pod A unknown IP", query("10-244-9-9.default.pod.cluster.local.", dns.TypeA), `
			NXDOMAIN qr aa rd ra
			Q 10-244-9-9.default.pod.cluster.local. IN A
			` + soa},
		{"pod A in another namespace", query("10-244-1-10.empty.pod.cluster.local.", dns.TypeA), `
			NXDOMAIN qr aa rd ra
			Q 10-244-1-10.empty.pod.cluster.local. IN A
			` + soa},
		{"NS", query("cluster.local.", dns.TypeNS), `
			NOERROR qr aa rd ra
			Q cluster.local. IN NS
			AN cluster.local. 5 IN NS ns.dns.cluster.local.
			AR ns.dns.cluster.local. 5 IN A 10.96.0.10`},
		{"SOA", query("cluster.local.", dns.TypeSOA), `
			NOERROR qr aa rd ra
			Q cluster.local. IN SOA
			AN cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1767225600 7200 1800 86400 5`},
		{"ns.dns A", query("ns.dns.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q ns.dns.cluster.local. IN A
			AN ns.dns.cluster.local. 5 IN A 10.96.0.10`},
		{"dns-version TXT", query("dns-version.cluster.local.", dns.TypeTXT), `
			NOERROR qr aa rd ra
			Q dns-version.cluster.local. IN TXT
			AN dns-version.cluster.local. 28800 IN TXT "1.1.0"`},
		{"apex A NODATA", query("cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q cluster.local. IN A
			` + soa},
		{"svc empty non-terminal NODATA", query("svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q svc.cluster.local. IN A
			` + soa},
		{"namespace NODATA", query("default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q default.svc.cluster.local. IN A
			` + soa},
		{"namespace without Services NODATA", query("empty.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q empty.svc.cluster.local. IN A
			` + soa},
		{"unknown namespace NXDOMAIN", query("nope.svc.cluster.local.", dns.TypeA), `
			NXDOMAIN qr aa rd ra
			Q nope.svc.cluster.local. IN A
			` + soa},
		{"search-path expansion NXDOMAIN", query("example.org.default.svc.cluster.local.", dns.TypeA), `
			NXDOMAIN qr aa rd ra
			Q example.org.default.svc.cluster.local. IN A
			` + soa},
		{"Service without ClusterIP NODATA", query("noip.default.svc.cluster.local.", dns.TypeA), `
			NOERROR qr aa rd ra
			Q noip.default.svc.cluster.local. IN A
			` + soa},
		{"MX NODATA", query("web.default.svc.cluster.local.", dns.TypeMX), `
			NOERROR qr aa rd ra
			Q web.default.svc.cluster.local. IN MX
			` + soa},
		{"ANY: every record of the name", query("kubernetes.default.svc.cluster.local.", dns.TypeANY), `
			NOERROR qr aa rd ra
			Q kubernetes.default.svc.cluster.local. IN ANY
			AN kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1
			AN kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 kubernetes.default.svc.cluster.local.
			AR kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1`},
		{"EDNS0 echoed with DO", query("web.default.svc.cluster.local.", dns.TypeA, withEDNS(4096, true)), `
			NOERROR qr aa rd ra
			Q web.default.svc.cluster.local. IN A
			AN web.default.svc.cluster.local. 5 IN A 10.96.0.20
			AR OPT udp=1232 do=true version=0`},
		{"EDNS0 version 1 BADVERS", query("web.default.svc.cluster.local.", dns.TypeA, withEDNS(4096, false), func(m *dns.Msg) { m.IsEdns0().SetVersion(1) }), `
			BADVERS qr rd ra
			Q web.default.svc.cluster.local. IN A
			AR OPT udp=1232 do=false version=0`},
		{"CD and no RD echoed", query("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.RecursionDesired = false; m.CheckingDisabled = true }), `
			NOERROR qr aa ra cd
			Q web.default.svc.cluster.local. IN A
			AN web.default.svc.cluster.local. 5 IN A 10.96.0.20`},
		{"AXFR REFUSED", query("cluster.local.", dns.TypeAXFR), `
			REFUSED qr rd ra
			Q cluster.local. IN AXFR`},
		{"IXFR REFUSED", query("cluster.local.", dns.TypeIXFR), `
			REFUSED qr rd ra
			Q cluster.local. IN IXFR`},
		{"class CHAOS REFUSED", query("version.bind.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), `
			REFUSED qr rd ra
			Q version.bind. CH TXT`},
		{"class ANY REFUSED", query("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }), `
			REFUSED qr rd ra
			Q web.default.svc.cluster.local. ANY A`},
		{"MAILB NOTIMP", query("web.default.svc.cluster.local.", dns.TypeMAILB), `
			NOTIMP qr rd ra
			Q web.default.svc.cluster.local. IN MAILB`},
		{"opcode STATUS NOTIMP", query("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Opcode = dns.OpcodeStatus }), `
			NOTIMP qr ra
			Q web.default.svc.cluster.local. IN A`},
		{"no question FORMERR", query("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question = nil }), `
			FORMERR qr rd ra`},
		{"two questions FORMERR", query("web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), `
			FORMERR qr rd ra`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(exchange(t, s, tt.q))
			if want := golden(tt.want); got != want {
				t.Errorf("answer:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	st := s.Stats()
	if st.Queries != uint64(len(tests)) || st.ByRcode["BADVERS"] != 1 || st.ByRcode["NXDOMAIN"] != 7 || st.Dropped != 0 || st.Forwarded != 0 {
		t.Errorf("stats after the golden queries: %+v", st)
	}
}

// TestHandle checks the convenience entry point: zone answers, nil for
// forwarded names, the CNAME alone for an ExternalName outside the zone.
func TestHandle(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	s.Update(fixture())
	if m := s.Handle(query("web.default.svc.cluster.local.", dns.TypeA), podAddr, false); m == nil || len(m.Answer) != 1 {
		t.Errorf("Handle(web A) = %v, want one A", m)
	}
	if m := s.Handle(query("example.org.", dns.TypeA), podAddr, false); m != nil {
		t.Errorf("Handle(example.org A) = %v, want nil (forward)", m)
	}
	m := s.Handle(query("extout.default.svc.cluster.local.", dns.TypeA), podAddr, false)
	want := golden(`
		NOERROR qr aa rd ra
		Q extout.default.svc.cluster.local. IN A
		AN extout.default.svc.cluster.local. 5 IN CNAME www.example.org.`)
	if m == nil || render(m) != want {
		t.Errorf("Handle(extout A) =\n%v\nwant:\n%s", m, want)
	}
}

// TestBeforeUpdate: cluster names are SERVFAIL until the first Update, so
// that clients do not cache a name error.
func TestBeforeUpdate(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	m := exchange(t, s, query("web.default.svc.cluster.local.", dns.TypeA))
	if m.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s before Update, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	s.Update(fixture())
	m = exchange(t, s, query("web.default.svc.cluster.local.", dns.TypeA))
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("after Update:\n%s", render(m))
	}
}

// TestUpdateSwaps: answers follow Update, and the serial grows.
func TestUpdateSwaps(t *testing.T) {
	s, _ := newServer(t, clusterdns.Options{})
	r := fixture()
	s.Update(r)
	serial := func() uint32 {
		m := exchange(t, s, query("cluster.local.", dns.TypeSOA))
		return m.Answer[0].(*dns.SOA).Serial
	}
	s1 := serial()
	r2 := fixture()
	r2.Services = append(r2.Services, clusterdns.Service{Namespace: "default", Name: "new", ClusterIPs: addrs("10.96.0.99")})
	r2.Services[1].ClusterIPs = addrs("10.96.0.21") // web moved
	s.Update(r2)
	if s2 := serial(); s2 <= s1 {
		t.Errorf("serial %d after Update, was %d", s2, s1)
	}
	for name, want := range map[string]string{"new": "10.96.0.99", "web": "10.96.0.21"} {
		m := exchange(t, s, query(name+".default.svc.cluster.local.", dns.TypeA))
		if len(m.Answer) != 1 || !strings.HasSuffix(m.Answer[0].String(), "\t"+want) {
			t.Errorf("%s after Update:\n%s", name, render(m))
		}
	}
	m := exchange(t, s, query("20.0.96.10.in-addr.arpa.", dns.TypePTR))
	if m.Rcode != dns.RcodeServerFailure && len(m.Answer) != 0 { // forwarded to the closed upstream
		t.Errorf("old ClusterIP's PTR after Update:\n%s", render(m))
	}
}
