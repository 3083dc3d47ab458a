package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

const (
	ingressHTTPPort  = 18080
	ingressHTTPSPort = 18443
)

// ingressLab: the fanout and the name-based virtual hosting examples of the Kubernetes
// documentation, with TLS for the two virtual hosts, and a Service without endpoints.
const ingressLab = `
apiVersion: podnet.dev/v1alpha1
kind: Lab
metadata: {name: ing}
spec:
  ingress: {httpPort: 18080, httpsPort: 18443}
  nodes: [{name: node-a}, {name: node-b}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: service1}
spec:
  replicas: 2
  selector: {matchLabels: {app: service1}}
  template:
    metadata: {labels: {app: service1}}
    spec:
      containers:
      - {name: web, command: ["podnet", "serve", "--http", "8080"], ports: [{name: http, containerPort: 8080}], readinessProbe: {tcpSocket: {port: 8080}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: service2}
spec:
  replicas: 1
  selector: {matchLabels: {app: service2}}
  template:
    metadata: {labels: {app: service2}}
    spec:
      containers:
      - {name: web, command: ["podnet", "serve", "--http", "8080"], ports: [{name: http, containerPort: 8080}], readinessProbe: {tcpSocket: {port: 8080}}}
---
apiVersion: v1
kind: Service
metadata: {name: service1}
spec:
  selector: {app: service1}
  ports: [{port: 4200, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: service2}
spec:
  selector: {app: service2}
  ports: [{name: web, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: simple-fanout-example}
spec:
  rules:
  - host: foo.bar.com
    http:
      paths:
      - {path: /foo, pathType: Prefix, backend: {service: {name: service1, port: {number: 4200}}}}
      - {path: /bar, pathType: Prefix, backend: {service: {name: service2, port: {number: 8080}}}}
      - {path: /empty, pathType: Exact, backend: {service: {name: empty, port: {number: 80}}}}
      - {path: /ws, pathType: Exact, backend: {service: {name: service1, port: {number: 4200}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: name-virtual-host-ingress}
spec:
  tls:
  - {hosts: [first.bar.com], secretName: first-tls}
  - {hosts: [second.bar.com], secretName: second-tls}
  rules:
  - host: first.bar.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: service1, port: {number: 4200}}}}]
  - host: second.bar.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: service2, port: {name: web}}}}]
---
apiVersion: v1
kind: Secret
metadata: {name: first-tls}
type: kubernetes.io/tls
data: {tls.crt: FIRST_CRT, tls.key: FIRST_KEY}
---
apiVersion: v1
kind: Secret
metadata: {name: second-tls}
type: kubernetes.io/tls
data: {tls.crt: SECOND_CRT, tls.key: SECOND_KEY}
`

// selfSigned writes a self-signed certificate for host into dir and returns the PEM of the
// certificate and of the key, and the certificate's path.
func selfSigned(t *testing.T, dir, host string) (crtPEM, keyPEM []byte, crtPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crtPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	crtPath = filepath.Join(dir, host+".crt")
	os.WriteFile(crtPath, crtPEM, 0o644)
	return crtPEM, keyPEM, crtPath
}

// curlIngress runs curl on the host with args and returns its output and error.
func curlIngress(args ...string) (string, error) {
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "5"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestIngress(t *testing.T) {
	requireLab(t)
	before := snapshot(t)
	dir := t.TempDir()
	c1, k1, crt1 := selfSigned(t, dir, "first.bar.com")
	c2, k2, crt2 := selfSigned(t, dir, "second.bar.com")
	b64 := base64.StdEncoding.EncodeToString
	manifest := strings.NewReplacer("FIRST_CRT", b64(c1), "FIRST_KEY", b64(k1), "SECOND_CRT", b64(c2), "SECOND_KEY", b64(k2)).Replace(ingressLab)
	l := startLab(t, manifest)
	node := l.nodeAddrs(t)["node-a"]
	httpAddr := net.JoinHostPort(node, strconv.Itoa(ingressHTTPPort))
	resolve := func(host string, port int) string { return fmt.Sprintf("%s:%d:%s", host, port, node) }
	names := func(prefix string) map[string]bool {
		m := map[string]bool{}
		for n := range l.pods() {
			if strings.HasPrefix(n, prefix+"-") {
				m[n] = true
			}
		}
		return m
	}
	s1, s2 := names("service1"), names("service2")

	t.Run("fanout by path", func(t *testing.T) {
		for path, want := range map[string]map[string]bool{"/foo": s1, "/foo/x": s1, "/bar": s2, "/bar/baz": s2} {
			out, err := curlIngress("-H", "Host: foo.bar.com", "http://"+httpAddr+path)
			if err != nil || !want[out] {
				t.Errorf("GET foo.bar.com%s = %q %v, want one of %v", path, out, err, want)
			}
		}
		// Prefix is element-wise: /foobar matches no rule.
		out, _ := curlIngress("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: foo.bar.com", "http://"+httpAddr+"/foobar")
		if out != "404" {
			t.Errorf("GET foo.bar.com/foobar: %s, want 404", out)
		}
	})

	t.Run("404 without a rule, 503 without endpoints", func(t *testing.T) {
		if out, _ := curlIngress("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: nope.example", "http://"+httpAddr+"/"); out != "404" {
			t.Errorf("unknown host: %s, want 404", out)
		}
		if out, _ := curlIngress("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: foo.bar.com", "http://"+httpAddr+"/empty"); out != "503" {
			t.Errorf("Service without endpoints: %s, want 503", out)
		}
	})

	t.Run("name-based virtual hosts over TLS, certificates by SNI", func(t *testing.T) {
		out, err := curlIngress("--resolve", resolve("first.bar.com", ingressHTTPSPort), "--cacert", crt1, fmt.Sprintf("https://first.bar.com:%d/", ingressHTTPSPort))
		if err != nil || !s1[out] {
			t.Errorf("https first.bar.com = %q %v, want a service1 pod", out, err)
		}
		out, err = curlIngress("--resolve", resolve("second.bar.com", ingressHTTPSPort), "--cacert", crt2, fmt.Sprintf("https://second.bar.com:%d/", ingressHTTPSPort))
		if err != nil || !s2[out] {
			t.Errorf("https second.bar.com = %q %v, want a service2 pod", out, err)
		}
		// second.bar.com's certificate is not first.bar.com's.
		if out, err := curlIngress("--resolve", resolve("second.bar.com", ingressHTTPSPort), "--cacert", crt1, fmt.Sprintf("https://second.bar.com:%d/", ingressHTTPSPort)); err == nil {
			t.Errorf("second.bar.com was served first.bar.com's certificate: %q", out)
		}
	})

	t.Run("HTTP/2 and the forwarding headers", func(t *testing.T) {
		out, err := curlIngress("--http2", "--resolve", resolve("first.bar.com", ingressHTTPSPort), "--cacert", crt1,
			"-w", "\nHTTP %{http_version}", fmt.Sprintf("https://first.bar.com:%d/headers", ingressHTTPSPort))
		if err != nil || !strings.HasSuffix(out, "HTTP 2") {
			t.Errorf("HTTP/2: %q %v", out, err)
		}
		for _, want := range []string{"X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: https", "X-Forwarded-Host: first.bar.com"} {
			if !strings.Contains(out, want) {
				t.Errorf("the backend's headers lack %q:\n%s", want, out)
			}
		}
	})

	t.Run("a WebSocket echo", func(t *testing.T) {
		cfg, err := websocket.NewConfig("ws://foo.bar.com/ws", "http://foo.bar.com/")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialTimeout("tcp", httpAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		ws, err := websocket.NewClient(cfg, conn)
		if err != nil {
			t.Fatalf("WebSocket handshake through the Ingress: %v", err)
		}
		defer ws.Close()
		if _, err := ws.Write([]byte("hello ws")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := ws.Read(buf)
		if err != nil || string(buf[:n]) != "hello ws" {
			t.Errorf("WebSocket echo: %q %v", buf[:n], err)
		}
	})

	t.Run("streaming responses pass through as they come", func(t *testing.T) {
		out, err := curlIngress("-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total}", "-H", "Host: first.bar.com", "http://"+httpAddr+"/stream?n=4&ms=300")
		f := strings.Fields(out)
		if err != nil || len(f) != 2 {
			t.Fatalf("stream: %q %v", out, err)
		}
		first, _ := strconv.ParseFloat(f[0], 64)
		total, _ := strconv.ParseFloat(f[1], 64)
		if total < 0.8 || first > total-0.6 {
			t.Errorf("the first chunk arrived after %.2f s of %.2f s: the response was buffered", first, total)
		}
	})

	t.Run("status shows the node addresses", func(t *testing.T) {
		out := l.must(t, "get", "ingress")
		if !strings.Contains(out, "simple-fanout-example") || !strings.Contains(out, node) || !strings.Contains(out, "80, 443") {
			t.Errorf("get ingress:\n%s", out)
		}
	})

	t.Run("an invalid Ingress is reported and breaks nothing else", func(t *testing.T) {
		bad := `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: broken}
spec:
  tls: [{hosts: [third.bar.com], secretName: missing-tls}]
  rules:
  - host: third.bar.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: service2, port: {number: 8080}}}}]
`
		file := filepath.Join(dir, "broken.yaml")
		os.WriteFile(file, []byte(bad), 0o644)
		l.must(t, "apply", "-f", file)
		deadline := time.Now().Add(5 * time.Second)
		var problems string
		for time.Now().Before(deadline) {
			out, _ := l.podnet("get", "ingress", "broken", "-o", "yaml")
			if strings.Contains(out, "missing-tls") && strings.Contains(out, "podnet.dev/problems") {
				problems = out
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if problems == "" {
			t.Errorf("the missing Secret is not reported on the Ingress")
		}
		if out, err := curlIngress("-H", "Host: foo.bar.com", "http://"+httpAddr+"/foo"); err != nil || !s1[out] {
			t.Errorf("after a broken Ingress, fanout = %q %v", out, err)
		}
	})

	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}
