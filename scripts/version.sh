#!/usr/bin/env bash
# Prints the version of the checked-out tree: X.Y.Z when HEAD is tagged vX.Y.Z, else a
# snapshot version 0.0.0~gitYYYYMMDDHHMMSS.<12 hex of the commit> (its commit time, UTC),
# which sorts before any release for dpkg and apt.
set -euo pipefail
cd "$(dirname "$0")/.."
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	echo "${tag#v}"
	exit 0
fi
when=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd)
echo "0.0.0~git${when}.$(git rev-parse --short=12 HEAD)"
