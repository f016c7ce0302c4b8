#!/usr/bin/env bash
# Builds knockwarden's Debian package and checks it: its control data and files
# (dpkg-deb --info/--contents), Debian's lint (lintian: no errors), then the installed binary:
# the package is unpacked into a scratch root and a test runs its `--version` and `doctor`
# against the test suite's fake homeserver (the default test run checks a package of the
# test build's binary the same way).
#
# Needs cargo-deb (`cargo install cargo-deb`), dpkg-deb and lintian (`apt-get install lintian`).
# Usage: scripts/package-deb.sh [--no-build]   (--no-build: package the release binary as built)
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo-deb dpkg-deb lintian; do
    command -v "$tool" >/dev/null || { echo "package-deb: $tool is not installed (see the top of this script)" >&2; exit 1; }
done

args=()
[[ "${1:-}" == "--no-build" ]] && args+=(--no-build)
deb=$(cargo deb "${args[@]}" | tail -n 1)
echo "== $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

echo "== lintian"
accepted=$(grep -v '^#' contrib/debian/lintian-accepted | paste -sd, -)
lintian --fail-on error,warning --suppress-tags "$accepted" "$deb"

echo "== the installed binary"
KNOCKWARDEN_DEB="$(realpath "$deb")" cargo nextest run -E 'test(/installed_debian_package/)'
echo "package-deb: $deb is good"
