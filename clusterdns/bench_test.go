package clusterdns_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/clusterdns"
	"github.com/podnet/podnet/clusterdns/clusterdnstest"
)

// discard is a DatagramWriter that drops the answer.
type discard struct{}

func (discard) WriteDatagram(to, from netip.AddrPort, payload []byte) error { return nil }

// records10k is a cluster of n ClusterIP Services with two ports each (one
// named), every tenth one headless with 10 ready endpoints, and a pod per
// Service.
func records10k(n int) clusterdns.Records {
	var r clusterdns.Records
	r.Services = make([]clusterdns.Service, 0, n)
	for i := range n {
		ns := fmt.Sprintf("ns-%d", i%100)
		ip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
		svc := clusterdns.Service{
			Namespace: ns, Name: fmt.Sprintf("svc-%d", i),
			Ports: []clusterdns.Port{{Name: "http", Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}},
		}
		if i%10 == 9 {
			svc.Headless = true
			for j := range 10 {
				svc.Endpoints = append(svc.Endpoints, clusterdns.Endpoint{
					Addr: netip.AddrFrom4([4]byte{10, 245, byte(i >> 4), byte(i<<4 | j)}), Ready: true,
				})
			}
		} else {
			svc.ClusterIPs = []netip.Addr{ip}
		}
		r.Services = append(r.Services, svc)
		r.Pods = append(r.Pods, clusterdns.Pod{Namespace: ns, Name: fmt.Sprintf("pod-%d", i), IP: netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})})
	}
	return r
}

func benchServer(b *testing.B, opts clusterdns.Options) *clusterdns.Server {
	b.Helper()
	if opts.Domain == "" {
		opts.Domain = "cluster.local"
		opts.DNSIP = dnsAddr.Addr()
	}
	if len(opts.Upstreams) == 0 {
		opts.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}
	}
	s, err := clusterdns.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	s.Update(records10k(10000))
	return s
}

func packQuery(b *testing.B, name string, qtype uint16, edns bool) []byte {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns {
		q.SetEdns0(1232, false)
	}
	wire, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

// BenchmarkServeDatagramClusterA is the query most pods ask: the A record of
// a ClusterIP Service, among 10,000 Services.
func BenchmarkServeDatagramClusterA(b *testing.B) {
	s := benchServer(b, clusterdns.Options{})
	for _, edns := range []bool{false, true} {
		wire := packQuery(b, "svc-5000.ns-0.svc.cluster.local.", dns.TypeA, edns)
		b.Run(fmt.Sprintf("edns=%v", edns), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDatagram(podAddr, dnsAddr, wire, discard{})
			}
		})
	}
	wire := packQuery(b, "svc-5000.ns-0.svc.cluster.local.", dns.TypeA, false)
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.ServeDatagram(podAddr, dnsAddr, wire, discard{})
			}
		})
	})
}

// BenchmarkServeDatagramNegative measures the answers a search path
// produces: a miss (NXDOMAIN) and the AAAA of an IPv4 Service (NODATA).
func BenchmarkServeDatagramNegative(b *testing.B) {
	benchQueries(b, []benchQuery{
		{"NXDOMAIN", "example.org.ns-0.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},
		{"NODATA", "svc-5000.ns-0.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess},
	})
}

// BenchmarkServeDatagramGeneral measures queries the fast path leaves to the
// general path: a headless Service's SRV (10 records and their addresses)
// and a PTR.
func BenchmarkServeDatagramGeneral(b *testing.B) {
	benchQueries(b, []benchQuery{
		{"SRV-headless", "_http._tcp.svc-5009.ns-9.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess},
		{"PTR", "136.19.96.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess},
	})
}

type benchQuery struct {
	name  string
	qname string
	qtype uint16
	rcode int
}

func benchQueries(b *testing.B, qs []benchQuery) {
	s := benchServer(b, clusterdns.Options{})
	for _, tt := range qs {
		wire := packQuery(b, tt.qname, tt.qtype, true)
		w := clusterdnstest.NewWriter(1)
		s.ServeDatagram(podAddr, dnsAddr, wire, w)
		m := new(dns.Msg)
		if err := m.Unpack((<-w.C).Payload); err != nil || m.Rcode != tt.rcode || (tt.rcode == dns.RcodeSuccess && tt.qtype != dns.TypeAAAA && len(m.Answer) == 0) {
			b.Fatalf("%s: %v %v", tt.name, m, err)
		}
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDatagram(podAddr, dnsAddr, wire, discard{})
			}
		})
	}
}

// BenchmarkServeDatagramCached is a forwarded name answered from the
// upstream cache.
func BenchmarkServeDatagramCached(b *testing.B) {
	up := clusterdnstest.StartUpstream(b, clusterdnstest.Answer(60, "www.example.org. 300 IN A 93.184.216.34"))
	s := benchServer(b, clusterdns.Options{Domain: "cluster.local", Upstreams: []netip.AddrPort{up.Addr}})
	wire := packQuery(b, "www.example.org.", dns.TypeA, true)
	w := clusterdnstest.NewWriter(1)
	s.ServeDatagram(podAddr, dnsAddr, wire, w)
	<-w.C
	b.ReportAllocs()
	for b.Loop() {
		s.ServeDatagram(podAddr, dnsAddr, wire, discard{})
	}
	if st := s.Stats(); st.Forwarded != 1 {
		b.Fatalf("forwarded %d times, want once", st.Forwarded)
	}
}

// BenchmarkUpdate10kServices builds the index of 10,000 Services (a tenth
// headless with 10 endpoints) and 10,000 pods.
func BenchmarkUpdate10kServices(b *testing.B) {
	s, err := clusterdns.New(clusterdns.Options{Domain: "cluster.local", Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := records10k(10000)
	// The heap the index holds, besides the Records it shares.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s.Update(r)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportAllocs()
	for b.Loop() {
		s.Update(r)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "index-bytes")
}
