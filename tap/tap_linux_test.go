package tap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// inNewNetns runs fn on a locked OS thread that has entered a fresh network
// namespace. The thread is never unlocked, so the runtime discards it when fn
// returns and the host namespace is never touched. It skips the test where
// that cannot be done.
func inNewNetns(t *testing.T, fn func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create a network namespace and a TAP device")
	}
	if _, err := os.Stat(cloneDevice); err != nil {
		t.Skipf("skipping: %s not available: %v", cloneDevice, err)
	}
	errc := make(chan error, 1)
	skip := errors.New("skip")
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("%w: unshare(CLONE_NEWNET): %v", skip, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		if errors.Is(err, skip) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
}

// configure sets addr/24 on ifname and brings it up, with ioctls on the
// calling thread's namespace.
func configure(ifname string, addr [4]byte) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(addr[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("SIOCSIFADDR: %w", err)
	}
	ifr, _ = unix.NewIfreq(ifname)
	if err := ifr.SetInet4Addr([]byte{255, 255, 255, 0}); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("SIOCSIFNETMASK: %w", err)
	}
	ifr, _ = unix.NewIfreq(ifname)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// readUntil reads frames from d until match accepts one, or times out.
func readUntil(d *Device, match func(h VirtioNetHdr, eth []byte) bool) ([]byte, error) {
	type result struct {
		frame []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, 65536+VirtioNetHdrLen+header.EthernetMinimumSize)
		for {
			n, err := d.ReadFrame(buf)
			if err != nil {
				done <- result{err: err}
				return
			}
			h, err := DecodeVirtioNetHdr(buf[:n])
			if err != nil {
				done <- result{err: err}
				return
			}
			if n >= VirtioNetHdrLen+header.EthernetMinimumSize && match(h, buf[VirtioNetHdrLen:n]) {
				done <- result{frame: bytes.Clone(buf[:n])}
				return
			}
		}
	}()
	select {
	case r := <-done:
		return r.frame, r.err
	case <-time.After(5 * time.Second):
		d.Close() // unblocks the reader
		return nil, errors.New("timed out waiting for a frame")
	}
}

func TestOpenFrameRoundTrip(t *testing.T) {
	var (
		hostIP = [4]byte{10, 9, 0, 1}
		peerIP = [4]byte{10, 9, 0, 2}
		peerHW = tcpip.LinkAddress("\x0a\x58\x0a\x09\x00\x02")
	)
	inNewNetns(t, func() error {
		d, err := Open("podnettest0")
		if err != nil {
			return err
		}
		defer d.Close()
		if d.Name() != "podnettest0" {
			return fmt.Errorf("Name() = %q", d.Name())
		}
		if d.Offloads()&baseOffloads != baseOffloads {
			return fmt.Errorf("Offloads() = %#x, want at least %#x", d.Offloads(), baseOffloads)
		}
		if err := configure(d.Name(), hostIP); err != nil {
			return err
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: hostIP[:], Port: 5000})
		if err != nil {
			return err
		}
		defer conn.Close()

		// Kernel to TAP: a datagram to the peer makes the kernel ask for its
		// MAC address first.
		if _, err := conn.WriteToUDP([]byte("ping"), &net.UDPAddr{IP: peerIP[:], Port: 6000}); err != nil {
			return err
		}
		arpFrame, err := readUntil(d, func(_ VirtioNetHdr, eth []byte) bool {
			return header.Ethernet(eth).Type() == header.ARPProtocolNumber
		})
		if err != nil {
			return fmt.Errorf("waiting for ARP request: %w", err)
		}
		req := header.ARP(arpFrame[VirtioNetHdrLen+header.EthernetMinimumSize:])
		if !req.IsValid() || req.Op() != header.ARPRequest || !bytes.Equal(req.ProtocolAddressTarget(), peerIP[:]) {
			return fmt.Errorf("unexpected ARP frame % x", arpFrame)
		}
		hostHW := tcpip.LinkAddress(req.HardwareAddressSender())

		// TAP to kernel: answer the ARP request.
		reply := make([]byte, VirtioNetHdrLen+header.EthernetMinimumSize+header.ARPSize)
		header.Ethernet(reply[VirtioNetHdrLen:]).Encode(&header.EthernetFields{SrcAddr: peerHW, DstAddr: hostHW, Type: header.ARPProtocolNumber})
		rep := header.ARP(reply[VirtioNetHdrLen+header.EthernetMinimumSize:])
		rep.SetIPv4OverEthernet()
		rep.SetOp(header.ARPReply)
		copy(rep.HardwareAddressSender(), peerHW)
		copy(rep.ProtocolAddressSender(), peerIP[:])
		copy(rep.HardwareAddressTarget(), hostHW)
		copy(rep.ProtocolAddressTarget(), hostIP[:])
		if err := d.WriteFrame(reply); err != nil {
			return fmt.Errorf("writing ARP reply: %w", err)
		}

		// The queued datagram follows, with a partial checksum because
		// TUN_F_CSUM is on.
		udpFrame, err := readUntil(d, func(_ VirtioNetHdr, eth []byte) bool {
			if header.Ethernet(eth).Type() != header.IPv4ProtocolNumber {
				return false
			}
			ip := header.IPv4(eth[header.EthernetMinimumSize:])
			return ip.Protocol() == uint8(header.UDPProtocolNumber)
		})
		if err != nil {
			return fmt.Errorf("waiting for the UDP datagram: %w", err)
		}
		vh, _ := DecodeVirtioNetHdr(udpFrame)
		if vh.Flags&FlagNeedsCsum == 0 || vh.CsumStart != header.EthernetMinimumSize+header.IPv4MinimumSize || vh.CsumOffset != 6 {
			return fmt.Errorf("UDP frame header %+v: want NEEDS_CSUM at 34+6", vh)
		}
		if p := header.UDP(udpFrame[VirtioNetHdrLen+header.EthernetMinimumSize+header.IPv4MinimumSize:]).Payload(); string(p) != "ping" {
			return fmt.Errorf("UDP payload %q, want ping", p)
		}

		// TAP to kernel: a datagram back to the socket.
		payload := []byte("pong")
		frame := make([]byte, VirtioNetHdrLen+header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
		header.Ethernet(frame[VirtioNetHdrLen:]).Encode(&header.EthernetFields{SrcAddr: peerHW, DstAddr: hostHW, Type: header.IPv4ProtocolNumber})
		ip := header.IPv4(frame[VirtioNetHdrLen+header.EthernetMinimumSize:])
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(ip)),
			TTL:         64,
			Protocol:    uint8(header.UDPProtocolNumber),
			SrcAddr:     tcpip.AddrFrom4(peerIP),
			DstAddr:     tcpip.AddrFrom4(hostIP),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		udp := header.UDP(ip[header.IPv4MinimumSize:])
		udp.Encode(&header.UDPFields{SrcPort: 6000, DstPort: 5000, Length: uint16(len(udp))})
		copy(udp.Payload(), payload)
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom4(peerIP), tcpip.AddrFrom4(hostIP), uint16(len(udp)))
		udp.SetChecksum(^checksum.Checksum(udp, xsum))
		if err := d.WriteFrame(frame); err != nil {
			return fmt.Errorf("writing UDP frame: %w", err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			return fmt.Errorf("reading the datagram written to the TAP: %w", err)
		}
		if string(buf[:n]) != "pong" || !from.IP.Equal(net.IP(peerIP[:])) || from.Port != 6000 {
			return fmt.Errorf("got %q from %v, want pong from 10.9.0.2:6000", buf[:n], from)
		}
		return nil
	})
}

func TestCloseUnblocksRead(t *testing.T) {
	inNewNetns(t, func() error {
		d, err := Open("")
		if err != nil {
			return err
		}
		if d.Name() == "" {
			return errors.New("kernel-chosen name is empty")
		}
		errc := make(chan error, 1)
		go func() {
			_, err := d.ReadFrame(make([]byte, 2048))
			errc <- err
		}()
		time.Sleep(50 * time.Millisecond)
		if err := d.Close(); err != nil {
			return err
		}
		select {
		case err := <-errc:
			if !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("ReadFrame after Close: %v, want os.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			return errors.New("Close did not unblock ReadFrame")
		}
		return nil
	})
}

func TestOpenRejectsLongName(t *testing.T) {
	if _, err := Open("a-name-that-is-too-long"); err == nil {
		t.Fatal("Open accepted a 23-byte name")
	}
}

// udpFrame builds a vnet-header frame carrying a UDP datagram with a complete
// checksum.
func udpFrame(srcHW, dstHW tcpip.LinkAddress, src, dst [4]byte, sport, dport uint16, payload []byte) []byte {
	frame := make([]byte, VirtioNetHdrLen+header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.Ethernet(frame[VirtioNetHdrLen:]).Encode(&header.EthernetFields{SrcAddr: srcHW, DstAddr: dstHW, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(frame[VirtioNetHdrLen+header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)),
		TTL:         64,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src),
		DstAddr:     tcpip.AddrFrom4(dst),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	udp := header.UDP(ip[header.IPv4MinimumSize:])
	udp.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(udp))})
	copy(udp.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom4(src), tcpip.AddrFrom4(dst), uint16(len(udp)))
	udp.SetChecksum(^checksum.Checksum(udp, xsum))
	return frame
}

func TestOpenQueues(t *testing.T) {
	var (
		hostIP = [4]byte{10, 9, 0, 1}
		peerIP = [4]byte{10, 9, 0, 2}
		peerHW = tcpip.LinkAddress("\x0a\x58\x0a\x09\x00\x02")
	)
	inNewNetns(t, func() error {
		const n = 3
		qs, err := OpenQueues("", n)
		if err != nil {
			return err
		}
		defer func() {
			for _, q := range qs {
				q.Close()
			}
		}()
		if len(qs) != n {
			return fmt.Errorf("%d queues, want %d", len(qs), n)
		}
		name := qs[0].Name()
		for i, q := range qs {
			if q.Name() != name || name == "" {
				return fmt.Errorf("queue %d is on %q, queue 0 on %q", i, q.Name(), name)
			}
			if q.Offloads()&baseOffloads != baseOffloads {
				return fmt.Errorf("queue %d: Offloads() = %#x, want at least %#x", i, q.Offloads(), baseOffloads)
			}
		}
		if err := configure(name, hostIP); err != nil {
			return err
		}
		ifc, err := net.InterfaceByName(name) // netlink, in this thread's namespace
		if err != nil {
			return err
		}
		hostHW := tcpip.LinkAddress(ifc.HardwareAddr)
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: hostIP[:], Port: 5000})
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 64)
		for i, q := range qs {
			// Every queue takes a vnet-header frame into the kernel.
			msg := fmt.Sprintf("queue %d", i)
			if err := q.WriteFrame(udpFrame(peerHW, hostHW, peerIP, hostIP, 6000, 5000, []byte(msg))); err != nil {
				return fmt.Errorf("queue %d: WriteFrame: %w", i, err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				return fmt.Errorf("reading the datagram written to queue %d: %w", i, err)
			}
			if string(buf[:n]) != msg {
				return fmt.Errorf("got %q, want %q", buf[:n], msg)
			}
		}
		// The interface lives until its last queue is closed.
		for _, q := range qs[:n-1] {
			if err := q.Close(); err != nil {
				return err
			}
		}
		if _, err := net.InterfaceByName(name); err != nil {
			return fmt.Errorf("%s with one queue left: %w", name, err)
		}
		qs[n-1].Close()
		if _, err := net.InterfaceByName(name); err == nil {
			return fmt.Errorf("%s still exists with every queue closed", name)
		}
		qs = nil
		return nil
	})
}

func TestOpenQueuesRejects(t *testing.T) {
	for _, n := range []int{0, -1, maxQueues + 1} {
		if _, err := OpenQueues("podnettest0", n); err == nil {
			t.Errorf("OpenQueues accepted %d queues", n)
		}
	}
	if _, err := OpenQueues("a-name-that-is-too-long", 2); err == nil {
		t.Error("OpenQueues accepted a 23-byte name")
	}
}

// ifAddr returns the IPv4 address of ifname, or an error if it has none or does not exist.
func ifAddr(ifname string) ([4]byte, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return [4]byte{}, err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return [4]byte{}, err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFADDR, ifr); err != nil {
		return [4]byte{}, err
	}
	a, err := ifr.Inet4Addr()
	if err != nil {
		return [4]byte{}, err
	}
	return [4]byte(a), nil
}

// TestPersist: a persistent TAP outlives its descriptor with its address, Open attaches to it
// again and carries frames, and clearing persistence before the last Close removes it.
func TestPersist(t *testing.T) {
	inNewNetns(t, func() error {
		d, err := Open("ptap0")
		if err != nil {
			return err
		}
		if err := configure("ptap0", [4]byte{10, 9, 0, 2}); err != nil {
			d.Close()
			return err
		}
		if err := d.SetPersist(true); err != nil {
			d.Close()
			return err
		}
		d.Close()
		if a, err := ifAddr("ptap0"); err != nil || a != [4]byte{10, 9, 0, 2} {
			return fmt.Errorf("after closing a persistent TAP: address %v, %v; want 10.9.0.2", a, err)
		}
		d, err = Open("ptap0")
		if err != nil {
			return fmt.Errorf("attach to the persistent TAP again: %w", err)
		}
		// The kernel sends its frames to the reattached descriptor: a datagram to the /24 asks
		// for the neighbour's address (ARP) on ptap0.
		u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			d.Close()
			return err
		}
		defer unix.Close(u)
		if err := unix.Sendto(u, []byte("x"), 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 9, 0, 7}}); err != nil {
			d.Close()
			return err
		}
		if _, err := readUntil(d, func(_ VirtioNetHdr, eth []byte) bool {
			return len(eth) >= 14 && eth[12] == 0x08 && eth[13] == 0x06
		}); err != nil {
			d.Close()
			return fmt.Errorf("read from the reattached TAP: %w", err)
		}
		if err := d.SetPersist(false); err != nil {
			d.Close()
			return err
		}
		d.Close()
		if _, err := ifAddr("ptap0"); !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("after clearing persistence and closing: %v, want ENODEV (the interface gone)", err)
		}
		return nil
	})
}
