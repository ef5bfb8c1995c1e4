#!/usr/bin/env bash
# The terminal client library (clients/js, issue 18): npm ci, tsc build + the protocol check
# against the hub's Rust sources, the committed /terminal and /kitchen pages equal to a fresh
# esbuild bundle, and the library's tests against the real debug hub binary (kill -9, restart,
# leases past their TTL, backoff). Needs Node >= 18 and npm (installed from Debian if absent).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
cargo build -p poshub --locked --quiet
cd clients/js
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
node scripts/bundle.mjs --check
timeout 600 npm test
