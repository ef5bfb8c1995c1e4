#!/usr/bin/env bash
# Fast checks of the appliance (issue 6), run by .ci/run on every change:
# 1. shellcheck of the appliance scripts (scripts/{cross-build,build-image,debian-mirror,provision,flash,bench-memory},
#    the figures scripts scripts/{backup-figures,offsite-figures,figures/year-db.sh}, image/*).
# 2. The U-Boot boot script in real U-Boot under QEMU (image/tests/boot-script.sh, ~30 s).
# 3. scripts/provision and scripts/flash on a small disk image (image/tests/provision-flash.sh).
# 4. The disk layout from stand-in parts (image/tests/layout.sh): partitions, FAT and slot
#    contents, uboot.env, bmap, byte-identical rebuild (~1 min).
# 5. scripts/cross-build: static aarch64 musl binaries, C code built against musl headers, run
#    under qemu-user (--version, `poshub serve` answering /health); 5-8 minutes from clean on
#    2 cores, seconds when cargo's target directory is cached.
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
scripts=(scripts/cross-build scripts/build-image scripts/debian-mirror scripts/provision scripts/flash scripts/bench-memory scripts/backup-figures scripts/offsite-figures scripts/figures/year-db.sh image/assemble image/mkbootscr image/uboot-default-env image/tests/*.sh .ci/checks/appliance.sh)
shellcheck -x "${scripts[@]}" # -x: follows what they source (scripts/figures/year-db.sh)
echo "ok: shellcheck clean: ${scripts[*]}"

# --- 2. boot script ----------------------------------------------------------------------------
step "boot script in U-Boot (qemu_arm64)"
bash image/tests/boot-script.sh

# --- 3. provision and flash --------------------------------------------------------------------
step "scripts/provision, scripts/flash"
bash image/tests/provision-flash.sh

# --- 4. layout ---------------------------------------------------------------------------------
step "disk layout (image/assemble)"
bash image/tests/layout.sh

# --- 5. cross-build --------------------------------------------------------------------------------
step "scripts/cross-build"
scripts/cross-build
