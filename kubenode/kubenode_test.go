package kubenode

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
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
