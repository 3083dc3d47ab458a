package agent

import "github.com/prometheus/client_golang/prometheus"

// metrics are the agent's Prometheus metrics.
type metrics struct {
	podSetup prometheus.Summary
}

func newMetrics(reg prometheus.Registerer, node string) *metrics {
	m := &metrics{
		podSetup: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:        "podnet_pod_network_setup_seconds",
			Help:        "Time from a pod's arrival at its node to a configured network: address, namespace, TAP and stack port.",
			ConstLabels: prometheus.Labels{"node": node},
			Objectives:  map[float64]float64{0.5: 0.01, 0.9: 0.01, 0.99: 0.001},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.podSetup)
	}
	return m
}
