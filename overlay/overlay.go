package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// DefaultMTU is the inner MTU if Options.MTU is 0: a 1500-byte underlay
// minus WireGuard's 80 bytes of IPv6, UDP and transport overhead.
const DefaultMTU = 1420

// Peer is another node.
type Peer struct {
	// PublicKey identifies the node; SetPeers matches peers by it.
	PublicKey Key
	// Endpoint is the node's UDP address. If it is the zero AddrPort,
	// the peer is only reached after it has sent an authenticated packet
	// (WireGuard then learns its address).
	Endpoint netip.AddrPort
	// AllowedIPs are the addresses routed to the node (its pod CIDR).
	// They are also the sources accepted from it: WireGuard drops a
	// decrypted packet whose source is not in the sending peer's
	// AllowedIPs.
	AllowedIPs []netip.Prefix
}

// Options configure an Overlay.
type Options struct {
	// Logger receives control-plane events and, at debug level,
	// wireguard-go's verbose log. If nil, nothing is logged.
	Logger *slog.Logger

	// PrivateKey is the node's key; required.
	PrivateKey Key

	// ListenAddr is the node's UDP address (e.g. 127.0.57.1:51820). The
	// default bind listens on exactly this address; port 0 picks a free
	// port (see Port). Required unless Bind is set.
	ListenAddr netip.AddrPort

	// MTU is the inner MTU (the pods' MTU): the largest packet
	// SendPackets accepts. 0 means DefaultMTU (1420).
	MTU int

	// Deliver receives the decrypted IPv4 packets that arrive from peers,
	// in batches. It is called from wireguard-go's goroutines, possibly
	// concurrently (one per peer), and must not keep the slices after it
	// returns. Required.
	Deliver func(pkts [][]byte)

	// Bind is the device's UDP side. If nil, a bind on a single UDP
	// socket bound to ListenAddr. Tests pass an in-memory bind
	// (overlaytest.Network, conn/bindtest).
	Bind conn.Bind
}

// Stats are an Overlay's counters since New.
type Stats struct {
	// TxPackets and TxBytes count inner packets handed to WireGuard for
	// encryption; RxPackets and RxBytes count decrypted inner packets
	// passed to Deliver (WireGuard keepalives are not counted).
	TxPackets, TxBytes uint64
	RxPackets, RxBytes uint64

	// DroppedNoPeer counts packets to a destination in no peer's
	// AllowedIPs; DroppedQueueFull packets dropped because the queue to
	// WireGuard was full; DroppedTooBig packets larger than the MTU (or
	// empty).
	DroppedNoPeer, DroppedQueueFull, DroppedTooBig uint64

	// TxDatagrams, TxDatagramBytes, RxDatagrams and RxDatagramBytes count
	// UDP datagrams on the underlay (handshakes, data, keepalives,
	// cookies), at the Bind. TxErrors counts failed sends (the datagrams
	// are lost).
	TxDatagrams, TxDatagramBytes uint64
	RxDatagrams, RxDatagramBytes uint64
	TxErrors                     uint64

	// RejectedHandshakes counts handshake messages WireGuard refused: an
	// invalid MAC (the sender does not know this node's public key), an
	// initiation from a key that is not a peer or that fails to decrypt,
	// an invalid response, a message of unknown type. They are counted
	// from wireguard-go's log messages, its only report of them. Data
	// packets with an unknown session index or that fail authentication
	// are dropped by wireguard-go without a report: they appear in
	// RxDatagrams but not in RxPackets.
	RejectedHandshakes uint64
	// WindowWaits counts the times the overlay held packets back because
	// wireguard-go held its window's worth in one direction (window.go),
	// outbound and inbound; WindowResets the windows opened again after
	// a stall.
	OutboundWindowWaits, InboundWindowWaits, WindowResets uint64

	// HandshakesInitiated counts the handshakes this node began that
	// completed (a peer's valid response came back); HandshakesAnswered
	// the peers' valid initiations it answered (the peer began them).
	// Counted from wireguard-go's log messages, like RejectedHandshakes.
	HandshakesInitiated, HandshakesAnswered uint64
}

// PeerStats is what WireGuard reports of one of the device's peers.
type PeerStats struct {
	PublicKey Key
	// LastHandshake is when the latest handshake with the peer completed;
	// the zero Time if none has yet.
	LastHandshake time.Time
}

// counters are the live Stats.
type counters struct {
	txPackets, txBytes, rxPackets, rxBytes          atomic.Uint64
	droppedNoPeer, droppedQueueFull, droppedTooBig  atomic.Uint64
	txDatagrams, txDatagramBytes, txDatagramErrors  atomic.Uint64
	rxDatagrams, rxDatagramBytes, rejectedHandshake atomic.Uint64
	handshakesInitiated, handshakesAnswered         atomic.Uint64
}

// Overlay is a node's end of the encrypted overlay: a wireguard-go device
// whose TUN side is in memory. Its methods are safe for concurrent use.
type Overlay struct {
	log    *slog.Logger
	mtu    int
	tun    *memTUN
	bind   *countingBind
	dev    *device.Device
	ctr    counters
	routes atomic.Pointer[prefixTable] // union of the peers' AllowedIPs

	out, in   *window       // packets inside wireguard-go (window.go)
	stopWatch chan struct{} // ends watchWindows
	watchDone chan struct{}

	mu     sync.Mutex // guards key, peers, closed
	key    Key
	peers  map[Key]peerState
	closed bool
}

// peerState is what the device holds for a peer; ok is false after a
// SetPeers that failed part way, so the next SetPeers rewrites it.
type peerState struct {
	Peer
	ok bool
}

// New creates an Overlay and brings its device up (the bind listens). It
// has no peers until SetPeers.
func New(opts Options) (*Overlay, error) {
	if opts.PrivateKey.IsZero() {
		return nil, errors.New("new overlay: no private key")
	}
	if opts.Deliver == nil {
		return nil, errors.New("new overlay: no Deliver function")
	}
	if opts.MTU == 0 {
		opts.MTU = DefaultMTU
	}
	if opts.MTU < 576 || opts.MTU > device.MaxContentSize {
		return nil, fmt.Errorf("new overlay: MTU %d: want 576 to %d", opts.MTU, device.MaxContentSize)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Bind == nil {
		if !opts.ListenAddr.IsValid() {
			return nil, errors.New("new overlay: no ListenAddr")
		}
		opts.Bind = newUDPBind(opts.ListenAddr)
	}
	o := &Overlay{
		log:   opts.Logger,
		mtu:   opts.MTU,
		key:   opts.PrivateKey,
		peers: make(map[Key]peerState),
	}
	o.routes.Store(&prefixTable{})
	o.out, o.in = newWindow(windowPackets), newWindow(windowPackets)
	o.tun = newMemTUN(opts.MTU, opts.Deliver, &o.ctr)
	o.tun.out, o.tun.in = o.out, o.in
	o.bind = &countingBind{Bind: opts.Bind, ctr: &o.ctr, out: o.out, in: o.in}
	o.stopWatch, o.watchDone = make(chan struct{}), make(chan struct{})
	go o.watchWindows()
	o.dev = device.NewDevice(o.tun, o.bind, o.deviceLogger())
	if err := o.dev.IpcSet("private_key=" + opts.PrivateKey.hex() + "\n"); err != nil {
		o.stopWindows()
		o.dev.Close()
		return nil, fmt.Errorf("new overlay: set private key: %w", err)
	}
	if err := o.dev.Up(); err != nil {
		o.stopWindows()
		o.dev.Close()
		return nil, fmt.Errorf("new overlay: bring device up: %w", err)
	}
	if b, ok := opts.Bind.(*udpBind); ok {
		// Both are optional: without them every datagram costs a system call of its own.
		gso, gro := b.offloads()
		o.log.Info("overlay: UDP offloads", "gso", gso, "gro", gro)
	}
	return o, nil
}

// Formats of wireguard-go's verbose messages that report a rejected
// handshake message (device/receive.go).
var rejectFormats = map[string]bool{
	"Received packet with invalid mac1":           true,
	"Received invalid initiation message from %s": true,
	"Received invalid response message from %s":   true,
	"Received message with unknown type":          true,
	"Could not decrypt invalid cookie response":   true,
}

// Formats of wireguard-go's verbose messages that report a valid handshake
// message from a peer (device/receive.go): a response completes a handshake
// this node began; an initiation is answered.
const (
	handshakeResponseFormat   = "%v - Received handshake response"
	handshakeInitiationFormat = "%v - Received handshake initiation"
)

// deviceLogger counts rejected and completed handshakes from wireguard-go's
// verbose messages and passes its messages on at debug (verbose) and warning
// (errors) level.
func (o *Overlay) deviceLogger() *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			switch {
			case rejectFormats[format]:
				o.ctr.rejectedHandshake.Add(1)
			case format == handshakeResponseFormat:
				o.ctr.handshakesInitiated.Add(1)
			case format == handshakeInitiationFormat:
				o.ctr.handshakesAnswered.Add(1)
			}
			if o.log.Enabled(context.Background(), slog.LevelDebug) {
				o.log.Debug("wireguard: " + fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			o.log.Warn("wireguard: " + fmt.Sprintf(format, args...))
		},
	}
}

// SendPackets queues IPv4 packets, each at most MTU bytes, for the peers
// whose AllowedIPs contain their destinations; WireGuard encrypts and sends
// them. It does not keep pkts. Packets to no peer, too large, or that find
// the queue full are dropped and counted (Stats); that is not an error. It
// returns net.ErrClosed after Close.
func (o *Overlay) SendPackets(pkts [][]byte) error {
	routes := o.routes.Load()
	if !o.tun.enqueue(pkts, routes.routes) {
		return net.ErrClosed
	}
	return nil
}

// SetPeers makes peers the Overlay's peers: it adds the new ones, updates
// the endpoint or AllowedIPs of those that changed and removes the others.
// Unchanged peers keep their sessions. A peer whose key changed is a new
// peer (the old key is removed). On error the device may hold part of the
// change; calling SetPeers again completes it.
func (o *Overlay) SetPeers(peers []Peer) error {
	want := make(map[Key]Peer, len(peers))
	for i, p := range peers {
		if err := o.checkPeer(p); err != nil {
			return fmt.Errorf("set peers: peer %d (%v): %w", i, p.PublicKey, err)
		}
		if _, dup := want[p.PublicKey]; dup {
			return fmt.Errorf("set peers: peer %d: public key %v listed twice", i, p.PublicKey)
		}
		p.AllowedIPs = canonicalPrefixes(p.AllowedIPs)
		want[p.PublicKey] = p
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return fmt.Errorf("set peers: %w", net.ErrClosed)
	}
	if want[o.key.PublicKey()].PublicKey == o.key.PublicKey() {
		return fmt.Errorf("set peers: peer %v is this node's own public key", o.key.PublicKey())
	}
	// Removals first, so that prefixes moving to another peer are free.
	var b strings.Builder
	for k := range o.peers {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", k.hex())
		}
	}
	for k, p := range want {
		old, had := o.peers[k]
		sameEndpoint := had && old.ok && old.Endpoint == p.Endpoint
		sameIPs := had && old.ok && slices.Equal(old.AllowedIPs, p.AllowedIPs)
		if sameEndpoint && sameIPs {
			continue
		}
		fmt.Fprintf(&b, "public_key=%s\n", k.hex())
		if !sameEndpoint && p.Endpoint.IsValid() {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint)
		}
		if !sameIPs {
			b.WriteString("replace_allowed_ips=true\n")
			for _, pfx := range p.AllowedIPs {
				fmt.Fprintf(&b, "allowed_ip=%s\n", pfx)
			}
		}
	}
	if b.Len() > 0 {
		if err := o.dev.IpcSet(b.String()); err != nil {
			for k := range want {
				o.peers[k] = peerState{Peer: want[k], ok: false}
			}
			return fmt.Errorf("set peers: configure device: %w", err)
		}
	}
	o.peers = make(map[Key]peerState, len(want))
	var all []netip.Prefix
	for k, p := range want {
		o.peers[k] = peerState{Peer: p, ok: true}
		all = append(all, p.AllowedIPs...)
	}
	o.routes.Store(newPrefixTable(all))
	return nil
}

// Handshake starts a handshake with every peer now, rather than when there is something to
// send. An agent that restarted calls it once it has its peers: its old sessions are gone, and
// a node that only receives (a download) would otherwise sit until the sending peer gives up on
// the old session, 15 s or more. wireguard-go sends a keepalive, which needs a session, when a
// peer's persistent keepalive is switched on; it is switched off again at once.
func (o *Overlay) Handshake() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return fmt.Errorf("handshake: %w", net.ErrClosed)
	}
	var on, off strings.Builder
	for k, p := range o.peers {
		if !p.ok {
			continue
		}
		fmt.Fprintf(&on, "public_key=%s\npersistent_keepalive_interval=%d\n", k.hex(), 25)
		fmt.Fprintf(&off, "public_key=%s\npersistent_keepalive_interval=0\n", k.hex())
	}
	if on.Len() == 0 {
		return nil
	}
	if err := o.dev.IpcSet(on.String()); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if err := o.dev.IpcSet(off.String()); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	return nil
}

func (o *Overlay) checkPeer(p Peer) error {
	if p.PublicKey.IsZero() {
		return errors.New("no public key")
	}
	if p.Endpoint.IsValid() && (p.Endpoint.Port() == 0 || !p.Endpoint.Addr().IsValid()) {
		return fmt.Errorf("endpoint %v: want an address and a port", p.Endpoint)
	}
	for _, pfx := range p.AllowedIPs {
		if !pfx.IsValid() {
			return fmt.Errorf("allowed IP %v: invalid prefix", pfx)
		}
	}
	return nil
}

// canonicalPrefixes returns ps masked, unmapped, sorted and without
// duplicates, so that equal sets compare equal.
func canonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// SetPrivateKey replaces the node's private key. Sessions with every peer
// end; traffic resumes with new handshakes once the peers know the new
// public key (their SetPeers).
func (o *Overlay) SetPrivateKey(k Key) error {
	if k.IsZero() {
		return errors.New("set private key: zero key")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return fmt.Errorf("set private key: %w", net.ErrClosed)
	}
	if _, ok := o.peers[k.PublicKey()]; ok {
		return fmt.Errorf("set private key: its public key %v is a peer's", k.PublicKey())
	}
	if err := o.dev.IpcSet("private_key=" + k.hex() + "\n"); err != nil {
		return fmt.Errorf("set private key: %w", err)
	}
	o.key = k
	return nil
}

// PublicKey returns the node's current public key.
func (o *Overlay) PublicKey() Key {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.key.PublicKey()
}

// Port returns the UDP port the bind listens on.
func (o *Overlay) Port() uint16 { return uint16(o.bind.port.Load()) }

// MTU returns the inner MTU.
func (o *Overlay) MTU() int { return o.mtu }

// Stats returns the counters.
func (o *Overlay) Stats() Stats {
	c := &o.ctr
	return Stats{
		TxPackets:          c.txPackets.Load(),
		TxBytes:            c.txBytes.Load(),
		RxPackets:          c.rxPackets.Load(),
		RxBytes:            c.rxBytes.Load(),
		DroppedNoPeer:      c.droppedNoPeer.Load(),
		DroppedQueueFull:   c.droppedQueueFull.Load(),
		DroppedTooBig:      c.droppedTooBig.Load(),
		TxDatagrams:        c.txDatagrams.Load(),
		TxDatagramBytes:    c.txDatagramBytes.Load(),
		RxDatagrams:        c.rxDatagrams.Load(),
		RxDatagramBytes:    c.rxDatagramBytes.Load(),
		TxErrors:           c.txDatagramErrors.Load(),
		RejectedHandshakes: c.rejectedHandshake.Load(),

		HandshakesInitiated: c.handshakesInitiated.Load(),
		HandshakesAnswered:  c.handshakesAnswered.Load(),

		OutboundWindowWaits: o.out.waits.Load(),
		InboundWindowWaits:  o.in.waits.Load(),
		WindowResets:        o.out.resets.Load() + o.in.resets.Load(),
	}
}

// PeerStats returns what WireGuard reports of each of the device's peers,
// in no particular order. It reads the device's configuration (the UAPI
// "get" operation), which takes the device's locks: it is for scrapes and
// status, not for the packet path.
func (o *Overlay) PeerStats() ([]PeerStats, error) {
	conf, err := o.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("peer stats: %w", err)
	}
	return parsePeerStats(conf)
}

// parsePeerStats reads the peers of wireguard-go's UAPI "get" answer: lines
// key=value, each peer's starting with its public_key (in hex).
func parsePeerStats(conf string) ([]PeerStats, error) {
	var peers []PeerStats
	var secs, nsecs int64
	flush := func() {
		if n := len(peers); n > 0 && (secs != 0 || nsecs != 0) {
			peers[n-1].LastHandshake = time.Unix(secs, nsecs)
		}
		secs, nsecs = 0, 0
	}
	for line := range strings.Lines(conf) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "public_key":
			flush()
			var key Key
			if key, err = parseHexKey(v); err == nil {
				peers = append(peers, PeerStats{PublicKey: key})
			}
		case "last_handshake_time_sec":
			secs, err = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsecs, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("peer stats: %s=%s: %w", k, v, err)
		}
	}
	flush()
	return peers, nil
}

// watchWindows opens a stalled window (window.go) until stopWindows.
func (o *Overlay) watchWindows() {
	defer close(o.watchDone)
	t := time.NewTicker(windowStall / 4)
	defer t.Stop()
	for {
		select {
		case <-o.stopWatch:
			return
		case now := <-t.C:
			o.out.check(now)
			o.in.check(now)
		}
	}
}

// stopWindows wakes whatever waits for a window, for good, and ends watchWindows.
func (o *Overlay) stopWindows() {
	o.out.close()
	o.in.close()
	close(o.stopWatch)
	<-o.watchDone
}

// Close stops the device: it closes the bind and the TUN side and waits for
// wireguard-go's goroutines to stop. Deliver is not called after Close
// returns. Close is idempotent.
func (o *Overlay) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	o.stopWindows()
	o.dev.Close()
	<-o.dev.Wait()
	return nil
}
