package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newProbeCommand is `podnet probe`: the client side of `podnet check`, run in its test pods
// (whose image is podnet's own) and on the nodes. Each probe prints what it got on one or more
// lines and fails with the reason.
func newProbeCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	var host, qtype string
	cmd := &cobra.Command{
		Use:    "probe http URL | tcp HOST:PORT | dns NAME",
		Short:  "Probe a network path once (what podnet check runs in its pods)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			out, err := probe(ctx, args[0], args[1], host, qtype)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, out)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	cmd.Flags().StringVar(&host, "host", "", "the HTTP Host header (http)")
	cmd.Flags().StringVar(&qtype, "type", "A", "the record type: A, SRV or PTR (dns)")
	return cmd
}

// probe runs one probe: kind http (GET; the body), tcp (connect; the local address) or dns
// (lookup; the answers, one per line).
func probe(ctx context.Context, kind, target, host, qtype string) (string, error) {
	switch kind {
	case "http":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return "", err
		}
		if host != "" {
			req.Host = host
		}
		tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return "", reason(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if err != nil {
			return "", reason(err)
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		return strings.TrimSpace(string(body)), nil
	case "tcp":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return "", reason(err)
		}
		defer c.Close()
		return c.LocalAddr().String(), nil
	case "dns":
		r := &net.Resolver{PreferGo: true}
		var out []string
		var err error
		switch strings.ToUpper(qtype) {
		case "A":
			var ips []net.IP
			ips, err = r.LookupIP(ctx, "ip4", target)
			for _, ip := range ips {
				out = append(out, ip.String())
			}
		case "SRV":
			var srvs []*net.SRV
			_, srvs, err = r.LookupSRV(ctx, "", "", target)
			for _, s := range srvs {
				out = append(out, fmt.Sprintf("%s %d", s.Target, s.Port))
			}
		case "PTR":
			out, err = r.LookupAddr(ctx, target)
		default:
			return "", fmt.Errorf("--type %q: want A, SRV or PTR", qtype)
		}
		if err != nil {
			return "", reason(err)
		}
		return strings.Join(out, "\n"), nil
	}
	return "", fmt.Errorf("probe %q: want http, tcp or dns", kind)
}

// reason shortens a network error to what went wrong.
func reason(err error) error {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		switch {
		case dnsErr.IsNotFound:
			return fmt.Errorf("%s: no such name", dnsErr.Name)
		case dnsErr.IsTimeout:
			return fmt.Errorf("%s: the DNS server did not answer in time", dnsErr.Name)
		}
		return dnsErr
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return errors.New("timed out (no answer: dropped on the way?)")
	case strings.Contains(err.Error(), "connection refused"):
		return errors.New("connection refused")
	case strings.Contains(err.Error(), "connection reset"):
		return errors.New("connection reset")
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
