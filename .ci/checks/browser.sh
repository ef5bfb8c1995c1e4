#!/usr/bin/env bash
# Browser tests of the hub's dashboard and browser terminal (issue 3): Debian's Chromium driven
# by playwright-core from npm (never a downloaded browser build).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cargo build -p poshub --locked --quiet
cd hub/tests/browser
npm ci --no-audit --no-fund --loglevel=error
node --test
