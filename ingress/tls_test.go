package ingress_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podnet/podnet/ingress"
)

// testCA issues certificates for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "podnet test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a PEM certificate and key for the DNS names.
func (ca *testCA) issue(t testing.TB, names ...string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// clientConfig trusts the CA and asks for serverName ("": the URL's host).
func (ca *testCA) clientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: serverName}
}

func tlsSecret(ns, name string, crt, key []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
	}
}

// handshake connects to addr with SNI name (none if "") and returns the
// certificate the server presented and the protocol it chose.
func handshake(t testing.TB, addr, name string) (*x509.Certificate, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("handshake for %q: %v", name, err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0], st.NegotiatedProtocol
}

// TestTLS: two certificates chosen by SNI (an exact and a wildcard one),
// the default certificate for other names, HTTP/2 and HTTP/1.1, and a TLS
// entry with a missing Secret reported while its rule keeps working.
func TestTLS(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	ca := newCA(t)
	aCrt, aKey := ca.issue(t, "a.example.com")
	wCrt, wKey := ca.issue(t, "*.b.example.com")
	nCrt, nKey := ca.issue(t, "named.example.com", "also.example.com")
	web := f.pod(t, 1, echoHandler("web"))
	ps := f.Update(ingress.Config{
		Ingresses: []*networkingv1.Ingress{mkIngress("default", "tls", 0, networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{
				{Hosts: []string{"a.example.com"}, SecretName: "a-tls"},
				{Hosts: []string{"*.b.example.com"}, SecretName: "wild-tls"},
				{Hosts: []string{"c.example.com"}, SecretName: "missing"},
				{SecretName: "named-tls"}, // no hosts: the certificate's names
				{Hosts: []string{"d.example.com"}, SecretName: "opaque"},
				{Hosts: []string{"e.example.com"}, SecretName: "broken"},
				{Hosts: []string{"f.example.com"}},                         // no Secret: the default certificate
				{Hosts: []string{"a.example.com"}, SecretName: "wild-tls"}, // a.example.com keeps a-tls
			},
			Rules: []networkingv1.IngressRule{rule("", path("/", prefix, "web", "80"))},
		})},
		Secrets: []*corev1.Secret{
			tlsSecret("default", "a-tls", aCrt, aKey),
			tlsSecret("default", "wild-tls", wCrt, wKey),
			tlsSecret("default", "named-tls", nCrt, nKey),
			tlsSecret("other", "missing", aCrt, aKey), // another namespace's does not count
			{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "opaque"}, Type: corev1.SecretTypeOpaque},
			tlsSecret("default", "broken", aCrt, wKey),
		},
		Services: []ingress.Service{svc("default", "web", 80, web)},
	})
	want := []string{
		`default/tls spec.tls[2].secretName: Secret default/missing not found`,
		`default/tls spec.tls[4].secretName: Secret default/opaque has type "Opaque", want "kubernetes.io/tls"`,
		`default/tls spec.tls[5].secretName: Secret default/broken: tls.crt and tls.key: tls: private key does not match public key`,
		`default/tls spec.tls[7].hosts[0]: ignored: host a.example.com already has the certificate of Secret default/a-tls from Ingress default/tls`,
	}
	if got := problemStrings(ps); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, tc := range []struct{ sni, wantCN string }{
		{"a.example.com", "a.example.com"},
		{"A.Example.COM", "a.example.com"},
		{"x.b.example.com", "*.b.example.com"},
		{"y.x.b.example.com", ingress.DefaultCertificateName}, // one label only
		{"named.example.com", "named.example.com"},
		{"also.example.com", "named.example.com"},
		{"c.example.com", ingress.DefaultCertificateName},
		{"f.example.com", ingress.DefaultCertificateName},
		{"", ingress.DefaultCertificateName},
	} {
		cert, proto := handshake(t, f.https, tc.sni)
		if cert.Subject.CommonName != tc.wantCN {
			t.Errorf("SNI %q: certificate %q, want %q", tc.sni, cert.Subject.CommonName, tc.wantCN)
		}
		if proto != "h2" {
			t.Errorf("SNI %q: ALPN chose %q, want h2", tc.sni, proto)
		}
	}

	_, port, _ := net.SplitHostPort(f.https)
	for _, h1 := range []bool{false, true} {
		for _, host := range []string{"a.example.com", "x.b.example.com"} {
			c := newClient(t, f.https, "127.0.0.1", ca.clientConfig(""), h1)
			res, err := c.Get("https://" + host + "/secure")
			if err != nil {
				t.Fatalf("GET https://%s/ (verified against the test CA): %v", host, err)
			}
			res.Body.Close()
			if wantMajor := map[bool]int{false: 2, true: 1}[h1]; res.ProtoMajor != wantMajor {
				t.Errorf("%s: %s, want HTTP/%d", host, res.Proto, wantMajor)
			}
			code, body := get(t, c, "GET", "https://"+host+"/secure", nil)
			e := decodeEcho(t, body)
			if code != 200 || e.Header.Get("X-Forwarded-Proto") != "https" || e.Header.Get("X-Forwarded-Port") != port ||
				e.Header.Get("X-Forwarded-Host") != host || e.Proto != "HTTP/1.1" {
				t.Errorf("%s: %d, backend saw proto %s, X-Forwarded-Proto %q Port %q Host %q", host, code, e.Proto,
					e.Header.Get("X-Forwarded-Proto"), e.Header.Get("X-Forwarded-Port"), e.Header.Get("X-Forwarded-Host"))
			}
		}
	}
	// The host whose Secret is missing is served, with the default certificate.
	insecure := newClient(t, f.https, "127.0.0.1", &tls.Config{InsecureSkipVerify: true}, false)
	if code, _ := get(t, insecure, "GET", "https://c.example.com/", nil); code != 200 {
		t.Errorf("host with a missing Secret: %d", code)
	}
}

// TestDefaultCertificateOption: Options.DefaultCertificate replaces the
// generated one.
func TestDefaultCertificateOption(t *testing.T) {
	ca := newCA(t)
	crt, key := ca.issue(t, "fallback.example.com")
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, ingress.Options{DefaultCertificate: &cert})
	if got, _ := handshake(t, f.https, "anything.example.com"); got.Subject.CommonName != "fallback.example.com" {
		t.Errorf("default certificate %q", got.Subject.CommonName)
	}
}
