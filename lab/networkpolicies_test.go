package lab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/cluster"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// policyDoc is a NetworkPolicy document in namespace ns with the given spec (a YAML flow mapping).
func policyDoc(ns, name, spec string) string {
	return "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n"
}

const devNamespace = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {team: a}}\n"

// policyNames returns namespace/name of the policies Get returns.
func policyNames(t *testing.T, s *Store, ns, name string) []string {
	t.Helper()
	objs, err := s.Get(cluster.KindNetworkPolicy, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		np := o.(*networkingv1.NetworkPolicy)
		out = append(out, np.Namespace+"/"+np.Name)
	}
	return out
}

func TestNetworkPolicyApplyGetDelete(t *testing.T) {
	s := newServiceStore(t, "", labOnly+devNamespace)
	res := mustApply(t, s, policyDoc("dev", "deny", "{podSelector: {}}")+policyDoc("default", "web", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}]}]}")+
		policyDoc("dev", "api", "{podSelector: {}, egress: [{}]}"))
	if want := []string{"networkpolicy.networking.k8s.io/deny created", "networkpolicy.networking.k8s.io/web created", "networkpolicy.networking.k8s.io/api created"}; !slices.Equal(res, want) {
		t.Errorf("apply: %q, want %q", res, want)
	}
	if got := policyNames(t, s, "", ""); !slices.Equal(got, []string{"default/web", "dev/api", "dev/deny"}) {
		t.Errorf("all policies: %v", got)
	}
	if got := policyNames(t, s, "dev", ""); !slices.Equal(got, []string{"dev/api", "dev/deny"}) {
		t.Errorf("dev policies: %v", got)
	}
	if got := policyNames(t, s, "dev", "deny"); !slices.Equal(got, []string{"dev/deny"}) {
		t.Errorf("dev/deny: %v", got)
	}
	if got := policyNames(t, s, "default", "deny"); len(got) != 0 {
		t.Errorf("default/deny: %v", got)
	}

	// Stored as the API server stores them: defaulted, with a UID, creation time and generation.
	web := s.NetworkPolicies()[0]
	if web.Name != "web" || web.UID == "" || web.CreationTimestamp.IsZero() || web.Generation != 1 ||
		*web.Spec.Ingress[0].Ports[0].Protocol != corev1.ProtocolTCP || !slices.Equal(web.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress"}) ||
		web.APIVersion != "networking.k8s.io/v1" || web.Kind != "NetworkPolicy" {
		t.Errorf("stored policy: %+v", web)
	}
	if api := s.NetworkPolicies()[1]; !slices.Equal(api.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress", "Egress"}) {
		t.Errorf("dev/api policyTypes = %v", api.Spec.PolicyTypes)
	}

	// The same policy again is unchanged and stays the same object; a changed one keeps its UID.
	res = mustApply(t, s, policyDoc("default", "web", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}]}]}"))
	if res[0] != "networkpolicy.networking.k8s.io/web unchanged" || s.NetworkPolicies()[0] != web {
		t.Errorf("re-apply: %q, same object %v", res, s.NetworkPolicies()[0] == web)
	}
	res = mustApply(t, s, policyDoc("default", "web", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 81}]}]}"))
	if n := s.NetworkPolicies()[0]; res[0] != "networkpolicy.networking.k8s.io/web configured" || n == web || n.UID != web.UID || n.Generation != 2 ||
		n.Spec.Ingress[0].Ports[0].Port.IntVal != 81 || web.Spec.Ingress[0].Ports[0].Port.IntVal != 80 {
		t.Errorf("change: %q, now %+v", res, n)
	}
	res = mustApply(t, s, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, labels: {a: b}}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 81}]}]}\n")
	if n := s.NetworkPolicies()[0]; res[0] != "networkpolicy.networking.k8s.io/web configured" || n.Generation != 2 || n.Labels["a"] != "b" {
		t.Errorf("label change: %q, generation %d", res, n.Generation)
	}

	// Delete: all or nothing.
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindNetworkPolicy, Namespace: "dev", Name: "deny"}, {Kind: cluster.KindNetworkPolicy, Namespace: "dev", Name: "nope"}}); err == nil ||
		!strings.Contains(err.Error(), `networkpolicies "nope" not found`) {
		t.Errorf("delete of a missing policy: %v", err)
	}
	if len(s.NetworkPolicies()) != 3 {
		t.Errorf("a failed delete deleted something: %v", policyNames(t, s, "", ""))
	}
	res, err := s.Delete([]ObjectRef{{Kind: cluster.KindNetworkPolicy, Namespace: "dev", Name: "deny"}})
	if err != nil || !slices.Equal(res, []string{`networkpolicy.networking.k8s.io "deny" deleted`}) {
		t.Errorf("delete: %q, %v", res, err)
	}
	if got := policyNames(t, s, "", ""); !slices.Equal(got, []string{"default/web", "dev/api"}) {
		t.Errorf("after delete: %v", got)
	}
}

func TestNetworkPolicyApplyIsAllOrNothing(t *testing.T) {
	s := newServiceStore(t, "", labOnly+policyDoc("default", "keep", "{podSelector: {}}"))
	before := s.NetworkPolicies()
	v := s.version
	msg := applyErr(t, s, policyDoc("default", "new", "{podSelector: {}}")+policyDoc("default", "keep", "{podSelector: {}, policyTypes: [Egress]}")+
		policyDoc("missing", "elsewhere", "{podSelector: {}}"))
	if !strings.Contains(msg, `test.yaml: document 3 (line 12): networkpolicy.networking.k8s.io/elsewhere: metadata.namespace: Not found: namespaces "missing" not found`) {
		t.Errorf("error: %s", msg)
	}
	if after := s.NetworkPolicies(); s.version != v || len(after) != 1 || after[0] != before[0] {
		t.Errorf("a failed apply changed the policies: %v", policyNames(t, s, "", ""))
	}
}

func TestNamespaceDeletionTakesNetworkPolicies(t *testing.T) {
	s := newServiceStore(t, "", labOnly+devNamespace+policyDoc("dev", "a", "{podSelector: {}}")+policyDoc("dev", "b", "{podSelector: {}}")+
		policyDoc("default", "a", "{podSelector: {}}"))
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindNamespace, Name: "dev"}}); err != nil {
		t.Fatal(err)
	}
	if got := policyNames(t, s, "", ""); !slices.Equal(got, []string{"default/a"}) {
		t.Errorf("after deleting namespace dev: %v", got)
	}
	// A namespace of the same name made again starts empty.
	mustApply(t, s, devNamespace)
	if got := policyNames(t, s, "dev", ""); len(got) != 0 {
		t.Errorf("dev made again: %v", got)
	}
}

func TestNetworkPoliciesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	s := newServiceStore(t, path, labOnly+devNamespace+policyDoc("dev", "db", `{podSelector: {matchLabels: {app: db}},
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}],
    ports: [{port: 5432}, {port: http}, {port: 9000, endPort: 9100, protocol: UDP}]}],
  egress: [{to: [{podSelector: {}}]}]}`))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenStore(path, 99)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(s.NetworkPolicies())
	b, _ := json.Marshal(reopened.NetworkPolicies())
	if string(a) != string(b) || len(reopened.NetworkPolicies()) != 1 {
		t.Errorf("after reopening:\n%s\nwas:\n%s", b, a)
	}
	// The state file is what encoding/json makes of the state.
	var e stateEncoder
	var buf strings.Builder
	if err := e.encode(&buf, s.state); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(s.state)
	var got, exp any
	json.Unmarshal([]byte(buf.String()), &got)
	json.Unmarshal(want, &exp)
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(exp)
	if string(g) != string(w) {
		t.Errorf("encoding differs from encoding/json:\n%s\nwant:\n%s", g, w)
	}
	// Unchanged policies are not a change: applying them again is not committed.
	v := reopened.version
	if res := mustApply(t, reopened, devNamespace+policyDoc("dev", "db", `{podSelector: {matchLabels: {app: db}},
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}],
    ports: [{port: 5432}, {port: http}, {port: 9000, endPort: 9100, protocol: UDP}]}],
  egress: [{to: [{podSelector: {}}]}]}`)); res[1] != "networkpolicy.networking.k8s.io/db unchanged" || reopened.version != v {
		t.Errorf("re-apply after reopening: %q, version %d of %d", res, reopened.version, v)
	}
}

func TestStateWithoutNetworkPolicies(t *testing.T) {
	// A state file written before NetworkPolicies existed has no such map.
	path := filepath.Join(t.TempDir(), "store.json")
	s := newServiceStore(t, path, labOnly)
	var m map[string]json.RawMessage
	b, _ := json.Marshal(s.state)
	json.Unmarshal(b, &m)
	delete(m, "networkPolicies")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenStore(path, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := reopened.NetworkPolicies(); got == nil || len(got) != 0 {
		t.Errorf("policies of an old state: %v", got)
	}
	mustApply(t, reopened, policyDoc("default", "a", "{podSelector: {}}"))
	if len(reopened.NetworkPolicies()) != 1 {
		t.Error("cannot apply a policy to an old state")
	}
}

func TestAgentAccessorsShareUnchangedLists(t *testing.T) {
	s := newServiceStore(t, "", labOnly+devNamespace+podDoc("p2", "b", "{app: web}", "[]")+podDoc("p1", "a", "{app: web}", "[]")+
		policyDoc("dev", "b", "{podSelector: {}}")+policyDoc("default", "z", "{podSelector: {}}")+policyDoc("dev", "a", "{podSelector: {}}"))
	pods, nss, nps := s.Pods(), s.Namespaces(), s.NetworkPolicies()
	var names []string
	for _, p := range pods {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	for _, n := range nss {
		names = append(names, n.Name)
	}
	for _, np := range nps {
		names = append(names, np.Namespace+"/"+np.Name)
	}
	if want := []string{"default/p1", "default/p2", "default", "dev", "default/z", "dev/a", "dev/b"}; !slices.Equal(names, want) {
		t.Errorf("sorted: %v, want %v", names, want)
	}
	same := func(what string, a, b any) {
		t.Helper()
		if !sameList(a, b) {
			t.Errorf("%s: a new list though nothing it holds changed", what)
		}
	}
	same("Pods", pods, s.Pods())
	same("Namespaces", nss, s.Namespaces())
	same("NetworkPolicies", nps, s.NetworkPolicies())

	// A pod's status changes: a new pod list, holding the other pod as it was; the other lists stay.
	setPod(t, s, "p1", "10.244.0.2", true)
	if p := s.Pods(); sameList(pods, p) || p[0] == pods[0] || p[1] != pods[1] || p[0].Status.PodIP != "10.244.0.2" {
		t.Errorf("after a status change: %v", p)
	}
	same("Namespaces after a pod change", nss, s.Namespaces())
	same("NetworkPolicies after a pod change", nps, s.NetworkPolicies())

	// A policy changes: the pods stay.
	pods = s.Pods()
	mustApply(t, s, policyDoc("dev", "c", "{podSelector: {}}"))
	same("Pods after a policy change", pods, s.Pods())
	same("Namespaces after a policy change", nss, s.Namespaces())
	if np := s.NetworkPolicies(); len(np) != 4 || np[0] != nps[0] || np[1] != nps[1] || np[2] != nps[2] {
		t.Errorf("after adding dev/c: %v", np)
	}

	// A namespace's labels change: a new Namespace object; the policies stay.
	nps = s.NetworkPolicies()
	mustApply(t, s, strings.Replace(devNamespace, "team: a", "team: b", 1))
	if n := s.Namespaces(); sameList(nss, n) || n[0] != nss[0] || n[1] == nss[1] || n[1].Labels["team"] != "b" || nss[1].Labels["team"] != "a" {
		t.Errorf("after relabelling dev: %v", n)
	}
	same("NetworkPolicies after a namespace change", nps, s.NetworkPolicies())
	same("Pods after a namespace change", pods, s.Pods())
}

// sameList reports whether a and b are the same slice (not only equal ones).
func sameList(a, b any) bool {
	switch a := a.(type) {
	case []*corev1.Pod:
		b := b.([]*corev1.Pod)
		return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
	case []*corev1.Namespace:
		b := b.([]*corev1.Namespace)
		return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
	case []*networkingv1.NetworkPolicy:
		b := b.([]*networkingv1.NetworkPolicy)
		return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
	}
	panic("sameList of an unknown type")
}

func TestNetworkPolicyOverTheAPI(t *testing.T) {
	s := newServiceStore(t, "", labOnly+policyDoc("default", "a", "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}]}]}"))
	objs, _ := s.Get(cluster.KindNetworkPolicy, "", "")
	b, err := json.Marshal(objectList{Kind: cluster.KindNetworkPolicy, Items: objs})
	if err != nil {
		t.Fatal(err)
	}
	var l objectList
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	np, ok := l.Items[0].(*networkingv1.NetworkPolicy)
	if len(l.Items) != 1 || !ok {
		t.Fatalf("decoded: %#v", l.Items)
	}
	if np.Name != "a" || np.APIVersion != "networking.k8s.io/v1" || np.Kind != "NetworkPolicy" || np.Spec.PodSelector.MatchLabels["app"] != "web" {
		t.Errorf("decoded policy: %+v", np)
	}
}

func TestBadNetworkPolicyRejectsTheWholeApply(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	_, err := decodeManifests([]Manifest{
		{Source: "good.yaml", Data: []byte(policyDoc("default", "ok", "{podSelector: {}}") + podDoc("p1", "a", "{app: web}", "[]"))},
		{Source: "bad.yaml", Data: []byte(policyDoc("default", "bad", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}], ports: [{port: 80, endPort: 79, protocol: ICMP}]}]}"))},
	})
	for _, want := range []string{
		"bad.yaml: document 1 (line 2): networkpolicy.networking.k8s.io/bad: spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\"",
		"bad.yaml: document 1 (line 2): networkpolicy.networking.k8s.io/bad: spec.ingress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`",
		"bad.yaml: document 1 (line 2): networkpolicy.networking.k8s.io/bad: spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error:\n%v\nwant a line with:\n%s", err, want)
		}
	}
	if len(s.NetworkPolicies()) != 0 || len(s.Pods()) != 0 {
		t.Error("something of a rejected apply took effect")
	}
}
