package stack_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/stack"
)

// echoService answers each datagram with "<src> <payload>" repeated to size bytes, from dst.
type echoService struct{ size int }

func (e echoService) ServeDatagram(src, dst netip.AddrPort, payload []byte, w stack.DatagramWriter) {
	msg := []byte(src.String() + " " + string(payload))
	if e.size > len(msg) {
		msg = append(msg, bytes.Repeat([]byte{'.'}, e.size-len(msg))...)
	}
	w.WriteDatagram(src, dst, msg)
}

func TestLocalService(t *testing.T) {
	dnsAddr := netip.MustParseAddrPort("10.96.0.10:53")
	for _, size := range []int{0, 4000} { // 4000: an answer cut into IP fragments
		t.Run(fmt.Sprintf("answer=%d", size), func(t *testing.T) { testLocalService(t, dnsAddr, size) })
	}
	t.Run("in the pod CIDR", func(t *testing.T) {
		if err := newStack(t, nil).SetLocalService(netip.AddrPortFrom(podA, 53), echoService{}, nil); err == nil {
			t.Error("a local service in the pod CIDR was accepted")
		}
	})
}

func testLocalService(t *testing.T, dnsAddr netip.AddrPort, size int) {
	s := newStack(t, nil)
	a := addPod(t, s, podA, false)
	tcpServed := make(chan string, 1)
	if err := s.SetLocalService(dnsAddr, echoService{size: size}, func(c net.Conn) {
		b, _ := io.ReadAll(io.LimitReader(c, 4))
		c.Write(append([]byte("tcp "), b...))
		tcpServed <- c.RemoteAddr().String()
	}); err != nil {
		t.Fatal(err)
	}
	u, err := a.DialUDP(dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	u.SetDeadline(time.Now().Add(5 * time.Second))
	u.Write([]byte("query"))
	buf := make([]byte, 8192)
	n, err := u.Read(buf)
	u.Close()
	if err != nil {
		t.Fatalf("UDP answer: %v", err)
	}
	got := string(buf[:n])
	if !strings.HasPrefix(got, podA.String()+":") || !strings.Contains(got, " query") || (size > 0 && len(got) != size) {
		t.Errorf("size %d: answer %d bytes %.60q", size, len(got), got)
	}
	c, err := a.DialTCP(timeout(t, 5*time.Second), dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("abcd"))
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "tcp abcd" {
		t.Errorf("TCP answer %q", b)
	}
	if from := <-tcpServed; !strings.HasPrefix(from, podA.String()+":") {
		t.Errorf("TCP handler saw %s", from)
	}
	if st := s.Stats(); st.LocalDatagrams != 1 || st.ToStackFrames == 0 {
		t.Errorf("stats %+v", st)
	}
	// Other ports of the address are still refused.
	if _, err := a.DialTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(dnsAddr.Addr(), 54)); err == nil {
		t.Error("TCP to another port of the local service's address connected")
	}
	// Removing the service refuses it again.
	s.SetLocalService(dnsAddr, nil, nil)
	if _, err := a.DialTCP(timeout(t, 5*time.Second), dnsAddr); err == nil {
		t.Error("TCP to a removed local service connected")
	}
}
