#!/usr/bin/env bash
# The Pi's own U-Boot stage (bookworm u-boot-rpi, rpi_arm64) in QEMU 10 -M raspi4b, on a card
# made by image/assemble, over five power-ons: slot A, a trial of B armed as the supervisor
# arms it, fallback when its attempt is used, counters reset when none is left
# (image/tests/raspi4b-uboot.sh, image/README.md). Runs as root; the trixie chroot with QEMU
# is cached in ~/.cache/poshub-ci. 4 min 40 s with the cache on 2 shared cores (TCG: 25-47 s
# per power-on), 8 min 49 s the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash image/tests/raspi4b-uboot.sh
