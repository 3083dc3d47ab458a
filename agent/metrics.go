package agent

import (
	"sync"
	"time"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/overlay"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus metrics. The data path keeps plain counters (stack.Stats,
// overlay.Stats, ingress.Stats, clusterdns.Stats); statsCollector reads them at scrape time, so
// the packet path pays nothing.
type metrics struct {
	reg         prometheus.Registerer
	podSetup    prometheus.Summary
	podTeardown prometheus.Summary
	serviceSync prometheus.Histogram
	policySync  prometheus.Histogram
	stats       *statsCollector
}

func newMetrics(reg prometheus.Registerer, node string) *metrics {
	return &metrics{
		reg: reg,
		podSetup: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:        "podnet_pod_network_setup_seconds",
			Help:        "Time the agent takes to attach a pod: address, interface in its network namespace, data-path port.",
			ConstLabels: prometheus.Labels{"node": node},
			Objectives:  map[float64]float64{0.5: 0.01, 0.9: 0.01, 0.99: 0.001},
		}),
		podTeardown: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:        "podnet_pod_network_teardown_seconds",
			Help:        "Time the agent takes to detach a pod: data-path port, interface and address released.",
			ConstLabels: prometheus.Labels{"node": node},
			Objectives:  map[float64]float64{0.5: 0.01, 0.9: 0.01, 0.99: 0.001},
		}),
		serviceSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "podnet_service_sync_seconds",
			Help:        "Time to program a change of Services or EndpointSlices into the node: the proxy's table, conntrack flushes and NodePort listeners.",
			ConstLabels: prometheus.Labels{"node": node},
			Buckets:     prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		policySync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "podnet_policy_compile_seconds",
			Help:        "Time to compile the cluster's NetworkPolicies for the node's data path after a change.",
			ConstLabels: prometheus.Labels{"node": node},
			Buckets:     prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
}

// register adds the agent's metrics to the registry; unregister removes them (a node that leaves
// and comes back registers again).
func (m *metrics) register(a *Agent) {
	if m.reg == nil {
		return
	}
	m.stats = &statsCollector{a: a}
	m.reg.MustRegister(m.podSetup, m.podTeardown, m.serviceSync, m.policySync, m.stats)
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	m.reg.Unregister(m.podSetup)
	m.reg.Unregister(m.podTeardown)
	m.reg.Unregister(m.serviceSync)
	m.reg.Unregister(m.policySync)
	m.stats.stop()
}

// MetricFamily describes one metric family an agent exports.
type MetricFamily struct {
	Name string
	// Type is "counter", "gauge", "summary" or "histogram".
	Type string
	// Labels are the family's label names, "node" first (every family has it).
	Labels []string
}

// MetricFamilies returns every metric family an agent registers, in the README's order (the
// registry's Go and process collectors are the caller's). A family whose samples depend on
// traffic (a DNS RCODE, an Ingress backend, a denied policy, a peer's handshake) appears in a
// scrape once it has one. A test keeps this list equal to what the agent exports; the Grafana
// dashboard (deploy/grafana) and the README are checked against it.
func MetricFamilies() []MetricFamily {
	const counter, gauge = "counter", "gauge"
	return []MetricFamily{
		// The data path.
		{"podnet_stack_frames_total", counter, []string{"node", "path"}},
		{"podnet_stack_fast_path_bytes_total", counter, []string{"node"}},
		{"podnet_stack_overlay_packets_total", counter, []string{"node", "direction"}},
		{"podnet_stack_overlay_bytes_total", counter, []string{"node", "direction"}},
		{"podnet_stack_dropped_frames_total", counter, []string{"node", "reason"}},
		{"podnet_stack_refused_total", counter, []string{"node"}},
		{"podnet_stack_limit_drops_total", counter, []string{"node"}},
		{"podnet_egress_flows_total", counter, []string{"node", "protocol"}},
		{"podnet_egress_flows", gauge, []string{"node", "protocol"}},
		{"podnet_egress_dial_errors_total", counter, []string{"node"}},
		// The WireGuard overlay.
		{"podnet_overlay_packets_total", counter, []string{"node", "direction"}},
		{"podnet_overlay_bytes_total", counter, []string{"node", "direction"}},
		{"podnet_overlay_dropped_packets_total", counter, []string{"node", "reason"}},
		{"podnet_overlay_window_waits_total", counter, []string{"node", "direction"}},
		{"podnet_overlay_datagrams_total", counter, []string{"node", "direction"}},
		{"podnet_overlay_datagram_bytes_total", counter, []string{"node", "direction"}},
		{"podnet_overlay_send_errors_total", counter, []string{"node"}},
		{"podnet_overlay_rejected_handshakes_total", counter, []string{"node"}},
		{"podnet_overlay_handshakes_total", counter, []string{"node", "role"}},
		{"podnet_overlay_peers", gauge, []string{"node"}},
		{"podnet_overlay_peer_handshake_age_seconds", gauge, []string{"node", "peer"}},
		// Services and connection tracking.
		{"podnet_services", gauge, []string{"node"}},
		{"podnet_service_flows_total", counter, []string{"node", "result"}},
		{"podnet_service_flows_remapped_total", counter, []string{"node"}},
		{"podnet_service_packets_total", counter, []string{"node"}},
		{"podnet_service_conntrack_entries", gauge, []string{"node"}},
		{"podnet_service_conntrack_removed_total", counter, []string{"node", "reason"}},
		{"podnet_service_sync_seconds", "histogram", []string{"node"}},
		// NetworkPolicy.
		{"podnet_policy_denied_total", counter, []string{"node", "policy"}},
		{"podnet_policy_verdicts_total", counter, []string{"node", "policy", "verdict"}},
		// The flow log.
		{"podnet_flows_total", counter, []string{"node", "verdict"}},
		{"podnet_policy_compile_seconds", "histogram", []string{"node"}},
		// Cluster DNS.
		{"podnet_dns_queries_total", counter, []string{"node", "kind"}},
		{"podnet_dns_responses_total", counter, []string{"node", "rcode"}},
		{"podnet_dns_upstream_errors_total", counter, []string{"node"}},
		// Ingress.
		{"podnet_ingress_requests_total", counter, []string{"node", "backend", "status"}},
		{"podnet_ingress_errors_total", counter, []string{"node", "reason"}},
		{"podnet_ingress_retries_total", counter, []string{"node"}},
		{"podnet_ingress_connections", gauge, []string{"node"}},
		{"podnet_ingress_connections_total", counter, []string{"node", "result"}},
		// Pods.
		{"podnet_pods", gauge, []string{"node"}},
		{"podnet_pod_network_setup_seconds", "summary", []string{"node"}},
		{"podnet_pod_network_teardown_seconds", "summary", []string{"node"}},
	}
}

var (
	descStackFrames = prometheus.NewDesc("podnet_stack_frames_total",
		"Frames of the node's data path: fast (pod to pod without the netstack), to_stack (pod to netstack), from_stack (netstack to pod), to_overlay (pod to another node, a GSO super-frame counted once).",
		[]string{"node", "path"}, nil)
	descStackDropped = prometheus.NewDesc("podnet_stack_dropped_frames_total",
		"Frames the node's data path dropped, by reason.", []string{"node", "reason"}, nil)
	descStackFastBytes = prometheus.NewDesc("podnet_stack_fast_path_bytes_total",
		"Bytes of the frames forwarded from pod to pod of the node without the netstack.", []string{"node"}, nil)
	descStackOverlayPackets = prometheus.NewDesc("podnet_stack_overlay_packets_total",
		"IPv4 packets the data path handed to the overlay (tx, cut to the MTU, the netstack's included) and delivered from it to a pod or the gateway (rx).", []string{"node", "direction"}, nil)
	descStackOverlayBytes = prometheus.NewDesc("podnet_stack_overlay_bytes_total",
		"Bytes of the packets of podnet_stack_overlay_packets_total.", []string{"node", "direction"}, nil)
	descStackRefused = prometheus.NewDesc("podnet_stack_refused_total",
		"TCP segments answered with RST and UDP datagrams answered with ICMP port unreachable: to an address of the cluster or the pod range that nothing serves.", []string{"node"}, nil)
	descStackLimitDrops = prometheus.NewDesc("podnet_stack_limit_drops_total",
		"Connection attempts and UDP flows turned away because the netstack's limits (pending handshakes, host connections, UDP flows) were reached.", []string{"node"}, nil)
	descEgressFlows = prometheus.NewDesc("podnet_egress_flows_total",
		"Connections (tcp) and flows (udp) from pods to outside the cluster, relayed through the node's host sockets.", []string{"node", "protocol"}, nil)
	descEgressActive = prometheus.NewDesc("podnet_egress_flows",
		"Connections (tcp) and flows (udp) from pods to outside the cluster open now.", []string{"node", "protocol"}, nil)
	descEgressDialErrors = prometheus.NewDesc("podnet_egress_dial_errors_total",
		"Host connections for pods that could not be made (the pod got a RST, or its UDP flow was dropped).", []string{"node"}, nil)
	descOverlayPackets = prometheus.NewDesc("podnet_overlay_packets_total",
		"Inner packets sent into (tx) and received from (rx) the WireGuard overlay.", []string{"node", "direction"}, nil)
	descOverlayBytes = prometheus.NewDesc("podnet_overlay_bytes_total",
		"Bytes of inner packets sent into (tx) and received from (rx) the WireGuard overlay.", []string{"node", "direction"}, nil)
	descOverlayDropped = prometheus.NewDesc("podnet_overlay_dropped_packets_total",
		"Inner packets the overlay dropped, by reason.", []string{"node", "reason"}, nil)
	descOverlayWindowWaits = prometheus.NewDesc("podnet_overlay_window_waits_total",
		"Times the overlay held packets back because WireGuard held its bound of them (overlay/window.go), by direction; reset: bounds opened again after a stall.", []string{"node", "direction"}, nil)
	descOverlayDatagrams = prometheus.NewDesc("podnet_overlay_datagrams_total",
		"UDP datagrams of the WireGuard underlay, sent (tx) and received (rx).", []string{"node", "direction"}, nil)
	descOverlayDatagramBytes = prometheus.NewDesc("podnet_overlay_datagram_bytes_total",
		"Bytes of the UDP datagrams of the WireGuard underlay, sent (tx) and received (rx): the inner packets with WireGuard's overhead, handshakes and keepalives.", []string{"node", "direction"}, nil)
	descOverlaySendErrors = prometheus.NewDesc("podnet_overlay_send_errors_total",
		"UDP datagrams of the WireGuard underlay that could not be sent (lost).", []string{"node"}, nil)
	descOverlayHandshakes = prometheus.NewDesc("podnet_overlay_handshakes_total",
		"WireGuard handshakes with peers: initiator, begun by this node and completed (a valid response came back); responder, a peer's valid initiation answered.", []string{"node", "role"}, nil)
	descOverlayPeers = prometheus.NewDesc("podnet_overlay_peers",
		"WireGuard peers configured: the other nodes that published a key.", []string{"node"}, nil)
	descOverlayHandshakeAge = prometheus.NewDesc("podnet_overlay_peer_handshake_age_seconds",
		"Seconds since the latest completed WireGuard handshake with a peer (a node); none for a peer without one yet. WireGuard renews a session in use every 2 minutes.", []string{"node", "peer"}, nil)
	descServices = prometheus.NewDesc("podnet_services",
		"Services programmed in the node's Service table.", []string{"node"}, nil)
	descNATFlows = prometheus.NewDesc("podnet_service_flows_total",
		"New flows to Services: translated, refused (no endpoint), dropped (connection-tracking table full) or dropped_half_open (the half-open share of the table, all or the client's, full).", []string{"node", "result"}, nil)
	descNATActive = prometheus.NewDesc("podnet_service_conntrack_entries",
		"Flows in the node's connection-tracking table.", []string{"node"}, nil)
	descNATRemoved = prometheus.NewDesc("podnet_service_conntrack_removed_total",
		"Entries removed from the node's connection-tracking table: expired (timed out) or flushed (their UDP backend went, or their pod was detached).", []string{"node", "reason"}, nil)
	descNATRemapped = prometheus.NewDesc("podnet_service_flows_remapped_total",
		"New flows to Services given another source port, because their reply would have matched another flow (a client port reused toward the same backend).", []string{"node"}, nil)
	descNATPackets = prometheus.NewDesc("podnet_service_packets_total",
		"Packets translated by Service NAT, both ways.", []string{"node"}, nil)
	descPolicyDenied = prometheus.NewDesc("podnet_policy_denied_total",
		"New flows (TCP connection attempts, first UDP datagrams) that NetworkPolicy denied on this node, by the policies that isolated the pod and allowed nothing.",
		[]string{"node", "policy"}, nil)
	descPolicyVerdicts = prometheus.NewDesc("podnet_policy_verdicts_total",
		"New flows NetworkPolicy judged on this node, by the policies that decided (those that allowed it, or that isolated the pod and allowed nothing) and the verdict: allowed or denied.",
		[]string{"node", "policy", "verdict"}, nil)
	descFlows = prometheus.NewDesc("podnet_flows_total",
		"New flows the node's data path saw (podnet flows), by verdict: forwarded, denied (NetworkPolicy), no-endpoint (a Service without a ready endpoint), dropped (connection-tracking table full).",
		[]string{"node", "verdict"}, nil)
	descDNSAnswers = prometheus.NewDesc("podnet_dns_responses_total",
		"Answers of the node's cluster DNS, by RCODE.", []string{"node", "rcode"}, nil)
	descDNSQueries = prometheus.NewDesc("podnet_dns_queries_total",
		"Queries to the node's cluster DNS, and what became of those not answered from the cluster's records: forwarded upstream, answered from the cache, answered truncated, dropped, refused for overload.",
		[]string{"node", "kind"}, nil)
	descDNSUpstreamErrors = prometheus.NewDesc("podnet_dns_upstream_errors_total",
		"Failed tries of the node's cluster DNS to its upstream servers: timeouts, network errors, SERVFAIL or REFUSED.", []string{"node"}, nil)
	descOverlayRejected = prometheus.NewDesc("podnet_overlay_rejected_handshakes_total",
		"WireGuard handshake messages refused: from keys that are not peers, with invalid MACs, or malformed.", []string{"node"}, nil)
	descIngressRequests = prometheus.NewDesc("podnet_ingress_requests_total",
		"Responses of the node's Ingress controller, by status class (2xx...) and backend: the Service port, namespace/service:port as the Ingress names it, or none for the requests no rule matched.",
		[]string{"node", "backend", "status"}, nil)
	descIngressErrors = prometheus.NewDesc("podnet_ingress_errors_total",
		"Requests the Ingress controller answered itself or could not answer: no_route (404), no_endpoint (503), too_large (413), upstream (the backend failed: 502, 504), aborted (the client left).",
		[]string{"node", "reason"}, nil)
	descIngressRetries = prometheus.NewDesc("podnet_ingress_retries_total",
		"Ingress requests sent again to another endpoint after the connection to the first could not be made.", []string{"node"}, nil)
	descIngressConns = prometheus.NewDesc("podnet_ingress_connections",
		"Client connections to the node's Ingress controller open now.", []string{"node"}, nil)
	descIngressConnsTotal = prometheus.NewDesc("podnet_ingress_connections_total",
		"Client connections to the node's Ingress controller: accepted, or rejected at accept (over its limit of connections, in all or per client).", []string{"node", "result"}, nil)
	descPods = prometheus.NewDesc("podnet_pods",
		"Pods attached to the node's network now.", []string{"node"}, nil)
)

// statsCollector turns the data path's counters into metrics.
type statsCollector struct {
	mu sync.Mutex // guards a; held while collecting
	a  *Agent     // nil once the agent stopped
}

// Describe describes nothing: the collector is "unchecked", because every node's agent has one
// with the same metrics, told apart only by the node label of what Collect sends. A registry
// cannot unregister an unchecked collector, so the agent stops it instead when it shuts down:
// it collects nothing more and lets go of the agent, and the next agent of the node (a restart)
// registers its own.
func (c *statsCollector) Describe(chan<- *prometheus.Desc) {}

// stop makes the collector collect nothing from now on, once a Collect under way has ended.
func (c *statsCollector) stop() {
	c.mu.Lock()
	c.a = nil
	c.mu.Unlock()
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.a == nil {
		return
	}
	node := c.a.opts.NodeName
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{node}, labels...)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{node}, labels...)...)
	}
	s := c.a.stack.Stats()
	counter(descStackFrames, s.FastPathFrames, "fast")
	counter(descStackFrames, s.ToStackFrames, "to_stack")
	counter(descStackFrames, s.FromStackFrames, "from_stack")
	counter(descStackFrames, s.OverlayTxFrames, "to_overlay")
	counter(descStackFastBytes, s.FastPathBytes)
	counter(descStackOverlayPackets, s.OverlayTxPackets, "tx")
	counter(descStackOverlayPackets, s.OverlayRxPackets, "rx")
	counter(descStackOverlayBytes, s.OverlayTxBytes, "tx")
	counter(descStackOverlayBytes, s.OverlayRxBytes, "rx")
	counter(descStackDropped, s.DroppedSpoofed, "spoofed")
	counter(descStackDropped, s.DroppedTinyFragments, "tiny_fragment")
	counter(descStackDropped, s.DroppedTTL, "ttl")
	counter(descStackDropped, s.DroppedNoRoute, "no_route")
	counter(descStackDropped, s.DroppedBadFrame, "bad_frame")
	counter(descStackDropped, s.DroppedUnsupported, "unsupported")
	counter(descStackDropped, s.DroppedNewFlows, "new_flow_limit")
	counter(descStackDropped, s.DroppedWrite, "write")
	counter(descStackDropped, s.DroppedOverlayTx, "overlay_tx")
	counter(descStackDropped, s.DroppedOverlayRx, "overlay_rx")
	counter(descStackRefused, s.Refused)
	counter(descStackLimitDrops, s.LimitDrops)
	counter(descEgressFlows, s.HostTCPConns, "tcp")
	counter(descEgressFlows, s.HostUDPFlows, "udp")
	gauge(descEgressActive, float64(s.HostTCPActive), "tcp")
	gauge(descEgressActive, float64(s.HostUDPActive), "udp")
	counter(descEgressDialErrors, s.HostDialErrors)
	o := c.a.overlay.Stats()
	counter(descOverlayPackets, o.TxPackets, "tx")
	counter(descOverlayPackets, o.RxPackets, "rx")
	counter(descOverlayBytes, o.TxBytes, "tx")
	counter(descOverlayBytes, o.RxBytes, "rx")
	counter(descOverlayDropped, o.DroppedNoPeer, "no_peer")
	counter(descOverlayDropped, o.DroppedQueueFull, "queue_full")
	counter(descOverlayDropped, o.DroppedTooBig, "too_big")
	counter(descOverlayWindowWaits, o.OutboundWindowWaits, "tx")
	counter(descOverlayWindowWaits, o.InboundWindowWaits, "rx")
	counter(descOverlayWindowWaits, o.WindowResets, "reset")
	counter(descOverlayDatagrams, o.TxDatagrams, "tx")
	counter(descOverlayDatagrams, o.RxDatagrams, "rx")
	counter(descOverlayDatagramBytes, o.TxDatagramBytes, "tx")
	counter(descOverlayDatagramBytes, o.RxDatagramBytes, "rx")
	counter(descOverlaySendErrors, o.TxErrors)
	counter(descOverlayRejected, o.RejectedHandshakes)
	counter(descOverlayHandshakes, o.HandshakesInitiated, "initiator")
	counter(descOverlayHandshakes, o.HandshakesAnswered, "responder")
	c.collectPeers(gauge)
	counter(descNATFlows, s.NATFlows, "translated")
	counter(descNATFlows, s.NATNoEndpoint, "no_endpoint")
	counter(descNATFlows, s.NATDropped, "dropped")
	counter(descNATFlows, s.NATHalfOpenDropped, "dropped_half_open")
	counter(descNATRemapped, s.NATRemapped)
	counter(descNATPackets, s.NATPackets)
	ch <- prometheus.MustNewConstMetric(descNATActive, prometheus.GaugeValue, float64(s.NATActive), node)
	counter(descNATRemoved, s.NATExpired, "expired")
	counter(descNATRemoved, s.NATFlushed, "flushed")
	for pol, n := range c.a.flows.deniedByPolicy() {
		counter(descPolicyDenied, n, pol)
	}
	for k, n := range c.a.flows.verdictsByPolicy() {
		counter(descPolicyVerdicts, n, k[0], k[1])
	}
	for v, n := range c.a.flows.flowsByVerdict() {
		counter(descFlows, n, v)
	}
	d := c.a.dns.Stats()
	counter(descDNSQueries, d.Queries, "received")
	counter(descDNSQueries, d.Forwarded, "forwarded")
	counter(descDNSQueries, d.CacheHits, "cache_hit")
	counter(descDNSQueries, d.Truncated, "truncated")
	counter(descDNSQueries, d.Dropped, "dropped")
	counter(descDNSQueries, d.Overloaded, "overloaded")
	for rcode, n := range d.ByRcode {
		counter(descDNSAnswers, n, rcode)
	}
	counter(descDNSUpstreamErrors, d.UpstreamErrors)
	ch <- prometheus.MustNewConstMetric(descServices, prometheus.GaugeValue, float64(c.a.proxy.Services()), node)
	if c.a.ingress != nil {
		c.collectIngress(counter, gauge)
	}
	c.a.amu.Lock()
	pods := len(c.a.attached)
	c.a.amu.Unlock()
	gauge(descPods, float64(pods))
}

// collectPeers reports the WireGuard peers and the age of each one's latest handshake, the peer
// named by its node (by the key the Node publishes), or by its key if no Node has it.
func (c *statsCollector) collectPeers(gauge func(*prometheus.Desc, float64, ...string)) {
	peers, err := c.a.overlay.PeerStats()
	if err != nil {
		return // closed
	}
	gauge(descOverlayPeers, float64(len(peers)))
	nodes := make(map[overlay.Key]string)
	for _, n := range c.a.opts.Source.Nodes() {
		if k, err := overlay.ParseKey(n.Annotations[cluster.AnnotationWireGuardKey]); err == nil {
			nodes[k] = n.Name
		}
	}
	now := time.Now()
	for _, p := range peers {
		if p.LastHandshake.IsZero() {
			continue
		}
		name := nodes[p.PublicKey]
		if name == "" {
			name = p.PublicKey.String()
		}
		gauge(descOverlayHandshakeAge, now.Sub(p.LastHandshake).Seconds(), name)
	}
}

// ingressClasses are the status label's values, by class (ingress.Stats.Responses's index).
var ingressClasses = [...]string{1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

// collectIngress reports the Ingress controller's counters; a backend's status classes appear
// once they have a response.
func (c *statsCollector) collectIngress(counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	st := c.a.ingress.Stats()
	for _, b := range st.Backends {
		name := b.Backend
		if name == "" {
			name = "none"
		}
		for class, n := range b.Responses {
			if n > 0 && ingressClasses[class] != "" {
				counter(descIngressRequests, n, name, ingressClasses[class])
			}
		}
	}
	counter(descIngressErrors, st.NoRoute, "no_route")
	counter(descIngressErrors, st.NoEndpoint, "no_endpoint")
	counter(descIngressErrors, st.TooLarge, "too_large")
	counter(descIngressErrors, st.UpstreamErrors, "upstream")
	counter(descIngressErrors, st.Aborted, "aborted")
	counter(descIngressRetries, st.Retries)
	gauge(descIngressConns, float64(st.ActiveConns))
	counter(descIngressConnsTotal, st.AcceptedConns, "accepted")
	counter(descIngressConnsTotal, st.RejectedConns, "rejected")
}
