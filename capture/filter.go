package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Filter is a compiled filter expression (see the package doc for the
// language). A nil *Filter matches every packet. A Filter is immutable, so
// goroutines may share it.
type Filter struct {
	expr string
	root *node
}

// String returns the expression the filter was compiled from.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.expr
}

// Match reports whether the packet, of the link type, satisfies the
// filter. A predicate that needs a header the packet lacks or holds
// malformed makes no decision, so such a packet matches only if the rest
// of the expression decides without it; a packet of an unknown link type,
// or whose link header cannot be read, matches nothing (but a nil *Filter
// matches it). Match does not allocate.
func (f *Filter) Match(linkType uint32, pkt []byte) bool {
	if f == nil {
		return true
	}
	var l layers
	if !decode(linkType, pkt, &l) {
		return false
	}
	return f.root.eval(&l) == yes
}

// tri is a truth value of Kleene's three-valued logic: unknown is the
// value of a predicate on a header the packet does not hold in full.
type tri uint8

const (
	no tri = iota
	yes
	unknown
)

func truth(b bool) tri {
	if b {
		return yes
	}
	return no
}

type nodeKind uint8

const (
	kindAnd       nodeKind = iota // all kids
	kindOr                        // any kid
	kindNot                       // kids[0] negated
	kindEtherType                 // ip, ip6, arp
	kindIPProto                   // tcp, udp, sctp, icmp, icmp6
	kindAddr                      // host, net
	kindPort                      // port, portrange
)

type direction uint8

const (
	dirEither direction = iota // the default: src or dst
	dirSrc
	dirDst
)

func (d direction) match(src, dst bool) tri {
	switch d {
	case dirSrc:
		return truth(src)
	case dirDst:
		return truth(dst)
	default:
		return truth(src || dst)
	}
}

// node is a node of a compiled expression.
type node struct {
	kind nodeKind
	kids []*node // kindAnd, kindOr, kindNot
	dir  direction

	etherType uint16 // kindEtherType

	proto      uint8 // kindIPProto
	ipv4, ipv6 bool  // kindIPProto: the families whose packets may match

	prefix         netip.Prefix // kindAddr
	inIP, inARP    bool         // kindAddr: look at IP packets (of the prefix's family), at ARP packets
	tcp, udp       bool         // kindPort: the protocols whose ports match
	sctp           bool         // kindPort
	portLo, portHi uint16       // kindPort: the range, inclusive
}

func (n *node) eval(l *layers) tri {
	switch n.kind {
	case kindAnd:
		r := yes
		for _, k := range n.kids {
			switch k.eval(l) {
			case no:
				return no
			case unknown:
				r = unknown
			}
		}
		return r
	case kindOr:
		r := no
		for _, k := range n.kids {
			switch k.eval(l) {
			case yes:
				return yes
			case unknown:
				r = unknown
			}
		}
		return r
	case kindNot:
		switch n.kids[0].eval(l) {
		case yes:
			return no
		case no:
			return yes
		}
		return unknown
	case kindEtherType:
		return truth(l.etherType == n.etherType)
	case kindIPProto:
		switch {
		case l.etherType == etherTypeIPv4 && n.ipv4, l.etherType == etherTypeIPv6 && n.ipv6:
		default:
			return no
		}
		if !l.ipOK {
			return unknown
		}
		return truth(l.proto == n.proto)
	case kindAddr:
		switch l.etherType {
		case etherTypeIPv4, etherTypeIPv6:
			if !n.inIP || n.prefix.Addr().Is4() != (l.etherType == etherTypeIPv4) {
				return no
			}
			if !l.ipOK {
				return unknown
			}
		case etherTypeARP:
			if !n.inARP {
				return no
			}
			if !l.arpOK {
				return unknown
			}
		default:
			return no
		}
		return n.dir.match(n.prefix.Contains(l.src), n.prefix.Contains(l.dst))
	case kindPort:
		if l.etherType != etherTypeIPv4 && l.etherType != etherTypeIPv6 {
			return no
		}
		if !l.ipOK {
			return unknown
		}
		switch {
		case l.proto == protoTCP && n.tcp, l.proto == protoUDP && n.udp, l.proto == protoSCTP && n.sctp:
		default:
			return no
		}
		if !l.firstFrag {
			return no
		}
		if len(l.transport) < 4 {
			return unknown
		}
		src := binary.BigEndian.Uint16(l.transport[0:])
		dst := binary.BigEndian.Uint16(l.transport[2:])
		return n.dir.match(n.portLo <= src && src <= n.portHi, n.portLo <= dst && dst <= n.portHi)
	}
	return unknown
}

// ParseFilter compiles a filter expression. An empty (or blank) expression
// yields a nil *Filter, which matches every packet. An error names the
// expression, the 1-based byte position of the token at fault and the
// token: `filter "tcp port x": position 10: "x" is not a port number`.
func ParseFilter(expr string) (*Filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	p := &parser{expr: expr}
	p.tokenize()
	root, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		if t.kind == tokRParen {
			return nil, p.errorf(t, "%q without a matching \"(\"", t.text)
		}
		if err := p.tokenError(t); err != nil {
			return nil, err
		}
		return nil, p.errorf(t, "expected \"and\" or \"or\" before %s", describe(t))
	}
	return &Filter{expr: expr, root: root}, nil
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokWord
	tokLParen
	tokRParen
	tokNot
	tokAnd
	tokOr
	tokBad // & or | alone
)

type token struct {
	kind tokKind
	text string
	pos  int // 1-based byte offset in the expression
}

// describe names a token in an error message.
func describe(t token) string {
	if t.kind == tokEOF {
		return "the end"
	}
	return strconv.Quote(t.text)
}

// maxDepth bounds the nesting of parentheses and negations, which the
// parser and Match follow by recursion.
const maxDepth = 64

type parser struct {
	expr  string
	toks  []token
	i     int   // the next token
	depth int   // of parentheses and negations around the current token
	prev  token // the token consumed last, for error messages
	// last holds the qualifiers of the most recent primitive with a value,
	// which a bare value after and/or repeats; haveLast is false at the
	// start and after a protocol word.
	last     qualifiers
	haveLast bool
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return fmt.Errorf("filter %q: position %d: %s", p.expr, t.pos, fmt.Sprintf(format, args...))
}

// isSpecial reports whether c ends a word.
func isSpecial(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f', '(', ')', '!', '&', '|':
		return true
	}
	return false
}

func (p *parser) tokenize() {
	s := p.expr
	for i := 0; i < len(s); {
		c := s[i]
		t := token{pos: i + 1}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			i++
			continue
		case c == '(':
			t.kind, t.text = tokLParen, "("
		case c == ')':
			t.kind, t.text = tokRParen, ")"
		case c == '!':
			t.kind, t.text = tokNot, "!"
		case c == '&' || c == '|':
			switch {
			case i+1 >= len(s) || s[i+1] != c:
				t.kind, t.text = tokBad, s[i:i+1]
			case c == '&':
				t.kind, t.text = tokAnd, "&&"
			default:
				t.kind, t.text = tokOr, "||"
			}
		default:
			j := i
			for j < len(s) && !isSpecial(s[j]) {
				j++
			}
			t.kind, t.text = tokWord, s[i:j]
			switch t.text {
			case "and":
				t.kind = tokAnd
			case "or":
				t.kind = tokOr
			case "not":
				t.kind = tokNot
			}
		}
		i += len(t.text)
		p.toks = append(p.toks, t)
	}
	p.toks = append(p.toks, token{kind: tokEOF, pos: len(s) + 1})
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peekNext() token { return p.toks[min(p.i+1, len(p.toks)-1)] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	p.prev = t
	return t
}

// parseExpr parses unary expressions joined by and/or, which have equal
// precedence and associate to the left.
func (p *parser) parseExpr() (*node, error) {
	left, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		var kind nodeKind
		switch t.kind {
		case tokAnd:
			kind = kindAnd
		case tokOr:
			kind = kindOr
		default:
			return left, nil
		}
		p.next()
		right, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		// and and or are associative, so a chain becomes one node.
		if left.kind == kind {
			left.kids = append(left.kids, right)
		} else {
			left = &node{kind: kind, kids: []*node{left, right}}
		}
	}
}

func (p *parser) parseUnary() (*node, error) {
	t := p.peek()
	switch t.kind {
	case tokNot, tokLParen:
		if p.depth == maxDepth {
			return nil, p.errorf(t, "nested more than %d deep", maxDepth)
		}
		p.depth++
		defer func() { p.depth-- }()
		p.next()
		if t.kind == tokNot {
			n, err := p.parseUnary()
			if err != nil {
				return nil, err
			}
			return &node{kind: kindNot, kids: []*node{n}}, nil
		}
		// The qualifiers a bare value repeats are those before the
		// parentheses, inside and after them, as in libpcap.
		last, haveLast := p.last, p.haveLast
		n, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tokRParen {
			if err := p.tokenError(c); err != nil {
				return nil, err
			}
			return nil, p.errorf(c, "expected \")\" for the \"(\" at position %d, found %s", t.pos, describe(c))
		}
		p.next()
		p.last, p.haveLast = last, haveLast
		return n, nil
	case tokWord:
		return p.parsePrimitive()
	default:
		if err := p.tokenError(t); err != nil {
			return nil, err
		}
		if p.i == 0 {
			return nil, p.errorf(t, "expected a primitive, found %s", describe(t))
		}
		return nil, p.errorf(t, "expected a primitive after %q, found %s", p.prev.text, describe(t))
	}
}

// Qualifiers of a primitive.
type protoQual uint8

const (
	protoAny protoQual = iota
	protoQualIP
	protoQualIP6
	protoQualARP
	protoQualTCP
	protoQualUDP
	protoQualSCTP
	protoQualICMP
	protoQualICMP6
)

func protoWord(s string) protoQual {
	switch s {
	case "ip":
		return protoQualIP
	case "ip6":
		return protoQualIP6
	case "arp":
		return protoQualARP
	case "tcp":
		return protoQualTCP
	case "udp":
		return protoQualUDP
	case "sctp":
		return protoQualSCTP
	case "icmp":
		return protoQualICMP
	case "icmp6":
		return protoQualICMP6
	}
	return protoAny
}

type addrType uint8

const (
	typeDefault addrType = iota // host implied
	typeHost
	typeNet
	typePort
	typePortRange
)

func typeWord(s string) addrType {
	switch s {
	case "host":
		return typeHost
	case "net":
		return typeNet
	case "port":
		return typePort
	case "portrange":
		return typePortRange
	}
	return typeDefault
}

func dirWord(s string) direction {
	switch s {
	case "src":
		return dirSrc
	case "dst":
		return dirDst
	}
	return dirEither
}

func isKeyword(s string) bool {
	return protoWord(s) != protoAny || typeWord(s) != typeDefault || dirWord(s) != dirEither
}

type qualifiers struct {
	proto   protoQual
	dir     direction
	typ     addrType
	protoAt token // the protocol word, if any, for error messages
}

// parsePrimitive parses [proto] [dir] [type] value, a protocol word alone,
// or a bare value that repeats the last qualifiers.
func (p *parser) parsePrimitive() (*node, error) {
	first := p.peek()
	var q qualifiers
	qualified := false
	if pq := protoWord(first.text); pq != protoAny {
		p.next()
		if next := p.peek(); next.kind != tokWord || (dirWord(next.text) == dirEither && typeWord(next.text) == typeDefault) {
			p.haveLast = false
			return protoNode(pq), nil
		}
		q.proto, q.protoAt, qualified = pq, first, true
	}
	if d := dirWord(p.peek().text); p.peek().kind == tokWord && d != dirEither {
		p.next()
		q.dir, qualified = d, true
	}
	if ty := typeWord(p.peek().text); p.peek().kind == tokWord && ty != typeDefault {
		p.next()
		q.typ, qualified = ty, true
	}
	if !qualified {
		if err := p.tokenError(first); err != nil {
			return nil, err
		}
		if !p.haveLast {
			return nil, p.unqualified(first)
		}
		q = p.last
	} else if err := p.checkProto(q); err != nil {
		return nil, err
	}
	v := p.peek()
	if err := p.tokenError(v); err != nil {
		return nil, err
	}
	if v.kind != tokWord || isKeyword(v.text) {
		return nil, p.errorf(v, "expected %s after %q, found %s", valueName(q.typ), p.prev.text, describe(v))
	}
	p.next()
	n, err := p.valueNode(q, v)
	if err != nil {
		return nil, err
	}
	p.last, p.haveLast = q, true
	return n, nil
}

func protoNode(pq protoQual) *node {
	switch pq {
	case protoQualIP:
		return &node{kind: kindEtherType, etherType: etherTypeIPv4}
	case protoQualIP6:
		return &node{kind: kindEtherType, etherType: etherTypeIPv6}
	case protoQualARP:
		return &node{kind: kindEtherType, etherType: etherTypeARP}
	case protoQualTCP:
		return &node{kind: kindIPProto, proto: protoTCP, ipv4: true, ipv6: true}
	case protoQualUDP:
		return &node{kind: kindIPProto, proto: protoUDP, ipv4: true, ipv6: true}
	case protoQualSCTP:
		return &node{kind: kindIPProto, proto: protoSCTP, ipv4: true, ipv6: true}
	case protoQualICMP:
		return &node{kind: kindIPProto, proto: protoICMP, ipv4: true}
	default: // protoQualICMP6
		return &node{kind: kindIPProto, proto: protoICMPv6, ipv6: true}
	}
}

// checkProto rejects a protocol qualifier that cannot apply to the type.
func (p *parser) checkProto(q qualifiers) error {
	if q.proto == protoAny {
		return nil
	}
	ports := q.typ == typePort || q.typ == typePortRange
	switch q.proto {
	case protoQualIP, protoQualIP6, protoQualARP:
		if !ports {
			return nil
		}
	case protoQualTCP, protoQualUDP, protoQualSCTP:
		if ports {
			return nil
		}
	}
	what := "host"
	switch q.typ {
	case typeNet:
		what = "net"
	case typePort:
		what = "port"
	case typePortRange:
		what = "portrange"
	}
	return p.errorf(q.protoAt, "%q cannot qualify %s: write \"%s and %s ...\"", q.protoAt.text, what, q.protoAt.text, what)
}

func valueName(t addrType) string {
	switch t {
	case typeHost:
		return "an IP address"
	case typeNet:
		return "a network"
	case typePort:
		return "a port number"
	case typePortRange:
		return "a port range"
	default:
		return "an IP address"
	}
}

// valueNode builds the predicate of qualifiers q and value v.
func (p *parser) valueNode(q qualifiers, v token) (*node, error) {
	switch q.typ {
	case typePort, typePortRange:
		n := &node{kind: kindPort, dir: q.dir}
		switch q.proto {
		case protoQualTCP:
			n.tcp = true
		case protoQualUDP:
			n.udp = true
		case protoQualSCTP:
			n.sctp = true
		default:
			n.tcp, n.udp, n.sctp = true, true, true
		}
		if q.typ == typePort {
			port, ok := parsePort(v.text)
			if !ok {
				return nil, p.errorf(v, "%q is not a port number", v.text)
			}
			n.portLo, n.portHi = port, port
			return n, nil
		}
		lo, hi, found := strings.Cut(v.text, "-")
		a, okA := parsePort(lo)
		b, okB := parsePort(hi)
		if !found || !okA || !okB {
			return nil, p.errorf(v, "%q is not a port range like 8000-8080", v.text)
		}
		n.portLo, n.portHi = min(a, b), max(a, b) // libpcap swaps a reversed range
		return n, nil
	}

	n := &node{kind: kindAddr, dir: q.dir}
	var err error
	if q.typ == typeNet {
		if strings.Contains(v.text, "/") {
			n.prefix, err = p.parsePrefix(v)
		} else if n.prefix, err = p.parseAddr(v); err != nil {
			err = p.errorf(v, "%q is not a network like 10.244.0.0/16", v.text)
		}
	} else {
		// host, given or implied: a prefix needs net, as in libpcap.
		if strings.Contains(v.text, "/") && isPrefix(v.text) {
			dir := [...]string{dirEither: "", dirSrc: "src ", dirDst: "dst "}[q.dir]
			return nil, p.errorf(v, "%q is a network: write \"%snet %s\"", v.text, dir, v.text)
		}
		n.prefix, err = p.parseAddr(v)
	}
	if err != nil {
		return nil, err
	}
	v4 := n.prefix.Addr().Is4()
	switch q.proto {
	case protoQualIP, protoQualARP:
		if !v4 {
			return nil, p.errorf(v, "%q is not an IPv4 address, which %q needs", v.text, q.protoAt.text)
		}
		n.inIP, n.inARP = q.proto == protoQualIP, q.proto == protoQualARP
	case protoQualIP6:
		if v4 {
			return nil, p.errorf(v, "%q is not an IPv6 address, which %q needs", v.text, q.protoAt.text)
		}
		n.inIP = true
	default:
		n.inIP, n.inARP = true, v4 // ARP carries IPv4 addresses only
	}
	return n, nil
}

func parsePort(s string) (uint16, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// parseAddr parses an IP address as a prefix of full length.
func (p *parser) parseAddr(v token) (netip.Prefix, error) {
	a, err := netip.ParseAddr(v.text)
	if err != nil {
		return netip.Prefix{}, p.errorf(v, "%q is not an IP address (host names are not resolved)", v.text)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, p.errorf(v, "%q has a zone, which filters do not take", v.text)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parsePrefix parses a network in CIDR notation without host bits.
func (p *parser) parsePrefix(v token) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(v.text)
	if err != nil {
		return netip.Prefix{}, p.errorf(v, "%q is not a network like 10.244.0.0/16", v.text)
	}
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, p.errorf(v, "%q has bits set past its prefix length: write %s", v.text, m)
	}
	return pfx, nil
}

// unqualified explains a value that has no qualifier to repeat.
func (p *parser) unqualified(t token) error {
	switch s := t.text; {
	case isAddr(s):
		return p.errorf(t, "%q needs a qualifier: write \"host %s\"", s, s)
	case isPrefix(s):
		return p.errorf(t, "%q needs a qualifier: write \"net %s\"", s, s)
	case isPortNumber(s):
		return p.errorf(t, "%q needs a qualifier: write \"port %s\"", s, s)
	case strings.Contains(s, "-") && isPortNumber(s[:strings.Index(s, "-")]):
		return p.errorf(t, "%q needs a qualifier: write \"portrange %s\"", s, s)
	default:
		return p.errorf(t, "%q is not a keyword, an address or a number", s)
	}
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func isPrefix(s string) bool {
	_, err := netip.ParsePrefix(s)
	return err == nil
}

func isPortNumber(s string) bool {
	_, ok := parsePort(s)
	return ok
}

// tokenError explains a token that is no part of the language: & or |
// alone, or a word of tcpdump's language that podnet's filters do not
// support. It returns nil for other tokens.
func (p *parser) tokenError(t token) error {
	switch t.kind {
	case tokBad:
		word := "and"
		if t.text == "|" {
			word = "or"
		}
		return p.errorf(t, "%q is not an operator: write %q or %q", t.text, t.text+t.text, word)
	case tokWord:
	default:
		return nil
	}
	if strings.ContainsAny(t.text, "[]") {
		return p.errorf(t, "%q: byte offset expressions are not supported", t.text)
	}
	switch t.text {
	case "ether", "vlan", "mpls", "proto", "protochain", "less", "greater", "len",
		"broadcast", "multicast", "gateway", "rarp", "mask", "igmp", "pim", "vrrp", "inbound", "outbound":
		return p.errorf(t, "%q is a tcpdump keyword that podnet's filters do not support", t.text)
	}
	return nil
}
