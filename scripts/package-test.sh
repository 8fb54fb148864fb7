#!/usr/bin/env bash
# The package test of `make test` (after the Go tests), as root: builds the release files
# (scripts/dist.sh), installs the .deb with dpkg -i, runs the installed omens against a
# simulated TPM it serves (omens tpm simulate), removes the package (dpkg -r, then
# dpkg -P) and checks that none of its files is left; then builds the release files again
# from a copy of the commit in another directory and checks that SHA256SUMS is the same.
# Without root it skips, unless CI=true: then it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
GO=${GO:-go}
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
step() { echo "package-test: $*"; }

if [[ $(id -u) -ne 0 ]]; then
	[[ "${CI:-}" == true ]] && fail "dpkg -i needs root; CI=true, so this fails instead of skipping"
	echo "package-test: skipped: dpkg -i needs root (run make test as root, or with sudo)"
	exit 0
fi
if dpkg-query -W -f='${Status}' omens 2>/dev/null | grep -q 'installed'; then
	fail "a package omens is installed already; this test installs and removes its own: remove it first (dpkg -P omens)"
fi
start=$SECONDS

step "make dist"
scripts/dist.sh
deb=$(ls dist/omens_*_amd64.deb)
version=$(scripts/version.sh)

work=$(mktemp -d)
sim_pid=
cleanup() {
	[[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
	dpkg-query -W omens >/dev/null 2>&1 && dpkg -P omens >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

step "dpkg -i $deb"
dpkg -i "$deb"
mapfile -t files < <(dpkg -L omens)
for f in /usr/bin/omens /usr/bin/omens-demo /usr/lib/omens/omens-attestor-server /usr/lib/omens/omens-attestor-agent \
	/lib/systemd/system/omens-devid-renew.service /lib/systemd/system/omens-devid-renew.timer \
	/lib/systemd/system/omens-ra.service /lib/systemd/system/spire-server.service /lib/systemd/system/spire-agent.service \
	/usr/share/doc/omens/README.md /usr/share/doc/omens/examples/tower.hcl \
	/usr/share/doc/omens/examples/rendered/spire/etc/spire/server.conf; do
	[[ -e "$f" ]] || fail "$f is not installed by the package"
done

step "systemd-analyze verify the installed units"
# The SPIRE units name SPIRE's binaries (/opt/spire/bin), which this package does not ship:
# hostconf's tests verify them with the binaries in place.
systemd-analyze verify /lib/systemd/system/omens-devid-renew.service /lib/systemd/system/omens-devid-renew.timer \
	/lib/systemd/system/omens-ra.service

step "/usr/bin/omens --version"
out=$(/usr/bin/omens --version)
echo "$out"
grep -qx "omens $version" <<<"$out" || fail "omens --version does not say version $version"
grep -qx "commit  $(git rev-parse HEAD)" <<<"$out" || fail "omens --version does not say commit $(git rev-parse HEAD)"

step "/usr/bin/omens tpm simulate"
sock=$work/tpm.sock
/usr/bin/omens tpm simulate --state "$work/tpm" --socket "$sock" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do
	[[ -S "$sock" ]] && break
	kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.log" >&2; fail "omens tpm simulate exited"; }
	sleep 0.1
done
[[ -S "$sock" ]] || fail "omens tpm simulate does not listen on $sock"
/usr/bin/omens tpm info --tpm "$sock"
step "/usr/bin/omens doctor --tpm $sock"
/usr/bin/omens doctor --tpm "$sock"
kill "$sim_pid"
wait "$sim_pid" 2>/dev/null || true
sim_pid=

step "dpkg -r omens"
dpkg -r omens
for f in /usr/bin/omens /usr/bin/omens-demo /usr/lib/omens/omens-attestor-server /usr/lib/omens/omens-attestor-agent; do
	[[ ! -e "$f" ]] || fail "$f is left after dpkg -r"
done
step "dpkg -P omens"
dpkg -P omens
dpkg-query -W omens >/dev/null 2>&1 && fail "dpkg still knows the package omens after dpkg -P"
for f in "${files[@]}"; do
	# Directories other packages share (/usr, /lib, /lib/systemd/system, ...) stay, and must;
	# the package's own go.
	case $f in
	/usr/lib/omens | /usr/share/doc/omens | /usr/share/doc/omens/*) ;;
	*) [[ -d "$f" ]] && continue ;;
	esac
	[[ ! -e "$f" ]] || fail "$f is left after dpkg -P"
done
[[ ! -e /var/lib/dpkg/info/omens.list ]] || fail "/var/lib/dpkg/info/omens.list is left after dpkg -P"

step "reproducible: the same commit built again in another directory"
[[ -z "$(git status --porcelain --untracked-files=no)" ]] ||
	echo "package-test: note: the tree has uncommitted changes: comparing two builds of the commit instead"
again=$work/elsewhere/omens-copy
mkdir -p "$again"
git archive HEAD | tar -x -C "$again"
export VERSION=$version COMMIT=$(git rev-parse HEAD) SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
(cd "$again" && scripts/dist.sh >/dev/null)
want=dist/SHA256SUMS
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
	first=$work/first/omens-copy
	mkdir -p "$first"
	git archive HEAD | tar -x -C "$first"
	(cd "$first" && scripts/dist.sh >/dev/null)
	want=$first/dist/SHA256SUMS
fi
diff "$want" "$again/dist/SHA256SUMS" || fail "two builds of commit $COMMIT differ (SHA256SUMS above)"
cat "$again/dist/SHA256SUMS"
step "ok in $((SECONDS - start))s"
