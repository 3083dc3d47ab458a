package agent

import "github.com/prometheus/client_golang/prometheus"

// metrics are the agent's Prometheus metrics. The data path keeps plain counters (stack.Stats,
// overlay.Stats); statsCollector reads them at scrape time, so the packet path pays nothing.
type metrics struct {
	reg         prometheus.Registerer
	podSetup    prometheus.Summary
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
	m.reg.MustRegister(m.podSetup, m.serviceSync, m.policySync, m.stats)
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	m.reg.Unregister(m.podSetup)
	m.reg.Unregister(m.serviceSync)
	m.reg.Unregister(m.policySync)
	m.reg.Unregister(m.stats)
}

var (
	descStackFrames = prometheus.NewDesc("podnet_stack_frames_total",
		"Frames of the node's data path: fast (pod to pod without the netstack), to_stack (pod to netstack), from_stack (netstack to pod).",
		[]string{"node", "path"}, nil)
	descStackDropped = prometheus.NewDesc("podnet_stack_dropped_frames_total",
		"Frames the node's data path dropped, by reason.", []string{"node", "reason"}, nil)
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
	descServices = prometheus.NewDesc("podnet_services",
		"Services programmed in the node's Service table.", []string{"node"}, nil)
	descNATFlows = prometheus.NewDesc("podnet_service_flows_total",
		"New flows to Services: translated, refused (no endpoint), dropped (connection-tracking table full) or dropped_half_open (the half-open share of the table, all or the client's, full).", []string{"node", "result"}, nil)
	descNATActive = prometheus.NewDesc("podnet_service_conntrack_entries",
		"Flows in the node's connection-tracking table.", []string{"node"}, nil)
	descPolicyDenied = prometheus.NewDesc("podnet_policy_denied_total",
		"New flows (TCP connection attempts, first UDP datagrams) that NetworkPolicy denied on this node, by the policies that isolated the pod and allowed nothing.",
		[]string{"node", "policy"}, nil)
	descDNSAnswers = prometheus.NewDesc("podnet_dns_responses_total",
		"Answers of the node's cluster DNS, by RCODE.", []string{"node", "rcode"}, nil)
	descDNSQueries = prometheus.NewDesc("podnet_dns_queries_total",
		"Queries to the node's cluster DNS, and what became of those not answered from the cluster's records: forwarded upstream, answered from the cache, answered truncated, dropped, refused for overload.",
		[]string{"node", "kind"}, nil)
	descOverlayRejected = prometheus.NewDesc("podnet_overlay_rejected_handshakes_total",
		"WireGuard handshake messages refused: from keys that are not peers, with invalid MACs, or malformed.", []string{"node"}, nil)
)

// statsCollector turns the data path's counters into metrics.
type statsCollector struct{ a *Agent }

// Describe describes nothing: the collector is "unchecked", because every node's agent has one
// with the same metrics, told apart only by the node label of what Collect sends.
func (c *statsCollector) Describe(chan<- *prometheus.Desc) {}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	node := c.a.opts.NodeName
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{node}, labels...)...)
	}
	s := c.a.stack.Stats()
	counter(descStackFrames, s.FastPathFrames, "fast")
	counter(descStackFrames, s.ToStackFrames, "to_stack")
	counter(descStackFrames, s.FromStackFrames, "from_stack")
	counter(descStackDropped, s.DroppedSpoofed, "spoofed")
	counter(descStackDropped, s.DroppedTTL, "ttl")
	counter(descStackDropped, s.DroppedNoRoute, "no_route")
	counter(descStackDropped, s.DroppedBadFrame, "bad_frame")
	counter(descStackDropped, s.DroppedUnsupported, "unsupported")
	counter(descStackDropped, s.DroppedWrite, "write")
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
	counter(descOverlayRejected, o.RejectedHandshakes)
	counter(descNATFlows, s.NATFlows, "translated")
	counter(descNATFlows, s.NATNoEndpoint, "no_endpoint")
	counter(descNATFlows, s.NATDropped, "dropped")
	counter(descNATFlows, s.NATHalfOpenDropped, "dropped_half_open")
	ch <- prometheus.MustNewConstMetric(descNATActive, prometheus.GaugeValue, float64(s.NATActive), node)
	for pol, n := range c.a.flows.deniedByPolicy() {
		counter(descPolicyDenied, n, pol)
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
	ch <- prometheus.MustNewConstMetric(descServices, prometheus.GaugeValue, float64(c.a.proxy.Services()), node)
}
