#!/usr/bin/env bash
# Runs image/boot.cmd in real U-Boot (Debian's u-boot-qemu, qemu_arm64, in qemu-system-aarch64
# -M virt under TCG) across several power-ons and checks the slot it picks and the counters it
# leaves in the environment.
#
# Setup: a small GPT disk (virtio) with partition 1 `config` (FAT, boot.scr: found by U-Boot's
# distro boot, as on the Pi), `bootA` and `bootB` (ext4: cmdline.env, initrd.img and an `Image`
# that is not a kernel, so booti fails after the script has chosen and saved, and the script
# resets). QEMU runs with -no-reboot, so that reset ends one power-on. The slot state lives
# where the image keeps it: the file uboot.env on the FAT partition, which the script reads
# (`env import -c`) and writes (`env export -c` + `fatwrite`) itself. The test reads and writes
# that file with libubootenv's fw_printenv/fw_setenv, the tools the supervisor's `uboot` backend
# uses, through mtools (no mount).
# Needs no root and no loop mounts. Installs what it needs (Debian).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image_dir=$(dirname "$here")
export DEBIAN_FRONTEND=noninteractive

# --- 1. tools ------------------------------------------------------------------------------
uboot=/usr/lib/u-boot/qemu_arm64/u-boot.bin
need=()
command -v mkimage >/dev/null || need+=(u-boot-tools)
[[ -f $uboot ]] || need+=(u-boot-qemu)
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v fw_printenv >/dev/null || need+=(libubootenv-tool)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $work/last.log ]] && sed 's/^/  | /' "$work/last.log" >&2; exit 1; }

# --- 2. disk -------------------------------------------------------------------------------
"$image_dir/mkbootscr" "$work/boot.scr"
mkfs.vfat -C -n CONFIG "$work/config.fat" 8192 >/dev/null   # 8 MiB
mcopy -i "$work/config.fat" "$work/boot.scr" ::boot.scr
for s in A B; do
  d=$work/boot$s
  mkdir -p "$d"
  printf 'bootargs_slot=console=ttyAMA0 rootfstype=squashfs ro\n' >"$d/cmdline.env"
  printf 'not a kernel (slot %s)\n' "$s" >"$d/Image"
  printf 'not an initrd\n' >"$d/initrd.img"
  mke2fs -q -t ext4 -d "$d" "$work/boot$s.ext4" 4M >/dev/null
done
disk=$work/disk.img
truncate -s 24M "$disk"
# 1 MiB alignment, sizes in 512-byte sectors: config 8 MiB, bootA and bootB 4 MiB each.
sfdisk -q "$disk" <<EOF
label: gpt
start=2048, size=16384, type=uefi, name=config
start=18432, size=8192, type=linux, name=bootA
start=26624, size=8192, type=linux, name=bootB
EOF
dd if="$work/config.fat" of="$disk" bs=512 seek=2048 conv=notrunc status=none
dd if="$work/bootA.ext4" of="$disk" bs=512 seek=18432 conv=notrunc status=none
dd if="$work/bootB.ext4" of="$disk" bs=512 seek=26624 conv=notrunc status=none

# --- 3. environment storage ----------------------------------------------------------------
# uboot.env on partition 1 (1 MiB into the disk), 0x4000 bytes, as /etc/fw_env.config says on
# the device. Reading or writing it = copying it out of / into the FAT with mtools.
fat="$disk@@1M"
envfile=$work/uboot.env
printf '%s 0x0 0x4000\n' "$envfile" >"$work/fw_env.config"
pull_env() {
  rm -f "$envfile"
  mcopy -n -i "$fat" ::uboot.env "$envfile" 2>/dev/null || head -c 16384 /dev/zero >"$envfile"
}
env_get() { pull_env; fw_printenv -c "$work/fw_env.config" -n "$1" 2>/dev/null || true; }
# A file with no valid environment yet starts from U-Boot's defaults, as fw_setenv --defenv does
# on the device (a bad CRC is reported on stderr: expected here, kept out of the output).
"$image_dir/uboot-default-env" "$uboot" >"$work/default.env"
# Script lines are NAME=value: libubootenv 0.3.2 (Debian 12) silently ignores "NAME value".
env_set() {   # NAME=value lines on stdin
  pull_env
  fw_setenv -c "$work/fw_env.config" -f "$work/default.env" -s - >/dev/null 2>&1
  mcopy -o -i "$fat" "$envfile" ::uboot.env
}

# --- 4. one power-on -----------------------------------------------------------------------
n=0
power_on() {
  n=$((n + 1))
  if ! timeout 120 qemu-system-aarch64 -M virt -cpu cortex-a57 -m 512 -nographic -no-reboot -nic none \
      -bios "$uboot" \
      -drive if=none,id=disk,format=raw,file="$disk" -device virtio-blk-device,drive=disk \
      </dev/null >"$work/last.log" 2>&1; then
    fail "power-on $n: QEMU did not end with a reset within 120 s"
  fi
  tr -d '\r' <"$work/last.log" >"$work/boot$n.log"
  mv "$work/boot$n.log" "$work/last.log"
  grep -aq 'poshub-boot: saved' "$work/last.log" || fail "power-on $n: the script did not save its counters"
}
# expect SLOT A_LEFT B_LEFT ORDER: what the last power-on must have chosen and saved.
expect() {
  local slot=$1 a=$2 b=$3 order=$4
  grep -aq "poshub-boot: slot $slot chosen" "$work/last.log" || fail "power-on $n: slot $slot not chosen"
  grep -aq "poshub-boot: booting slot $slot: .*root=PARTLABEL=root$slot .*rauc.slot=$slot\$" "$work/last.log" \
    || fail "power-on $n: no boot attempt of slot $slot with root=PARTLABEL=root$slot and rauc.slot=$slot"
  grep -aq "poshub-boot: slot $slot: kernel did not start" "$work/last.log" \
    || fail "power-on $n: booti of the fake kernel did not return as expected"
  local got
  got="$(env_get BOOT_A_LEFT) $(env_get BOOT_B_LEFT) $(env_get BOOT_ORDER)"
  [[ $got == "$a $b $order" ]] || fail "power-on $n: saved counters/order '$got', expected '$a $b $order'"
  echo "ok: power-on $n: slot $slot, saved BOOT_A_LEFT=$a BOOT_B_LEFT=$b BOOT_ORDER=\"$order\""
}

# --- 5. scenarios --------------------------------------------------------------------------
# 5.1 No uboot.env yet (first boot of a new card): defaults, slot A, one attempt taken.
! mdir -i "$fat" ::uboot.env >/dev/null 2>&1 || fail "the new disk already has uboot.env"
power_on; expect A 2 3 "A B"
# 5.2 A slot that never comes up falls back after its attempts: A 1, A 0, then B.
power_on; expect A 1 3 "A B"
power_on; expect A 0 3 "A B"
power_on; expect B 0 2 "A B"
# 5.3 Supervisor arms a trial of B after an install (uboot backend: one fw_setenv -s):
#     B first with 1 attempt, A committed with 3. The trial boots B once ...
env_set <<'EOF'
BOOT_ORDER=B A
BOOT_A_LEFT=3
BOOT_B_LEFT=1
EOF
power_on; expect B 3 0 "B A"
# ... and when it does not come up (no supervisor to commit it), the next power-on is A.
power_on; expect A 2 0 "B A"
# 5.4 Every attempt used up: counters reset to 3, nothing booted; the next power-on takes A.
env_set <<'EOF'
BOOT_ORDER=A B
BOOT_A_LEFT=0
BOOT_B_LEFT=0
EOF
power_on
grep -aq "poshub-boot: no slot has attempts left" "$work/last.log" || fail "power-on $n: exhausted counters not reset"
! grep -aq "poshub-boot: booting slot" "$work/last.log" || fail "power-on $n: booted with no attempts left"
[[ "$(env_get BOOT_A_LEFT) $(env_get BOOT_B_LEFT)" == "3 3" ]] || fail "power-on $n: counters not saved as 3 3"
echo "ok: power-on $n: no attempts left -> counters reset to 3, reset without booting"
power_on; expect A 2 3 "A B"
# 5.5 A slot whose boot partition lacks its files: chosen, counted, reported, not booted.
mke2fs -q -F -t ext4 "$work/empty.ext4" 4M >/dev/null
dd if="$work/empty.ext4" of="$disk" bs=512 seek=26624 conv=notrunc status=none
env_set <<'EOF'
BOOT_ORDER=B A
BOOT_B_LEFT=1
EOF
power_on
grep -aq "poshub-boot: slot B: boot files missing or unreadable on bootB" "$work/last.log" \
  || fail "power-on $n: missing boot files on bootB not reported"
[[ "$(env_get BOOT_B_LEFT)" == 0 ]] || fail "power-on $n: the failed attempt on B was not counted"
echo "ok: power-on $n: slot B without boot files -> counted and reset"
power_on; expect A 1 0 "B A"
# 5.6 A torn uboot.env (bad CRC, e.g. a power cut while the FAT was written): the counters in
#     it are not trusted; defaults A B 3 3 apply and a valid file is written again.
pull_env
printf 'garbage' | dd of="$envfile" bs=1 seek=100 conv=notrunc status=none
mcopy -o -i "$fat" "$envfile" ::uboot.env
power_on
grep -aq "poshub-boot: counters read from uboot.env" "$work/last.log" && fail "power-on $n: a torn uboot.env was trusted"
expect A 2 3 "A B"
echo "boot script: all $n power-ons as expected"
