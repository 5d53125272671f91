# ---------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------

# Pinned tool versions. Bumping one of these makes `make tools` reinstall it.
BUF_VERSION                ?= v1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
# Runs the tests (make test) with a line per package as it ends; `go run`
# fetches and builds it at this version, into Go's caches.
GOTESTSUM_VERSION          ?= v1.13.0

GO        ?= go
BIN       := $(CURDIR)/.bin
PROTO_DIR := proto

# One stamp file per tool and version: the tool is (re)installed only when the
# stamp for the pinned version is missing, so `make tools` is cheap on re-runs.
BUF_STAMP                := $(BIN)/.buf-$(BUF_VERSION).stamp
PROTOC_GEN_GO_STAMP      := $(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION).stamp
PROTOC_GEN_GO_GRPC_STAMP := $(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION).stamp

# The buf recipes find protoc-gen-go and protoc-gen-go-grpc on PATH.
TOOLS_PATH := PATH="$(BIN):$$PATH"

.PHONY: tools generate check-generated

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------

tools: $(BUF_STAMP) $(PROTOC_GEN_GO_STAMP) $(PROTOC_GEN_GO_GRPC_STAMP)

# $(call go-install,<name>,<package@version>)
# Installs into $(BIN), then replaces any stamp of an older version of <name>.
define go-install
	@mkdir -p $(BIN)
	GOBIN=$(BIN) GOFLAGS= GOWORK=off $(GO) install $(2)
	@rm -f $(BIN)/.$(1)-v*.stamp
	@touch $@
endef

$(BUF_STAMP):
	$(call go-install,buf,github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION))

$(PROTOC_GEN_GO_STAMP):
	$(call go-install,protoc-gen-go,google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION))

$(PROTOC_GEN_GO_GRPC_STAMP):
	$(call go-install,protoc-gen-go-grpc,google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION))

# ---------------------------------------------------------------------------
# Code generation
# ---------------------------------------------------------------------------

generate: tools
	cd $(PROTO_DIR) && $(TOOLS_PATH) buf lint
	cd $(PROTO_DIR) && $(TOOLS_PATH) buf generate

check-generated: generate
	@if [ -n "$$(git status --porcelain -- $(PROTO_DIR)/)" ]; then \
		echo "ERROR: generated code under $(PROTO_DIR)/ is out of date or uncommitted." >&2; \
		echo "Run 'make generate' and commit the result. Changes:" >&2; \
		git status --porcelain -- $(PROTO_DIR)/ >&2; \
		git --no-pager diff --stat -- $(PROTO_DIR)/ >&2; \
		exit 1; \
	fi
	@echo "Generated code under $(PROTO_DIR)/ is up to date."

# ---------------------------------------------------------------------------
# Build, test, checks
# ---------------------------------------------------------------------------

# deploy/chartcheck is a module of its own, outside go.work (its Helm and
# Kubernetes dependencies must not move the services' versions): fmt-check
# and tidy-check cover it through this list; vet and chart-check run it
# with GOWORK=off.
MODULES := proto services tests deploy/chartcheck
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test chart-check chaos vet fmt-check tidy-check ci bench run browser promtool

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kurier ./services/cmd/kurier
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kurierctl ./services/cmd/kurierctl

run:
	$(GO) run ./services/cmd/kurier all

# Every test of every module, with the race detector: gotestsum prints each
# package as it ends, then the output of the tests that failed, and fails
# as go test does. The end-to-end tests spend most of their time waiting
# on the processes they start, so four run at once on two cores. The
# console's browser tests and the metrics check need Chromium and promtool:
# installed first where they are missing. Then the Helm chart's check
# (chart-check), printed alike.
test: browser promtool
	$(GO) run gotest.tools/gotestsum@$(GOTESTSUM_VERSION) --format pkgname --format-hide-empty-pkg \
		--raw-command -- $(GO) test -json -race -count=1 -parallel 4 -timeout 15m work
	GOWORK=off $(GO) run gotest.tools/gotestsum@$(GOTESTSUM_VERSION) --format pkgname --format-hide-empty-pkg \
		--raw-command -- $(GO) test -C deploy/chartcheck -json -count=1 ./...

# The Helm chart (deploy/helm/kurier) rendered with its default values and
# each ci/*-values.yaml, checked against the kurier binary it builds
# (deploy/chartcheck). Without -race: it checks files and processes, and
# -race would double its heavy compile.
chart-check:
	cd deploy/chartcheck && GOWORK=off $(GO) test -count=1 ./...

# The long form of the chaos suite (tests/chaos_test.go): 100,000 events
# while ingest and dispatcher processes and NATS stream leaders are killed,
# in under 10 minutes, without the race detector. `make test` runs the
# short form.
chaos:
	cd tests && KURIER_CHAOS=long $(GO) test -count=1 -timeout 15m -run '^TestChaos' -v .

# Headless Chromium for the console's browser tests (tests/console_test.go),
# from Debian's package: those tests skip where no browser is found, so CI
# (.ci/run) installs it first. KURIER_CHROME names a browser of your own.
# $(call apt-install,<package>): a shell command installing a Debian
# package, as root or through sudo.
apt-install = if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(1)

BROWSERS := chromium chromium-browser google-chrome

browser:
	@found="$$KURIER_CHROME"; \
	for b in $(BROWSERS); do [ -n "$$found" ] || found=$$(command -v $$b || true); done; \
	if [ -n "$$found" ]; then \
		echo "browser: found $$found"; \
	else \
		echo "browser: no chromium found; installing Debian's package (apt-get install chromium)"; \
		$(call apt-install,chromium); \
	fi

# promtool, for the check of every metric against Prometheus' conventions
# (tests/promtool_test.go), from Debian's prometheus package: that test
# skips where promtool is missing, so CI (.ci/run) installs it first.
promtool:
	@if command -v promtool >/dev/null; then \
		echo "promtool: found $$(command -v promtool)"; \
	else \
		echo "promtool: not found; installing Debian's package (apt-get install prometheus)"; \
		$(call apt-install,prometheus); \
	fi

# With the tag of the compose end-to-end test, so that it is vetted too.
vet:
	$(GO) vet -tags compose work
	cd deploy/chartcheck && GOWORK=off $(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "not gofmt-clean:" >&2; echo "$$out" >&2; exit 1; fi

# Each module must be tidy on its own (GOWORK=off), as Docker builds it.
tidy-check:
	@for m in $(MODULES); do \
		(cd $$m && GOWORK=off $(GO) mod tidy -diff) || { echo "go.mod of $$m is not tidy: run 'cd $$m && GOWORK=off go mod tidy'" >&2; exit 1; }; \
	done

ci: fmt-check vet tidy-check check-generated test fuzz-short

# Every fuzz target, as package:Target. `make fuzz` runs each for FUZZTIME;
# CI runs each for 20,000 inputs (fuzz-short). A crash leaves its input under the
# package's testdata/fuzz, which then runs with every `go test` as a seed.
FUZZ_TARGETS := \
	./services/internal/event:FuzzDecode \
	./services/internal/event:FuzzDecodeBatch \
	./services/internal/event:FuzzFromBinary \
	./services/internal/collmex:FuzzParseNotifications \
	./services/internal/payload:FuzzRequestURL \
	./services/internal/payload:FuzzBody \
	./services/ingest:FuzzFeedQuery \
	./services/internal/queues:FuzzCheckContent \
	./services/addresssync:FuzzDecode
FUZZTIME ?= 1m

.PHONY: fuzz fuzz-short

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	done

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

# The benchmarks are their own command, not part of the kurier binary;
# BENCHMARKS.md has the others (ping, deliver, queue, sync).
bench:
	$(GO) run ./services/cmd/kurier-bench ingest

# ---------------------------------------------------------------------------
# Images and docker-compose
# ---------------------------------------------------------------------------

# Both images are FROM scratch: the binaries are built here, statically,
# and staged with what else the images hold, so `docker build` pulls nothing.
IMAGE_DIR    := bin/image
KURIER_IMAGE ?= kurier
NATS_IMAGE   ?= kurier-nats
CA_CERTS     ?= /etc/ssl/certs/ca-certificates.crt
# nats-server at the version services/go.mod pins.
NATS_VERSION  = $(shell cd services && GOWORK=off $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)

.PHONY: images compose-e2e

images:
	@test -r $(CA_CERTS) || { echo "no CA certificates at $(CA_CERTS): set CA_CERTS to a PEM bundle" >&2; exit 1; }
	@rm -rf $(IMAGE_DIR) && mkdir -p $(IMAGE_DIR)/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGE_DIR)/kurier ./services/cmd/kurier
	cd services && CGO_ENABLED=0 GOWORK=off $(GO) build -trimpath -ldflags '-s -w' -o ../$(IMAGE_DIR)/nats-server github.com/nats-io/nats-server/v2
	cp $(CA_CERTS) $(IMAGE_DIR)/ca-certificates.crt
	cp deploy/nats/nats.conf $(IMAGE_DIR)/nats.conf
	docker build -q -f deploy/Dockerfile --target kurier -t $(KURIER_IMAGE):latest $(IMAGE_DIR)
	docker build -q -f deploy/Dockerfile --target nats -t $(NATS_IMAGE):$(NATS_VERSION) -t $(NATS_IMAGE):latest $(IMAGE_DIR)
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' $(KURIER_IMAGE):latest
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' $(NATS_IMAGE):latest

# The stack of docker-compose.yml under load, losing a NATS node and a
# dispatcher replica (tests/compose): a few minutes.
compose-e2e: images
	cd tests && $(GO) test -tags compose -count=1 -timeout 15m -v ./compose/
