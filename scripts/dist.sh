#!/usr/bin/env bash
# make dist: the release files of this tree in dist/:
#   omens_<version>_linux_amd64.tar.gz   the four binaries (bin/), the systemd units
#                                        (systemd/), the example configs (examples/), README.md
#   omens_<version>_amd64.deb            the same, installed in /usr/bin, /usr/lib/omens,
#                                        /lib/systemd/system, /usr/share/doc/omens (nfpm)
#   SHA256SUMS                           sha256sum of both, as SPIRE publishes its releases
# Reproducible: the binaries are built with -trimpath and an empty build ID and without
# VCS stamps (the version and commit are set with -X), every file's time is
# SOURCE_DATE_EPOCH (the commit time), tar entries are sorted and owned by root, gzip
# writes no name or time. VERSION, COMMIT and SOURCE_DATE_EPOCH come from git unless set
# (a tree without .git must set them).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
GO=${GO:-go}

if [[ -z "${VERSION:-}" || -z "${COMMIT:-}" || -z "${SOURCE_DATE_EPOCH:-}" ]] && ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "dist: not a git checkout: set VERSION, COMMIT and SOURCE_DATE_EPOCH" >&2
	exit 1
fi
VERSION=${VERSION:-$(scripts/version.sh)}
COMMIT=${COMMIT:-$(git rev-parse HEAD)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
if git rev-parse --git-dir >/dev/null 2>&1 && [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
	echo "dist: warning: the tree has uncommitted changes; the files are not those of commit $COMMIT" >&2
fi

name=omens_${VERSION}_linux_amd64
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/$name
mkdir -p "$stage/bin" "$stage/systemd" "$stage/examples" dist

ldflags="-buildid= -X omens.dev/omens/internal/version.Version=$VERSION -X omens.dev/omens/internal/version.Commit=$COMMIT"
GOOS=linux GOARCH=amd64 $GO build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$stage/bin/" \
	./cmd/omens ./cmd/omens-attestor-server ./cmd/omens-attestor-agent ./cmd/omens-demo
cp deploy/systemd/* "$stage/systemd/"
cp -R examples/. "$stage/examples/"
cp README.md "$stage/"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
chmod 0755 "$stage"/bin/*
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

rm -f dist/omens_*
tar --sort=name --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
	-C "$work" -cf - "$name" | gzip -n >"dist/$name.tar.gz"

# nfpm runs as a Go tool of its own module, so tools/go.mod (the engines' stamp) is
# untouched; deploy/nfpm.yaml names the version and directories as ${OMENS_*}.
sed -e "s|\${OMENS_VERSION}|$VERSION|g" -e "s|\${OMENS_BIN}|$stage/bin|g" -e "s|\${OMENS_SRC}|$src|g" -e "s|\${OMENS_STAGE}|$stage|g" \
	deploy/nfpm.yaml >"$work/nfpm.yaml"
$GO -C tools/nfpm tool nfpm package --config "$work/nfpm.yaml" --packager deb --target "$src/dist/" >"$work/nfpm.log" ||
	{ cat "$work/nfpm.log" >&2; exit 1; }
deb=$(cd dist && ls omens_*.deb)

(cd dist && sha256sum "$name.tar.gz" "$deb" >SHA256SUMS)
echo "dist: omens $VERSION, commit $COMMIT, files dated $(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ)"
for f in "$name.tar.gz" "$deb" SHA256SUMS; do
	printf 'dist/%-64s %9d bytes\n' "$f" "$(stat -c %s "dist/$f")"
done
