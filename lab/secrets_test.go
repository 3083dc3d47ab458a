package lab

import (
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
)

// secretDoc is a Secret document in namespace ns with the given lines after its metadata.
func secretDoc(ns, name, rest string) string {
	return "---\napiVersion: v1\nkind: Secret\nmetadata: {name: " + name + ", namespace: " + ns + "}\n" + rest
}

// getSecret returns the Secret ns/name, failing the test if there is none.
func getSecret(t *testing.T, s *Store, ns, name string) *corev1.Secret {
	t.Helper()
	objs, err := s.Get(cluster.KindSecret, ns, name)
	if err != nil || len(objs) != 1 {
		t.Fatalf("get secret %s/%s: %v, %v", ns, name, objs, err)
	}
	return objs[0].(*corev1.Secret)
}

func TestSecretApplyGetDelete(t *testing.T) {
	s := newServiceStore(t, "", labOnly+devNamespace)
	res := mustApply(t, s, secretDoc("dev", "tls", "type: kubernetes.io/tls\ndata: {tls.crt: Y2VydA==, tls.key: b2xk}\nstringData: {tls.key: key}\n")+
		secretDoc("default", "plain", "data: {a: YQ==}\n"))
	if want := []string{"secret/tls created", "secret/plain created"}; !slices.Equal(res, want) {
		t.Errorf("apply: %q, want %q", res, want)
	}
	// Stored as the API server stores it: stringData merged into data (and winning), no
	// stringData, type defaulted, no generation.
	tls := getSecret(t, s, "dev", "tls")
	if string(tls.Data["tls.crt"]) != "cert" || string(tls.Data["tls.key"]) != "key" || tls.StringData != nil || tls.Type != corev1.SecretTypeTLS ||
		tls.UID == "" || tls.CreationTimestamp.IsZero() || tls.Generation != 0 || tls.APIVersion != "v1" || tls.Kind != "Secret" {
		t.Errorf("stored Secret: %+v", tls)
	}
	if p := getSecret(t, s, "default", "plain"); p.Type != corev1.SecretTypeOpaque {
		t.Errorf("type of an Opaque Secret: %q", p.Type)
	}
	if secs := s.Secrets(); len(secs) != 2 || secs[0].Name != "plain" || secs[1] != tls {
		t.Errorf("Secrets() = %v", secs)
	}

	// The same content, written as data or as stringData, is unchanged.
	res = mustApply(t, s, secretDoc("dev", "tls", "type: kubernetes.io/tls\nstringData: {tls.crt: cert, tls.key: key}\n"))
	if res[0] != "secret/tls unchanged" || getSecret(t, s, "dev", "tls") != tls {
		t.Errorf("re-apply: %q", res)
	}
	res = mustApply(t, s, secretDoc("dev", "tls", "type: kubernetes.io/tls\nstringData: {tls.crt: cert2, tls.key: key}\n"))
	if n := getSecret(t, s, "dev", "tls"); res[0] != "secret/tls configured" || n.UID != tls.UID || string(n.Data["tls.crt"]) != "cert2" || string(tls.Data["tls.crt"]) != "cert" {
		t.Errorf("change: %q, now %+v", res, n)
	}

	// The type is immutable.
	msg := applyErr(t, s, secretDoc("default", "plain", "type: example.com/other\ndata: {a: YQ==}\n"))
	if !strings.Contains(msg, `test.yaml: document 1 (line 2): secret/plain: type: Invalid value: "example.com/other": field is immutable`) {
		t.Errorf("type change: %s", msg)
	}

	res, err := s.Delete([]ObjectRef{{Kind: cluster.KindSecret, Namespace: "default", Name: "plain"}})
	if err != nil || !slices.Equal(res, []string{`secret "plain" deleted`}) || len(s.Secrets()) != 1 {
		t.Errorf("delete: %q, %v", res, err)
	}
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindSecret, Namespace: "default", Name: "plain"}}); err == nil || !strings.Contains(err.Error(), `secrets "plain" not found`) {
		t.Errorf("delete of a missing Secret: %v", err)
	}
}

func TestImmutableSecret(t *testing.T) {
	s := newServiceStore(t, "", labOnly+secretDoc("default", "frozen", "immutable: true\nstringData: {a: x}\n"))
	for _, tt := range []struct{ rest, want string }{
		{"immutable: true\nstringData: {a: changed}\n", "secret/frozen: data: Forbidden: field is immutable when `immutable` is set"},
		{"stringData: {a: x}\n", "secret/frozen: immutable: Forbidden: field is immutable when `immutable` is set"},
	} {
		if msg := applyErr(t, s, secretDoc("default", "frozen", tt.rest)); !strings.Contains(msg, tt.want) {
			t.Errorf("error: %s\nwant: %s", msg, tt.want)
		}
	}
	if res := mustApply(t, s, "---\napiVersion: v1\nkind: Secret\nmetadata: {name: frozen, labels: {l: v}}\nimmutable: true\nstringData: {a: x}\n"); res[0] != "secret/frozen configured" {
		t.Errorf("relabelling an immutable Secret: %q", res)
	}
}
