#!/usr/bin/env bash
# gofmt and go vet over every Go folder of the repository (vet with every
# build tag the tests use), shellcheck and golangci-lint.
set -euo pipefail
cd "$(dirname "$0")/.."
GOLANGCI_VERSION=v2.15.0
tags=integration,e2e

# Every Go file of the repository, wherever it lives (airgap, charts, install,
# manifests too), but in the build output (bin, build, dist) and in the folders
# the go command skips itself (vendor, testdata, names starting with . or _).
go_files() {
	find . \( -path ./bin -o -path ./build -o -path ./dist \
		-o -name vendor -o -name testdata -o -name '[._]?*' \) -prune \
		-o -type f -name '*.go' -print
}
mapfile -t files < <(go_files | sort)
if [ "${#files[@]}" -eq 0 ]; then
	echo "no Go files found" >&2
	exit 1
fi
unformatted=$(gofmt -l "${files[@]}")
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "gofmt: ok (${#files[@]} files)"

# go vet sees the packages of ./... with the tests' tags: every folder that
# holds a Go file must be one of them (a nested module, or files that no tag
# set builds, would otherwise go unvetted).
root=$(go list -m -f '{{.Dir}}')
packages=$(go list -tags "$tags" -f '{{.Dir}}' ./... | while read -r dir; do echo ".${dir#"$root"}"; done | sort -u)
unvetted=$(comm -23 <(printf '%s\n' "${files[@]}" | xargs -n1 dirname | sort -u) <(echo "$packages"))
if [ -n "$unvetted" ]; then
	echo "folders with Go files that go vet ./... does not see (nested module? build tags?):" >&2
	echo "$unvetted" >&2
	exit 1
fi
go vet -tags "$tags" ./...
echo "go vet: ok ($(echo "$packages" | wc -l) packages)"

# The installer runs under any POSIX sh (dash on Debian): shellcheck holds it to that.
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	echo "installing shellcheck"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
shellcheck -s sh install/install.sh
# The build and test scripts are bash.
shellcheck -x scripts/*.sh scripts/lib/*.sh tests/images/check.sh
echo "shellcheck: ok"

lint=bin/tools/golangci-lint
if ! "$lint" version 2>/dev/null | grep -q "${GOLANGCI_VERSION#v}"; then
	echo "installing golangci-lint $GOLANGCI_VERSION into bin/tools"
	GOBIN="$PWD/bin/tools" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_VERSION"
fi
"$lint" run --build-tags "$tags" ./...
echo "golangci-lint: ok"
