#!/usr/bin/env bash
# Measures bundle create / verify / install on this machine with a synthetic root image
# (half random, half zeros: roughly how a compressed-friendly rootfs behaves).
# Usage: supervisor/bench/install-throughput.sh [SIZE_MB]   (needs a release build:
#        cargo build --release -p poshub-supervisor)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MB=${1:-256}
BIN=${BIN:-target/release/poshub-supervisor}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/data" "$W/boot"
head -c $((SIZE_MB / 2))M /dev/urandom > "$W/rootfs.img"
head -c $((SIZE_MB - SIZE_MB / 2))M /dev/zero >> "$W/rootfs.img"
: > "$W/slot-a.img"; : > "$W/slot-b.img"
echo 1.0.0 > "$W/version"
cat > "$W/s.env" <<ENV
SUPERVISOR_DATA_DIR=$W/data
SUPERVISOR_BOOT_DIR=$W/boot
SUPERVISOR_SLOT_BACKEND=file
SUPERVISOR_SLOT_A_DEVICE=$W/slot-a.img
SUPERVISOR_SLOT_B_DEVICE=$W/slot-b.img
SUPERVISOR_PUBLIC_KEY=$W/k.pub
SUPERVISOR_BOARD=rpi4
SUPERVISOR_OS_VERSION_FILE=$W/version
SUPERVISOR_BOOT_ID_FILE=$W/boot_id
ENV
echo boot-1 > "$W/boot_id"
S="$BIN --config $W/s.env"
$S keygen --out "$W/k" > /dev/null
t() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
tc=$(t $S bundle create --image "$W/rootfs.img" --key "$W/k.key" --version 2.0.0 --board rpi4 --out "$W/b.poshub")
tv=$(t $S bundle verify "$W/b.poshub")
ti=$(t $S install "$W/b.poshub" --no-reboot)
bsize=$(stat -c %s "$W/b.poshub")
printf 'image %d MiB, bundle %.1f MiB\n' "$SIZE_MB" "$(echo "$bsize / 1048576" | bc -l)"
printf 'bundle create (zstd -9): %.2f s (%.0f MiB/s)\n' "$tc" "$(echo "$SIZE_MB / $tc" | bc -l)"
printf 'bundle verify:           %.2f s\n' "$tv"
printf 'install (verify, write, fsync, read back, arm): %.2f s (%.0f MiB/s)\n' "$ti" "$(echo "$SIZE_MB / $ti" | bc -l)"
