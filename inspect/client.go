package inspect

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/podnet/podnet/agent"
)

// Client asks a server of the API (the lab daemon, or `podnet node`'s socket) over a Unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the server on the Unix socket path.
func NewClient(socket string) *Client {
	return &Client{socket: socket, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// ErrUnreachable wraps the error of a client that could not reach its server.
var ErrUnreachable = errors.New("the node's agent does not answer")

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://podnet"+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %w", ErrUnreachable, c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e Error
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return resp, nil
}

// Flows returns the kept flows of every node the server serves, oldest first.
func (c *Client) Flows(ctx context.Context) ([]agent.FlowRecord, error) {
	resp, err := c.get(ctx, "/v1/flows", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []agent.FlowRecord
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("flows: %w", err)
	}
	return out, nil
}

// FollowFlows calls fn with the kept flows and then with each new one, until ctx ends (it then
// returns nil), the server goes away, or fn returns an error (which it returns).
func (c *Client) FollowFlows(ctx context.Context, fn func(agent.FlowRecord) error) error {
	resp, err := c.get(ctx, "/v1/flows", url.Values{"follow": {"1"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return DecodeFlows(ctx, resp.Body, fn)
}

// DecodeFlows reads flows as JSON lines from r (blank lines are keep-alives) and calls fn with
// each, until r ends, ctx ends or fn fails.
func DecodeFlows(ctx context.Context, r io.Reader, fn func(agent.FlowRecord) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec agent.FlowRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return fmt.Errorf("flows: %w", err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// CaptureRequest says what to capture.
type CaptureRequest struct {
	Node    string // the node; "" if the server serves one
	PodIP   string // the pod's address; "" with Overlay
	Overlay bool   // the overlay's inner packets instead of a pod's frames
	Filter  string // a capture filter (capture.ParseFilter)
}

// Capture starts a capture and returns its pcap stream; close it to end the capture.
func (c *Client) Capture(ctx context.Context, r CaptureRequest) (io.ReadCloser, error) {
	q := url.Values{"node": {r.Node}}
	if r.Overlay {
		q.Set("overlay", "1")
	} else {
		q.Set("pod", r.PodIP)
	}
	if r.Filter != "" {
		q.Set("filter", r.Filter)
	}
	resp, err := c.get(ctx, "/v1/capture", q)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
