# The two commands on a fresh machine: `make lab` (the main job) and `make test` (every test).
# Each installs what it needs: Debian packages (scripts/install-deps.sh) and the engines
# (SPIRE, step-ca) built once into tools/bin (tools/build.sh).

GO      ?= go
OMENS   := bin/omens
FUZZTIME ?= 30s

# What `omens --version` says (internal/version): the version of scripts/version.sh and the
# commit, marked -dirty when the tree has uncommitted changes.
VERSION ?= $(shell scripts/version.sh 2>/dev/null)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
LDFLAGS := -X omens.dev/omens/internal/version.Version=$(VERSION) -X omens.dev/omens/internal/version.Commit=$(COMMIT)

.PHONY: all deps tools build test dist lab fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

tools:
	@tools/build.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/omens ./cmd/omens-attestor-server ./cmd/omens-attestor-agent ./cmd/omens-demo

# Every test: unit tests, the reference simulator, swtpm and tpm2-tools interop, the
# engines; then the package test (scripts/package-test.sh: make dist, dpkg -i, the
# installed omens on a simulated TPM, dpkg -r and -P, a second build gives the same
# SHA256SUMS). Tests that need swtpm, SPIRE, step-ca or root fail instead of skipping when
# CI=true.
test: deps tools
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	scripts/package-test.sh

# The release files in dist/: the tarball, the .deb (nfpm, from tools/nfpm) and SHA256SUMS,
# reproducibly (scripts/dist.sh).
dist:
	@scripts/dist.sh

lab: deps tools build
	$(OMENS) lab up

# Each fuzz target for FUZZTIME (go test -fuzz runs one target at a time).
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin dist
