package attach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// The protocol on the agent's unix socket: HTTP/1.1 with JSON bodies.
//
//	POST /v1/attach   Request                      -> Result
//	POST /v1/detach   {"id": ID}                   -> {}
//	POST /v1/check    {"id": ID, "netns": PATH}    -> {}
//	POST /v1/gc       {"keep": [ID, ...]}          -> {}
//	GET  /v1/ready                                 -> {}
//
// A failure is a non-2xx status with {"error": MESSAGE}.

type idBody struct {
	ID    string `json:"id"`
	NetNS string `json:"netns,omitempty"`
}

type gcBody struct {
	Keep []string `json:"keep"`
}

type errorBody struct {
	Error string `json:"error"`
}

// maxBody bounds a request body: a GC list of every pod sandbox of a node is the largest.
const maxBody = 4 << 20

// Handler serves an Attacher on the socket protocol.
func Handler(a Attacher) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/attach", func(w http.ResponseWriter, r *http.Request) {
		var req Request
		if !decode(w, r, &req) {
			return
		}
		res, err := a.Attach(r.Context(), req)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/detach", func(w http.ResponseWriter, r *http.Request) {
		var b idBody
		if decode(w, r, &b) {
			reply(w, struct{}{}, a.Detach(r.Context(), b.ID))
		}
	})
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		var b idBody
		if decode(w, r, &b) {
			reply(w, struct{}{}, a.Check(r.Context(), b.ID, b.NetNS))
		}
	})
	mux.HandleFunc("POST /v1/gc", func(w http.ResponseWriter, r *http.Request) {
		var b gcBody
		if decode(w, r, &b) {
			reply(w, struct{}{}, a.GC(r.Context(), b.Keep))
		}
	})
	mux.HandleFunc("GET /v1/ready", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, a.Ready(r.Context()))
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{fmt.Sprintf("bad request body: %v", err)})
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ErrUnavailable is in the chain of every Client error where the agent could not be reached at
// all (no socket, nobody listening): nothing was done, and the call may be made again later.
var ErrUnavailable = errors.New("the podnet agent is not reachable")

// Client is an Attacher on the far side of the agent's unix socket.
type Client struct {
	socket string
	http   *http.Client
}

var _ Attacher = (*Client)(nil)

// NewClient returns a client of the agent listening on the unix socket path. Each call is bounded
// by timeout (zero: 60 s), and by its context.
func NewClient(path string, timeout time.Duration) *Client {
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return &Client{socket: path, http: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableKeepAlives: true,
		},
	}}
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://podnet"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w on %s: %v", ErrUnavailable, c.socket, err)
		}
		return fmt.Errorf("podnet agent on %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("podnet agent on %s: read the answer: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		var e errorBody
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return errors.New(e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("podnet agent on %s: bad answer: %w", c.socket, err)
		}
	}
	return nil
}

// Attach implements Attacher.
func (c *Client) Attach(ctx context.Context, req Request) (Result, error) {
	var res Result
	err := c.call(ctx, http.MethodPost, "/v1/attach", req, &res)
	return res, err
}

// Detach implements Attacher.
func (c *Client) Detach(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/v1/detach", idBody{ID: id}, nil)
}

// Check implements Attacher.
func (c *Client) Check(ctx context.Context, id, netns string) error {
	return c.call(ctx, http.MethodPost, "/v1/check", idBody{ID: id, NetNS: netns}, nil)
}

// GC implements Attacher.
func (c *Client) GC(ctx context.Context, keep []string) error {
	return c.call(ctx, http.MethodPost, "/v1/gc", gcBody{Keep: keep}, nil)
}

// Ready implements Attacher.
func (c *Client) Ready(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/v1/ready", nil, nil)
}
