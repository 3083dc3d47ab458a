package kubenode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/inspect"
)

// InspectSocket is the name, in the run directory, of the Unix socket where `podnet node` serves
// its flows and captures (package inspect): `podnet flows --kubeconfig` and `podnet capture
// --kubeconfig` reach it through an exec into the node's podnet pod. Only root may connect.
const InspectSocket = "inspect.sock"

// serveInspect serves the inspect API of a on a Unix socket in dir, and returns a function that
// stops it and waits for it.
func serveInspect(dir string, a *agent.Agent, log *slog.Logger) (func(), error) {
	path := filepath.Join(dir, InspectSocket)
	os.Remove(path) // a socket left by an agent that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("inspect socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("inspect socket: %w", err)
	}
	node := a.NodeName()
	srv := &http.Server{
		Handler:           inspect.Handler(func() map[string]*agent.Agent { return map[string]*agent.Agent{node: a} }),
		ReadHeaderTimeout: 10 * time.Second, // no write timeout: flows and captures stream
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("inspect socket stopped", "path", path, "err", err)
		}
	}()
	return func() {
		srv.Close()
		<-done
		os.Remove(path)
	}, nil
}
