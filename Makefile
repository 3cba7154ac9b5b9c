# meshnode build, test and packaging entry points. See README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG     := github.com/meshnode/meshnode/internal/version
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE)
# Tests run with a generous per-package timeout: the NAT lab waits for convergence.
TEST_TIMEOUT ?= 20m
# Packages: where they go and the Linux architectures they are built for.
DIST    ?= dist
ARCHES  ?= amd64 arm64

.PHONY: all build unfiltered-sender deps test unit fuzz e2e demo natmatrix perf bench bench-coordinator lint dist-linux deb rpm darwin packages test-packaging clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/meshnode ./cmd/meshnode

# test: unit tests and the in-process NAT lab, a short run of every fuzz
# target; as root also the real-kernel lab and the package checks.
test: deps unit fuzz e2e test-packaging
# Within make test each fuzz target runs 3 s (FUZZTIME=... on the command
# line overrides it).
test: FUZZTIME = 3s

# deps: install what the tests and the demo need from Debian's packages,
# when root; otherwise say what is missing.
deps:
	scripts/deps.sh

# The patched wireguard-go is a module of its own (go.mod's replace): its
# tests of meshnode's changes (third_party/README.md) run from there.
unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -tags meshnode_unfiltered_sender -run '^TestTUN$$' ./node/filter/
	cd third_party/wireguard-go && $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./conn/ ./device/ ./tun/ ./tun/netstack/

# fuzz: every Go fuzz target (func FuzzXxx in a _test.go file, found by
# scripts/fuzz.sh) for FUZZTIME each; `go test` alone replays their seeds.
FUZZTIME ?= 5s
fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' scripts/fuzz.sh

# The real-kernel NAT lab (e2e/, lab in e2e/netlab): real meshnode binaries
# with TUN devices behind nftables NATs in network namespaces. Needs root and
# iproute2 nftables conntrack iputils-ping; without them it says so and skips.
# E2E_FLAGS=-short skips the 2-minute keepalive scenario and the minute-long
# recovery of a pair behind routers that remap when punched early.
E2E_TIMEOUT ?= 30m
E2E_FLAGS   ?=
E2E_ENV      = MESHNODE_E2E=1 MESHNODE_BIN=$(CURDIR)/bin/meshnode MESHNODE_UNFILTERED_BIN=$(CURDIR)/bin/meshnode-unfiltered-sender

# A test-only meshnode whose filter passes everything it sends
# (node/filter/sends_unfiltered.go): the policy scenario proves that the
# receiver drops what such a sender lets out. Never packaged.
unfiltered-sender:
	CGO_ENABLED=0 $(GO) build -trimpath -tags meshnode_unfiltered_sender -ldflags '$(LDFLAGS)' -o bin/meshnode-unfiltered-sender ./cmd/meshnode

e2e: build unfiltered-sender
	$(E2E_ENV) $(GO) test -p 1 -count=1 -timeout $(E2E_TIMEOUT) -v $(E2E_FLAGS) ./e2e/...

# The NAT-pair matrix alone: prints the table and writes bench/NATMATRIX.md.
natmatrix: build
	$(E2E_ENV) MESHNODE_NATMATRIX=$(CURDIR)/bench/NATMATRIX.md \
		$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v -run '^TestNATMatrix$$' ./e2e

# perf: the real-kernel data-plane comparison (e2e/perf): one iperf3 TCP
# stream through two NATs in namespaces over the raw path, stock
# wireguard-go (built from the module proxy at go.mod's version), meshnode
# and Nebula (when NEBULA_BIN exists), on the offload and the packet wire,
# median of PERF_RUNS interleaved rounds of PERF_SECONDS each, with each
# contender's idle RTT (30 pings before each run); then meshnode's time to
# first ping on three NAT pairs, and Nebula's on the cone pair. As root;
# about five minutes. Prints the tables and writes them to bench/PERF.md.
# BEFORE=REV also measures meshnode as it was at git revision REV, beside
# the working tree's, in the same rounds: a change's before and after.
NEBULA_BIN   ?= $(abspath $(CURDIR)/../shared/peers/nebula)
PERF_SECONDS ?= 5
PERF_RUNS    ?= 3
BEFORE       ?=
# PERF_PROFILE=DIR: CPU profiles of both meshnode nodes during the last
# round's run on each wire, for go tool pprof.
PERF_PROFILE ?=
perf: deps build
	$(if $(BEFORE),scripts/build-rev.sh '$(BEFORE)' bin/meshnode-before)
	$(E2E_ENV) MESHNODE_PERF=1 MESHNODE_PERF_OUT=$(CURDIR)/bench/PERF.md NEBULA_BIN='$(NEBULA_BIN)' \
		PERF_SECONDS='$(PERF_SECONDS)' PERF_RUNS='$(PERF_RUNS)' \
		PERF_BEFORE='$(if $(BEFORE),$(CURDIR)/bin/meshnode-before)' PERF_PROFILE='$(PERF_PROFILE)' \
		$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v -run '^TestPerf$$' ./e2e/perf

# A coordinator and two nodes behind two home NATs, in namespaces: status,
# ping, clean-up. As root; installs missing apt packages.
demo:
	@GO='$(GO)' scripts/demo.sh

lint:
	test -z "$$(gofmt -l .)"
	$(GO) vet ./...
	staticcheck ./...

# Linux binaries for the packages: $(DIST)/linux-ARCH/meshnode.
dist-linux:
	for arch in $(ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(DIST)/linux-$$arch/meshnode ./cmd/meshnode || exit 1; \
	done

# deb and rpm packages (nfpm) for each of $(ARCHES), into $(DIST).
deb rpm: dist-linux
	GO='$(GO)' DIST='$(DIST)' packaging/package.sh $@ '$(VERSION)' $(ARCHES)

# macOS binaries: $(DIST)/meshnode_darwin_amd64 and _arm64 (launchd: packaging/README.md).
darwin:
	for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=darwin GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(DIST)/meshnode_darwin_$$arch ./cmd/meshnode || exit 1; \
	done

packages: deb rpm darwin

# Builds, installs, upgrades and purges the packages in a scratch root; needs
# root and prints SKIP otherwise. Tools it needs: packaging/README.md.
test-packaging:
	packaging/test.sh

clean:
	rm -rf bin dist

# bench: the data plane (plain wireguard-go, meshnode's Bind, the relay) side
# by side in one run, then the coordinator's and the relay's hot paths and
# the access policy's resolution.
# Figures go in bench/RESULTS.md.
bench:
	$(GO) test -run '^$$' -bench DataPlane -benchtime 100000x -count 3 ./bench/
	$(GO) test -run '^$$' -bench . -count 1 ./coordinator/ ./relay/ ./internal/natlab/ ./policy/
	$(GO) test -run '^$$' -bench Page500 -benchtime 5x -count 1 ./coordinator/ui/
	$(GO) test -run '^$$' -bench EightPagesOpen -benchtime 50x -count 1 ./coordinator/ui/

# bench-coordinator: the coordinator under simulated nodes on loopback
# (bench/coordload, internal/loadgen): each registers, all open their
# streams at once, then changes and churn; one line of figures per size.
# COORD_GROUP=N scopes the maps by a policy of groups of N (0: everyone
# sees everyone). BEFORE=REV runs revision REV's coordinator beside this
# one at each size. Long (minutes per size); not part of make test.
COORD_SIZES ?= 1000,2000,5000,10000
COORD_GROUP ?= 100
COORD_FLAGS ?=
bench-coordinator: build
	$(if $(BEFORE),scripts/build-rev.sh '$(BEFORE)' bin/meshnode-before)
	$(GO) build -o bin/coordload ./bench/coordload
	flock /tmp/meshnode-bench.lock bin/coordload -bin bin/meshnode -label after \
		-sizes '$(COORD_SIZES)' -group '$(COORD_GROUP)' $(if $(BEFORE),-before bin/meshnode-before) $(COORD_FLAGS)
