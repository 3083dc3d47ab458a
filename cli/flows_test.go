package cli

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/agent"
)

func TestFlowFilter(t *testing.T) {
	toWeb := agent.FlowRecord{Node: "node-a", Protocol: "TCP", Source: "default/client", Dest: "shop/web-7d9f-abc",
		Service: "shop/web:http", Verdict: "forwarded", Allowed: true}
	denied := agent.FlowRecord{Node: "node-b", Protocol: "UDP", Source: "shop/web-7d9f-abc", Dest: "192.0.2.1",
		Verdict: "denied", Allowed: false}
	noEndpoint := agent.FlowRecord{Node: "node-a", Protocol: "TCP", Source: "default/client", Dest: "10.96.0.7",
		Service: "shop/empty:80", Verdict: "no-endpoint", Allowed: true}
	all := []agent.FlowRecord{toWeb, denied, noEndpoint}
	for _, tc := range []struct {
		name string
		f    flowFilter
		want []bool
	}{
		{"no filter", flowFilter{}, []bool{true, true, true}},
		{"namespace of the source", flowFilter{namespace: "default"}, []bool{true, false, true}},
		{"namespace of either end", flowFilter{namespace: "shop"}, []bool{true, true, true}},
		{"pod prefix, default namespace", flowFilter{pod: "client"}, []bool{true, false, true}},
		{"pod prefix with namespace", flowFilter{pod: "shop/web"}, []bool{true, true, false}},
		{"pod in --namespace", flowFilter{namespace: "shop", pod: "web"}, []bool{true, true, false}},
		{"pod not there", flowFilter{pod: "other"}, []bool{false, false, false}},
		{"verdict denied", flowFilter{verdict: "denied"}, []bool{false, true, false}},
		{"verdict allowed", flowFilter{verdict: "allowed"}, []bool{true, false, true}},
		{"verdict no-endpoint", flowFilter{verdict: "no-endpoint"}, []bool{false, false, true}},
		{"protocol", flowFilter{protocol: "UDP"}, []bool{false, true, false}},
		{"node", flowFilter{node: "node-a"}, []bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f.check(); err != nil {
				t.Fatal(err)
			}
			for i, r := range all {
				if got := tc.f.matches(r); got != tc.want[i] {
					t.Errorf("flow %d (%s → %s): %v, want %v", i, r.Source, r.Dest, got, tc.want[i])
				}
			}
		})
	}
}

func TestFlowFilterErrors(t *testing.T) {
	for _, tc := range []struct {
		f    flowFilter
		want string
	}{
		{flowFilter{verdict: "maybe"}, `--verdict "maybe"`},
		{flowFilter{protocol: "icmp"}, `--protocol "icmp"`},
		{flowFilter{pod: "a/b/c"}, `--pod "a/b/c"`},
	} {
		if err := tc.f.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.f, err, tc.want)
		}
	}
	f := flowFilter{verdict: "DENIED", protocol: "tcp"}
	if err := f.check(); err != nil || f.verdict != "denied" || f.protocol != "TCP" {
		t.Errorf("case is not ignored: %+v, %v", f, err)
	}
}
