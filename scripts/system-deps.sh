#!/usr/bin/env bash
# What the tests need from the system besides Python: headless Chromium (Playwright drives it and
# never downloads one) and PostgreSQL's server binaries (a throwaway server for the instance tests).
# Installs Debian's packages only when they are missing.
set -euo pipefail
missing=()
[ -x "${TEST_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
ls ${TEST_PG_BIN:-/usr/lib/postgresql/*/bin}/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
$sudo apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
