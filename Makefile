# Vigil — the two commands that matter: `make run` and `make test`.

GO        ?= go
VERSION   := $(shell cat VERSION)
REVISION  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH    := $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILDDATE := $(shell date -u +%Y%m%d-%H:%M:%S)
LDFLAGS   := -X github.com/prometheus/common/version.Version=$(VERSION) \
             -X github.com/prometheus/common/version.Revision=$(REVISION) \
             -X github.com/prometheus/common/version.Branch=$(BRANCH) \
             -X github.com/prometheus/common/version.BuildUser=$(shell id -un 2>/dev/null)@$(shell hostname 2>/dev/null) \
             -X github.com/prometheus/common/version.BuildDate=$(BUILDDATE)

# Root installs packages directly; anyone else goes through sudo.
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT       := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
# Debian packages of the real peers the tests run against, and the command each provides.
DEB_PEERS := prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager victoria-metrics:victoria-metrics chromium:chromium

# Go tools the tests run as real clients, pinned: name:module/cmd@version.
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
GO_PEERS  := telemetrygen:github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0

# The linter, pinned; `make peers` installs it (go install) when it is missing or another version.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(GOBIN)/golangci-lint

# An OpenTelemetry Collector with the loadbalancing exporter, built with the
# official builder from a pinned manifest (the scale-out tests put it in front
# of Vigil's collector replicas). Rebuilt only when the manifest's dist.version
# changes; a cold build takes several minutes (see docs/development.md).
OTELCOL_BUILDER      := go.opentelemetry.io/collector/cmd/builder@v0.161.0
OTELCOL_LB_MANIFEST  := internal/peers/otelcol/builder.yaml
OTELCOL_LB_VERSION   := $(shell sed -n 's/^  version: //p' $(OTELCOL_LB_MANIFEST))

TEST_TIMEOUT ?= 20m
# The whole suite runs under the race detector (measured: 13 min for .ci/run on 2 busy cores).
RACE         ?= -race
FUZZTIME     ?= 30s

.PHONY: all run build install docs lint test test-unit peers vet fmt-check bench fuzz clean

all: build

## run: start `vigil serve` on its defaults (127.0.0.1:9400, data in ./data); CONFIG=vigil.yml to use a config file
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/vigil serve $(if $(CONFIG),--config.file=$(CONFIG))

## build: build ./vigil
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o vigil ./cmd/vigil

## install: install vigil into $(GOBIN) (on the PATH when $(GOBIN) is)
install:
	$(GO) install -ldflags "$(LDFLAGS)" ./cmd/vigil

## peers: install the real programs the tests talk to (apt-get; idempotent)
peers:
	@missing=""; for p in $(DEB_PEERS); do cmd=$${p%%:*}; pkg=$${p##*:}; \
		command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages:$$missing (their services are not started)"; \
		guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=1; \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod +x /usr/sbin/policy-rc.d; fi; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends $$missing; rc=$$?; \
		if [ -n "$$guard" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; [ $$rc -eq 0 ] || exit $$rc; \
	else echo ">> peers present: $(foreach p,$(DEB_PEERS),$(firstword $(subst :, ,$(p))))"; fi
	@for p in $(GO_PEERS); do cmd=$${p%%:*}; mod=$${p#*:}; \
		if [ -x "$(GOBIN)/$$cmd" ]; then echo ">> $$cmd present"; \
		else echo ">> go install $$mod"; GOBIN=$(GOBIN) $(GO) install $$mod || exit 1; fi; done
	@if $(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) "; then echo ">> golangci-lint present"; \
	else echo ">> go install golangci-lint $(GOLANGCI_LINT_VERSION)"; \
		GOBIN=$(GOBIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) || exit 1; fi
	@if "$(GOBIN)/otelcol-loadbalancing" --version 2>/dev/null | grep -qF "$(OTELCOL_LB_VERSION)"; then \
		echo ">> otelcol-loadbalancing $(OTELCOL_LB_VERSION) present"; \
	else \
		echo ">> building otelcol-loadbalancing $(OTELCOL_LB_VERSION) with the OpenTelemetry Collector builder (several minutes on a cold cache)"; \
		GOBIN=$(GOBIN) $(GO) install $(OTELCOL_BUILDER) || exit 1; \
		dir=$$(mktemp -d) && cp $(OTELCOL_LB_MANIFEST) $$dir/ && \
		(cd $$dir && $(GOBIN)/builder --config builder.yaml >build.log 2>&1 || { cat build.log; exit 1; }) && \
		install -m 0755 $$dir/otelcol-loadbalancing/otelcol-loadbalancing $(GOBIN)/otelcol-loadbalancing && rm -rf $$dir; \
	fi

# The Kubernetes control plane the rollback tests run against, built from the Go module proxy
# through the nested build module internal/peers/kubebuild (versions pinned in its go.mod):
# etcd, kube-apiserver, kube-controller-manager and a kubectl of the same release. A binary that
# already reports the pinned version is kept; a cold build takes 21 CPU-minutes (about 15 minutes
# on 2 idle cores), a rebuild from a warm Go build cache about 3 (linking).
KUBE_VERSION := v1.37.2
ETCD_VERSION := 3.7.0
KUBE_BUILD   := internal/peers/kubebuild
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
                -X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION)
KUBE_PEERS   := kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver \
                kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager \
                kubectl:k8s.io/kubernetes/cmd/kubectl

.PHONY: kube-peers
peers: kube-peers

## kube-peers: build etcd, kube-apiserver, kube-controller-manager and kubectl into GOBIN (once)
kube-peers:
	@mkdir -p $(GOBIN)
	@if "$(GOBIN)/etcd" --version 2>/dev/null | grep -q "etcd Version: $(ETCD_VERSION)$$"; then \
		echo ">> etcd $(ETCD_VERSION) present"; \
	else echo ">> building etcd $(ETCD_VERSION)"; \
		( cd $(KUBE_BUILD) && $(GO) build -o "$(GOBIN)/etcd.tmp" go.etcd.io/etcd/server/v3 ) && \
		mv "$(GOBIN)/etcd.tmp" "$(GOBIN)/etcd" || exit 1; fi
	@for p in $(KUBE_PEERS); do cmd=$${p%%:*}; pkg=$${p#*:}; \
		if { "$(GOBIN)/$$cmd" --version 2>/dev/null; "$(GOBIN)/$$cmd" version --client 2>/dev/null; } | \
			grep -q -E "(Kubernetes|Client Version:) $(KUBE_VERSION)$$"; then \
			echo ">> $$cmd $(KUBE_VERSION) present"; continue; fi; \
		echo ">> building $$cmd $(KUBE_VERSION) (cold: minutes)"; \
		( cd $(KUBE_BUILD) && $(GO) build -ldflags "$(KUBE_LDFLAGS)" -o "$(GOBIN)/$$cmd.tmp" $$pkg ) && \
		mv "$(GOBIN)/$$cmd.tmp" "$(GOBIN)/$$cmd" || exit 1; done

## docs: regenerate docs/command-line.md from the command line
docs:
	$(GO) test ./cmd/vigil -run '^TestCommandLineDocIsCurrent$$' -update-docs

## vet: go vet and gofmt
vet: fmt-check
	$(GO) vet ./...

## lint: golangci-lint with .golangci.yml (goimports, errcheck, staticcheck, unused, revive, ...)
lint:
	$(GOLANGCI_LINT) run ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: install peers, then vet and run every test with the race detector (CI=true makes a missing peer fail; RACE= runs without it)
test: peers vet lint
	$(GO) test $(RACE) -count=1 -timeout $(TEST_TIMEOUT) ./...

## test-unit: the quick loop: every test that needs no real peer (go test -short)
test-unit:
	$(GO) test -short -count=1 ./...

## bench: the Go benchmarks of the ingest path and the query API
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo ">> $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; done

clean:
	rm -rf vigil data

include bench/bench.mk
