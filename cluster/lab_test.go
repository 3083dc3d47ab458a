package cluster

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func newLab(spec LabSpec) *Lab {
	return &Lab{
		TypeMeta:   metav1.TypeMeta{APIVersion: LabAPIVersion, Kind: "Lab"},
		ObjectMeta: metav1.ObjectMeta{Name: "demo"},
		Spec:       spec,
	}
}

func TestLabNetworkDefaults(t *testing.T) {
	l := newLab(LabSpec{Nodes: []LabNode{{Name: "a"}}})
	n, err := l.Network()
	if err != nil {
		t.Fatal(err)
	}
	want := Network{
		ClusterCIDR:  netip.MustParsePrefix("10.244.0.0/16"),
		ServiceCIDR:  netip.MustParsePrefix("10.96.0.0/16"),
		DNSIP:        netip.MustParseAddr("10.96.0.10"),
		Domain:       "cluster.local",
		MTU:          1500,
		HostLoopback: true,
		FlowLog:      true,
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("Network() = %+v, want %+v", n, want)
	}
	if l.Spec.ClusterCIDR != "" {
		t.Error("Network() changed the lab's spec")
	}
	if got := n.MaxNodes(); got != 256 {
		t.Errorf("MaxNodes() = %d, want 256", got)
	}
	if p, err := n.PodCIDR(2); err != nil || p.String() != "10.244.2.0/24" {
		t.Errorf("PodCIDR(2) = %v, %v", p, err)
	}
}

func TestLabNetworkExplicit(t *testing.T) {
	l := newLab(LabSpec{
		ClusterCIDR:   "10.10.0.0/20",
		ServiceCIDR:   "172.20.0.0/24",
		ClusterDomain: "lab.example",
		DNS:           LabDNS{Upstreams: []string{"192.0.2.53:5353", "[2001:db8::53]:53"}},
		MTU:           9000,
		Nodes:         []LabNode{{Name: "a", Address: "192.0.2.1"}, {Name: "b"}},
	})
	n, err := l.Network()
	if err != nil {
		t.Fatal(err)
	}
	if n.DNSIP.String() != "172.20.0.10" || n.Domain != "lab.example" || n.MTU != 9000 || n.MaxNodes() != 16 {
		t.Errorf("Network() = %+v", n)
	}
	wantUp := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:5353"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if !reflect.DeepEqual(n.Upstreams, wantUp) {
		t.Errorf("Upstreams = %v, want %v", n.Upstreams, wantUp)
	}
}

func TestLabNetworkInvalid(t *testing.T) {
	l := newLab(LabSpec{ClusterCIDR: "10.244.0.1/16", Nodes: []LabNode{{Name: "a"}}})
	_, err := l.Network()
	if err == nil || !strings.Contains(err.Error(), `lab/demo: spec.clusterCIDR: Invalid value: "10.244.0.1/16": must be a network address, e.g. 10.244.0.0/16`) {
		t.Fatalf("Network() error = %v", err)
	}
}

func TestNodePodCIDR(t *testing.T) {
	tests := []struct {
		cluster string
		index   int
		want    string
		wantErr string
	}{
		{cluster: "10.244.0.0/16", index: 0, want: "10.244.0.0/24"},
		{cluster: "10.244.0.0/16", index: 1, want: "10.244.1.0/24"},
		{cluster: "10.244.0.0/16", index: 255, want: "10.244.255.0/24"},
		{cluster: "10.0.0.0/8", index: 300, want: "10.1.44.0/24"},
		{cluster: "10.244.0.0/24", index: 0, want: "10.244.0.0/24"},
		{cluster: "10.244.0.0/16", index: 256, wantErr: "has room for 256 nodes"},
		{cluster: "10.244.0.0/16", index: -1, wantErr: "has room for 256 nodes"},
		{cluster: "10.244.0.0/25", index: 0, wantErr: "smaller than a /24"},
		{cluster: "10.244.0.1/16", index: 0, wantErr: "not a network address"},
		{cluster: "fd00::/48", index: 0, wantErr: "not an IPv4 prefix"},
	}
	for _, tt := range tests {
		got, err := NodePodCIDR(netip.MustParsePrefix(tt.cluster), tt.index)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NodePodCIDR(%s, %d) error = %v, want %q", tt.cluster, tt.index, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("NodePodCIDR(%s, %d) = %v, %v, want %s", tt.cluster, tt.index, got, err, tt.want)
		}
	}
	if _, err := NodePodCIDR(netip.Prefix{}, 0); err == nil {
		t.Error("NodePodCIDR(zero prefix) succeeded")
	}
}

func TestAssignPodCIDRs(t *testing.T) {
	cluster := netip.MustParsePrefix("10.244.0.0/22") // room for 4 nodes
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }

	got, err := AssignPodCIDRs(cluster, []string{"a", "b", "c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]netip.Prefix{"a": p("10.244.0.0/24"), "b": p("10.244.1.0/24"), "c": p("10.244.2.0/24")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fresh: %v, want %v", got, want)
	}

	// b is removed and d, e added: a and c keep theirs, d and e take the
	// lowest free /24s.
	got, err = AssignPodCIDRs(cluster, []string{"a", "c", "d", "e"}, want)
	if err != nil {
		t.Fatal(err)
	}
	want2 := map[string]netip.Prefix{"a": p("10.244.0.0/24"), "c": p("10.244.2.0/24"), "d": p("10.244.1.0/24"), "e": p("10.244.3.0/24")}
	if !reflect.DeepEqual(got, want2) {
		t.Fatalf("after change: %v, want %v", got, want2)
	}

	if _, err := AssignPodCIDRs(cluster, []string{"a", "c", "d", "e", "f"}, want2); err == nil || !strings.Contains(err.Error(), "no /24 of 10.244.0.0/22 left for node f") {
		t.Errorf("full: error = %v", err)
	}
	if _, err := AssignPodCIDRs(cluster, []string{"a", "a"}, nil); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("duplicate node: error = %v", err)
	}
	if _, err := AssignPodCIDRs(cluster, []string{"a"}, map[string]netip.Prefix{"a": p("10.245.0.0/24")}); err == nil || !strings.Contains(err.Error(), "not a /24 of") {
		t.Errorf("foreign prefix: error = %v", err)
	}
	if _, err := AssignPodCIDRs(cluster, []string{"a", "b"}, map[string]netip.Prefix{"a": p("10.244.1.0/24"), "b": p("10.244.1.0/24")}); err == nil || !strings.Contains(err.Error(), "both hold") {
		t.Errorf("shared prefix: error = %v", err)
	}
	if _, err := AssignPodCIDRs(p("10.244.0.0/25"), []string{"a"}, nil); err == nil {
		t.Error("cluster smaller than a /24: no error")
	}
}

func TestValidateLabChange(t *testing.T) {
	base := LabSpec{Nodes: []LabNode{{Name: "a"}, {Name: "b", Address: "192.0.2.2"}}}
	tests := []struct {
		name   string
		change func(*LabSpec)
		want   []string
	}{
		{name: "no change"},
		{name: "defaults spelled out", change: func(s *LabSpec) {
			s.ClusterCIDR, s.ServiceCIDR, s.ClusterDomain, s.DNSIP, s.MTU = DefaultClusterCIDR, DefaultServiceCIDR, DefaultClusterDomain, "10.96.0.10", DefaultHostMTU
		}},
		{name: "nodes added and removed, upstreams changed", change: func(s *LabSpec) {
			s.Nodes = []LabNode{{Name: "b", Address: "192.0.2.2"}, {Name: "c"}, {Name: "d", Address: "192.0.2.4"}}
			s.DNS.Upstreams = []string{"192.0.2.53:53"}
		}},
		{name: "network changed", change: func(s *LabSpec) {
			s.ClusterCIDR, s.ServiceCIDR, s.ClusterDomain, s.MTU = "10.1.0.0/16", "10.2.0.0/16", "lab.local", 9000
		}, want: []string{
			"spec.clusterCIDR: Forbidden: cannot change from 10.244.0.0/16 to 10.1.0.0/16 while the lab runs: run `podnet lab down` and `podnet lab up` to recreate the lab with it",
			"spec.serviceCIDR: Forbidden: cannot change from 10.96.0.0/16 to 10.2.0.0/16",
			"spec.clusterDomain: Forbidden: cannot change from cluster.local to lab.local",
			"spec.dnsIP: Forbidden: cannot change from 10.96.0.10 to 10.2.0.10",
			"spec.mtu: Forbidden: cannot change from 1420 to 9000",
		}},
		{name: "Ingress ports changed", change: func(s *LabSpec) { s.Ingress = LabIngress{HTTPPort: 8000, HTTPSPort: 443} }, want: []string{
			"spec.ingress.httpPort: Forbidden: cannot change from the default to 8000 while the lab runs",
			"spec.ingress.httpsPort: Forbidden: cannot change from the default to 443 while the lab runs",
		}},
		{name: "agent settings changed", change: func(s *LabSpec) { s.MaxNewFlowsPerPod, s.RealtimePriority = -1, 1 }, want: []string{
			"spec.maxNewFlowsPerPod: Forbidden: cannot change from 0 to -1 while the lab runs",
			"spec.realtimePriority: Forbidden: cannot change from 0 to 1 while the lab runs",
		}},
		{name: "dns IP changed", change: func(s *LabSpec) { s.DNSIP = "10.96.0.53" }, want: []string{
			"spec.dnsIP: Forbidden: cannot change from 10.96.0.10 to 10.96.0.53 while the lab runs",
		}},
		{name: "node address changed", change: func(s *LabSpec) {
			s.Nodes = []LabNode{{Name: "a", Address: "192.0.2.1"}, {Name: "b"}}
		}, want: []string{
			"spec.nodes[0].address: Forbidden: cannot change the address of running node a from the default to 192.0.2.1: remove the node first",
			"spec.nodes[1].address: Forbidden: cannot change the address of running node b from 192.0.2.2 to the default",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := newLab(base)
			nw := old.DeepCopy()
			if tt.change != nil {
				tt.change(&nw.Spec)
			}
			errs := ValidateLabChange(old, nw)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), errs.ToAggregate())
			}
			for i, e := range errs {
				if e.Type != field.ErrorTypeForbidden || !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e.Error(), tt.want[i])
				}
			}
			if old.Spec.ClusterCIDR != "" {
				t.Error("ValidateLabChange changed old")
			}
		})
	}
}

func TestLabDeepCopy(t *testing.T) {
	l := newLab(LabSpec{
		DNS:   LabDNS{Upstreams: []string{"1.1.1.1:53"}},
		Nodes: []LabNode{{Name: "a"}},
	})
	l.Labels = map[string]string{"x": "y"}
	c := l.DeepCopyObject().(*Lab)
	c.Spec.Nodes[0].Name = "changed"
	c.Spec.DNS.Upstreams[0] = "changed"
	c.Labels["x"] = "changed"
	if l.Spec.Nodes[0].Name != "a" || l.Spec.DNS.Upstreams[0] != "1.1.1.1:53" || l.Labels["x"] != "y" {
		t.Errorf("DeepCopy shares memory with the original: %+v", l)
	}
	if (*Lab)(nil).DeepCopy() != nil {
		t.Error("DeepCopy of nil is not nil")
	}
	if got := l.NodeNames(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("NodeNames() = %v", got)
	}
}

func TestValidateLabBuiltInGo(t *testing.T) {
	// Validate accepts a Lab whose defaults are not filled in, and does not
	// fill them in.
	l := newLab(LabSpec{Nodes: []LabNode{{Name: "a"}}})
	if errs := Validate(l); len(errs) != 0 {
		t.Fatalf("Validate: %v", errs.ToAggregate())
	}
	if l.Spec.MTU != 0 {
		t.Error("Validate changed the lab")
	}
	SetDefaults(l)
	if l.Spec.MTU != DefaultMTU || l.Spec.DNSIP != "10.96.0.10" {
		t.Errorf("SetDefaults: %+v", l.Spec)
	}
	if errs := Validate(l); len(errs) != 0 {
		t.Fatalf("Validate after SetDefaults: %v", errs.ToAggregate())
	}
}

func TestDefaultMTUFollowsUnderlay(t *testing.T) {
	for _, tc := range []struct {
		nodes []LabNode
		want  int
	}{
		{[]LabNode{{Name: "a"}, {Name: "b"}}, DefaultMTU},
		{[]LabNode{{Name: "a"}, {Name: "b", Address: "192.0.2.2"}}, DefaultHostMTU},
	} {
		n, err := newLab(LabSpec{Nodes: tc.nodes}).Network()
		if err != nil {
			t.Fatal(err)
		}
		if n.MTU != tc.want {
			t.Errorf("nodes %v: default MTU %d, want %d", tc.nodes, n.MTU, tc.want)
		}
	}
}

func TestLabIngressPorts(t *testing.T) {
	tests := []struct {
		name           string
		in             LabIngress
		root, rootless [2]uint16
		wantErrs       []string
	}{
		{name: "defaults", root: [2]uint16{80, 443}, rootless: [2]uint16{8080, 8443}},
		{name: "both set", in: LabIngress{HTTPPort: 8000, HTTPSPort: 9000}, root: [2]uint16{8000, 9000}, rootless: [2]uint16{8000, 9000}},
		{name: "http set", in: LabIngress{HTTPPort: 81}, root: [2]uint16{81, 443}, rootless: [2]uint16{81, 8443}},
		{name: "https set", in: LabIngress{HTTPSPort: 4443}, root: [2]uint16{80, 4443}, rootless: [2]uint16{8080, 4443}},
		{name: "swapped defaults spelled out", in: LabIngress{HTTPPort: 443, HTTPSPort: 80}, root: [2]uint16{443, 80}, rootless: [2]uint16{443, 80}},
		{name: "out of range", in: LabIngress{HTTPPort: -1, HTTPSPort: 65536}, wantErrs: []string{
			"spec.ingress.httpPort: Invalid value: -1: must be between 1 and 65535, inclusive",
			"spec.ingress.httpsPort: Invalid value: 65536: must be between 1 and 65535, inclusive"}},
		{name: "NodePort range", in: LabIngress{HTTPPort: 30080}, wantErrs: []string{
			"spec.ingress.httpPort: Invalid value: 30080: must be outside the NodePort range 30000-32767"}},
		{name: "the same port", in: LabIngress{HTTPPort: 8000, HTTPSPort: 8000}, wantErrs: []string{
			"spec.ingress.httpsPort: Invalid value: 8000: must differ from spec.ingress.httpPort"}},
		{name: "http on the rootless https default", in: LabIngress{HTTPPort: 8443}, wantErrs: []string{
			"spec.ingress.httpPort: Invalid value: 8443: is the default httpsPort (443 as root, 8443 rootless): set spec.ingress.httpsPort too"}},
		{name: "https on the root http default", in: LabIngress{HTTPSPort: 80}, wantErrs: []string{
			"spec.ingress.httpsPort: Invalid value: 80: is the default httpPort (80 as root, 8080 rootless): set spec.ingress.httpPort too"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(LabSpec{Ingress: tt.in, Nodes: []LabNode{{Name: "a"}}})
			errs := Validate(l)
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("Validate: %d errors, want %d: %v", len(errs), len(tt.wantErrs), errs.ToAggregate())
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.wantErrs[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e.Error(), tt.wantErrs[i])
				}
			}
			if len(errs) > 0 {
				if _, err := l.Network(); err == nil {
					t.Error("Network() of an invalid spec succeeded")
				}
				return
			}
			n, err := l.Network()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []struct {
				rootless bool
				want     [2]uint16
			}{{false, tt.root}, {true, tt.rootless}} {
				if h, s := n.IngressPorts(m.rootless); h != m.want[0] || s != m.want[1] {
					t.Errorf("IngressPorts(rootless=%v) = %d, %d, want %v", m.rootless, h, s, m.want)
				}
			}
		})
	}
}

func TestDecodeLabIngress(t *testing.T) {
	docs := checkDecode(t, "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {name: l}\nspec:\n  ingress: {httpPort: 8000, httpsPort: 8001}\n  nodes: [{name: a}]\n", 1, nil)
	if in := docs[0].Object.(*Lab).Spec.Ingress; in.HTTPPort != 8000 || in.HTTPSPort != 8001 {
		t.Errorf("spec.ingress = %+v", in)
	}
	checkDecode(t, "apiVersion: podnet.dev/v1alpha1\nkind: Lab\nmetadata: {name: l}\nspec:\n  ingress: {httpPort: \"80\", https: 443}\n  nodes: [{name: a}]\n", 0, []string{
		`lab.yaml: document 1 (line 1): lab/l: spec.ingress.httpPort: Invalid value: "80": must be an integer: remove the quotes`,
		`lab.yaml: document 1 (line 1): lab/l: unknown field "spec.ingress.https"`,
	})
}

func TestLabHostLoopback(t *testing.T) {
	off := false
	l := newLab(LabSpec{HostLoopback: &off, Nodes: []LabNode{{Name: "a"}}})
	n, err := l.Network()
	if err != nil {
		t.Fatal(err)
	}
	if n.HostLoopback {
		t.Error("hostLoopback: false left the mapping on")
	}
	c := l.DeepCopy()
	*c.Spec.HostLoopback = true
	if *l.Spec.HostLoopback {
		t.Error("DeepCopy shares spec.hostLoopback")
	}
	errs := ValidateLabChange(l, c)
	if len(errs) != 1 || errs[0].Field != "spec.hostLoopback" {
		t.Errorf("changing hostLoopback while the lab runs: %v, want one error on spec.hostLoopback", errs)
	}
	// Unset is the default, true: no change.
	c.Spec.HostLoopback = nil
	if errs := ValidateLabChange(c, newLab(LabSpec{Nodes: []LabNode{{Name: "a"}}})); len(errs) != 0 {
		t.Errorf("unset against unset: %v", errs)
	}
}
