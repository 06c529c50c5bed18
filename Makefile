# kasa's build. The everyday loop is `make` (a relink after a small change)
# and `make unit`; `make test` runs every suite, as CI does.

GO          ?= go
BIN         := bin
MODULE      := github.com/kasa-io/kasa
# This machine's architecture, the one make release builds for.
ARCH        := $(shell $(GO) env GOARCH)
K8S_VERSION := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
K8S_MAJOR   := $(word 1,$(subst ., ,$(K8S_VERSION:v%=%)))
K8S_MINOR   := $(word 2,$(subst ., ,$(K8S_VERSION:v%=%)))
VERSION     := $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT      := $(or $(shell git rev-parse --verify -q HEAD 2>/dev/null),unknown)
TREE_STATE  := $(if $(shell git status --porcelain 2>/dev/null),dirty,clean)
# The commit's date, not the clock's: an unchanged tree links the same binary.
BUILD_DATE  := $(or $(shell git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null),unknown)

# Kubernetes' own version stamps (component-base and client-go), so that the
# API server's /version and kubectl report the real release.
K8S_STAMP = -X $(1).gitVersion=$(K8S_VERSION)+kasa -X $(1).gitMajor=$(K8S_MAJOR) -X $(1).gitMinor=$(K8S_MINOR) \
	-X $(1).gitCommit=$(COMMIT) -X $(1).gitTreeState=$(TREE_STATE) -X $(1).buildDate=$(BUILD_DATE)
LDFLAGS := -s -w \
	-X $(MODULE)/pkg/version.Version=$(VERSION) \
	-X $(MODULE)/pkg/version.GitCommit=$(COMMIT) \
	-X $(MODULE)/pkg/version.Kubernetes=$(K8S_VERSION) \
	-X $(MODULE)/pkg/version.BuildDate=$(BUILD_DATE) \
	$(call K8S_STAMP,k8s.io/component-base/version) \
	$(call K8S_STAMP,k8s.io/client-go/pkg/version)

# No -trimpath: it has its own build cache, and tests share this one.
export CGO_ENABLED := 1

.PHONY: all build bundle test-images host-image kwok unit integration e2e test-release test check lint tidy-check fresh-check bench bench-scale release clean

all: build

# bin/kasa is the Go program with the bundle (airgap/README.md) appended.
build: bundle
	$(GO) build -ldflags '$(LDFLAGS)' -o build/kasa.program ./cmd/kasa
	cat build/kasa.program build/bundle.bin > $(BIN)/.kasa.tmp
	chmod 0755 $(BIN)/.kasa.tmp
	mv $(BIN)/.kasa.tmp $(BIN)/kasa

# Built from source once per version (stamps in build/stamps).
bundle:
	@mkdir -p $(BIN)
	scripts/build-bundle.sh

# Fast tests: no root, no binary. Every package's untagged tests, wherever
# they live (tests/harness too).
unit:
	$(GO) test -short ./...

# Tests that run the built binary as real processes (no root needed).
# The scale test's simulated nodes are kwok's (kwok below).
integration: build kwok
	KASA_BIN=$(CURDIR)/$(BIN)/kasa KASA_KWOK=$(CURDIR)/build/tools/kwok $(GO) test -tags integration -count=1 -timeout 25m ./tests/integration/...

# kwok's controller and its stages, from its Go module (scripts/build-kwok.sh).
kwok:
	scripts/build-kwok.sh build/tools

# End-to-end suites: the real binary, as root, on this machine.
# The multi-host tests run hosts as Docker containers (tests/harness/hosts);
# the dockerd that the image script started is stopped again afterwards.
# They take about 38 minutes on 2 cores; the timeout leaves room for a slower
# machine (CI's last failure ran into 40 minutes while one test waited).
e2e: build test-images host-image test-release
	KASA_BIN=$(CURDIR)/$(BIN)/kasa KASA_TEST_IMAGES=$(CURDIR)/build/test-images KASA_TEST_DIST=$(CURDIR)/build/test-dist $(GO) test -tags e2e -count=1 -timeout 55m ./tests/e2e/...; \
	rc=$$?; scripts/build-host-image.sh --stop-docker; exit $$rc

# A release of this build for the suites (install.sh from a web server):
# made as make release makes one, at a fast compression level.
test-release: build
	LDFLAGS='$(LDFLAGS)' scripts/release.sh --version v0.0.0-test --out build/test-dist --level 3 $(ARCH)

host-image:
	scripts/build-host-image.sh

# Stand-ins for the catalog apps' official images, from Debian packages
# (tests/images/README.md); built once, then kept by stamps.
test-images:
	scripts/build-test-images.sh build/test-images

check: tidy-check lint fresh-check

# The steps that a warm machine hides: module sources from an empty module
# cache, Debian's mirrors from apt's sources (scripts/check-fresh.sh).
fresh-check:
	scripts/check-fresh.sh

tidy-check:
	scripts/tidy-check.sh

lint:
	scripts/lint.sh

test: check unit integration e2e

# The bench measures a release of the build as make release makes one
# (level 19; about 5 minutes more), in build/bench-dist.
bench: build test-images host-image
	LDFLAGS='$(LDFLAGS)' scripts/release.sh --version v0.0.0-bench --out build/bench-dist $(ARCH)
	KASA_BIN=$(CURDIR)/$(BIN)/kasa KASA_TEST_IMAGES=$(CURDIR)/build/test-images $(GO) run ./tests/bench -release $(CURDIR)/build/bench-dist/v0.0.0-bench; \
	rc=$$?; scripts/build-host-image.sh --stop-docker; exit $$rc

# One server under 100, 300 and 500 simulated nodes with 30 pods each
# (tests/benchscale); writes its table into docs/benchmarks.md and its plot
# into docs/bench-scale.svg. About 25 minutes.
bench-scale: build kwok
	KASA_BIN=$(CURDIR)/$(BIN)/kasa KASA_KWOK=$(CURDIR)/build/tools/kwok $(GO) run ./tests/benchscale

# The release for this machine's architecture into dist/VERSION/
# (scripts/release.sh): make release VERSION=v0.1.0.
release: build
	LDFLAGS='$(LDFLAGS)' scripts/release.sh --version $(VERSION) $(ARCH)

clean:
	rm -rf $(BIN) build
