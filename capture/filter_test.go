package capture

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Names of packets of testPackets, grouped for the expected results.
var (
	tcp4Packets = []string{"tcp syn", "tcp reply", "raw tcp", "vlan tcp", "ip options"}
	tcp6Packets = []string{"tcp6", "raw tcp6"}
	// ipv4Packets are the IPv4 packets, "truncated ip" excepted, all of
	// them between podA and podB or dnsIP.
	ipv4Packets = append([]string{"udp dns", "icmp echo", "sctp", "first fragment", "fragment", "truncated tcp"}, tcp4Packets...)
	ipv6Packets = append([]string{"udp6", "icmp6 echo"}, tcp6Packets...)
)

func names(groups ...any) []string {
	var out []string
	for _, g := range groups {
		switch g := g.(type) {
		case string:
			out = append(out, g)
		case []string:
			out = append(out, g...)
		}
	}
	return out
}

func without(all []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(s string) bool { return slices.Contains(drop, s) })
}

func TestFilterMatch(t *testing.T) {
	packets := testPackets()
	var all []string
	for _, p := range packets {
		all = append(all, p.name)
	}
	tests := []struct {
		expr string
		want []string // the packets that match; the others must not
	}{
		{"", all},
		{"   ", all},
		{"tcp", names(tcp4Packets, tcp6Packets, "truncated tcp")},
		{"udp", names("udp dns", "udp6", "first fragment", "fragment")},
		{"icmp", names("icmp echo")},
		{"icmp6", names("icmp6 echo")},
		{"sctp", names("sctp")},
		{"arp", names("arp request")},
		{"ip", names(ipv4Packets, "truncated ip")},
		{"ip6", ipv6Packets},
		{"port 80", names(tcp4Packets, tcp6Packets)},
		{"dst port 80", without(names(tcp4Packets, tcp6Packets), "tcp reply")},
		{"src port 80", names("tcp reply")},
		{"port 53", names("udp dns", "udp6", "first fragment")},
		{"udp port 53", names("udp dns", "udp6", "first fragment")},
		{"tcp port 53", nil},
		{"udp dst port 53", names("udp dns", "udp6", "first fragment")},
		{"portrange 5500-6000", names("sctp")},
		{"portrange 6000-5500", names("sctp")},
		{"src portrange 5000-5099", names("sctp")},
		{"sctp port 6000", names("sctp")},
		{"tcp portrange 1-1024", names(tcp4Packets, tcp6Packets)},
		{"host 10.244.0.3", names(ipv4Packets, "arp request")},
		{"ip host 10.244.0.3", ipv4Packets},
		{"arp host 10.244.0.3", names("arp request")},
		{"src host 10.244.0.3", without(names(ipv4Packets, "arp request"), "tcp reply")},
		{"src 10.244.0.3", without(names(ipv4Packets, "arp request"), "tcp reply")},
		{"dst 10.244.0.1", names("arp request")},
		{"dst host 10.244.1.2", names("icmp echo", "sctp", "truncated tcp", "tcp syn", "raw tcp", "vlan tcp", "ip options")},
		{"net 10.244.0.0/16", names(ipv4Packets, "arp request")},
		{"dst net 10.96.0.0/12", names("udp dns", "first fragment", "fragment")},
		{"src net 10.96.0.0/12", nil},
		{"net 10.244.0.3", names(ipv4Packets, "arp request")},
		{"host fd00::3", ipv6Packets},
		{"ip6 net fd00::/16", ipv6Packets},
		{"dst net fd00:1::/32", names(tcp6Packets, "icmp6 echo")},
		{"host ::ffff:10.244.0.3", nil},
		{"tcp port 80 and host 10.244.0.3", tcp4Packets},
		{"tcp and port 80 && host 10.244.0.3", tcp4Packets},
		{"not tcp", without(all, names(tcp4Packets, tcp6Packets, "truncated tcp", "truncated ip", "short ethernet")...)},
		{"! tcp", without(all, names(tcp4Packets, tcp6Packets, "truncated tcp", "truncated ip", "short ethernet")...)},
		{"not port 80", without(all, names(tcp4Packets, tcp6Packets, "truncated tcp", "truncated ip", "short ethernet")...)},
		{"not not tcp", names(tcp4Packets, tcp6Packets, "truncated tcp")},
		{"not ip", without(all, names(ipv4Packets, "truncated ip", "short ethernet")...)},
		// and and or have equal precedence and associate to the left.
		{"tcp or udp and port 53", names("udp dns", "udp6", "first fragment")},
		{"tcp or (udp and port 53)", names(tcp4Packets, tcp6Packets, "truncated tcp", "udp dns", "udp6", "first fragment")},
		{"udp and port 53 or tcp", names(tcp4Packets, tcp6Packets, "truncated tcp", "udp dns", "udp6", "first fragment")},
		{"not tcp and not udp", without(all, names(tcp4Packets, tcp6Packets, "truncated tcp", "truncated ip", "short ethernet", "udp dns", "udp6", "first fragment", "fragment")...)},
		{"ip && !(tcp || udp)", names("icmp echo", "sctp")},
		// A bare value repeats the last qualifiers.
		{"host 10.244.0.1 or 10.96.0.10", names("arp request", "udp dns", "first fragment", "fragment")},
		{"tcp dst port 443 or 80", without(names(tcp4Packets, tcp6Packets), "tcp reply")},
		{"dst port 443 or 53 or 80", without(names(tcp4Packets, tcp6Packets, "udp dns", "udp6", "first fragment"), "tcp reply")},
		{"not host 10.244.1.2 and 10.244.0.3", names("udp dns", "first fragment", "fragment", "arp request")},
		{"host 10.96.0.10 or (10.244.0.1)", names("arp request", "udp dns", "first fragment", "fragment")},
		{"host 10.244.0.3 and not 10.244.1.2", names("udp dns", "first fragment", "fragment", "arp request")},
		{"src net 10.244.0.0/24 and not 10.244.0.3/32", nil},
		// Unknown stays unknown: a truncated TCP segment is tcp but has no port.
		{"port 80 or tcp", names(tcp4Packets, tcp6Packets, "truncated tcp")},
		{"port 80 and tcp", names(tcp4Packets, tcp6Packets)},
		{"not (port 80 and ip)", without(all, names(tcp4Packets, "truncated tcp", "truncated ip", "short ethernet")...)},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.expr)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tt.expr, err)
			continue
		}
		for _, p := range packets {
			want := slices.Contains(tt.want, p.name)
			if got := f.Match(p.linkType, p.data); got != want {
				t.Errorf("ParseFilter(%q).Match(%s) = %v, want %v", tt.expr, p.name, got, want)
			}
		}
	}
}

func TestNilFilter(t *testing.T) {
	f, err := ParseFilter("")
	if err != nil || f != nil {
		t.Fatalf(`ParseFilter("") = %v, %v; want nil, nil`, f, err)
	}
	if !f.Match(LinkTypeEthernet, nil) || !f.Match(42, []byte{1}) {
		t.Error("a nil *Filter does not match everything")
	}
	if f.String() != "" {
		t.Errorf("nil Filter's String() = %q", f.String())
	}
}

func TestMatchUnknownLinkType(t *testing.T) {
	f, err := ParseFilter("not tcp")
	if err != nil {
		t.Fatal(err)
	}
	if f.Match(42, eth(0x88cc, make([]byte, 46))) {
		t.Error("a packet of an unknown link type matched")
	}
	for _, b := range [][]byte{nil, {0x50, 0, 0, 0}} {
		if f.Match(LinkTypeRaw, b) {
			t.Errorf("raw packet %x matched", b)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct {
		expr, want string
	}{
		{"tcp port x", `filter "tcp port x": position 10: "x" is not a port number`},
		{"port 70000", `position 6: "70000" is not a port number`},
		{"port -1", `"-1" is not a port number`},
		{"port +80", `"+80" is not a port number`},
		{"host", `position 5: expected an IP address after "host", found the end`},
		{"src", `position 4: expected an IP address after "src", found the end`},
		{"src or dst host 10.0.0.1", `position 5: expected an IP address after "src", found "or"`},
		{"src 10.0.0.0/8", `position 5: "10.0.0.0/8" is a network: write "src net 10.0.0.0/8"`},
		{"dst 80", `position 5: "80" is not an IP address (host names are not resolved)`},
		{"port tcp", `position 6: expected a port number after "port", found "tcp"`},
		{"tcp and", `position 8: expected a primitive after "and", found the end`},
		{"not", `position 4: expected a primitive after "not", found the end`},
		{"and", `position 1: expected a primitive, found "and"`},
		{"tcp or or udp", `position 8: expected a primitive after "or", found "or"`},
		{"()", `position 2: expected a primitive after "(", found ")"`},
		{"(tcp", `position 5: expected ")" for the "(" at position 1, found the end`},
		{"(tcp udp)", `position 6: expected ")" for the "(" at position 1, found "udp"`},
		{"tcp)", `position 4: ")" without a matching "("`},
		{"tcp udp", `position 5: expected "and" or "or" before "udp"`},
		{"10.0.0.1", `position 1: "10.0.0.1" needs a qualifier: write "host 10.0.0.1"`},
		{"10.0.0.0/8", `"10.0.0.0/8" needs a qualifier: write "net 10.0.0.0/8"`},
		{"tcp and 80", `position 9: "80" needs a qualifier: write "port 80"`},
		{"80-90", `"80-90" needs a qualifier: write "portrange 80-90"`},
		{"(tcp) and 80", `"80" needs a qualifier`},
		// As in libpcap, parentheses end the reach of their qualifiers.
		{"(host 10.244.0.1) or 10.96.0.10", `position 22: "10.96.0.10" needs a qualifier: write "host 10.96.0.10"`},
		{"host 10.0.0.1 and (port 80) or 10.0.0.2/8", `"10.0.0.2/8" is a network`},
		{"10.96.0.0/12 or src 10.0.0.0/8", `position 1: "10.96.0.0/12" needs a qualifier`},
		{"foo", `position 1: "foo" is not a keyword, an address or a number`},
		{"host foo", `position 6: "foo" is not an IP address (host names are not resolved)`},
		{"host 10.0.0.1 or foo", `position 18: "foo" is not an IP address`},
		{"host 10.0.0.0/8", `"10.0.0.0/8" is a network: write "net 10.0.0.0/8"`},
		{"net 10.0.0.1/8", `"10.0.0.1/8" has bits set past its prefix length: write 10.0.0.0/8`},
		{"net 10", `"10" is not a network like 10.244.0.0/16`},
		{"net 10.0.0.0/33", `"10.0.0.0/33" is not a network`},
		{"tcp host 10.0.0.1", `position 1: "tcp" cannot qualify host: write "tcp and host ..."`},
		{"udp src net 10.0.0.0/8", `"udp" cannot qualify net`},
		{"ip port 80", `position 1: "ip" cannot qualify port: write "ip and port ..."`},
		{"arp portrange 1-2", `"arp" cannot qualify portrange`},
		{"ip6 host 10.0.0.1", `position 10: "10.0.0.1" is not an IPv6 address, which "ip6" needs`},
		{"ip host ::1", `"::1" is not an IPv4 address, which "ip" needs`},
		{"ip6 host fd00::1 or 10.0.0.1", `position 21: "10.0.0.1" is not an IPv6 address`},
		{"host fe80::1%eth0", `"fe80::1%eth0" has a zone`},
		{"portrange 80", `"80" is not a port range like 8000-8080`},
		{"portrange 80-", `"80-" is not a port range`},
		{"portrange 1-70000", `"1-70000" is not a port range`},
		{"tcp & udp", `position 5: "&" is not an operator: write "&&" or "and"`},
		{"tcp | udp", `position 5: "|" is not an operator: write "||" or "or"`},
		{"ether host 0a:58:0a:f4:00:01", `position 1: "ether" is a tcpdump keyword that podnet's filters do not support`},
		{"tcp and vlan", `"vlan" is a tcpdump keyword`},
		{"ip proto 6", `position 4: "proto" is a tcpdump keyword`},
		{"host 10.0.0.1 and less 100", `"less" is a tcpdump keyword`},
		{"tcp[13] & 2 != 0", `"tcp[13]": byte offset expressions are not supported`},
		{strings.Repeat("(", 65) + "tcp" + strings.Repeat(")", 65), `position 65: nested more than 64 deep`},
		{strings.Repeat("not ", 65) + "tcp", `nested more than 64 deep`},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.expr)
		if err == nil {
			t.Errorf("ParseFilter(%q) = %v, want an error containing %q", tt.expr, f, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseFilter(%q) error:\n  %v\nwant it to contain\n  %s", tt.expr, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), "filter "+strconv.Quote(tt.expr)+": position ") {
			t.Errorf("ParseFilter(%q) error %q does not start with the expression and a position", tt.expr, err)
		}
	}
}

func TestFilterString(t *testing.T) {
	const expr = "tcp port 80 and host 10.244.0.3"
	f, err := ParseFilter(expr)
	if err != nil {
		t.Fatal(err)
	}
	if f.String() != expr {
		t.Errorf("String() = %q, want %q", f.String(), expr)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	f, err := ParseFilter("(tcp port 80 or udp portrange 50-60) and net 10.244.0.0/16 and not host fd00::1 and not arp")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range testPackets() {
		if n := testing.AllocsPerRun(100, func() { f.Match(p.linkType, p.data) }); n != 0 {
			t.Errorf("Match(%s) allocates %v times", p.name, n)
		}
	}
}
