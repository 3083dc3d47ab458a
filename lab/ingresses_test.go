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

// ingressDoc is an Ingress document in namespace ns with the given spec (a YAML flow mapping).
func ingressDoc(ns, name, spec string) string {
	return "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: " + spec + "\n"
}

// ingressClassDoc is an IngressClass document.
func ingressClassDoc(name, controller string, isDefault bool) string {
	meta := "{name: " + name + "}"
	if isDefault {
		meta = "{name: " + name + ", annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}}"
	}
	return "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: " + meta + "\nspec: {controller: " + controller + "}\n"
}

const webBackend = "{defaultBackend: {service: {name: web, port: {number: 80}}}}"

// getIngress returns the Ingress ns/name, failing the test if there is none.
func getIngress(t *testing.T, s *Store, ns, name string) *networkingv1.Ingress {
	t.Helper()
	objs, err := s.Get(cluster.KindIngress, ns, name)
	if err != nil || len(objs) != 1 {
		t.Fatalf("get ingress %s/%s: %v, %v", ns, name, objs, err)
	}
	return objs[0].(*networkingv1.Ingress)
}

// lbIPs returns the addresses of an Ingress's status.
func lbIPs(ing *networkingv1.Ingress) []string {
	var out []string
	for _, in := range ing.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

func TestLabMakesItsIngressClass(t *testing.T) {
	s := newServiceStore(t, "", labOnly)
	classes := s.IngressClasses()
	if len(classes) != 1 {
		t.Fatalf("IngressClasses() = %v", classes)
	}
	c := classes[0]
	if c.Name != "podnet" || c.Spec.Controller != "podnet.dev/ingress-controller" ||
		c.Annotations["ingressclass.kubernetes.io/is-default-class"] != "true" || c.UID == "" || c.CreationTimestamp.IsZero() || c.Generation != 1 ||
		c.APIVersion != "networking.k8s.io/v1" || c.Kind != "IngressClass" {
		t.Errorf("the lab's IngressClass: %+v", c)
	}
	if objs, err := s.Get(cluster.KindIngressClass, "", "podnet"); err != nil || len(objs) != 1 || objs[0] != c {
		t.Errorf("get ingressclass podnet: %v, %v", objs, err)
	}

	// Users add their own; the lab's keeps its spec, and stays.
	res := mustApply(t, s, ingressClassDoc("nginx", "k8s.io/ingress-nginx", false))
	if !slices.Equal(res, []string{"ingressclass.networking.k8s.io/nginx created"}) {
		t.Errorf("apply: %q", res)
	}
	if objs, _ := s.Get(cluster.KindIngressClass, "default", ""); len(objs) != 2 || objs[0].(*networkingv1.IngressClass).Name != "nginx" {
		t.Errorf("get ingressclasses: %v", objs)
	}
	msg := applyErr(t, s, ingressClassDoc("podnet", "example.com/other", true))
	if !strings.Contains(msg, "test.yaml: document 1 (line 2): ingressclass.networking.k8s.io/podnet: spec: Forbidden: ingressclass podnet is the lab's own") {
		t.Errorf("changing the lab's class: %s", msg)
	}
	msg = applyErr(t, s, ingressClassDoc("nginx", "example.com/other", false))
	if !strings.Contains(msg, `ingressclass.networking.k8s.io/nginx: spec.controller: Invalid value: "example.com/other": field is immutable`) {
		t.Errorf("changing a class's controller: %s", msg)
	}
	if res := mustApply(t, s, ingressClassDoc("podnet", "podnet.dev/ingress-controller", true)); res[0] != "ingressclass.networking.k8s.io/podnet unchanged" || s.IngressClasses()[1] != c {
		t.Errorf("the lab's class as it is: %q", res)
	}
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindIngressClass, Name: "podnet"}}); err == nil || !strings.Contains(err.Error(), `ingressclasses "podnet" is forbidden`) {
		t.Errorf("delete of the lab's class: %v", err)
	}
	res, err := s.Delete([]ObjectRef{{Kind: cluster.KindIngressClass, Name: "nginx"}})
	if err != nil || !slices.Equal(res, []string{`ingressclass.networking.k8s.io "nginx" deleted`}) {
		t.Errorf("delete: %q, %v", res, err)
	}
	// Unmarked as the default, by applying it without the annotation.
	if res := mustApply(t, s, ingressClassDoc("podnet", "podnet.dev/ingress-controller", false)); res[0] != "ingressclass.networking.k8s.io/podnet configured" ||
		cluster.IsDefaultIngressClass(s.IngressClasses()[0]) || s.IngressClasses()[0].UID != c.UID {
		t.Errorf("unmarking the default: %q", res)
	}
}

func TestIngressApplyGetDelete(t *testing.T) {
	s := newServiceStore(t, "", labOnly+devNamespace)
	res := mustApply(t, s, ingressDoc("dev", "b", webBackend)+ingressDoc("default", "a", webBackend)+ingressDoc("dev", "a", webBackend))
	if want := []string{"ingress.networking.k8s.io/b created", "ingress.networking.k8s.io/a created", "ingress.networking.k8s.io/a created"}; !slices.Equal(res, want) {
		t.Errorf("apply: %q, want %q", res, want)
	}
	var names []string
	for _, ing := range s.Ingresses() {
		names = append(names, ing.Namespace+"/"+ing.Name)
	}
	if !slices.Equal(names, []string{"default/a", "dev/a", "dev/b"}) {
		t.Errorf("Ingresses() = %v", names)
	}
	if objs, _ := s.Get(cluster.KindIngress, "dev", ""); len(objs) != 2 {
		t.Errorf("get ingresses -n dev: %v", objs)
	}
	if objs, _ := s.Get(cluster.KindIngress, "default", "b"); len(objs) != 0 {
		t.Errorf("get ingress b -n default: %v", objs)
	}

	// Stored as the API server stores it: the default class given at creation, a UID,
	// creation time and generation.
	a := getIngress(t, s, "default", "a")
	if a.Spec.IngressClassName == nil || *a.Spec.IngressClassName != "podnet" || a.UID == "" || a.CreationTimestamp.IsZero() || a.Generation != 1 ||
		a.APIVersion != "networking.k8s.io/v1" || a.Kind != "Ingress" {
		t.Errorf("stored Ingress: %+v", a)
	}
	// Applied again without a class: it keeps podnet, unchanged, the same object.
	if res := mustApply(t, s, ingressDoc("default", "a", webBackend)); res[0] != "ingress.networking.k8s.io/a unchanged" || getIngress(t, s, "default", "a") != a {
		t.Errorf("re-apply: %q", res)
	}
	// A status in the file is ignored; a spec change is a new generation with the same UID.
	res = mustApply(t, s, ingressDoc("default", "a", "{defaultBackend: {service: {name: web, port: {number: 8080}}}}")+
		"status: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}\n")
	if n := getIngress(t, s, "default", "a"); res[0] != "ingress.networking.k8s.io/a configured" || n.UID != a.UID || n.Generation != 2 ||
		*n.Spec.IngressClassName != "podnet" || !slices.Equal(lbIPs(n), []string{"127.0.7.1", "127.0.7.2"}) {
		t.Errorf("change: %q, now %+v", res, n)
	}

	// Delete: all or nothing.
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindIngress, Namespace: "dev", Name: "a"}, {Kind: cluster.KindIngress, Namespace: "dev", Name: "nope"}}); err == nil ||
		!strings.Contains(err.Error(), `ingresses "nope" not found`) {
		t.Errorf("delete of a missing Ingress: %v", err)
	}
	res, err := s.Delete([]ObjectRef{{Kind: cluster.KindIngress, Namespace: "dev", Name: "a"}})
	if err != nil || !slices.Equal(res, []string{`ingress.networking.k8s.io "a" deleted`}) || len(s.Ingresses()) != 2 {
		t.Errorf("delete: %q, %v, left %d", res, err, len(s.Ingresses()))
	}
}

func TestIngressClassAtCreation(t *testing.T) {
	s := newServiceStore(t, "", labOnly+ingressClassDoc("nginx", "k8s.io/ingress-nginx", false))
	mustApply(t, s, ingressDoc("default", "named", "{ingressClassName: nginx, "+webBackend[1:])+
		strings.Replace(ingressDoc("default", "legacy", webBackend), "namespace: default}", "namespace: default, annotations: {kubernetes.io/ingress.class: nginx}}", 1))
	if c := getIngress(t, s, "default", "named").Spec.IngressClassName; c == nil || *c != "nginx" {
		t.Errorf("class of an Ingress that names one: %v", c)
	}
	if c := getIngress(t, s, "default", "legacy").Spec.IngressClassName; c != nil {
		t.Errorf("an Ingress with the legacy annotation got class %q", *c)
	}

	// Two default classes: an Ingress without a class cannot be created, and nothing of the
	// apply is.
	mustApply(t, s, ingressClassDoc("nginx", "k8s.io/ingress-nginx", true))
	v := s.version
	msg := applyErr(t, s, ingressDoc("default", "web", webBackend)+ingressDoc("default", "named2", "{ingressClassName: podnet, "+webBackend[1:]))
	if !strings.Contains(msg, "test.yaml: document 1 (line 2): ingress.networking.k8s.io/web: spec.ingressClassName: Forbidden: 2 IngressClasses are marked as the default (nginx, podnet), only 1 allowed") {
		t.Errorf("error: %s", msg)
	}
	if s.version != v || len(s.Ingresses()) != 2 {
		t.Errorf("a failed apply changed the Ingresses: %d", len(s.Ingresses()))
	}
	// Only nginx is the default now: new Ingresses get it.
	mustApply(t, s, ingressClassDoc("podnet", cluster.IngressController, false)+ingressDoc("default", "web", webBackend))
	if c := getIngress(t, s, "default", "web").Spec.IngressClassName; c == nil || *c != "nginx" {
		t.Errorf("class with nginx the default: %v", c)
	}
}

func TestIngressStatus(t *testing.T) {
	s := newServiceStore(t, "", labOnly+ingressClassDoc("nginx", "k8s.io/ingress-nginx", false)+ingressClassDoc("mine", cluster.IngressController, false))
	mustApply(t, s, ingressDoc("default", "default-class", webBackend)+
		ingressDoc("default", "podnet", "{ingressClassName: podnet, "+webBackend[1:])+
		ingressDoc("default", "mine", "{ingressClassName: mine, "+webBackend[1:])+
		ingressDoc("default", "nginx", "{ingressClassName: nginx, "+webBackend[1:])+
		ingressDoc("default", "later", "{ingressClassName: later, "+webBackend[1:])+
		strings.Replace(ingressDoc("default", "legacy", webBackend), "namespace: default}", "namespace: default, annotations: {kubernetes.io/ingress.class: podnet}}", 1))
	check := func(when string, want map[string][]string) {
		t.Helper()
		for name, ips := range want {
			if got := lbIPs(getIngress(t, s, "default", name)); !slices.Equal(got, ips) {
				t.Errorf("%s: status of %s = %v, want %v", when, name, got, ips)
			}
		}
	}
	both := []string{"127.0.7.1", "127.0.7.2"}
	// A class of one's own is another controller's, whatever its spec.controller.
	check("at first", map[string][]string{"default-class": both, "podnet": both, "legacy": both, "mine": nil, "nginx": nil, "later": nil})

	// The nodes change: every status follows, in the Lab's node order.
	before := s.Ingresses()
	mustApply(t, s, strings.Replace(labOnly, "[{name: a}, {name: b}]", "[{name: c}, {name: a}, {name: b}]", 1))
	check("node c added", map[string][]string{"podnet": {"127.0.7.3", "127.0.7.1", "127.0.7.2"}, "nginx": nil})
	mustApply(t, s, strings.Replace(labOnly, "[{name: a}, {name: b}]", "[{name: b}]", 1))
	check("nodes a and c removed", map[string][]string{"podnet": {"127.0.7.2"}, "legacy": {"127.0.7.2"}, "default-class": {"127.0.7.2"}, "nginx": nil})
	mustApply(t, s, labOnly)
	check("back to a and b", map[string][]string{"podnet": both, "nginx": nil})

	// The classes change: with no default class, an Ingress is created without one, and is not
	// podnet's; it is once podnet is the default again.
	mustApply(t, s, ingressClassDoc("podnet", cluster.IngressController, false)+ingressDoc("default", "classless", webBackend))
	if c := getIngress(t, s, "default", "classless").Spec.IngressClassName; c != nil {
		t.Errorf("class given with no default class: %q", *c)
	}
	check("no default class", map[string][]string{"classless": nil, "podnet": both, "default-class": both})
	mustApply(t, s, ingressClassDoc("podnet", cluster.IngressController, true))
	check("podnet the default again", map[string][]string{"classless": both, "podnet": both, "nginx": nil})

	// An Ingress that moves to another class loses its status; pod changes leave the
	// Ingresses alone.
	mustApply(t, s, ingressDoc("default", "podnet", "{ingressClassName: nginx, "+webBackend[1:]))
	check("podnet moved to nginx", map[string][]string{"podnet": nil})
	ings := s.Ingresses()
	mustApply(t, s, podDoc("p1", "a", "{app: web}", "[]"))
	setPod(t, s, "p1", "10.244.0.2", true)
	if got := s.Ingresses(); !sameIngresses(got, ings) {
		t.Error("a pod change made a new Ingress list")
	}
	if sameIngresses(before, ings) {
		t.Error("the Ingress list did not change with the nodes")
	}
}

func TestIngressApplyIsAllOrNothing(t *testing.T) {
	s := newServiceStore(t, "", labOnly+ingressDoc("default", "keep", webBackend))
	before := s.Ingresses()
	v := s.version
	msg := applyErr(t, s, ingressDoc("default", "new", webBackend)+ingressDoc("default", "keep", "{defaultBackend: {service: {name: other, port: {number: 80}}}}")+
		secretDoc("default", "tls", "type: kubernetes.io/tls\nstringData: {tls.crt: c, tls.key: k}\n")+ingressDoc("missing", "elsewhere", webBackend))
	if !strings.Contains(msg, `test.yaml: document 4 (line 18): ingress.networking.k8s.io/elsewhere: metadata.namespace: Not found: namespaces "missing" not found`) {
		t.Errorf("error: %s", msg)
	}
	if after := s.Ingresses(); s.version != v || len(after) != 1 || after[0] != before[0] || len(s.Secrets()) != 0 {
		t.Errorf("a failed apply changed something: %d Ingresses, %d Secrets", len(after), len(s.Secrets()))
	}
}

func TestNamespaceDeletionTakesIngressesAndSecrets(t *testing.T) {
	s := newServiceStore(t, "", labOnly+devNamespace+ingressDoc("dev", "a", webBackend)+ingressDoc("default", "a", webBackend)+
		secretDoc("dev", "s", "")+secretDoc("default", "s", ""))
	if _, err := s.Delete([]ObjectRef{{Kind: cluster.KindNamespace, Name: "dev"}}); err != nil {
		t.Fatal(err)
	}
	if ings, secs := s.Ingresses(), s.Secrets(); len(ings) != 1 || ings[0].Namespace != "default" || len(secs) != 1 || secs[0].Namespace != "default" {
		t.Errorf("after deleting namespace dev: %v, %v", ings, secs)
	}
	if len(s.IngressClasses()) != 1 {
		t.Error("deleting a namespace took an IngressClass")
	}
}

func TestIngressesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	manifest := labOnly + ingressClassDoc("mine", cluster.IngressController, false) +
		ingressDoc("default", "web", `{tls: [{hosts: [a.example], secretName: tls}], rules: [{host: a.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]}}]}`) +
		secretDoc("default", "tls", "type: kubernetes.io/tls\ndata: {tls.crt: Y2VydA==}\nstringData: {tls.key: key}\n")
	s := newServiceStore(t, path, manifest)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenStore(path, 99)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]any{
		{s.Ingresses(), reopened.Ingresses()},
		{s.IngressClasses(), reopened.IngressClasses()},
		{s.Secrets(), reopened.Secrets()},
	} {
		a, _ := json.Marshal(pair[0])
		b, _ := json.Marshal(pair[1])
		if string(a) != string(b) {
			t.Errorf("after reopening:\n%s\nwas:\n%s", b, a)
		}
	}
	if len(reopened.Ingresses()) != 1 || len(reopened.IngressClasses()) != 2 || len(reopened.Secrets()) != 1 {
		t.Errorf("reopened: %d Ingresses, %d classes, %d Secrets", len(reopened.Ingresses()), len(reopened.IngressClasses()), len(reopened.Secrets()))
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
	// The same objects again are not a change.
	v := reopened.version
	res := mustApply(t, reopened, manifest)
	if reopened.version != v || !slices.Equal(res[1:], []string{
		"ingressclass.networking.k8s.io/mine unchanged", "ingress.networking.k8s.io/web unchanged", "secret/tls unchanged"}) {
		t.Errorf("re-apply after reopening: %q, version %d of %d", res, reopened.version, v)
	}
}

func TestStateWithoutIngresses(t *testing.T) {
	// A state file written before Ingresses existed has none of their maps, and no IngressClass.
	path := filepath.Join(t.TempDir(), "store.json")
	s := newServiceStore(t, path, labOnly)
	var m map[string]json.RawMessage
	b, _ := json.Marshal(s.state)
	json.Unmarshal(b, &m)
	delete(m, "ingresses")
	delete(m, "ingressClasses")
	delete(m, "secrets")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	reopened, err := OpenStore(path, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := reopened.Ingresses(); got == nil || len(got) != 0 || len(reopened.Secrets()) != 0 {
		t.Errorf("Ingresses of an old state: %v", got)
	}
	if c := reopened.IngressClasses(); len(c) != 1 || c[0].Name != "podnet" {
		t.Errorf("IngressClasses of an old state: %v", c)
	}
	mustApply(t, reopened, ingressDoc("default", "a", webBackend))
	if ing := reopened.Ingresses(); len(ing) != 1 || *ing[0].Spec.IngressClassName != "podnet" || len(ing[0].Status.LoadBalancer.Ingress) != 2 {
		t.Errorf("an Ingress applied to an old state: %+v", ing)
	}
}

func TestIngressAccessorsShareUnchangedLists(t *testing.T) {
	s := newServiceStore(t, "", labOnly+ingressDoc("default", "b", webBackend)+ingressDoc("default", "a", webBackend)+
		secretDoc("default", "sec-b", "")+secretDoc("default", "sec-a", ""))
	ings, classes, secs := s.Ingresses(), s.IngressClasses(), s.Secrets()
	if len(ings) != 2 || ings[0].Name != "a" || len(secs) != 2 || secs[0].Name != "sec-a" || len(classes) != 1 {
		t.Fatalf("lists: %v %v %v", ings, classes, secs)
	}
	if !sameIngresses(ings, s.Ingresses()) || &classes[0] != &s.IngressClasses()[0] || &secs[0] != &s.Secrets()[0] {
		t.Error("a new list though nothing changed")
	}
	// Something else changes: the lists stay.
	mustApply(t, s, policyDoc("default", "p", "{podSelector: {}}"))
	if !sameIngresses(ings, s.Ingresses()) || &classes[0] != &s.IngressClasses()[0] || &secs[0] != &s.Secrets()[0] {
		t.Error("a policy change made new Ingress, IngressClass or Secret lists")
	}
	// One Ingress changes: a new list, holding the other as it was; the Secrets stay.
	mustApply(t, s, ingressDoc("default", "b", "{defaultBackend: {service: {name: web, port: {number: 81}}}}"))
	if got := s.Ingresses(); sameIngresses(got, ings) || got[0] != ings[0] || got[1] == ings[1] || ings[1].Spec.DefaultBackend.Service.Port.Number != 80 {
		t.Errorf("after changing b: %v", got)
	}
	if &secs[0] != &s.Secrets()[0] {
		t.Error("an Ingress change made a new Secret list")
	}
	// One Secret changes.
	mustApply(t, s, secretDoc("default", "sec-b", "stringData: {k: v}\n"))
	if got := s.Secrets(); &got[0] == &secs[0] || got[0] != secs[0] || got[1] == secs[1] {
		t.Errorf("after changing sec-b: %v", got)
	}
}

// sameIngresses reports whether a and b are the same slice (not only equal ones).
func sameIngresses(a, b []*networkingv1.Ingress) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func TestIngressKindsOverTheAPI(t *testing.T) {
	s := newServiceStore(t, "", labOnly+ingressDoc("default", "a", webBackend)+secretDoc("default", "s", "stringData: {k: v}\n"))
	for _, kind := range []cluster.Kind{cluster.KindIngress, cluster.KindIngressClass, cluster.KindSecret} {
		objs, _ := s.Get(kind, "", "")
		b, err := json.Marshal(objectList{Kind: kind, Items: objs})
		if err != nil {
			t.Fatal(err)
		}
		var l objectList
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if len(l.Items) != 1 {
			t.Fatalf("%s: decoded %#v", kind, l.Items)
		}
		switch o := l.Items[0].(type) {
		case *networkingv1.Ingress:
			if o.Name != "a" || o.Kind != "Ingress" || o.APIVersion != "networking.k8s.io/v1" || len(o.Status.LoadBalancer.Ingress) != 2 {
				t.Errorf("decoded Ingress: %+v", o)
			}
		case *networkingv1.IngressClass:
			if o.Name != "podnet" || o.Kind != "IngressClass" || o.Spec.Controller != cluster.IngressController {
				t.Errorf("decoded IngressClass: %+v", o)
			}
		case *corev1.Secret:
			if o.Name != "s" || o.Kind != "Secret" || o.APIVersion != "v1" || string(o.Data["k"]) != "v" || o.Type != corev1.SecretTypeOpaque {
				t.Errorf("decoded Secret: %+v", o)
			}
		default:
			t.Errorf("%s decoded as %T", kind, o)
		}
	}
}
