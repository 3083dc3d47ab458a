package clusterdns

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// question is what the Server keeps of a client's query to build its
// answer, now or after an upstream round trip: plain values, nothing that
// refers to the caller's buffer.
type question struct {
	id     uint16
	opcode int
	rd, cd bool
	q      dns.Question // as the client spelled it
	edns   bool         // the query had an OPT record
	do     bool         // DNSSEC OK
	limit  int          // the largest answer the client takes
}

// plan is upstream work a query needs: the name to resolve there, and the
// CNAME chain (from an ExternalName) to put before the upstream's answer.
type plan struct {
	name   string
	qtype  uint16
	qclass uint16
	prefix []dns.RR // nil: a plain forward; else the zone's CNAME chain
}

// result is an answer from the zone, before header and EDNS.
type result struct {
	rcode  int
	answer []dns.RR
	ns     []dns.RR
	extra  []dns.RR
	chase  string // a CNAME target outside the zone, to resolve upstream
}

// maxChain bounds the CNAME chain followed inside the zone (CoreDNS stops
// at 8 records).
const maxChain = 8

// resolve answers req from the zone, or says what to forward. req has been
// unpacked and is a query (QR clear). It never returns both nil.
func (s *Server) resolve(z *zone, req *dns.Msg, tcp bool) (*dns.Msg, *question, *plan) {
	qi := &question{id: req.Id, opcode: req.Opcode, rd: req.RecursionDesired, cd: req.CheckingDisabled, limit: dns.MinMsgSize}
	if len(req.Question) > 0 {
		qi.q = req.Question[0]
	}
	var opt *dns.OPT
	nOpt := 0
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opt = o
			nOpt++
		}
	}
	if opt != nil {
		qi.edns, qi.do = true, opt.Do()
		qi.limit = int(max(min(opt.UDPSize(), s.udpSize), dns.MinMsgSize))
	}
	if tcp {
		qi.limit = dns.MaxMsgSize
	}
	switch {
	case req.Opcode != dns.OpcodeQuery:
		return s.errorReply(qi, len(req.Question) == 1, dns.RcodeNotImplemented), qi, nil
	case len(req.Question) != 1 || nOpt > 1:
		return s.errorReply(qi, len(req.Question) == 1, dns.RcodeFormatError), qi, nil
	case opt != nil && opt.Version() != 0:
		return s.errorReply(qi, true, dns.RcodeBadVers), qi, nil
	}
	q := qi.q
	if q.Qclass != dns.ClassINET {
		return s.errorReply(qi, true, dns.RcodeRefused), qi, nil
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return s.errorReply(qi, true, dns.RcodeRefused), qi, nil
	case dns.TypeOPT:
		return s.errorReply(qi, true, dns.RcodeFormatError), qi, nil
	case dns.TypeMAILA, dns.TypeMAILB, dns.TypeTSIG, dns.TypeTKEY:
		return s.errorReply(qi, true, dns.RcodeNotImplemented), qi, nil
	}
	lname := strings.ToLower(q.Name)
	if z == nil {
		if inDomain(lname, s.origin) {
			// No Records yet: a name error now would be cached by clients.
			return s.errorReply(qi, true, dns.RcodeServerFailure), qi, nil
		}
		return nil, qi, &plan{name: q.Name, qtype: q.Qtype, qclass: q.Qclass}
	}
	var res result
	if z.inZone(lname) {
		z.lookup(&res, q.Name, lname, q.Qtype, 0)
	} else if i, ok := z.names[lname]; ok {
		z.lookupNode(&res, &z.nodes[i], q.Name, q.Qtype, 0)
	} else {
		return nil, qi, &plan{name: q.Name, qtype: q.Qtype, qclass: q.Qclass}
	}
	if res.chase != "" {
		return nil, qi, &plan{name: res.chase, qtype: q.Qtype, qclass: q.Qclass, prefix: res.answer}
	}
	m := s.header(qi, res.rcode)
	m.Authoritative = true
	m.Answer, m.Ns, m.Extra = res.answer, res.ns, res.extra
	return s.finish(qi, m), qi, nil
}

// header starts the answer to qi.
func (s *Server) header(qi *question, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = qi.id
	m.Response = true
	m.Opcode = qi.opcode
	if qi.opcode == dns.OpcodeQuery {
		m.RecursionDesired, m.CheckingDisabled = qi.rd, qi.cd
	}
	m.RecursionAvailable = true
	m.Rcode = rcode
	m.Question = []dns.Question{qi.q}
	m.Compress = true
	return m
}

// errorReply is an answer with rcode and no records; it echoes the question
// when there was exactly one.
func (s *Server) errorReply(qi *question, withQuestion bool, rcode int) *dns.Msg {
	m := s.header(qi, rcode)
	if !withQuestion {
		m.Question = nil
	}
	return s.finish(qi, m)
}

// finish adds the OPT record of an EDNS answer and truncates m to what the
// client takes, setting TC when answer records had to go.
func (s *Server) finish(qi *question, m *dns.Msg) *dns.Msg {
	if qi.edns {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(s.udpSize)
		if qi.do {
			o.SetDo()
		}
		m.Extra = append(m.Extra, o)
	}
	if m.Len() > qi.limit {
		m.Truncate(qi.limit)
		m.Compress = true
	}
	return m
}

// lookup answers qtype at lname (a name in the zone, lowercase), with qname
// (as asked) as the owner of the records at that name.
func (z *zone) lookup(res *result, qname, lname string, qtype uint16, depth int) {
	i, ok := z.names[lname]
	if !ok {
		res.rcode = dns.RcodeNameError
		res.ns = append(res.ns, z.soa(z.origin))
		return
	}
	z.lookupNode(res, &z.nodes[i], qname, qtype, depth)
}

func (z *zone) lookupNode(res *result, n *node, qname string, qtype uint16, depth int) {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: qname, Rrtype: t, Class: dns.ClassINET, Ttl: z.ttl}
	}
	if n.cname() != "" && qtype != dns.TypeCNAME {
		res.answer = append(res.answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: n.cname()})
		if qtype == dns.TypeANY || depth >= maxChain {
			return
		}
		if z.inZone(n.cname()) {
			z.lookup(res, n.cname(), n.cname(), qtype, depth+1)
			return
		}
		if i, ok := z.names[n.cname()]; ok { // one of our reverse names
			z.lookupNode(res, &z.nodes[i], n.cname(), qtype, depth+1)
			return
		}
		res.chase = n.cname()
		return
	}
	before := len(res.answer)
	if qtype == dns.TypeA || qtype == dns.TypeANY {
		for _, ip := range n.a {
			res.answer = append(res.answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip.AsSlice()})
		}
	}
	if qtype == dns.TypeAAAA || qtype == dns.TypeANY {
		for _, ip := range n.aaaa {
			res.answer = append(res.answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip.AsSlice()})
		}
	}
	if qtype == dns.TypeCNAME && n.cname() != "" {
		res.answer = append(res.answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: n.cname()})
	}
	if (qtype == dns.TypeSRV || qtype == dns.TypeANY) && len(n.srv()) > 0 {
		z.srv(res, n.srv(), hdr(dns.TypeSRV))
	}
	if qtype == dns.TypePTR || qtype == dns.TypeANY {
		for _, p := range n.ptr() {
			res.answer = append(res.answer, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: p})
		}
	}
	if (qtype == dns.TypeTXT || qtype == dns.TypeANY) && n.txt() != "" {
		h := hdr(dns.TypeTXT)
		h.Ttl = dnsVersionTTL
		res.answer = append(res.answer, &dns.TXT{Hdr: h, Txt: []string{n.txt()}})
	}
	if n.flags&nodeApex != 0 {
		if qtype == dns.TypeSOA || qtype == dns.TypeANY {
			soa := z.soa(qname)
			res.answer = append(res.answer, soa)
		}
		if qtype == dns.TypeNS || qtype == dns.TypeANY {
			res.answer = append(res.answer, &dns.NS{Hdr: hdr(dns.TypeNS), Ns: z.nsName})
			z.addresses(res, z.nsName)
		}
	}
	if len(res.answer) == before {
		// NODATA
		switch {
		case n.flags&nodeReverse4 != 0:
			res.ns = append(res.ns, z.soa("in-addr.arpa."))
		case n.flags&nodeReverse6 != 0:
			res.ns = append(res.ns, z.soa("ip6.arpa."))
		default:
			res.ns = append(res.ns, z.soa(z.origin))
		}
	}
}

// addresses adds the A and AAAA records of the zone name target to the
// additional section.
func (z *zone) addresses(res *result, target string) {
	i, ok := z.names[target]
	if !ok {
		return
	}
	n := &z.nodes[i]
	for _, ip := range n.a {
		res.extra = append(res.extra, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: z.ttl}, A: ip.AsSlice()})
	}
	for _, ip := range n.aaaa {
		res.extra = append(res.extra, &dns.AAAA{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: z.ttl}, AAAA: ip.AsSlice()})
	}
}

// srv adds the SRV records of targets (priority 0, the weight 100 spread
// evenly, at least 1, as CoreDNS does) and their targets' addresses.
func (z *zone) srv(res *result, targets []srvTarget, hdr dns.RR_Header) {
	type key struct {
		target string
		port   uint16
	}
	type addrKey struct {
		target string
		addr   netip.Addr
	}
	seen := make(map[key]struct{}, len(targets))
	seenAddr := make(map[addrKey]struct{}, len(targets))
	start := len(res.answer)
	for _, t := range targets {
		if _, dup := seen[key{t.target, t.port}]; dup {
			continue
		}
		seen[key{t.target, t.port}] = struct{}{}
		res.answer = append(res.answer, &dns.SRV{Hdr: hdr, Port: t.port, Target: t.target})
		for _, ip := range t.addrs {
			ip = ip.Unmap()
			if !ip.IsValid() {
				continue
			}
			if _, dup := seenAddr[addrKey{t.target, ip}]; dup {
				continue
			}
			seenAddr[addrKey{t.target, ip}] = struct{}{}
			h := dns.RR_Header{Name: t.target, Class: dns.ClassINET, Ttl: z.ttl}
			if ip.Is4() {
				h.Rrtype = dns.TypeA
				res.extra = append(res.extra, &dns.A{Hdr: h, A: ip.AsSlice()})
			} else {
				h.Rrtype = dns.TypeAAAA
				res.extra = append(res.extra, &dns.AAAA{Hdr: h, AAAA: ip.AsSlice()})
			}
		}
	}
	n := len(res.answer) - start
	weight := uint16(max(100/n, 1))
	for _, rr := range res.answer[start:] {
		rr.(*dns.SRV).Weight = weight
	}
}

// soa is the zone's SOA record with owner name (the origin, or a reverse
// zone's apex for negative answers about our reverse names).
func (z *zone) soa(owner string) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: min(z.ttl, 300)},
		Ns:      z.nsName,
		Mbox:    z.hostmaster,
		Serial:  z.serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  z.ttl,
	}
}
