#!/usr/bin/env bash
# The Pi's own boot stage, emulated: the image's U-Boot (Debian bookworm's u-boot-rpi,
# rpi_arm64 u-boot.bin) runs in QEMU 10's `-M raspi4b` on a card made by image/assemble, over
# several power-ons, and the slot it picks, the files it loads and the counters it leaves in
# uboot.env are checked from the serial console and from the card.
#
# What runs for real: the bookworm u-boot.bin and bcm2711-rpi-4-b.dtb the image ships (the
# dtb handed over as the firmware would, and loaded again from the slot's dtbs/), its distro
# boot finding boot.scr on `config`, U-Boot's own environment loaded from the FAT uboot.env
# ("Loading Environment from FAT"), the boot script's counters written back with fatwrite
# over QEMU's emulated SD controller, `part number` finding bootA/bootB on the GPT, and booti
# at the Pi load addresses up to "Starting kernel". What does not: the GPU firmware
# (start4.elf, config.txt: QEMU loads u-boot.bin itself) and Linux (the real bcm2711 device
# tree aborts on HDMI and PCIe that QEMU does not model; scripts/qemu-e2e tests the kernel and
# the services under -M virt). The kernel is a stand-in arm64 Image (a valid header around
# `b .`), since loading the real 33 MB one over the emulated SD controller takes minutes under
# TCG; bootA and bootB carry initrds of different sizes so the console shows which partition
# the files came from.
#
# Power-ons (each ends at "Starting kernel", or QEMU exits at U-Boot's reset: -no-reboot):
#   1. new card (uboot.env from assemble: A B, 3, 3): slot A, saved A=2
#   2. A did not come up (nobody refilled its counter): slot A again, saved A=1
#   3. the supervisor arms a trial of B the way its uboot backend does (fw_setenv
#      BOOT_ORDER=B A, BOOT_B_LEFT=1): slot B from bootB, saved B=0
#   4. the trial never committed: B has no attempts left, fallback to slot A, saved A=0
#   5. no attempts left anywhere: both counters back to 3, reset without loading a kernel
#
# QEMU 10 (raspi4b) comes from Debian trixie, run in a trixie chroot made with mmdebstrap, so
# the machine itself stays on bookworm; the chroot, with the bookworm u-boot-rpi and kernel
# packages downloaded into it, is cached in ~/.cache/poshub-ci (key: mirror and package
# lists). Runs as root (mmdebstrap, chroot). Environment: POSHUB_MIRROR (default: the first
# Debian mirror of this machine's apt sources), RASPI4B_TIMEOUT (seconds per power-on, 600).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image_dir=$(dirname "$here")
repo=$(dirname "$image_dir")
export DEBIAN_FRONTEND=noninteractive
timeout_s=${RASPI4B_TIMEOUT:-600}
((EUID == 0)) || { echo "raspi4b-uboot: run as root (mmdebstrap, chroot)" >&2; exit 1; }

# --- 1. host tools ---------------------------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mkenvimage >/dev/null || need+=(u-boot-tools)
command -v fw_printenv >/dev/null || need+=(libubootenv-tool)
command -v genimage >/dev/null || need+=(genimage)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v bmaptool >/dev/null || need+=(bmap-tools)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- 2. the trixie chroot with QEMU 10 (cached) -----------------------------------------------
mirror=${POSHUB_MIRROR:-$("$repo/scripts/debian-mirror")}
pkgs=(qemu-system-arm)
# arm64 packages from bookworm (the image's release), downloaded, not installed: U-Boot, and
# the kernel package for its Pi 4 device tree.
# shellcheck disable=SC2016
hook='mkdir -p "$1/opt/poshub-debs" && cd "$1/opt/poshub-debs" &&
  k=$(APT_CONFIG=$MMDEBSTRAP_APT_CONFIG apt-cache -o APT::Default-Release=bookworm depends linux-image-arm64:arm64 |
      sed -n "s/^ *Depends: \(linux-image-[0-9][^ :]*\).*/\1/p" | head -1) && [ -n "$k" ] &&
  APT_CONFIG=$MMDEBSTRAP_APT_CONFIG apt-get -qq -o APT::Default-Release=bookworm download u-boot-rpi:arm64 "$k:arm64"'
key=$(printf '%s\n' "$mirror" "${pkgs[@]}" "$hook" | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/poshub-ci
chroot_dir=$cache/raspi4b-trixie-$key
if [[ ! -x $chroot_dir/usr/bin/qemu-system-aarch64 ]]; then
  echo "raspi4b-uboot: making the trixie chroot $chroot_dir (once)"
  mkdir -p "$cache"
  rm -rf "$cache"/raspi4b-trixie-*   # chroots of older keys
  mmdebstrap --quiet --variant=essential --architectures=amd64,arm64 --include="${pkgs[*]}" \
    --aptopt='APT::Default-Release "trixie"' --customize-hook="$hook" \
    trixie "$chroot_dir.tmp" "deb $mirror trixie main" "deb $mirror bookworm main"
  mv "$chroot_dir.tmp" "$chroot_dir"
fi
qemu_version=$(chroot "$chroot_dir" qemu-system-aarch64 --version | head -1)
chroot "$chroot_dir" qemu-system-aarch64 -M help | grep -q '^raspi4b ' \
  || { echo "FAIL: $qemu_version has no raspi4b machine" >&2; exit 1; }

# Work directory inside the chroot, so QEMU (in it) and the tools (outside) see the same card.
work=$(mktemp -d "$chroot_dir/tmp/raspi4b.XXXXXX")
inside=/tmp/${work##*/}
qemu_pid=
cleanup() {
  if [[ -n $qemu_pid ]]; then kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $work/last.log ]] && sed 's/^/  | /' "$work/last.log" >&2; exit 1; }

# --- 3. the card -------------------------------------------------------------------------------
in=$work/in
mkdir -p "$in" "$work/debs" "$work/rootdir/etc"
for d in "$chroot_dir"/opt/poshub-debs/*.deb; do dpkg-deb -x "$d" "$work/debs"; done
cp "$work/debs/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$in/"
dtb=$(find "$work/debs/usr/lib" -path '*/broadcom/bcm2711-rpi-4-b.dtb' | head -1)
[[ -f $dtb ]] || fail "no bcm2711-rpi-4-b.dtb in the bookworm kernel package"
cp "$dtb" "$in/"
uboot_version="u-boot-rpi $(dpkg-deb -f "$(ls "$chroot_dir"/opt/poshub-debs/u-boot-rpi_*.deb)" Version)"
# arm64 Image header (Documentation/arch/arm64/booting.rst): code0 = `b .`, text_offset 0,
# image_size 64 KiB, flags = little-endian, 4K pages, anywhere in RAM; magic "ARM\x64".
{
  printf '\x00\x00\x00\x14\x00\x00\x00\x00'
  printf '\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00'
  printf '\x00\x00\x00\x00\x00\x00\x00\x00%.0s' 1 2 3
  printf 'ARM\x64\x00\x00\x00\x00'
} >"$in/vmlinuz"
truncate -s 64K "$in/vmlinuz"
head -c 3000 /dev/zero | tr '\0' A >"$in/initrd.img"    # bootA's initrd: 3000 bytes
head -c 5000 /dev/zero | tr '\0' B >"$work/initrd-b.img" # bootB's: 5000 bytes
printf 'stand-in: QEMU loads u-boot.bin itself\n' | tee "$in/start4.elf" >"$in/fixup4.dat"
mksquashfs "$work/rootdir" "$in/root.squashfs" -noappend -quiet -no-progress >/dev/null
SOURCE_DATE_EPOCH=1700000000 "$image_dir/assemble" "$in" "$work/asm" "$work/out" card >/dev/null
card=$work/card.img
mv "$work/out/card.img" "$card"
rm -rf "$work/asm" "$work/out" "$work/debs"
# QEMU's SD card must be a power of 2 in size: 4 GiB, the backup GPT moved to the new end.
truncate -s 4G "$card"
sfdisk -q --relocate gpt-bak-std "$card" 2>/dev/null
sfdisk -J "$card" >"$work/pt.json"
start_of() { python3 -c "import json,sys;print([p for p in json.load(open(sys.argv[1]))['partitiontable']['partitions'] if p.get('name')==sys.argv[2]][0]['start'])" "$work/pt.json" "$1"; }
cfg_start=$(start_of config)
b_start=$(start_of bootB)
# bootB gets its own initrd (assemble writes the same partition image to both slots).
dd if="$card" of="$work/bootB.ext4" bs=512 skip="$b_start" count=$((96 * 2048)) status=none
debugfs -w -R "rm /initrd.img" "$work/bootB.ext4" >/dev/null 2>&1
debugfs -w -R "write $work/initrd-b.img /initrd.img" "$work/bootB.ext4" >/dev/null 2>&1
debugfs -R "stat /initrd.img" "$work/bootB.ext4" 2>/dev/null | grep -q 'Size: 5000' || fail "could not give bootB its own initrd"
dd if="$work/bootB.ext4" of="$card" bs=512 seek="$b_start" conv=notrunc status=none

# --- 4. uboot.env on the config partition, as the supervisor reads and writes it --------------
fat="$card@@$((cfg_start * 512))"
envfile=$work/uboot.env
printf '%s 0x0 0x4000\n' "$envfile" >"$work/fw_env.config"
env_get() {
  rm -f "$envfile"
  mcopy -n -i "$fat" ::uboot.env "$envfile" || fail "no uboot.env on the config partition"
  fw_printenv -c "$work/fw_env.config" -n "$1" 2>/dev/null || true
}
env_set() { # NAME=value lines on stdin, one fw_setenv -s like the supervisor's uboot backend
  env_get BOOT_ORDER >/dev/null
  fw_setenv -c "$work/fw_env.config" -s - >/dev/null
  mcopy -o -i "$fat" "$envfile" ::uboot.env
}

# --- 5. one power-on ---------------------------------------------------------------------------
n=0
power_on() {
  n=$((n + 1))
  local log=$work/serial$n.log t0=$SECONDS end
  : >"$log"
  # The mini UART (U-Boot's console on the Pi 4, stdout-path serial1) is QEMU's second -serial.
  chroot "$chroot_dir" qemu-system-aarch64 -M raspi4b -display none -monitor none -no-reboot \
    -kernel "$inside/in/u-boot.bin" -dtb "$inside/in/bcm2711-rpi-4-b.dtb" \
    -drive "file=$inside/card.img,if=sd,format=raw" \
    -serial null -serial "file:$inside/serial$n.log" </dev/null >"$work/qemu$n.log" 2>&1 &
  qemu_pid=$!
  end=$((SECONDS + timeout_s))
  # Ends at "Starting kernel" (the stand-in kernel then spins), or at U-Boot's reset (QEMU
  # exits, -no-reboot; "resetting ..." comes after the script's fatwrite in any case).
  while kill -0 "$qemu_pid" 2>/dev/null && ! grep -aq -e 'Starting kernel' -e '^resetting \.\.\.' "$log"; do
    ((SECONDS < end)) || { tr -d '\r' <"$log" >"$work/last.log"; fail "power-on $n: no 'Starting kernel' and no reset within $timeout_s s"; }
    sleep 1
  done
  if kill "$qemu_pid" 2>/dev/null; then ended="stopped at $(grep -aq 'Starting kernel' "$log" && echo 'Starting kernel' || echo reset)"
  else ended="QEMU exited (U-Boot's reset, -no-reboot)"; fi
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  tr -d '\r' <"$log" >"$work/last.log"
  secs=$((SECONDS - t0))
  grep -aq 'Loading Environment from FAT... OK' "$work/last.log" || fail "power-on $n: U-Boot did not load its environment from uboot.env"
  grep -aq 'Found U-Boot script /boot.scr' "$work/last.log" || fail "power-on $n: distro boot did not find boot.scr"
  grep -aq 'poshub-boot: saved' "$work/last.log" || fail "power-on $n: the script did not save its counters"
}
# booted SLOT A_LEFT B_LEFT ORDER: the last power-on loaded SLOT's files and started its kernel,
# and uboot.env holds these counters.
booted() {
  local slot=$1 a=$2 b=$3 order=$4 size got
  size=$([[ $slot == A ]] && echo 3000 || echo 5000)
  grep -aq "poshub-boot: slot $slot chosen" "$work/last.log" || fail "power-on $n: slot $slot not chosen"
  grep -aq "poshub-boot: booting slot $slot: .*root=PARTLABEL=root$slot rauc.slot=$slot\$" "$work/last.log" \
    || fail "power-on $n: no boot of slot $slot with root=PARTLABEL=root$slot rauc.slot=$slot"
  grep -aq "^$size bytes read" "$work/last.log" || fail "power-on $n: the initrd of boot$slot ($size bytes) was not loaded"
  grep -aq 'Booting using the fdt blob at 0x2600000' "$work/last.log" \
    || fail "power-on $n: booti did not take the slot's device tree at fdt_addr_r"
  grep -aq 'Starting kernel' "$work/last.log" || fail "power-on $n: booti did not reach 'Starting kernel'"
  got="$(env_get BOOT_A_LEFT) $(env_get BOOT_B_LEFT) $(env_get BOOT_ORDER)"
  [[ $got == "$a $b $order" ]] || fail "power-on $n: uboot.env holds '$got', expected '$a $b $order'"
  echo "ok: power-on $n (${secs} s, $ended): slot $slot, files from boot$slot; uboot.env BOOT_A_LEFT=$a BOOT_B_LEFT=$b BOOT_ORDER=\"$order\""
}

echo "raspi4b-uboot: $qemu_version -M raspi4b, bookworm $uboot_version (rpi_arm64)"
t_all=$SECONDS
power_on; booted A 2 3 "A B"
power_on; booted A 1 3 "A B"
# The supervisor after installing into B (uboot.rs prepare_install + arm_trial).
env_set <<'EOF'
BOOT_ORDER=B A
BOOT_B_LEFT=1
EOF
power_on; booted B 1 0 "B A"
power_on; booted A 0 0 "B A"
power_on
grep -aq "poshub-boot: no slot has attempts left" "$work/last.log" || fail "power-on $n: exhausted counters not reset"
! grep -aq "Starting kernel" "$work/last.log" || fail "power-on $n: started a kernel with no attempts left"
[[ "$(env_get BOOT_A_LEFT) $(env_get BOOT_B_LEFT)" == "3 3" ]] || fail "power-on $n: counters not saved as 3 3"
echo "ok: power-on $n (${secs} s, $ended): no attempts left -> counters back to 3 3, reset without a kernel"
echo "raspi4b-uboot: all $n power-ons as expected ($((SECONDS - t_all)) s)"
