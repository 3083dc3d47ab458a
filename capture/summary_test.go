package capture

import (
	"encoding/binary"
	"testing"
)

func TestSummary(t *testing.T) {
	want := map[string]string{
		"tcp syn":        "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [S], seq 1000, length 0",
		"tcp reply":      "IP 10.244.1.2.80 > 10.244.0.3.41234: Flags [S.], seq 5000, ack 1001, length 0",
		"udp dns":        "IP 10.244.0.3.5353 > 10.96.0.10.53: UDP, length 33",
		"icmp echo":      "IP 10.244.0.3 > 10.244.1.2: ICMP echo request, id 1, seq 2, length 64",
		"arp request":    "ARP, Request who-has 10.244.0.1 tell 10.244.0.3",
		"sctp":           "IP 10.244.0.3.5000 > 10.244.1.2.6000: SCTP, length 0",
		"tcp6":           "IP6 fd00::3.41234 > fd00:1::2.80: Flags [S], seq 7, length 0",
		"udp6":           "IP6 fd00::3.5353 > fd00::a.53: UDP, length 20",
		"icmp6 echo":     "IP6 fd00::3 > fd00:1::2: ICMP6, echo request, id 1, seq 2, length 64",
		"raw tcp":        "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [S], seq 1000, length 0",
		"raw tcp6":       "IP6 fd00::3.41234 > fd00:1::2.80: Flags [S], seq 7, length 0",
		"vlan tcp":       "vlan 100, IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [S], seq 1000, length 0",
		"first fragment": "IP 10.244.0.3.5353 > 10.96.0.10.53: UDP, length 33",
		"fragment":       "IP 10.244.0.3 > 10.96.0.10: UDP fragment, offset 1480, length 41",
		"truncated tcp":  "IP 10.244.0.3 > 10.244.1.2: TCP truncated (2 bytes)",
		"truncated ip":   "IP truncated (12 bytes)",
		"ip options":     "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [S], seq 1000, length 0",
		"lldp":           "ethertype 0x88cc, length 46",
		"short ethernet": "Ethernet truncated (10 bytes)",
	}
	for _, p := range testPackets() {
		if got := Summary(p.linkType, p.data); got != want[p.name] {
			t.Errorf("Summary(%s) =\n  %s\nwant\n  %s", p.name, got, want[p.name])
		}
	}

	tcpIP := func(flags uint8, payload []byte) []byte {
		return ipv4(podA, podB, protoTCP, 0, tcp(podA, podB, 41234, 80, 100, 5, flags, payload))
	}
	set := func(b []byte, off int, v ...byte) []byte { copy(b[off:], v); return b }
	mutateIP := func(b []byte, fn func(b []byte)) []byte { fn(b); return b }
	udpBig := ipv4(podA, dnsIP, protoUDP, 0, udp(podA, dnsIP, 5353, 53, make([]byte, 1000)))
	unreachable := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, make([]byte, 28)...)
	ns := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...)
	copy(ns[8:], []byte{0xfd, 0, 0, 1, 14: 0, 15: 2})
	hopByHop := append([]byte{protoUDP, 0, 0, 0, 0, 0, 0, 0}, udp(podA6, "fd00::a", 5353, 53, make([]byte, 4))...)
	frag6 := []byte{protoUDP, 0, 0x05, 0xc8, 0, 0, 0, 1, 1, 2, 3, 4} // offset 1480
	tests := []struct {
		name     string
		linkType uint32
		pkt      []byte
		want     string
	}{
		{"push ack with data", LinkTypeRaw, tcpIP(tcpPSH|tcpACK, make([]byte, 10)), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [P.], seq 100:110, ack 5, length 10"},
		{"ack only", LinkTypeRaw, tcpIP(tcpACK, nil), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [.], ack 5, length 0"},
		{"fin ack", LinkTypeRaw, tcpIP(tcpFIN|tcpACK, nil), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [F.], seq 100, ack 5, length 0"},
		{"rst", LinkTypeRaw, tcpIP(tcpRST, nil), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [R], seq 100, length 0"},
		{"no flags", LinkTypeRaw, tcpIP(0, nil), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [none], length 0"},
		{"all flags", LinkTypeRaw, tcpIP(0xff, nil), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [FSRP.UEW], seq 100, ack 5, length 0"},
		{"ecn syn", LinkTypeRaw, tcpIP(tcpSYN|tcpECE|tcpCWR, nil), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [SEW], seq 100, length 0"},
		{"tcp bad data offset", LinkTypeRaw, set(tcpIP(tcpSYN, nil), 32, 0x40), "IP 10.244.0.3 > 10.244.1.2: TCP bad header length 16"},
		{"tcp data offset past the end", LinkTypeRaw, set(tcpIP(tcpSYN, nil), 32, 0xf0), "IP 10.244.0.3 > 10.244.1.2: TCP bad header length 60"},
		{"cut by the snaplen", LinkTypeRaw, udpBig[:100], "IP 10.244.0.3.5353 > 10.96.0.10.53: UDP, length 1000"},
		{"udp bad length", LinkTypeRaw, set(ipv4(podA, dnsIP, protoUDP, 0, udp(podA, dnsIP, 5353, 53, nil)), 24, 0, 4), "IP 10.244.0.3.5353 > 10.96.0.10.53: UDP, bad length 4"},
		{"udp truncated", LinkTypeRaw, ipv4(podA, dnsIP, protoUDP, 0, []byte{1, 2, 3}), "IP 10.244.0.3 > 10.96.0.10: UDP truncated (3 bytes)"},
		{"icmp echo reply", LinkTypeRaw, ipv4(podB, podA, protoICMP, 0, icmpEcho(0, 7, 9, 0)), "IP 10.244.1.2 > 10.244.0.3: ICMP echo reply, id 7, seq 9, length 8"},
		{"icmp port unreachable", LinkTypeRaw, ipv4(podB, podA, protoICMP, 0, unreachable), "IP 10.244.1.2 > 10.244.0.3: ICMP port unreachable, length 36"},
		{"icmp need to frag", LinkTypeRaw, ipv4(podB, podA, protoICMP, 0, set(append([]byte{}, unreachable...), 1, 4, 0, 0, 0, 0, 0x05, 0x78)), "IP 10.244.1.2 > 10.244.0.3: ICMP need to frag (mtu 1400), length 36"},
		{"icmp time exceeded", LinkTypeRaw, ipv4(podB, podA, protoICMP, 0, set(append([]byte{}, unreachable...), 0, 11, 0)), "IP 10.244.1.2 > 10.244.0.3: ICMP time exceeded in-transit, length 36"},
		{"icmp other", LinkTypeRaw, ipv4(podB, podA, protoICMP, 0, []byte{42, 1, 0, 0}), "IP 10.244.1.2 > 10.244.0.3: ICMP type 42, code 1, length 4"},
		{"icmp truncated", LinkTypeRaw, ipv4(podB, podA, protoICMP, 0, []byte{8, 0}), "IP 10.244.1.2 > 10.244.0.3: ICMP truncated (2 bytes)"},
		{"icmp6 neighbor solicitation", LinkTypeRaw, ipv6(podA6, "ff02::1:ff00:2", protoICMPv6, ns), "IP6 fd00::3 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has fd00:1::2, length 24"},
		{"icmp6 echo reply", LinkTypeRaw, ipv6(podB6, podA6, protoICMPv6, icmpEcho(129, 1, 2, 0)), "IP6 fd00:1::2 > fd00::3: ICMP6, echo reply, id 1, seq 2, length 8"},
		{"ipv6 hop-by-hop then udp", LinkTypeRaw, ipv6(podA6, "fd00::a", ipv6HopByHop, hopByHop), "IP6 fd00::3.5353 > fd00::a.53: UDP, length 4"},
		{"ipv6 later fragment", LinkTypeRaw, ipv6(podA6, "fd00::a", ipv6Fragment, frag6), "IP6 fd00::3 > fd00::a: UDP fragment, offset 1480, length 4"},
		{"ipv6 extension header cut", LinkTypeRaw, ipv6(podA6, "fd00::a", ipv6HopByHop, []byte{protoUDP, 3, 0, 0}), "IP6 fd00::3 > fd00::a: extension header 0 truncated"},
		{"ipv6 truncated", LinkTypeRaw, ipv6(podA6, podB6, protoTCP, nil)[:39], "IP6 truncated (39 bytes)"},
		{"ip6 ethertype carrying ipv4", LinkTypeEthernet, eth(etherTypeIPv6, ipv4(podA, podB, 0, 0, make([]byte, 40))), "IP6 bad version 4 (60 bytes)"},
		{"gre", LinkTypeRaw, ipv4(podA, podB, 47, 0, make([]byte, 4)), "IP 10.244.0.3 > 10.244.1.2: ip-proto-47, length 4"},
		{"ip bad header length", LinkTypeRaw, mutateIP(tcpIP(tcpSYN, nil), func(b []byte) { b[0] = 0x44 }), "IP bad header length 16 (40 bytes)"},
		{"ip options cut", LinkTypeRaw, mutateIP(tcpIP(tcpSYN, nil)[:22], func(b []byte) { b[0] = 0x46 }), "IP truncated (22 bytes, header of 24)"},
		{"ip bad total length", LinkTypeRaw, mutateIP(tcpIP(tcpSYN, nil), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 10) }), "IP bad total length 10 (40 bytes)"},
		{"ip total length 0", LinkTypeRaw, mutateIP(tcpIP(tcpACK, make([]byte, 5)), func(b []byte) { binary.BigEndian.PutUint16(b[2:], 0) }), "IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [.], seq 100:105, ack 5, length 5"},
		{"arp reply", LinkTypeEthernet, eth(etherTypeARP, arp(2, "10.244.0.1", podA)), "ARP, Reply 10.244.0.1 is-at 0a:58:0a:f4:00:03"},
		{"arp other op", LinkTypeEthernet, eth(etherTypeARP, arp(9, "10.244.0.1", podA)), "ARP, op 9, sender 10.244.0.1, target 10.244.0.3"},
		{"arp not ipv4", LinkTypeEthernet, eth(etherTypeARP, set(arp(1, podA, podB), 0, 0, 6)), "ARP, hardware type 6, protocol 0x0800, op 1, length 28"},
		{"arp truncated", LinkTypeEthernet, eth(etherTypeARP, arp(1, podA, podB)[:20]), "ARP truncated (20 bytes)"},
		{"arp very short", LinkTypeEthernet, eth(etherTypeARP, []byte{0, 1}), "ARP truncated (2 bytes)"},
		{"802.3", LinkTypeEthernet, eth(46, make([]byte, 46)), "802.3, length 46"},
		{"vlan cut", LinkTypeEthernet, vlanEth(5, etherTypeIPv4, nil)[:16], "802.1Q truncated (16 bytes)"},
		{"raw empty", LinkTypeRaw, nil, "empty packet"},
		{"raw version 5", LinkTypeRaw, []byte{0x50, 1, 2}, "IP version 5 unknown (3 bytes)"},
		{"unknown link type", 147, []byte{1, 2, 3}, "link type 147, length 3"},
	}
	for _, tt := range tests {
		if got := Summary(tt.linkType, tt.pkt); got != tt.want {
			t.Errorf("%s: Summary =\n  %s\nwant\n  %s", tt.name, got, tt.want)
		}
	}
}
