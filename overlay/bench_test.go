package overlay_test

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/podnet/podnet/overlay"
	"github.com/podnet/podnet/overlay/overlaytest"
)

// BenchmarkSendReceive measures the overlay per 64 KiB of pod traffic: 48
// packets of 1420 bytes queued with one SendPackets, encrypted, carried by
// the in-memory bind, decrypted and delivered.
func BenchmarkSendReceive(b *testing.B) {
	network := overlaytest.NewNetwork()
	var got atomic.Uint64
	var ovs [2]*overlay.Overlay
	addrs := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.57.1:51820"), netip.MustParseAddrPort("127.0.57.2:51820")}
	cidrs := [2]netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24")}
	for i := range ovs {
		key, err := overlay.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		ovs[i], err = overlay.New(overlay.Options{
			PrivateKey: key,
			ListenAddr: addrs[i],
			Bind:       network.Bind(addrs[i]),
			Deliver:    func(pkts [][]byte) { got.Add(uint64(len(pkts))) },
		})
		if err != nil {
			b.Fatal(err)
		}
		defer ovs[i].Close()
	}
	for i := range ovs {
		o := 1 - i
		if err := ovs[i].SetPeers([]overlay.Peer{{PublicKey: ovs[o].PublicKey(), Endpoint: addrs[o], AllowedIPs: []netip.Prefix{cidrs[o]}}}); err != nil {
			b.Fatal(err)
		}
	}
	const perFrame = 48
	batch := make([][]byte, perFrame)
	for i := range batch {
		batch[i] = make([]byte, overlay.DefaultMTU)
		copy(batch[i], packet(netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.2.20"), ""))
	}
	b.SetBytes(perFrame * overlay.DefaultMTU)
	b.ReportAllocs()
	sent := uint64(0)
	for b.Loop() {
		// Keep at most ~1000 packets in flight so nothing is dropped.
		for sent-got.Load() > 1000 {
			runtime.Gosched()
		}
		ovs[0].SendPackets(batch)
		sent += perFrame
	}
	for got.Load()+ovs[0].Stats().DroppedQueueFull+network.Dropped.Load() < sent {
		runtime.Gosched()
	}
	if st := ovs[0].Stats(); st.DroppedQueueFull > 0 || network.Dropped.Load() > 0 {
		b.Logf("dropped: queue %d, network %d of %d", st.DroppedQueueFull, network.Dropped.Load(), sent)
	}
}
