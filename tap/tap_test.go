package tap

import (
	"errors"
	"testing"
)

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := VirtioNetHdr{
		Flags:      FlagNeedsCsum,
		GSOType:    GSOTCPv4 | GSOECN,
		HdrLen:     66,
		GSOSize:    1448,
		CsumStart:  34,
		CsumOffset: 16,
	}
	b := make([]byte, VirtioNetHdrLen)
	h.Encode(b)
	want := []byte{1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0}
	if string(b) != string(want) {
		t.Fatalf("Encode = % x, want % x", b, want)
	}
	got, err := DecodeVirtioNetHdr(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("Decode = %+v, want %+v", got, h)
	}
	if _, err := DecodeVirtioNetHdr(b[:9]); !errors.Is(err, ErrShortFrame) {
		t.Fatalf("Decode of 9 bytes: err = %v, want ErrShortFrame", err)
	}
}
