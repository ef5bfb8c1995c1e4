#!/usr/bin/env bash
# The terminal client library (clients/js, issue 18): npm ci, tsc build + the protocol check
# against the hub's Rust sources, the committed /terminal and /kitchen pages equal to a fresh
# esbuild bundle, and the library's tests against the real debug hub binary (kill -9, restart,
# leases past their TTL, backoff, DNS-SD across two network namespaces, the browser storages in
# Debian's Chromium, React Native's globals emulated in a node:vm context). Then the same tests
# but the Chromium one again on Node 18 (`engines: >=18`): Debian bookworm's, unpacked into
# ~/.cache/poshub-ci/node18 by clients/js/scripts/node18.sh (apt-get download, once), beside the
# machine's Node. Needs Node >= 18 and npm; both, and chromium, come from Debian if absent.
# Takes about 1-2 minutes on 2 busy cores once the hub is built (1m02s measured with the npm
# cache warm and Node 18 downloaded afresh: Node 20 tests 28 s, Node 18 install ~3 s + tests 32 s).
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build -p poshub --locked --quiet
cd clients/js
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
node scripts/bundle.mjs --check
timeout 600 npm test
# Node 18 has no --test-timeout; `timeout` bounds the run instead.
scripts/node18.sh --version
timeout 600 scripts/node18.sh --test --test-concurrency=1 test/client.test.mjs test/resilience.test.mjs \
  test/readme.test.mjs test/react-native-env.test.mjs test/protocol-check.test.mjs test/dnssd.test.mjs
