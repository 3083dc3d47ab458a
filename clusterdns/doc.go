// Package clusterdns is the cluster DNS server of one node agent: it
// answers the names the Kubernetes DNS specification defines for the
// cluster domain from plain structs the agent gives it, and forwards every
// other name to the upstream servers, with a bounded cache. It is built on
// github.com/miekg/dns.
//
// Each node answers its own pods, as NodeLocal DNSCache does: the agent's
// data path hands the Server the DNS messages that pods send to the DNS IP
// — UDP datagrams to ServeDatagram, TCP connections (net.Conn) to
// ServeConn — and sends the answers back. So the package does no socket
// I/O toward pods, and it must never import gVisor, Kubernetes or another
// podnet package (a test forbids it); its only sockets are the host sockets
// of upstream forwarding.
//
// # Records
//
// Update converts Records into an immutable index — a map from every
// lowercase name of the zone, empty non-terminals included, to its records
// — and swaps it in with an atomic.Pointer; queries never take a lock. The
// names, with <domain> the cluster domain and TTL Options.TTL (5 s, as
// CoreDNS's kubernetes plugin):
//
//   - <svc>.<ns>.svc.<domain>: A/AAAA of the ClusterIPs; for a headless
//     Service, of its ready endpoints (all of them with
//     publishNotReadyAddresses); a CNAME for an ExternalName Service.
//   - <ep>.<svc>.<ns>.svc.<domain> for each answered endpoint of a headless
//     Service, <ep> being its hostname or else its dashed address
//     (10-244-1-5), as CoreDNS names it; and <hostname>.<subdomain>.<ns>.svc
//     for a pod that sets both when a headless Service <subdomain> exists
//     and the pod is not one of its endpoints (an endpoint, ready or not,
//     decides by itself whether its name is answered).
//   - _<port>._<proto>.<svc>.<ns>.svc.<domain> SRV for each named port:
//     priority 0, the weight 100 spread evenly over the records (at least
//     1), as CoreDNS; the target is the Service name (ClusterIP) or each
//     endpoint's name with its own target port (headless); the targets'
//     addresses go in the additional section. An SRV query for the Service
//     name itself answers every port, named or not, as CoreDNS does.
//   - a-b-c-d.<ns>.pod.<domain>: A for a pod of that namespace with that IP.
//     This is CoreDNS's "pods verified" mode, not the "pods insecure" of
//     the kubeadm Corefile, which answers any well-formed name: an answer
//     then says that such a pod exists.
//   - PTR for ClusterIPs (the Service name), answered endpoint addresses of
//     headless Services (the endpoint's name, one record per Service), and
//     pod IPs that no Service names (the pod name). The Server answers only
//     these exact reverse names; other reverse names go upstream.
//   - <domain> SOA and NS ns.dns.<domain>, whose A is Options.DNSIP; TXT
//     dns-version.<domain> "1.1.0" (TTL 28800), as the specification asks.
//     The SOA is CoreDNS's: ns.dns.<domain>. hostmaster.<domain>. serial
//     7200 1800 86400 TTL, with a serial that grows with every Update.
//
// Names are matched case-insensitively; answers echo the question's
// spelling. Zone answers are authoritative (AA) and offer recursion (RA).
// A name of the zone that does not exist is NXDOMAIN, an existing name
// without the asked type (an empty non-terminal such as svc.<domain>,
// <ns>.svc.<domain> or _tcp.<svc>...) NOERROR without answers; both carry
// the SOA in the authority section (for a reverse name, an SOA owned by
// in-addr.arpa or ip6.arpa). A CNAME (ExternalName) answers every type but
// CNAME with the CNAME followed by the target's records: a target in the
// cluster domain is answered from the index (up to 8 links), one outside
// it through the upstreams; the final rcode is the target's (RFC 6604), and
// the CNAME alone is the answer when the upstreams fail. ANY answers every
// record of the name. Before the first Update the cluster domain answers
// SERVFAIL rather than a name error that clients would cache.
//
// # What is refused
//
// The Server follows miekg/dns's default acceptance rules and CoreDNS where
// they decide: a message shorter than a header, or a response, is dropped;
// one whose header is readable but the rest not is FORMERR, as is a query
// with other than one question, two OPT records or the qtype OPT; an
// opcode other than QUERY is NOTIMP; an EDNS version other than 0 is
// BADVERS. A class other than IN (CHAOS, ANY, ...) is REFUSED, never
// forwarded: the server serves no zone there. Zone transfers (AXFR, IXFR)
// are REFUSED over UDP and TCP, for any name. MAILA, MAILB, TSIG and TKEY
// are NOTIMP. A panic while answering is recovered and counted (and the
// query dropped): it is a bug, and the fuzz test looks for it.
//
// # Size, EDNS0 and TCP
//
// A UDP answer is at most 512 bytes without EDNS0, and with EDNS0 the
// client's size bounded to [512, Options.UDPSize] (1232 by default); the
// OPT of an EDNS0 query is answered with the Server's size and the client's
// DO bit. An answer that does not fit is truncated with TC set (miekg's
// Msg.Truncate), and the client retries over TCP, where ServeConn answers
// in full. ServeConn reads length-prefixed queries in order, ends an idle
// connection after TCPIdleTimeout, and ends one whose query is longer than
// MaxTCPQuery.
//
// # Forwarding
//
// Names outside the cluster domain (and reverse names not in the index)
// are forwarded to Options.Upstreams, or the nameservers of resolv.conf:
// the one that answered last first, then the others in order, each try
// bounded by UpstreamTimeout; UDP, then TCP to the same server when its
// answer is truncated. An upstream's SERVFAIL or REFUSED counts as a
// failure; when every upstream has failed the client gets SERVFAIL. The
// client gets the upstream's rcode and records, its own id and question,
// AA clear. The cache is keyed by (lowercase name, type, class, DO bit) and
// holds positive answers for their smallest TTL and negative ones (NXDOMAIN
// and NODATA with an SOA) for the SOA's minimum, both at most 30 s as the
// kubeadm Corefile's `cache 30`; TTLs count down in cached answers.
// Identical queries in flight share one exchange. At most MaxInFlight
// queries wait for upstreams; beyond, SERVFAIL at once. The client's EDNS
// options (such as ECS) are not passed on.
//
// A datagram that needs an upstream is forwarded from a goroutine the
// Server owns, which writes the answer later; ServeDatagram itself never
// waits for I/O. Close cancels those exchanges, closes the connections of
// running ServeConns and waits for all of them.
//
// # The hot path
//
// A cluster A or AAAA query with a plain name — what most pods ask — is
// answered without unpacking it into a dns.Msg: the name is lowercased into
// a stack buffer, looked up in the index, and the answer is the query's
// header and question followed by records prepacked at Update, written into
// a pooled buffer. Everything else takes the general path through
// dns.Msg, which gives the same answer for what the fast path takes (a test
// compares them). Counters (Stats) replace logging on this path.
package clusterdns
