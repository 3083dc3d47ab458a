// Package capture is the pure core of `podnet capture POD [-c COUNT]
// [-w FILE.pcap] [FILTER]`: it writes and reads packets in the classic pcap
// file format, selects them with a tcpdump-style filter expression, and
// prints a one-line tcpdump-like summary of each.
//
// The package depends on the standard library only. It does not use
// gopacket: the pcap format is a 24-byte file header and a 16-byte record
// header per packet, about 40 lines of code, and the tests check what it
// writes by reading the files back with tshark rather than with another Go
// library. It must never open a socket or a file itself, start a
// goroutine or keep global state: the CLI hands it an io.Writer or an
// io.Reader and the packets it took from the pod's link (imports_test.go
// checks the dependencies).
//
// # Files
//
// Writer writes microsecond-resolution pcap files (magic 0xa1b2c3d4,
// version 2.4, little-endian) with one of the two link types podnet
// captures: LinkTypeEthernet for a pod's eth0 and LinkTypeRaw for the
// overlay's inner IP packets. Reader reads pcap files of either byte order
// and either time resolution, so it also reads what tcpdump and tshark
// write; it does not read pcapng.
//
// # Filters
//
// ParseFilter compiles a subset of pcap-filter(7) once; Filter.Match then
// tests a packet without allocating. The subset, with tcpdump's meaning:
//
//	host ADDR, src host ADDR, dst host ADDR, src ADDR, dst ADDR
//	net CIDR, src net CIDR, dst net CIDR (an address alone is a /32 or /128)
//	port N, src port N, dst port N, portrange A-B (also with src and dst)
//	tcp, udp, sctp, icmp, icmp6, ip, ip6, arp
//	ip|ip6|arp before host and net; tcp|udp|sctp before port and portrange
//	not (or !), and (or &&), or (or ||), parentheses
//
// As in pcap-filter(7), not binds tightest and and/or have equal precedence
// and associate left to right: "tcp or udp and port 53" is "(tcp or udp)
// and port 53". A value without qualifiers after and/or repeats the most
// recent qualifiers: "host 10.0.0.1 or 10.0.0.2" is "host 10.0.0.1 or host
// 10.0.0.2", and "not host a and b" is "not host a and host b". Host names
// and service names are not resolved: filters take addresses and numbers.
//
// An IPv4 host or net matches the IPv4 source or destination and, like
// tcpdump, the sender or target address of an ARP packet. Ports match TCP,
// UDP and SCTP, and of a fragmented IPv4 datagram only the first fragment.
// As in libpcap, the protocol of an IPv6 packet is the Next Header field of
// its fixed header: extension headers are not followed. Unlike tcpdump,
// which needs the vlan keyword for that, one 802.1Q tag is skipped.
//
// A predicate that needs a header the packet does not hold in full (or
// holds malformed) is unknown rather than false, and stays unknown under
// not: Match reports true only when the whole expression is true. So a
// truncated TCP segment matches "tcp" but neither "port 80" nor "not port
// 80", much as the kernel's BPF program rejects a packet it reads past.
package capture
