package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// fuzzFilters are the expressions FuzzMatch applies to random packets; they
// cover every kind of predicate.
var fuzzFilters = []string{
	"tcp", "udp", "icmp", "icmp6", "sctp", "arp", "ip", "ip6",
	"port 80", "src port 53 or dst portrange 1000-2000", "udp port 53", "sctp port 6000",
	"host 10.244.0.3", "arp host 10.244.0.1", "src net 10.0.0.0/8", "dst host fd00:1::2", "ip6 net fd00::/8",
	"tcp port 80 and host 10.244.0.3", "not (ip or ip6 or arp)", "(tcp or udp) and not port 22",
}

// seedExpressions returns filter expressions, valid and not, to seed
// FuzzParseFilter.
func seedExpressions() []string {
	return append([]string{
		"", "tcp port x", "host 10.0.0.1 or 10.0.0.2", "not host a and b", "(tcp", "tcp)", "!tcp&&udp||arp",
		"host 10.0.0.1 and (10.0.0.2 or 10.0.0.3)", "portrange 1-65535", "net ::/0", "dst net 0.0.0.0/0",
		"tcp[13] & 2 != 0", "((((((tcp))))))", "not not not udp", "ether host 1", "src or dst port 1",
		"ip6 host ::ffff:1.2.3.4", "host 10.0.0.1 and (port 80) or 10.0.0.2", "|", "&", "port 0", "port 65535",
	}, fuzzFilters...)
}

// FuzzParseFilter parses random expressions; those that compile must match
// packets without panicking, and a filter and its negation must never both
// match.
func FuzzParseFilter(f *testing.F) {
	for _, s := range seedExpressions() {
		f.Add(s)
	}
	packets := testPackets()
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := ParseFilter(expr)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "filter ") || !strings.Contains(err.Error(), ": position ") {
				t.Fatalf("ParseFilter(%q) error %q does not name the expression and a position", expr, err)
			}
			return
		}
		if flt != nil && flt.String() != expr {
			t.Fatalf("ParseFilter(%q).String() = %q", expr, flt.String())
		}
		neg, err := ParseFilter("not (" + expr + ")")
		if err != nil && flt != nil && !strings.Contains(err.Error(), "nested more than") {
			t.Fatalf("%q compiles but its negation does not: %v", expr, err)
		}
		for _, p := range packets {
			m := flt.Match(p.linkType, p.data)
			if neg != nil && flt != nil && m && neg.Match(p.linkType, p.data) {
				t.Fatalf("%q and its negation both match %s", expr, p.name)
			}
		}
	})
}

// FuzzMatch matches random packets, of both link types, against a fixed
// set of filters; Summary must describe them too. Nothing may panic, and
// no packet may match a filter and its negation.
func FuzzMatch(f *testing.F) {
	for _, p := range testPackets() {
		f.Add(p.linkType == LinkTypeRaw, p.data)
		if len(p.data) > 20 {
			f.Add(p.linkType == LinkTypeRaw, p.data[:len(p.data)-7])
		}
	}
	type pair struct{ f, not *Filter }
	var filters []pair
	for _, expr := range fuzzFilters {
		filters = append(filters, pair{mustParse(f, expr), mustParse(f, "not ("+expr+")")})
	}
	f.Fuzz(func(t *testing.T, raw bool, pkt []byte) {
		linkType := LinkTypeEthernet
		if raw {
			linkType = LinkTypeRaw
		}
		for _, p := range filters {
			if p.f.Match(linkType, pkt) && p.not.Match(linkType, pkt) {
				t.Fatalf("%q and its negation both match %x", p.f, pkt)
			}
		}
		if s := Summary(linkType, pkt); s == "" || strings.Contains(s, "\n") {
			t.Fatalf("Summary(%x) = %q", pkt, s)
		}
	})
}

func mustParse(tb testing.TB, expr string) *Filter {
	tb.Helper()
	f, err := ParseFilter(expr)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// FuzzReader reads random files. Nothing may panic; records never exceed
// the snaplen; what Reader returns must survive a Writer→Reader round trip.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, LinkTypeEthernet, 128)
	for _, p := range testPackets() {
		_ = w.WritePacket(testTime, p.data)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:len(buf.Bytes())-5])
	f.Add(buf.Bytes()[:30])
	be := pcapFile(binary.BigEndian, magicMicro, 65535, []any{1000, 7, 4, 60, []byte{0x45, 1, 2, 3}})
	f.Add(be)
	f.Add(pcapFile(binary.LittleEndian, magicNano, 16, []any{1, 999999999, 16, 1500, make([]byte, 16)}, []any{2, 0, 0, 0}))
	f.Add(pcapFile(binary.LittleEndian, magicMicro, 0, []any{1, 0, MaxSnaplen, MaxSnaplen}))
	f.Add(pcapFile(binary.LittleEndian, magicMicro, 100, []any{1, 0, 101, 101}))
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, file []byte) {
		r, err := NewReader(bytes.NewReader(file))
		if err != nil {
			return
		}
		var packets []Packet
		for {
			p, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "capture: ") {
					t.Fatalf("Next error %q lacks the package prefix", err)
				}
				break
			}
			if len(p.Data) > MaxSnaplen || uint32(len(p.Data)) > r.snaplen {
				t.Fatalf("record of %d bytes over the snaplen %d", len(p.Data), r.snaplen)
			}
			packets = append(packets, p)
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, r.LinkType(), r.snaplen)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range packets {
			// OrigLen is what the file says, maybe less than len(Data); the
			// round trip writes and compares the whole captured data.
			if err := w.WritePacket(p.Time, p.Data); err != nil {
				t.Fatal(err)
			}
		}
		back, err := NewReader(&out)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range packets {
			got, err := back.Next()
			if err != nil {
				t.Fatalf("packet %d written back: %v", i, err)
			}
			if !got.Time.Equal(want.Time.Truncate(time.Microsecond)) || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("packet %d written back as %v %x, want %v %x", i, got.Time, got.Data, want.Time, want.Data)
			}
		}
		if _, err := back.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("the written back file does not end: %v", err)
		}
	})
}
