# Herald — developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

KUBE_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.16
# containerd of the test cluster (a version prefix checked against Debian's package).
CONTAINERD_VERSION ?= 1.6
CONTROLLER_TOOLS_VERSION ?= v0.23.0
HELM_VERSION ?= v3.22.0
# Prometheus 3.16.0's promtool (the module is versioned v0.3xx.y), for the chart's alerts.
PROMTOOL_VERSION ?= v0.316.0
# The Go release go.mod names in its toolchain line (a patch release of the machine's Go
# with the standard library's security fixes; make vulncheck fails without them). A
# machine whose Go defaults to GOTOOLCHAIN=local would build with its own release instead.
export GOTOOLCHAIN ?= auto
export KUBE_VERSION ETCD_VERSION CONTAINERD_VERSION CONTROLLER_TOOLS_VERSION HELM_VERSION PROMTOOL_VERSION

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/herald-dev/herald/internal/version.Version=$(VERSION)
# -vet=all: `go test` runs every `go vet` analyzer on each package it compiles, so the
# tests need no separate `go vet ./...` (which type-checked every package a second time).
GO_TEST_FLAGS ?= -count=1 -timeout=30m -vet=all

# The pinned tools, installed once by hack/tool.sh; a path in the environment wins (CI
# takes promtool from Debian: see .ci/run).
CONTROLLER_GEN ?= $(shell hack/tool.sh controller-gen)
HELM ?= $(shell hack/tool.sh helm)
PROMTOOL ?= $(shell hack/tool.sh promtool)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from the Go markers, and copy them into the chart.
	$(CONTROLLER_GEN) rbac:roleName=herald-manager crd paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/chartsync

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: build
build: ## Build bin/herald (static and trimmed, as the release).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/herald .

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd for tests (cached under bin/k8s).
	@hack/envtest-assets.sh

# The packages that run goroutines of their own are tested under the race detector:
# the dispatcher, the commands and servers of cli, and the controllers. Everything else,
# and the packages holding tests that -race cannot run (files tagged `//go:build !race`,
# such as allocation budgets), are tested without it; the suites driving herald binaries
# build them with -race (HERALD_TEST_RACE=1: hack/chaos, and any suite reading it).
RACE_PKGS ?= ./dispatcher/... ./cli/... ./controllers/... ./console/...
# Every benchmark runs once (-benchtime=1x) with the tests, so a benchmark that no longer
# compiles or no longer runs fails `make test` instead of rotting until someone profiles.
BENCH_SMOKE ?= -bench . -benchtime=1x

# Every build of `make test` is trimmed (-trimpath) and, but for -race, static
# (CGO_ENABLED=0): the flags of the release build (Dockerfile, make dist), of the cluster
# suite's images and of hack/nats-server.sh. With one set of flags Herald's dependencies
# are compiled once for the test binaries and for every binary the suites build from them
# (herald for hack/e2e, hack/chaos, hack/firsthour and hack/cluster, nats-server, the
# local stack, hack/release's run of the Dockerfile), instead of once per set of flags.
# The race detector needs cgo: the -race pass compiles them once more, instrumented, and
# the race-built herald of the suites shares that.
SUITE_TOOLS = KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" HELM="$(HELM)"
TEST_TOOLS = $(SUITE_TOOLS) CONTROLLER_GEN="$(CONTROLLER_GEN)" PROMTOOL="$(PROMTOOL)"
TEST_ENV = GOFLAGS=-trimpath HERALD_TEST_RACE=1 $(TEST_TOOLS)

# `make test` in steps, each reporting what it took (hack/step.sh prints "ci: STEP took
# Ns (CPU Ns; load ...)"; .ci/run tabulates them); hack/test.sh runs them, the cluster
# suite beside the others where it runs (root on Linux), after the node's binaries were
# built at low priority while the other tests wait on their processes.
.PHONY: test
test: ## Every test against a real kube-apiserver + etcd (built on first run), go vet's analyzers, RACE_PKGS under -race, every benchmark once, the suites (race-built herald), and beside them the cluster suite (real pods; root, else a loud SKIP; a failure under CI=true).
	@MAKE="$(MAKE)" hack/test.sh

.PHONY: fmt-check
fmt-check: ## Fail when a Go file is not gofmt-ed.
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*'))" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }

# The one-time builds, side by side (linking one while compiling the other keeps both
# cores busy, and one downloads modules while another compiles): kube-apiserver, etcd
# and kubectl; controller-gen, helm and promtool; nats-server; Herald's modules. Each is
# cached (bin/, the module cache) and reports its own time.
.PHONY: test-assets
test-assets: ## Build what the tests run (bin/k8s, bin/tools, bin/nats-server-*) once.
	@pids=(); \
	hack/step.sh go-mod-download go mod download & pids+=($$!); \
	hack/step.sh envtest-assets hack/envtest-assets.sh >/dev/null & pids+=($$!); \
	for t in controller-gen helm promtool; do \
		v="$${t^^}"; v="$${v//-/_}"; [[ -n "$${!v:-}" ]] && { echo "test-assets: $$t is $${!v}"; continue; }; \
		hack/step.sh "tool $$t" hack/tool.sh $$t >/dev/null & pids+=($$!); done; \
	GOFLAGS=-trimpath hack/step.sh nats-server hack/nats-server.sh >/dev/null & pids+=($$!); \
	rc=0; for p in "$${pids[@]}"; do wait "$$p" || rc=1; done; exit $$rc

.PHONY: test-race
test-race: ## RACE_PKGS under the race detector.
	$(TEST_ENV) go test $(GO_TEST_FLAGS) -race $(BENCH_SMOKE) $(RACE_PKGS)

# The suites spend most of their time waiting on the processes they drive, so more
# packages run at once than there are cores (-p), the longest first: with the default
# (-p = cores) two suites would hold both slots while the short packages queued.
TEST_UNIT_P ?= 4
TEST_UNIT_FIRST ?= ./hack/chaos ./hack/e2e ./hack/firsthour ./hack/tenancy ./hack/console

.PHONY: test-unit
test-unit: ## Every other package (and those with tests -race cannot run), static builds, the suites included.
	race="$$(go list $(RACE_PKGS))"; \
	first="$$(go list $(TEST_UNIT_FIRST))"; \
	norace="$$(git grep -l '^//go:build !race' -- '*_test.go' | xargs -r -n1 dirname | sort -u | sed 's|^|./|')"; \
	CGO_ENABLED=0 $(TEST_ENV) go test -p $(TEST_UNIT_P) $(GO_TEST_FLAGS) $(BENCH_SMOKE) \
		$$first $$(go list ./... | grep -vxF -f <(echo "$$race"; echo "$$first") | grep -v '/hack/cluster$$') $$norace

# Verbose: its log is the evidence (pod phases, node, runtime version, image ids,
# lost/duplicated). Where it cannot run (not root), it says why.
.PHONY: test-cluster
test-cluster: ## The cluster suite alone: a real node, helm install, pods killed under load (root; see README).
	@if [[ "$$(id -u)" == 0 && "$$(uname)" == Linux ]]; then hack/cluster/node-binaries.sh >/dev/null; fi
	CGO_ENABLED=0 GOFLAGS=-trimpath $(SUITE_TOOLS) go test $(GO_TEST_FLAGS) -v ./hack/cluster

# The fault-injection suite in full (CHAOS_FULL=1): a 3-node NATS cluster, 3 dispatchers,
# 16 dispatcher kills, the stream leader's node killed and partitioned, a rolling restart.
# `make test` runs its bounded form with the other packages. Root for the partition (network
# namespaces); HERALD_CHAOS_NO_NETNS=1 skips that scenario loudly instead.
.PHONY: chaos
chaos: ## The fault-injection suite in full: kills, node loss, partition, rolling restart; prints the table (root; see hack/chaos).
	CGO_ENABLED=0 GOFLAGS=-trimpath $(SUITE_TOOLS) CHAOS_FULL=1 go test $(GO_TEST_FLAGS) -v -run TestChaos ./hack/chaos

.PHONY: helm-lint
helm-lint: ## Lint the Helm chart.
	$(HELM) lint charts/herald
	$(HELM) lint charts/herald --set dispatcher.mode=external --set dispatcher.nats.url=nats://nats:4222
	$(HELM) lint charts/herald --set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true

# The Go vulnerability database govulncheck reads. vuln.go.dev does not resolve on the
# build machines, but the database is also the golang.org/x/vulndb module (data/osv holds
# every entry as OSV JSON, which govulncheck reads as a directory), and the Go module
# proxy serves it: by default its latest version is taken from there. VULN_DB=https://vuln.go.dev
# reads the service instead.
VULN_DB ?=

.PHONY: vulncheck
vulncheck: ## Report known vulnerabilities that the code reaches, in its dependencies and the Go release (govulncheck).
	@db="$(VULN_DB)"; \
	if [[ -z "$$db" ]]; then \
		dir="$$(go mod download -json golang.org/x/vulndb@latest | awk -F'"' '/"Dir":/ {print $$4}')"; \
		db="file://$$dir/data/osv"; \
	fi; \
	echo "vulncheck: $$db"; \
	"$$(hack/tool.sh govulncheck)" -db "$$db" ./...

# Flags of hack/localstack, e.g. RUN_FLAGS="--state /tmp/herald2 --ingest-port 0 --receiver-port 0"
# for a second stack beside the first.
RUN_FLAGS ?=

.PHONY: run
run: build ## Run Herald locally end to end (local API server, manager, dispatcher); RUN_FLAGS for hack/localstack.
	hack/local-stack.sh $(RUN_FLAGS)

##@ Cluster

.PHONY: cluster
cluster: ## A real single-node cluster in a network namespace, Herald's image imported (root); prints export KUBECONFIG=...
	@hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Remove the cluster and all it made (processes, mounts, netns, cgroups, files).
	@hack/cluster/down.sh

##@ Benchmark

BENCH_FLAGS ?=

.PHONY: bench
bench: ## Benchmark the dispatcher end to end on this machine; BENCH_FLAGS=-quick for a CI-size run (see bench/README.md).
	go build -o bin/heraldbench ./bench/cmd/heraldbench
	bin/heraldbench -nats-server "$$(hack/nats-server.sh)" $(BENCH_FLAGS)

# The design bench-compare measures against: main before the storage redesign (issue 25),
# the first parent of its merge (0c73131).
BENCH_BASE ?= 71b95596fb8c

.PHONY: bench-compare
bench-compare: ## Benchmark BENCH_BASE (a commit) and this tree interleaved on this machine, a–e twice each, with their ratio and issue 25's targets (see bench/README.md); BENCH_FLAGS as for bench.
	hack/benchcompare.sh $(BENCH_BASE) $(BENCH_FLAGS)

##@ Release

.PHONY: previous-release
previous-release: ## Record REF (a commit) as the release the cluster suite upgrades from (hack/cluster/testdata).
	@test -n "$(REF)" || { echo "usage: make previous-release REF=<the release's commit>"; exit 2; }
	hack/cluster/previous-release.sh "$(REF)"

# The image `make docker-build` tags and dist/install.yaml runs.
IMG ?= ghcr.io/herald-dev/herald:$(VERSION)
DIST ?= dist
DIST_PLATFORMS ?= linux/amd64 linux/arm64 darwin/arm64

.PHONY: docker-build
docker-build: ## Build the image IMG (default ghcr.io/herald-dev/herald:VERSION) for this machine; needs Docker with BuildKit.
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: dist
dist: ## Binaries for DIST_PLATFORMS, install.yaml (running IMG) and checksums.txt in dist/.
	VERSION="$(VERSION)" IMG="$(IMG)" LDFLAGS="$(LDFLAGS)" PLATFORMS="$(DIST_PLATFORMS)" \
		DIST="$(DIST)" HELM="$(HELM)" hack/dist.sh
