# The two commands on a fresh machine: `make lab` (the main job) and `make test` (every test).
# Each installs what it needs: Debian packages (scripts/install-deps.sh) and the engines
# (SPIRE, step-ca) built once into tools/bin (tools/build.sh).

GO      ?= go
OMENS   := bin/omens
FUZZTIME ?= 30s

.PHONY: all deps tools build test lab fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

tools:
	@tools/build.sh

build:
	$(GO) build -o bin/ ./cmd/omens ./cmd/omens-attestor-server ./cmd/omens-attestor-agent ./cmd/omens-demo

# Every test: unit tests, the reference simulator, swtpm and tpm2-tools interop, the
# engines. Tests that need swtpm, SPIRE or step-ca fail instead of skipping when CI=true.
test: deps tools
	$(GO) vet ./...
	$(GO) test -count=1 ./...

lab: deps tools build
	$(OMENS) lab up

# Each fuzz target for FUZZTIME (go test -fuzz runs one target at a time).
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
