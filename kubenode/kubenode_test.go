package kubenode

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podnet/podnet/kubesource"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

// TestClusterRoleGrantsPermissions keeps deploy/podnet.yaml's ClusterRole and Permissions equal:
// the agent needs every rule, and the role grants nothing more.
func TestClusterRoleGrantsPermissions(t *testing.T) {
	b, err := os.ReadFile("../deploy/podnet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &r); err == nil && r.Kind == "ClusterRole" {
			role = &r
		}
	}
	if role == nil {
		t.Fatal("no ClusterRole in deploy/podnet.yaml")
	}
	var granted []string
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted = append(granted, v+" "+g+" "+res)
				}
			}
		}
	}
	var needed []string
	for _, p := range Permissions() {
		res := p.Resource
		if p.Subresource != "" {
			res += "/" + p.Subresource
		}
		needed = append(needed, p.Verb+" "+p.Group+" "+res)
	}
	slices.Sort(granted)
	slices.Sort(needed)
	if !slices.Equal(granted, needed) {
		t.Errorf("the ClusterRole grants\n  %s\nthe agent needs\n  %s", strings.Join(granted, "\n  "), strings.Join(needed, "\n  "))
	}
}

func TestInstallCNI(t *testing.T) {
	dir := t.TempDir()
	plugin, conf := filepath.Join(dir, "plugin"), filepath.Join(dir, "conf")
	os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o600)
	os.WriteFile(conf, []byte(`{"cniVersion":"1.1.0"}`), 0o600)
	bin, net := filepath.Join(dir, "opt/cni/bin"), filepath.Join(dir, "etc/cni/net.d")
	if err := InstallCNI(plugin, bin, conf, net); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(bin, "podnet-cni"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("podnet-cni: %v, mode %v; want 0755", err, fi.Mode())
	}
	if b, err := os.ReadFile(filepath.Join(net, "10-podnet.conflist")); err != nil || string(b) != `{"cniVersion":"1.1.0"}` {
		t.Errorf("conflist: %q, %v", b, err)
	}
	entries, _ := os.ReadDir(bin)
	if len(entries) != 1 {
		t.Errorf("left in %s: %v", bin, entries)
	}
	if err := InstallCNI(filepath.Join(dir, "missing"), bin, conf, net); err == nil {
		t.Error("a missing plugin: want an error")
	}
}

func TestHelpers(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", Annotations: map[string]string{"keep": "me"}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "a"}, {Type: corev1.NodeInternalIP, Address: "192.0.2.7"}}},
	}
	client := fake.NewClientset(node,
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.200.0.0/16"}}},
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"fd00::/108", "10.96.0.0/12"}}},
	)
	if got, err := serviceCIDR(ctx, client); err != nil || got != netip.MustParsePrefix("10.96.0.0/12") {
		t.Errorf("serviceCIDR = %v, %v; want the IPv4 range of \"kubernetes\"", got, err)
	}
	if _, err := serviceCIDR(ctx, fake.NewClientset()); err == nil || !strings.Contains(err.Error(), "--service-cidr") {
		t.Errorf("no ServiceCIDR: %v; want an error naming --service-cidr", err)
	}
	if got, err := internalIP(node); err != nil || got != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("internalIP = %v, %v", got, err)
	}
	if _, err := internalIP(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "bare"}}); err == nil || !strings.Contains(err.Error(), "--node-address") {
		t.Errorf("a Node without addresses: %v; want an error naming --node-address", err)
	}
	w := nodeWriter{client}
	if err := w.UpdateNodeAnnotations("node-a", map[string]string{"podnet.dev/wireguard-public-key": "k"}); err != nil {
		t.Fatal(err)
	}
	if err := setNetworkAvailable(ctx, client, "node-a"); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations["keep"] != "me" || got.Annotations["podnet.dev/wireguard-public-key"] != "k" {
		t.Errorf("annotations %v: want the new one beside the old", got.Annotations)
	}
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != corev1.NodeNetworkUnavailable || got.Status.Conditions[0].Status != corev1.ConditionFalse {
		t.Errorf("conditions %+v: want NetworkUnavailable=False", got.Status.Conditions)
	}
}

func TestClusterDNS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	services := netip.MustParsePrefix("10.96.0.0/16")
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"no kube-dns: the tenth address", nil, "10.96.0.10"},
		{"kube-dns's ClusterIP", []runtime.Object{&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.53"}}}, "10.96.0.53"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := kubesource.New(fake.NewClientset(tc.objs...), 0)
			src.Start(ctx)
			if err := src.WaitForSync(ctx); err != nil {
				t.Fatal(err)
			}
			if got := clusterDNS(src, services); got.String() != tc.want {
				t.Errorf("clusterDNS = %v, want %s", got, tc.want)
			}
		})
	}
}
