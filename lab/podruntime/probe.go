package podruntime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeFastInterval is how often a readiness probe runs before its first success. The kubelet
// waits a whole periodSeconds (default 10 s) after a failed first probe; a lab whose servers start
// in milliseconds would then sit unready for seconds, so until the first success we probe faster.
const probeFastInterval = 200 * time.Millisecond

// probeLoop runs the container's readiness probe until ctx ends and keeps c.ready up to date.
func (c *container) probeLoop(ctx context.Context) {
	pr := c.spec.ReadinessProbe
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	success := int(max(pr.SuccessThreshold, 1))
	failure := int(max(pr.FailureThreshold, 1))
	if pr.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	if pr.FailureThreshold == 0 {
		failure = 3
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(pr.InitialDelaySeconds) * time.Second):
	}
	everReady := false
	okRun, failRun := 0, 0
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.probe(pctx, &pr.ProbeHandler)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		p := c.p
		p.mu.Lock()
		changed := false
		if !c.ready && okRun >= success {
			c.ready, changed, everReady = true, true, true
		} else if c.ready && failRun >= failure {
			c.ready, changed = false, true
		}
		if changed {
			p.updateStatusLocked()
		}
		p.mu.Unlock()
		if changed {
			p.publish()
		}
		wait := period
		if !everReady {
			wait = min(period, probeFastInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// probe runs one probe: tcpSocket and httpGet connect from the node's gateway through the node
// stack, as a kubelet probes from its node; exec runs the command in the pod.
func (c *container) probe(ctx context.Context, h *corev1.ProbeHandler) error {
	p := c.p
	p.mu.Lock()
	ip := p.ip
	p.mu.Unlock()
	switch {
	case h.TCPSocket != nil:
		port, err := c.resolvePort(h.TCPSocket.Port)
		if err != nil {
			return err
		}
		conn, err := p.r.opts.Prober.DialContextTCP(ctx, netip.AddrPortFrom(ip, port))
		if err != nil {
			return err
		}
		return conn.Close()
	case h.HTTPGet != nil:
		port, err := c.resolvePort(h.HTTPGet.Port)
		if err != nil {
			return err
		}
		scheme := "http"
		if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return p.r.opts.Prober.DialContextTCP(ctx, netip.AddrPortFrom(ip, port))
			},
			DisableKeepAlives: true,
		}}
		host := h.HTTPGet.Host
		if host == "" {
			host = ip.String()
		}
		url := fmt.Sprintf("%s://%s/%s", scheme, net.JoinHostPort(host, strconv.Itoa(int(port))), trimSlash(h.HTTPGet.Path))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			req.Header.Add(hd.Name, hd.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case h.Exec != nil:
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer devnull.Close()
		proc, err := p.exec(c.spec.Name, h.Exec.Command, devnull, devnull, devnull)
		if err != nil {
			return err
		}
		done := make(chan int, 1)
		go func() { code, _ := proc.Wait(); done <- code }()
		select {
		case code := <-done:
			if code != 0 {
				return fmt.Errorf("exec probe exited with %d", code)
			}
			return nil
		case <-ctx.Done():
			proc.Signal(os.Kill)
			<-done
			return ctx.Err()
		}
	}
	return fmt.Errorf("probe has no supported handler")
}

func trimSlash(s string) string {
	for len(s) > 0 && s[0] == '/' {
		s = s[1:]
	}
	return s
}

// resolvePort turns a probe's port, a number or the name of one of the container's ports, into a
// port number.
func (c *container) resolvePort(v intstr.IntOrString) (uint16, error) {
	if v.Type == intstr.Int {
		return uint16(v.IntVal), nil
	}
	for _, cp := range c.spec.Ports {
		if cp.Name == v.StrVal {
			return uint16(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.spec.Name, v.StrVal)
}
