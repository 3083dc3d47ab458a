package integration

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBuiltinExample: `podnet lab up` without a file starts the built-in
// example, and what its "Try:" lines and the README's tour promise works:
// the web pods answer through their ClusterIP by name from the client pod,
// through the NodePort from the host, and through the Ingress from the host
// at the URL lab up prints, which balances over all three.
func TestBuiltinExample(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	l := &labRun{t: t, name: fmt.Sprintf("ex%d", os.Getpid()%100000)}
	t.Cleanup(func() {
		if _, err := l.podnet("lab", "down"); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	out := l.must(t, "lab", "up", "--timeout", "60s")
	m := regexp.MustCompile(`(?m)^\s+curl -s (http://\S+)\s+# the Ingress`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lab up prints no curl line for the Ingress:\n%s", out)
	}
	ingressURL := m[1]

	web := map[string]bool{}
	for name := range l.pods() {
		if strings.HasPrefix(name, "web-") {
			web[name] = false
		}
	}
	if len(web) != 3 {
		t.Fatalf("web pods: %v, want 3", web)
	}

	// The Ingress controller learns the example's Ingress just after lab up
	// returns: wait for its first answer, then take six.
	var body string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if body, err = curlIngress(ingressURL); err == nil {
			if _, ok := web[body]; ok {
				break
			}
		}
	}
	if _, ok := web[body]; !ok {
		t.Fatalf("%s: %q %v, want a web pod's name", ingressURL, body, err)
	}
	for range 6 {
		body, err := curlIngress(ingressURL)
		if _, ok := web[body]; !ok || err != nil {
			t.Fatalf("%s: %q %v, want a web pod's name", ingressURL, body, err)
		}
		web[body] = true
	}
	for name, seen := range web {
		if !seen {
			t.Errorf("the Ingress never answered from %s in six requests (round-robin over three)", name)
		}
	}

	u, err := url.Parse(ingressURL)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := curlIngress("http://" + u.Hostname() + ":30080/"); err != nil || !strings.HasPrefix(body, "web-") {
		t.Errorf("the NodePort from the host: %q %v", body, err)
	}
	if body := l.must(t, "exec", "client", "--", "curl", "-s", "--max-time", "5", "http://web/"); !strings.HasPrefix(body, "web-") {
		t.Errorf("http://web/ from the client pod: %q", body)
	}

	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}
