package graph

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// FuzzWrite feeds arbitrary flow endpoints and names through Build and both
// writers: the DOT must parse with every edge's ends declared, the SVG must
// be well-formed XML.
func FuzzWrite(f *testing.F) {
	f.Add("default/client", "10.244.0.5", "default/web", "TCP", "default/deny", "web-1", uint16(80), false)
	f.Add(`a"b\c`, "<x&y>", "", "udp", `p"`, `we"b`, uint16(0), true)
	f.Add("10.0.0.0/8", "", "ns/svc", "", "", "x\x00y", uint16(53), false)
	f.Fuzz(func(t *testing.T, src, dst, svc, proto, policy, name string, port uint16, allowed bool) {
		pods := []*corev1.Pod{
			pod("default", name, "node-a", "10.244.0.5", "app", "web"),
			pod("default", "client", "node-a", "10.244.0.6"),
		}
		services := []*corev1.Service{service("default", "web", "10.96.0.80", map[string]string{"app": "web"}, tcp(80))}
		flows := []Flow{{Source: src, Dest: dst, Service: svc, Port: port, Protocol: proto, Allowed: allowed, Policies: []string{policy}}}
		g := Build([]*corev1.Node{node("node-a", "10.244.0.0/24", "172.18.0.2")}, pods, services, nil, flows)

		var dot bytes.Buffer
		if err := g.WriteDOT(&dot); err != nil {
			t.Fatal(err)
		}
		d, err := parseDOT(dot.String())
		if err != nil {
			t.Fatalf("parse DOT: %v\n%s", err, dot.String())
		}
		for _, e := range d.edges {
			for _, id := range e {
				if _, ok := d.nodes[id]; !ok {
					t.Fatalf("edge end %q not declared", id)
				}
			}
		}
		var svg bytes.Buffer
		if err := g.WriteSVG(&svg); err != nil {
			t.Fatal(err)
		}
		if _, err := parseSVG(svg.Bytes()); err != nil {
			t.Fatalf("parse SVG: %v", err)
		}
	})
}
