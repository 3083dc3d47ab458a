package cniplugin

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzConfig feeds arbitrary network configurations (stdin) and CNI_ARGS to the plugin's parsers:
// nothing may panic; a configuration that loads has a socket and state directory; portMappings
// either fails naming the entry and field at fault, or gives only ports and protocols the agent
// takes.
func FuzzConfig(f *testing.F) {
	for _, s := range []struct{ conf, args string }{
		{`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni"}`, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"},
		{`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","socket":"/run/x.sock","timeout":"5s"}`, ""},
		{`{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"10.0.0.1"}]}}`, "K8S_POD_NAME=a"},
		{`{"cniVersion":"1.1.0","name":"podnet","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":70000,"protocol":"sctp"}]}}`, "X=1"},
		{`{"timeout":"-1s"}`, "IgnoreUnknown=true;;="},
		{`{`, "K8S_POD_NAMESPACE"},
	} {
		f.Add([]byte(s.conf), s.args)
	}
	f.Fuzz(func(t *testing.T, stdin []byte, args string) {
		var pa podArgs
		_ = types.LoadArgs(args, &pa)
		conf, client, err := load(stdin)
		if err != nil {
			if conf != nil || client != nil {
				t.Fatalf("load failed (%v) but returned a configuration", err)
			}
			return
		}
		if conf.Socket == "" || conf.StateDir == "" || client == nil {
			t.Fatalf("loaded configuration without socket, state directory or client: %+v", conf)
		}
		ms, err := conf.portMappings()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "runtimeConfig.portMappings[") {
				t.Fatalf("portMappings error %q does not name the entry", err)
			}
			return
		}
		for _, m := range ms {
			if m.HostPort == 0 || m.ContainerPort == 0 || (m.Protocol != "tcp" && m.Protocol != "udp") {
				t.Fatalf("portMappings passed %+v", m)
			}
		}
	})
}
