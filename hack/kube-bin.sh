#!/usr/bin/env bash
# Builds the real Kubernetes components podnet's Kubernetes-mode tests run against, from the Go
# module proxy, into a cache, once; then links them into bin/kube/ of this checkout.
#
#   hack/kube-bin.sh [COMPONENT...]      (make kube-bin)
#
# Components (default: all): kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
# kube-proxy (k8s.io/kubernetes $KUBE_VERSION; kube-proxy only as the reference of benchmarks),
# agnhost (test/images/agnhost, the upstream suites' test server, for podnet cluster's image) and
# e2e.test (the upstream end-to-end suites, test/e2e) and ginkgo (their runner, for parallel
# runs; both for make conformance), etcd (go.etcd.io/etcd/server/v3 $ETCD_VERSION), containerd
# (github.com/containerd/containerd/v2 $CONTAINERD_VERSION, with containerd-shim-runc-v2 and ctr),
# cni-plugins (the reference bridge, host-local and loopback of github.com/containernetworking/plugins
# $CNI_PLUGINS_VERSION, for benchmarks beside podnet-cni; into bin/kube/cni/).
#
# None of them is ever a dependency of podnet's own module: each is built from a scratch module
# in the cache. k8s.io/kubernetes cannot be required like an ordinary module (its go.mod points
# every k8s.io/* staging module at ./staging), so the scratch module replaces each of them with
# its published v0.x release of the same Kubernetes version.
#
# The cache is $PODNET_KUBE_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/podnet/kube; a
# component already built for its version is not built again. Each build takes minutes on two
# cores (kube-apiserver the longest).
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.10.0}
GO=${GO:-go}

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${PODNET_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podnet/kube}
kube_components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)
all=("${kube_components[@]}" agnhost e2e.test ginkgo etcd containerd cni-plugins)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${all[@]}")
for c in "${wanted[@]}"; do
	case " ${all[*]} " in *" $c "*) ;; *) echo "kube-bin: unknown component $c (known: ${all[*]})" >&2; exit 2 ;; esac
done

export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0
mkdir -p "$cache"

elapsed() { echo "kube-bin: $1 built in $(($(date +%s) - $2)) s"; }

# build_kube NAME: one component of k8s.io/kubernetes into $cache/kubernetes-$KUBE_VERSION/bin.
build_kube() {
	local name=$1 dir=$cache/kubernetes-$KUBE_VERSION
	[ -x "$dir/bin/$name" ] && { [ "$name" != agnhost ] || [ -f "$dir/bin/agnhost-localhost.key" ]; } && return
	mkdir -p "$dir/src" "$dir/bin"
	if [ ! -f "$dir/src/go.sum" ]; then
		echo "kube-bin: preparing a module for k8s.io/kubernetes $KUBE_VERSION"
		local staging=v0.${KUBE_VERSION#v1.} gomod
		gomod=$(cd "$dir/src" && "$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
		{
			echo "module podnet.dev/kube-bin"
			echo
			echo "go 1.26.0"
			echo
			echo "require k8s.io/kubernetes $KUBE_VERSION"
			echo
			echo "replace ("
			sed -n '/^replace (/,/^)/p' "$gomod" | awk '/=>/ {print $1}' | while read -r m; do
				printf '\t%s => %s %s\n' "$m" "$m" "$staging"
			done
			echo ")"
		} >"$dir/src/go.mod"
		{
			echo "//go:build tools"
			echo
			echo "package tools"
			echo
			echo "import ("
			for c in "${kube_components[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
			echo ")"
		} >"$dir/src/tools.go"
		(cd "$dir/src" && "$GO" mod tidy)
	fi
	local minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
	ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
	ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
	echo "kube-bin: building $name $KUBE_VERSION"
	local start
	start=$(date +%s)
	case $name in
	agnhost)
		(cd "$dir/src" && "$GO" build -trimpath -ldflags="$ldflags" -o "$dir/bin/$name.tmp" "k8s.io/kubernetes/test/images/agnhost")
		# The image's test certificate for agnhost porter's TLS ports (its Dockerfile adds them).
		local src
		src=$(cd "$dir/src" && "$GO" list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/porter
		cp "$src/localhost.crt" "$dir/bin/agnhost-localhost.crt"
		cp "$src/localhost.key" "$dir/bin/agnhost-localhost.key"
		chmod 644 "$dir/bin/agnhost-localhost.crt" "$dir/bin/agnhost-localhost.key"
		;;
	e2e.test) (cd "$dir/src" && "$GO" test -c -trimpath -ldflags="$ldflags" -o "$dir/bin/$name.tmp" "k8s.io/kubernetes/test/e2e") ;;
	ginkgo) (cd "$dir/src" && "$GO" build -trimpath -o "$dir/bin/$name.tmp" "github.com/onsi/ginkgo/v2/ginkgo") ;;
	*) (cd "$dir/src" && "$GO" build -trimpath -ldflags="$ldflags" -o "$dir/bin/$name.tmp" "k8s.io/kubernetes/cmd/$name") ;;
	esac
	mv "$dir/bin/$name.tmp" "$dir/bin/$name"
	elapsed "$name" "$start"
}

# build_etcd: go.etcd.io/etcd/server/v3 has relative replaces of its sibling modules, so the
# scratch module replaces them with the same release and calls etcdmain.Main.
build_etcd() {
	local dir=$cache/etcd-$ETCD_VERSION
	[ -x "$dir/bin/etcd" ] && return
	mkdir -p "$dir/src" "$dir/bin"
	cat >"$dir/src/go.mod" <<EOF
module podnet.dev/kube-bin/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
EOF
	cat >"$dir/src/main.go" <<'EOF'
// Command etcd is etcd's server, built from its module for podnet's tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
	echo "kube-bin: building etcd $ETCD_VERSION"
	local start
	start=$(date +%s)
	(cd "$dir/src" && "$GO" mod tidy && "$GO" build -trimpath -ldflags='-s -w' -o "$dir/bin/etcd.tmp" .)
	mv "$dir/bin/etcd.tmp" "$dir/bin/etcd"
	elapsed etcd "$start"
}

# build_containerd: containerd, its runc shim and ctr, without the btrfs, devmapper and zfs
# snapshotters (btrfs needs C headers; none is used).
build_containerd() {
	local dir=$cache/containerd-$CONTAINERD_VERSION p=github.com/containerd/containerd/v2/cmd
	[ -x "$dir/bin/containerd" ] && [ -x "$dir/bin/containerd-shim-runc-v2" ] && [ -x "$dir/bin/ctr" ] && return
	mkdir -p "$dir/src" "$dir/bin"
	printf 'module podnet.dev/kube-bin/containerd\n\ngo 1.26.0\n\nrequire github.com/containerd/containerd/v2 %s\n' "$CONTAINERD_VERSION" >"$dir/src/go.mod"
	printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/containerd"\n\t_ "%s/containerd-shim-runc-v2"\n\t_ "%s/ctr"\n)\n' $p $p $p >"$dir/src/tools.go"
	echo "kube-bin: building containerd $CONTAINERD_VERSION"
	local start
	start=$(date +%s)
	(cd "$dir/src" && "$GO" mod tidy && "$GO" build -trimpath -tags 'no_btrfs no_devmapper no_zfs' -ldflags='-s -w' \
		-o "$dir/bin/" $p/containerd $p/containerd-shim-runc-v2 $p/ctr)
	elapsed containerd "$start"
}

# build_cni_plugins: the reference CNI plugins that benchmarks compare podnet-cni with.
build_cni_plugins() {
	local dir=$cache/cni-plugins-$CNI_PLUGINS_VERSION p=github.com/containernetworking/plugins/plugins
	[ -x "$dir/bin/bridge" ] && [ -x "$dir/bin/host-local" ] && [ -x "$dir/bin/loopback" ] && return
	mkdir -p "$dir/src" "$dir/bin"
	printf 'module podnet.dev/kube-bin/cni-plugins\n\ngo 1.26.0\n\nrequire github.com/containernetworking/plugins %s\n' "$CNI_PLUGINS_VERSION" >"$dir/src/go.mod"
	printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s/ipam/host-local"\n\t_ "%s/main/bridge"\n\t_ "%s/main/loopback"\n)\n' $p $p $p >"$dir/src/tools.go"
	echo "kube-bin: building the reference CNI plugins $CNI_PLUGINS_VERSION"
	local start
	start=$(date +%s)
	(cd "$dir/src" && "$GO" mod tidy && "$GO" build -trimpath -ldflags='-s -w' -o "$dir/bin/" $p/main/bridge $p/ipam/host-local $p/main/loopback)
	elapsed cni-plugins "$start"
}

mkdir -p "$top/bin/kube"
for c in "${wanted[@]}"; do
	case $c in
	etcd)
		build_etcd
		ln -sf "$cache/etcd-$ETCD_VERSION/bin/etcd" "$top/bin/kube/etcd"
		;;
	cni-plugins)
		build_cni_plugins
		mkdir -p "$top/bin/kube/cni"
		for b in bridge host-local loopback; do
			ln -sf "$cache/cni-plugins-$CNI_PLUGINS_VERSION/bin/$b" "$top/bin/kube/cni/$b"
		done
		;;
	containerd)
		build_containerd
		for b in containerd containerd-shim-runc-v2 ctr; do
			ln -sf "$cache/containerd-$CONTAINERD_VERSION/bin/$b" "$top/bin/kube/$b"
		done
		;;
	*)
		build_kube "$c"
		ln -sf "$cache/kubernetes-$KUBE_VERSION/bin/$c" "$top/bin/kube/$c"
		if [ "$c" = agnhost ]; then
			for f in agnhost-localhost.crt agnhost-localhost.key; do
				ln -sf "$cache/kubernetes-$KUBE_VERSION/bin/$f" "$top/bin/kube/$f"
			done
		fi
		;;
	esac
done
echo "kube-bin: ${wanted[*]} in $top/bin/kube"
