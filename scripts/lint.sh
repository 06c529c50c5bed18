#!/usr/bin/env bash
# gofmt, go vet (every build tag the tests use) and golangci-lint.
set -euo pipefail
cd "$(dirname "$0")/.."
GOLANGCI_VERSION=v2.15.0
tags=integration,e2e

unformatted=$(gofmt -l cmd pkg tests)
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "gofmt: ok"

go vet -tags "$tags" ./...
echo "go vet: ok"

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
