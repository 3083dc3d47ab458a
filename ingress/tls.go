package ingress

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// secretData is what the controller takes of a Secret.
type secretData struct {
	typ      corev1.SecretType
	crt, key []byte
}

func secretIndex(secrets []*corev1.Secret) map[string]secretData {
	m := make(map[string]secretData, len(secrets))
	for _, s := range secrets {
		if s != nil {
			m[s.Namespace+"/"+s.Name] = secretData{typ: s.Type, crt: s.Data[corev1.TLSCertKey], key: s.Data[corev1.TLSPrivateKeyKey]}
		}
	}
	return m
}

// certEntry is a parsed Secret, kept across Updates while its data stays the
// same, so that an Update does not parse every certificate again.
type certEntry struct {
	crt, key []byte
	cert     *tls.Certificate
	err      string
}

// certificate returns the parsed certificate of the Secret key
// ("namespace/name"), or the reason it cannot be used.
func (b *builder) certificate(key string) (*tls.Certificate, string) {
	s, ok := b.secrets[key]
	switch {
	case !ok:
		return nil, "Secret " + key + " not found"
	case s.typ != corev1.SecretTypeTLS:
		return nil, fmt.Sprintf("Secret %s has type %q, want %q", key, s.typ, corev1.SecretTypeTLS)
	case len(s.crt) == 0:
		return nil, "Secret " + key + " has no " + corev1.TLSCertKey
	case len(s.key) == 0:
		return nil, "Secret " + key + " has no " + corev1.TLSPrivateKeyKey
	}
	b.used[key] = true
	if e := b.c.certs[key]; e != nil && bytes.Equal(e.crt, s.crt) && bytes.Equal(e.key, s.key) {
		return e.cert, e.err
	}
	e := &certEntry{crt: s.crt, key: s.key}
	cert, err := tls.X509KeyPair(s.crt, s.key)
	if err != nil {
		e.err = fmt.Sprintf("Secret %s: %s and %s: %v", key, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	} else {
		e.cert = &cert
	}
	b.c.certs[key] = e
	return e.cert, e.err
}

// addTLS gives the hosts of one spec.tls entry their certificate. Without
// hosts, the certificate's own DNS names are taken. A host keeps the
// certificate of the oldest Ingress that names it.
func (b *builder) addTLS(id, field string, t *networkingv1.IngressTLS) {
	if t.SecretName == "" {
		return // allowed by the API: those hosts get the default certificate
	}
	key := b.ing.Namespace + "/" + t.SecretName
	cert, msg := b.certificate(key)
	if cert == nil {
		b.problem(field+".secretName", "%s", msg)
		return
	}
	hosts, fromCert := t.Hosts, false
	if len(hosts) == 0 {
		hosts, fromCert = cert.Leaf.DNSNames, true
	}
	for j, h := range hosts {
		hf := fmt.Sprintf("%s.hosts[%d]", field, j)
		if fromCert {
			hf = field + ".hosts" // unset: the names come from the certificate
		}
		h = strings.ToLower(h)
		if m := checkHost(h); m != "" {
			b.problem(hf, "%s", m)
			continue
		}
		if o, ok := b.certOwner[h]; ok {
			if o.secret != key {
				b.problem(hf, "ignored: host %s already has the certificate of Secret %s from Ingress %s", h, o.secret, o.ingress)
			}
			continue
		}
		b.certOwner[h] = certOwner{ingress: id, secret: key}
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			b.t.wildCerts[rest] = cert
		} else {
			b.t.certs[h] = cert
		}
	}
}

// certificate chooses the certificate for a TLS handshake by SNI: a host's
// own, then a wildcard one, then the default.
func (c *Controller) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := c.table.Load()
	name := normalizeHost(hello.ServerName)
	if cert := t.certs[name]; cert != nil {
		return cert, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if cert := t.wildCerts[name[i+1:]]; cert != nil {
			return cert, nil
		}
	}
	return c.defCert, nil
}

// selfSigned makes a self-signed ECDSA P-256 certificate for cn, valid for a
// year.
func selfSigned(cn string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"podnet"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
