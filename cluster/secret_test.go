package cluster

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// secretDoc is a Secret document named s with the given lines after its metadata.
func secretDoc(rest string) string {
	return "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n" + rest
}

var secretCases = []struct {
	name  string
	in    string
	docs  int
	wants []string
}{
	{name: "opaque with data and stringData", in: secretDoc("data: {password: aHVudGVyMg==}\nstringData: {user: admin}\n"), docs: 1},
	{name: "empty opaque", in: secretDoc(""), docs: 1},
	{name: "TLS", in: secretDoc("type: kubernetes.io/tls\ndata: {tls.crt: LS0tLS1CRUdJTg==, tls.key: LS0tLS1CRUdJTg==}\n"), docs: 1},
	{name: "TLS from stringData, certificate not parsed", in: secretDoc("type: kubernetes.io/tls\nstringData: {tls.crt: not a certificate, tls.key: nor a key}\n"), docs: 1},
	{name: "custom type", in: secretDoc("type: example.com/token\ndata: {t: eA==}\n"), docs: 1},
	{name: "basic auth with a username only", in: secretDoc("type: kubernetes.io/basic-auth\nstringData: {username: u}\n"), docs: 1},

	{name: "TLS without its keys", in: secretDoc("type: kubernetes.io/tls\ndata: {ca.crt: eA==}\n"), wants: []string{
		`lab.yaml: document 1 (line 1): secret/s: data[tls.crt]: Required value: a Secret of type kubernetes.io/tls must hold "tls.crt" and "tls.key"`,
		`lab.yaml: document 1 (line 1): secret/s: data[tls.key]: Required value: a Secret of type kubernetes.io/tls must hold "tls.crt" and "tls.key"`}},
	{name: "TLS without its key", in: secretDoc("type: kubernetes.io/tls\nstringData: {tls.crt: x}\n"), wants: []string{
		`secret/s: data[tls.key]: Required value`}},
	{name: "data not base64", in: secretDoc("data: {password: hunter2!}\n"), wants: []string{
		`secret/s: data[password]: Invalid value: "hunter2!": must be base64-encoded`}},
	{name: "bad keys", in: secretDoc("data: {\"a b\": eA==}\nstringData: {\"../x\": v, ok_key-1.txt: z}\n"), wants: []string{
		`secret/s: data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`,
		`secret/s: stringData[../x]: Invalid value: "../x": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`,
		`secret/s: stringData[../x]: Invalid value: "../x": must not start with '..'`}},
	{name: "basic auth without either key", in: secretDoc("type: kubernetes.io/basic-auth\n"), wants: []string{
		`secret/s: data[username]: Required value: a Secret of type kubernetes.io/basic-auth must hold username or password`,
		`secret/s: data[password]: Required value`}},
	{name: "dockerconfigjson not JSON", in: secretDoc("type: kubernetes.io/dockerconfigjson\nstringData: {.dockerconfigjson: \"{\"}\n"), wants: []string{
		`secret/s: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>"`}},
	{name: "service account token without its account", in: secretDoc("type: kubernetes.io/service-account-token\n"), wants: []string{
		`secret/s: metadata.annotations[kubernetes.io/service-account.name]: Required value`}},
	{name: "too large", in: secretDoc("stringData: {a: " + strings.Repeat("x", corev1.MaxSecretSize/2+1) + ", b: " + strings.Repeat("y", corev1.MaxSecretSize/2) + "}\n"), wants: []string{
		`secret/s: data: Too long: may not be more than 1048576 bytes`}},
	{name: "bad name and unknown field", in: strings.Replace(secretDoc("strngData: {a: b}\n"), "{name: s}", "{name: S}", 1), wants: []string{
		`secret/S: metadata.name: Invalid value: "S": a lowercase RFC 1123 subdomain`,
		`secret/S: unknown field "strngData"`}},
	{name: "YAML boolean in stringData", in: secretDoc("stringData: {enabled: yes}\n"), wants: []string{
		`secret/s: stringData[enabled]: Invalid value: true: must be a string, but YAML 1.1 read the unquoted yes as the boolean true: quote it ("yes")`}},
}

func TestDecodeSecrets(t *testing.T) {
	for _, tt := range secretCases {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, tt.in, tt.docs, tt.wants) })
	}
}

func TestSecretDefaultsAndMerge(t *testing.T) {
	docs := checkDecode(t, secretDoc("data: {a: YQ==, b: Yg==}\nstringData: {b: B, c: C}\n"), 1, nil)
	s := docs[0].Object.(*corev1.Secret)
	if s.Namespace != DefaultNamespace || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("defaulted Secret: namespace %q, type %q", s.Namespace, s.Type)
	}
	if len(s.StringData) != 2 || string(s.Data["b"]) != "b" {
		t.Errorf("Decode merged stringData: data %q, stringData %q", s.Data, s.StringData)
	}
	got := MergeSecretStringData(s)
	if len(got) != 3 || string(got["a"]) != "a" || string(got["b"]) != "B" || string(got["c"]) != "C" {
		t.Errorf("MergeSecretStringData = %q", got)
	}
	if string(s.Data["b"]) != "b" {
		t.Error("MergeSecretStringData changed the Secret")
	}
	s.StringData = nil
	if got := MergeSecretStringData(s); len(got) != 2 {
		t.Errorf("MergeSecretStringData without stringData = %q", got)
	}
}
