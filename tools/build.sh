#!/usr/bin/env bash
# Builds the engines pinned in tools/go.mod (SPIRE server and agent, step-ca, step) into
# tools/bin, once. A stamp holds the hash of go.mod, go.sum and this script; when it
# matches and every binary is present, nothing is built.
# cgo: step-ca and step are built with CGO_ENABLED=0, since their cgo smart-card code would
# need libpcsclite, which we do not use. The SPIRE server keeps cgo: its sqlite3 datastore
# (the Tower's) exists only in a cgo build (it needs gcc, nothing else).
set -euo pipefail
cd "$(dirname "$0")"
bins=(spire-server spire-agent step-ca step)
pkgs=(github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
      github.com/smallstep/certificates/cmd/step-ca github.com/smallstep/cli/cmd/step)
stamp=$(cat go.mod go.sum build.sh | sha256sum | cut -c1-16)
mkdir -p bin
uptodate=1
[ "$(cat bin/.stamp 2>/dev/null)" = "$stamp" ] || uptodate=0
for b in "${bins[@]}"; do [ -x "bin/$b" ] || uptodate=0; done
if [ "$uptodate" = 1 ]; then
  echo "tools: up to date in tools/bin (${bins[*]})"
  exit 0
fi
rm -f bin/.stamp
start=$(date +%s)
echo "tools: downloading modules (first time only)"
go mod download
spire=$(go list -m -f '{{.Version}}' github.com/spiffe/spire)
ca=$(go list -m -f '{{.Version}}' github.com/smallstep/certificates)
cli=$(go list -m -f '{{.Version}}' github.com/smallstep/cli)
# The engines print their version from variables their release builds set.
ldflags=("-X github.com/spiffe/spire/pkg/common/version.gittag=${spire#v}"
         "-X github.com/spiffe/spire/pkg/common/version.gittag=${spire#v}"
         "-X main.Version=${ca#v} -X main.BuildTime=omens-tools"
         "-X main.Version=${cli#v} -X main.BuildTime=omens-tools")
cgo=(1 0 0 0)
n=${#pkgs[@]}
for i in "${!pkgs[@]}"; do
  b=${bins[$i]}
  t0=$(date +%s)
  echo "tools: [$((i+1))/$n] building $b (a cold build of all four takes about 12 minutes on 2 cores)"
  CGO_ENABLED=${cgo[$i]} GOBIN="$PWD/bin" go install -trimpath -ldflags "${ldflags[$i]}" "${pkgs[$i]}"
  echo "tools: [$((i+1))/$n] $b built in $(( $(date +%s) - t0 ))s"
done
echo "$stamp" > bin/.stamp
echo "tools: done in $(( $(date +%s) - start ))s: $(ls bin | tr '\n' ' ')"
