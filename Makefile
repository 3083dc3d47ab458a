# podnet's two entry points (see README.md):
#   make lab    install what is needed, build, and start the built-in example lab
#   make test   install what is needed and run every test: unit, in-process and end-to-end
# Both run as root on Debian (apt-get installs the packages the labs and tests use).

GO      ?= go
DEBS    := iproute2 iperf3 curl dnsutils iputils-ping procps jq passt tshark runc busybox-static util-linux netcat-openbsd
BIN     := bin/podnet

.PHONY: lab test deps build unit fuzz fuzz-short e2e rootless-setup bench clean kube-bin kube-bin-test conformance

deps:
	@command -v $(GO) >/dev/null || { echo "podnet needs Go >= 1.26 (https://go.dev/dl/) on PATH"; exit 1; }
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build:
	$(GO) build -o $(BIN) ./cmd/podnet
	$(GO) build -o bin/podnet-cni ./cmd/podnet-cni

lab: deps build
	./$(BIN) lab up

# Unit and in-process tests need no privileges. The end-to-end tests in integration/ run three
# times (integration/run.sh): as root; as the unprivileged user $(TEST_USER) (a rootless lab),
# which `make test` creates when run as root; and as root on a kernel that looks built without
# netfilter (the no-netfilter mode, internal/nonetfilter). Where a run cannot happen the tests
# skip and say why.
TEST_USER ?= podnettest

test: deps kube-bin-test unit fuzz-short e2e

# The components the end-to-end suite's Kubernetes-mode tests run: a control plane on loopback,
# the nodes of TestCluster's `podnet cluster` (kubelet, containerd, the CNI loopback plugin), and
# the upstream suites' six smoke specs it runs there (agnhost, e2e.test, ginkgo).
KUBE_TEST_COMPONENTS := etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet containerd cni-plugins agnhost e2e.test ginkgo
kube-bin-test:
	GO=$(GO) hack/kube-bin.sh $(KUBE_TEST_COMPONENTS)

# Every benchmark runs once too (-benchtime 1x), so that none is left broken between the runs
# that measure with it.
unit:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /integration)
	$(GO) test -count=1 -timeout 20m -run '^$$' -bench . -benchtime 1x $$($(GO) list ./... | grep -v /integration)

# Every parser that reads what a user, a pod or a peer sends is fuzzed (hack/fuzz.sh): `make fuzz`
# runs each target for FUZZTIME (60s); `make test` runs each for 300 executions (a count, not a time: a time-bound run of a slow target can end in the fuzzer's own "context deadline exceeded"). The corpora are
# kept in each package's testdata/fuzz (KEEP_CORPUS=1 adds what a run found).
FUZZTIME ?= 60s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) hack/fuzz.sh

fuzz-short:
	GO=$(GO) FUZZTIME=300x hack/fuzz.sh

e2e: rootless-setup
	GO=$(GO) TEST_USER=$(TEST_USER) integration/run.sh

# The rootless run needs an unprivileged user and /dev/net/tun at mode 0666, its default on
# Debian and Ubuntu (some VMs ship it 0600). Done only when run as root.
rootless-setup:
	@if [ "$$(id -u)" = 0 ]; then \
		id $(TEST_USER) >/dev/null 2>&1 || useradd --system --create-home $(TEST_USER); \
		[ "$$(stat -c %a /dev/net/tun)" = 666 ] || { echo "chmod 0666 /dev/net/tun (the Debian default)"; chmod 0666 /dev/net/tun; }; \
	fi

# Real Kubernetes components (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kubectl, etcd, containerd) for the Kubernetes-mode tests, built once from the Go module proxy
# into a cache and linked into bin/kube/ (hack/kube-bin.sh). Minutes per component on two cores.
kube-bin:
	GO=$(GO) hack/kube-bin.sh

bench: deps
	bench/samenode.sh
	bench/pods.sh

clean:
	rm -rf bin

# The upstream Kubernetes network suites (the NetworkPolicy suite and every [sig-network]
# Conformance spec, from e2e.test v1.37.2) against a fresh 2-node `podnet cluster`, with JUnit
# reports under _output/conformance. Long: not part of `make test`.
conformance: deps
	GO=$(GO) hack/conformance.sh
