#!/usr/bin/env bash
# Fast checks of the appliance (issue 6), run by .ci/run on every change:
# 1. shellcheck of the appliance scripts (image/*, image/tests/*).
# 2. The U-Boot boot script in real U-Boot under QEMU (image/tests/boot-script.sh, ~30 s).
# The full image build and the QEMU end-to-end run are separate, documented commands.
# Installs what it needs (Debian); idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive

if ! command -v shellcheck >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

step() { printf -- '--- appliance: %s\n' "$*"; }

# --- 1. shellcheck ---------------------------------------------------------------------------
step "shellcheck"
scripts=(image/mkbootscr image/uboot-default-env image/tests/*.sh .ci/checks/appliance.sh)
shellcheck "${scripts[@]}"
echo "ok: shellcheck clean: ${scripts[*]}"

# --- 2. boot script ----------------------------------------------------------------------------
step "boot script in U-Boot (qemu_arm64)"
bash image/tests/boot-script.sh
