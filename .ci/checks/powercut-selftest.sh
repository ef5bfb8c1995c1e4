#!/usr/bin/env bash
# The disk of scripts/qemu-powercut loses what was not flushed, and only that
# (scripts/e2e/flushnbd-selftest.sh: QEMU's own NBD client, qemu-io, against
# scripts/e2e/flushnbd.py: unflushed write gone after the cut, flushed and FUA writes kept,
# discard, a write-through control that the loss check catches, a partial cut, the client
# killed alone). The power-cut run itself boots the appliance in QEMU many times (minutes per
# cycle under TCG): a documented manual/nightly run (docs/reliability.md), like scripts/qemu-e2e.
# Runs as root; installs qemu-utils. About 3 s after the install.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v qemu-io >/dev/null 2>&1 || need+=(qemu-utils)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash scripts/e2e/flushnbd-selftest.sh
