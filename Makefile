# podnet's two entry points (see README.md):
#   make lab    install what is needed, build, and start the built-in example lab
#   make test   install what is needed and run every test: unit, in-process and end-to-end
# Both run as root on Debian (apt-get installs the packages the labs and tests use).

GO      ?= go
DEBS    := iproute2 iperf3 curl dnsutils iputils-ping procps jq passt
BIN     := bin/podnet

.PHONY: lab test deps build unit e2e bench clean

deps:
	@command -v $(GO) >/dev/null || { echo "podnet needs Go >= 1.26 (https://go.dev/dl/) on PATH"; exit 1; }
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build:
	$(GO) build -o $(BIN) ./cmd/podnet

lab: deps build
	./$(BIN) lab up

# Unit and in-process tests need no privileges; the end-to-end tests in integration/ need root
# and skip with a message otherwise.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /integration)
	$(GO) test -count=1 -timeout 20m -v ./integration/

bench: deps
	bench/samenode.sh
	bench/pods.sh

clean:
	rm -rf bin
