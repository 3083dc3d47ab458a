package kubenode

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/agent/agenttest"
	"github.com/podnet/podnet/internal/leakcheck"
)

func TestMetricsListenAddr(t *testing.T) {
	node := netip.MustParseAddr("192.0.2.7")
	for _, tc := range []struct {
		in, want string
		ok       bool
		err      string
	}{
		{in: ""},
		{in: "0"},
		{in: ":9962", want: "192.0.2.7:9962", ok: true},
		{in: "10.0.0.1:9100", want: "10.0.0.1:9100", ok: true},
		{in: "0.0.0.0:9962", want: "0.0.0.0:9962", ok: true},
		{in: "[::1]:9962", want: "[::1]:9962", ok: true},
		{in: "9962", err: `--metrics-addr "9962": want host:port`},
		{in: ":0", err: `--metrics-addr ":0": port "0": want 1 to 65535`},
		{in: ":http", err: `--metrics-addr ":http": port "http"`},
	} {
		got, ok, err := metricsListenAddr(tc.in, node)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.err)
			}
		case err != nil || got != tc.want || ok != tc.ok:
			t.Errorf("%q: %q %v %v, want %q %v", tc.in, got, ok, err, tc.want, tc.ok)
		}
	}
}

// TestMetricsServer runs an agent (no privileges: no pods, no node interface) with the node's
// registry and serves it as `podnet node` does: /metrics answers Prometheus's text format with
// the agent's metrics, the Go runtime's and the process's, /healthz answers 200 while the agent
// runs and 503 once it stopped.
func TestMetricsServer(t *testing.T) {
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/agent.", "podnet/podnet/stack.", "podnet/podnet/overlay.", "podnet/podnet/kubenode."}})
	reg := newRegistry()
	src := &agenttest.Source{}
	opts := agenttest.Options(src, "127.77.1.9", t.TempDir())
	opts.Registerer = reg
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	a.Start()
	ms, err := serveMetrics("127.77.1.9:0", metricsHandler(reg, a.Ready), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	get := func(path string) (int, string, string) {
		t.Helper()
		res, err := client.Get("http://" + ms.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}

	code, ctype, body := get("/metrics")
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("GET /metrics: %d %q, want 200 text/plain", code, ctype)
	}
	for _, want := range []string{
		`podnet_services{node="node-a"} 0`,
		`podnet_stack_frames_total{node="node-a",path="fast"} 0`,
		`# TYPE podnet_pod_network_setup_seconds summary`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics: no %q in\n%s", want, body)
		}
	}
	if code, _, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q, want 200 ok", code, body)
	}
	if code, _, _ := get("/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", code)
	}

	a.Close()
	if code, _, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("GET /healthz after the agent stopped: %d %q, want 503 naming why", code, body)
	}
	if _, _, body := get("/metrics"); strings.Contains(body, "podnet_") {
		t.Errorf("GET /metrics after the agent stopped still has its metrics:\n%s", body)
	}
}
