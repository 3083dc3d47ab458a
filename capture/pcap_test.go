package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2026, 5, 4, 10, 11, 12, 345678901, time.UTC)

func TestRoundTrip(t *testing.T) {
	syn := eth(etherTypeIPv4, ipv4(podA, podB, protoTCP, 0, tcp(podA, podB, 41234, 80, 1000, 0, tcpSYN, nil)))
	big := ipv4(podA, dnsIP, protoUDP, 0, udp(podA, dnsIP, 5353, 53, make([]byte, 1400)))
	tests := []struct {
		name     string
		linkType uint32
		snaplen  uint32
		packets  [][]byte
		wantLen  []int // len(Data) of each packet read back
	}{
		{"ethernet", LinkTypeEthernet, 0, [][]byte{syn, syn[:20], {}}, []int{54, 20, 0}},
		{"raw", LinkTypeRaw, 65535, [][]byte{big, big[:28]}, []int{1428, 28}},
		{"raw cut by the snaplen", LinkTypeRaw, 96, [][]byte{big, big[:96], big[:95]}, []int{96, 96, 95}},
		{"snaplen 1", LinkTypeEthernet, 1, [][]byte{syn}, []int{1}},
		{"no packets", LinkTypeRaw, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, tt.linkType, tt.snaplen)
			if err != nil {
				t.Fatal(err)
			}
			if w.LinkType() != tt.linkType {
				t.Errorf("Writer.LinkType() = %d, want %d", w.LinkType(), tt.linkType)
			}
			for i, p := range tt.packets {
				if err := w.WritePacket(testTime.Add(time.Duration(i)*time.Second), p); err != nil {
					t.Fatal(err)
				}
			}
			r, err := NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if r.LinkType() != tt.linkType {
				t.Errorf("Reader.LinkType() = %d, want %d", r.LinkType(), tt.linkType)
			}
			for i, p := range tt.packets {
				got, err := r.Next()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				wantTime := testTime.Add(time.Duration(i) * time.Second).Truncate(time.Microsecond)
				if !got.Time.Equal(wantTime) || got.Time.Location() != time.UTC {
					t.Errorf("packet %d: Time = %v, want %v in UTC", i, got.Time, wantTime)
				}
				if got.OrigLen != len(p) {
					t.Errorf("packet %d: OrigLen = %d, want %d", i, got.OrigLen, len(p))
				}
				if !bytes.Equal(got.Data, p[:tt.wantLen[i]]) {
					t.Errorf("packet %d: Data = %x, want %x", i, got.Data, p[:tt.wantLen[i]])
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("Next at the end = %v, want io.EOF", err)
			}
		})
	}
}

func TestWriterHeader(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeRaw, 1500)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, // magic, version 2.4
		0, 0, 0, 0, 0, 0, 0, 0, // thiszone, sigfigs
		0xdc, 0x05, 0, 0, 101, 0, 0, 0, // snaplen 1500, link type 101
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("file header = % x, want % x", buf.Bytes(), want)
	}
	buf.Reset()
	if err := w.WritePacket(time.Unix(0x01020304, 5000), []byte{0xee, 0xff}); err != nil {
		t.Fatal(err)
	}
	want = []byte{4, 3, 2, 1, 5, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0xee, 0xff}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("record = % x, want % x", buf.Bytes(), want)
	}
}

// writeCounter counts the Write calls it gets.
type writeCounter struct{ n int }

func (c *writeCounter) Write(b []byte) (int, error) { c.n++; return len(b), nil }

func TestWriterOneWritePerRecord(t *testing.T) {
	var c writeCounter
	w, err := NewWriter(&c, LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := w.WritePacket(testTime, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if c.n != 4 {
		t.Errorf("%d writes for a header and 3 packets, want 4", c.n)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterErrors(t *testing.T) {
	if _, err := NewWriter(io.Discard, LinkTypeEthernet, MaxSnaplen+1); err == nil || !strings.Contains(err.Error(), "snaplen 262145 is over the maximum 262144") {
		t.Errorf("NewWriter with a big snaplen: %v", err)
	}
	if _, err := NewWriter(failingWriter{}, LinkTypeEthernet, 0); err == nil || !strings.Contains(err.Error(), "write pcap header: disk full") {
		t.Errorf("NewWriter on a failing writer: %v", err)
	}
	w, err := NewWriter(io.Discard, LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range []time.Time{time.Unix(-1, 0), time.Unix(1<<32, 0)} {
		if err := w.WritePacket(tm, nil); err == nil || !strings.Contains(err.Error(), "outside the pcap range") {
			t.Errorf("WritePacket at %v: %v", tm, err)
		}
	}
	w.w = failingWriter{}
	if err := w.WritePacket(testTime, []byte{1}); err == nil || !strings.Contains(err.Error(), "write packet: disk full") {
		t.Errorf("WritePacket on a failing writer: %v", err)
	}
}

// pcapFile builds a pcap file by hand: a header with magic, snaplen and
// link type, then records of (seconds, fraction, incl_len, orig_len, data).
func pcapFile(order binary.AppendByteOrder, magic, snaplen uint32, records ...[]any) []byte {
	b := order.AppendUint32(nil, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = order.AppendUint32(b, snaplen)
	b = order.AppendUint32(b, LinkTypeRaw)
	for _, r := range records {
		for _, f := range r {
			switch f := f.(type) {
			case int:
				b = order.AppendUint32(b, uint32(f))
			case []byte:
				b = append(b, f...)
			}
		}
	}
	return b
}

func TestReaderFormats(t *testing.T) {
	data := []byte{0x45, 1, 2, 3}
	tests := []struct {
		name string
		file []byte
		want time.Time
	}{
		{"little-endian microseconds", pcapFile(binary.LittleEndian, magicMicro, 65535, []any{1000, 7, 4, 60, data}), time.Unix(1000, 7000)},
		{"big-endian microseconds", pcapFile(binary.BigEndian, magicMicro, 65535, []any{1000, 7, 4, 60, data}), time.Unix(1000, 7000)},
		{"little-endian nanoseconds", pcapFile(binary.LittleEndian, magicNano, 65535, []any{1000, 7, 4, 60, data}), time.Unix(1000, 7)},
		{"big-endian nanoseconds", pcapFile(binary.BigEndian, magicNano, 65535, []any{1000, 7, 4, 60, data}), time.Unix(1000, 7)},
		{"snaplen 0 means the maximum", pcapFile(binary.LittleEndian, magicMicro, 0, []any{1000, 7, 4, 60, data}), time.Unix(1000, 7000)},
	}
	for _, tt := range tests {
		r, err := NewReader(bytes.NewReader(tt.file))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if r.LinkType() != LinkTypeRaw {
			t.Errorf("%s: LinkType() = %d", tt.name, r.LinkType())
		}
		p, err := r.Next()
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !p.Time.Equal(tt.want) || !bytes.Equal(p.Data, data) || p.OrigLen != 60 {
			t.Errorf("%s: Next() = %v %x %d, want %v %x 60", tt.name, p.Time, p.Data, p.OrigLen, tt.want, data)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Errorf("%s: Next at the end = %v, want io.EOF", tt.name, err)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	le := binary.LittleEndian
	good := pcapFile(le, magicMicro, 100)
	tests := []struct {
		name       string
		file       []byte
		headerErr  string // error of NewReader, or
		nextErr    string // error of the first Next
		unexpected bool   // the Next error wraps io.ErrUnexpectedEOF
	}{
		{name: "empty", file: nil, headerErr: "capture: read pcap header: the file is empty"},
		{name: "short header", file: good[:10], headerErr: "capture: read pcap header: 10 of 24 bytes: unexpected EOF"},
		{name: "bad magic", file: append([]byte("GIF89a"), good[6:]...), headerErr: "capture: not a pcap file: magic number 0x47494638"},
		{name: "pcapng", file: append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, good[4:]...), headerErr: "capture: the file is pcapng, not pcap; convert it with editcap -F pcap"},
		{name: "version 3", file: append(append([]byte{}, good[:4]...), append([]byte{3, 0, 0, 0}, good[8:]...)...), headerErr: "capture: pcap version 3.0 is not supported (only 2.x)"},
		{name: "record header cut", file: pcapFile(le, magicMicro, 100, []any{1, 2, 3}), nextErr: "capture: read header of pcap record 1: unexpected EOF", unexpected: true},
		{name: "record data cut", file: pcapFile(le, magicMicro, 100, []any{1, 2, 10, 10, []byte{1, 2, 3}}), nextErr: "capture: read data of pcap record 1: unexpected EOF", unexpected: true},
		{name: "record data missing", file: pcapFile(le, magicMicro, 100, []any{1, 2, 10, 10}), nextErr: "capture: read data of pcap record 1: unexpected EOF", unexpected: true},
		{name: "over the snaplen", file: pcapFile(le, magicMicro, 100, []any{1, 2, 101, 101}), nextErr: "capture: pcap record 1: captured length 101 is over the snaplen 100"},
		{name: "over the maximum", file: pcapFile(le, magicMicro, 0xffffffff, []any{1, 2, MaxSnaplen + 1, 1}), nextErr: "capture: pcap record 1: captured length 262145 is over the snaplen 262144"},
		{name: "microseconds out of range", file: pcapFile(le, magicMicro, 100, []any{1, 1000000, 1, 1, []byte{0x45}}), nextErr: "capture: pcap record 1: timestamp fraction 1000000 is not under a second (1000000)"},
		{name: "nanoseconds out of range", file: pcapFile(le, magicNano, 100, []any{1, 1000000000, 1, 1, []byte{0x45}}), nextErr: "timestamp fraction 1000000000 is not under a second"},
		{name: "huge length", file: pcapFile(le, magicMicro, 0, []any{1, 2, 0xffffffff, 1}), nextErr: "captured length 4294967295 is over the snaplen 262144"},
	}
	for _, tt := range tests {
		r, err := NewReader(bytes.NewReader(tt.file))
		if tt.headerErr != "" {
			if err == nil || err.Error() != tt.headerErr {
				t.Errorf("%s: NewReader error = %v, want %s", tt.name, err, tt.headerErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: NewReader: %v", tt.name, err)
			continue
		}
		_, err = r.Next()
		if err == nil || !strings.Contains(err.Error(), tt.nextErr) {
			t.Errorf("%s: Next error = %v, want %s", tt.name, err, tt.nextErr)
		}
		if got := errors.Is(err, io.ErrUnexpectedEOF); got != tt.unexpected {
			t.Errorf("%s: errors.Is(%v, io.ErrUnexpectedEOF) = %v, want %v", tt.name, err, got, tt.unexpected)
		}
	}
}

func TestReaderSecondRecordCut(t *testing.T) {
	file := pcapFile(binary.LittleEndian, magicMicro, 100, []any{1, 0, 1, 1, []byte{0x45}}, []any{2, 0})
	r, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "record 2") {
		t.Errorf("Next on a cut second record = %v, want record 2 and io.ErrUnexpectedEOF", err)
	}
}

// TestTshark checks that tshark reads what Writer writes: the frames, the
// addresses, the ports and the lengths, and the checksums of the test
// packets (which makes the builders of the other tests trustworthy too).
func TestTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skipf("skipped: tshark is not installed (it is in the Debian package tshark): %v", err)
	}
	dir := t.TempDir()
	writeFile := func(name string, linkType, snaplen uint32, packets ...[]byte) string {
		t.Helper()
		var buf bytes.Buffer
		w, err := NewWriter(&buf, linkType, snaplen)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range packets {
			if err := w.WritePacket(testTime.Add(time.Duration(i)*time.Millisecond), p); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	syn := ipv4(podA, podB, protoTCP, 0, tcp(podA, podB, 41234, 80, 1000, 0, tcpSYN, nil))
	dns := ipv4(podA, dnsIP, protoUDP, 0, udp(podA, dnsIP, 5353, 53, make([]byte, 33)))
	big := ipv4(podA, dnsIP, protoUDP, 0, udp(podA, dnsIP, 40000, 9999, make([]byte, 300)))
	ether := writeFile("eth0.pcap", LinkTypeEthernet, 200, eth(etherTypeIPv4, syn), eth(etherTypeIPv4, dns), eth(etherTypeIPv4, big))
	raw := writeFile("overlay.pcap", LinkTypeRaw, 0, syn, ipv6(podA6, podB6, protoTCP, tcp(podA6, podB6, 41234, 443, 7, 0, tcpSYN, nil)))

	// Status fields print as numbers: 0 bad, 1 good, 2 unverified. tshark
	// warns on stderr when it runs as root; only its output is compared.
	fields := []string{"frame.encap_type", "frame.len", "frame.cap_len", "ip.src", "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport",
		"ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "tcp.flags.syn"}
	run := func(path string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		args := []string{"-n", "-r", path, "-T", "fields", "-E", "separator=|",
			"-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"}
		for _, f := range fields {
			args = append(args, "-e", f)
		}
		cmd := exec.CommandContext(ctx, tshark, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Env = append(os.Environ(), "HOME="+dir) // keep tshark's profile out of the user's home
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark -r %s: %v\n%s", path, err, stderr.String())
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	want := []string{
		// encap|len|cap_len|ip.src|ip.dst|ipv6.dst|tcp.dstport|udp.dstport|ip ck|tcp ck|udp ck|syn
		"1|54|54|10.244.0.3|10.244.1.2||80||1|1||1",
		"1|75|75|10.244.0.3|10.96.0.10|||53|1||1|",
		"1|342|200|10.244.0.3|10.96.0.10|||9999|1||2|", // cut by the snaplen: the UDP checksum cannot be checked
	}
	if got := run(ether); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tshark read eth0.pcap as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want = []string{
		"7|40|40|10.244.0.3|10.244.1.2||80||1|1||1", // 7 is WTAP_ENCAP_RAW_IP
		"7|60|60|||fd00:1::2|443|||1||1",
	}
	if got := run(raw); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tshark read overlay.pcap as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
