# meshnode build, test and packaging entry points. See README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG     := github.com/meshnode/meshnode/internal/version
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE)
# Tests run with a generous per-package timeout: the NAT lab waits for convergence.
TEST_TIMEOUT ?= 20m

.PHONY: all build test unit e2e demo natmatrix bench lint deb rpm darwin packages test-packaging clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/meshnode ./cmd/meshnode

# test: unit tests and the in-process NAT lab; as root also the real-kernel
# lab and the package checks.
test: unit e2e test-packaging

unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

lint:
	test -z "$$(gofmt -l .)"
	$(GO) vet ./...
	staticcheck ./...

clean:
	rm -rf bin dist
