#!/usr/bin/env bash
# Layout test of image/assemble with stand-in parts (a tiny squashfs root, a fake kernel, the
# QEMU U-Boot binary for its default environment), fast enough for every CI run:
# 1. GPT: config, bootA, bootB, rootA, rootB, data in this order, types, 1536 MiB root slots,
#    4 MiB alignment (SD card erase blocks).
# 2. config (FAT): firmware, U-Boot, config.txt starting U-Boot, boot.scr, and a uboot.env
#    that libubootenv reads: U-Boot's defaults (bootcmd) plus BOOT_ORDER=A B, 3 attempts each.
#    poshub.env.example names only settings of docs/configuration.md.
# 3. bootA/bootB (ext4): uncompressed Image, initrd, dtb, cmdline.env without a root (boot.cmd adds root=PARTLABEL=root<slot>).
# 4. rootA holds root.squashfs byte for byte; data is ext4 labelled data; a .bmap exists.
# 5. Reproducible: assembled twice, a second apart, the images are identical.
# Installs what it needs (Debian).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image_dir=$(dirname "$here")
export DEBIAN_FRONTEND=noninteractive
uboot=/usr/lib/u-boot/qemu_arm64/u-boot.bin
need=()
command -v mkimage >/dev/null || need+=(u-boot-tools)
[[ -f $uboot ]] || need+=(u-boot-qemu)
command -v genimage >/dev/null || need+=(genimage)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v bmaptool >/dev/null || need+=(bmap-tools)
command -v fw_printenv >/dev/null || need+=(libubootenv-tool)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export SOURCE_DATE_EPOCH=1700000000

# --- stand-in parts --------------------------------------------------------------------------
in=$work/in
mkdir -p "$in" "$work/rootdir/etc"
echo poshub >"$work/rootdir/etc/hostname"
# (mksquashfs takes every timestamp from SOURCE_DATE_EPOCH)
mksquashfs "$work/rootdir" "$in/root.squashfs" -noappend -quiet -no-progress >/dev/null
printf 'fake arm64 Image\n' >"$work/Image"
gzip -n -c "$work/Image" >"$in/vmlinuz"
printf 'fake initrd\n' >"$in/initrd.img"
printf 'fake dtb\n' >"$in/bcm2711-rpi-4-b.dtb"
printf 'fake firmware\n' >"$in/start4.elf"
printf 'fake fixup\n' >"$in/fixup4.dat"
cp "$uboot" "$in/u-boot.bin"

"$image_dir/assemble" "$in" "$work/w1" "$work/o1" card >/dev/null
img=$work/o1/card.img

# --- 1. partition table ----------------------------------------------------------------------
sfdisk -J "$img" >"$work/pt.json"
python3 - "$work/pt.json" <<'PY' || fail "partition table"
import json, sys
t = json.load(open(sys.argv[1]))["partitiontable"]
assert t["label"] == "gpt", t["label"]
names = [p.get("name") for p in t["partitions"]]
assert names == ["config", "bootA", "bootB", "rootA", "rootB", "data"], names
efi, linux = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
types = [p["type"] for p in t["partitions"]]
assert types == [efi] + [linux] * 5, types
sizes = {p["name"]: p["size"] * 512 for p in t["partitions"]}
assert sizes["rootA"] == sizes["rootB"] == 1536 << 20, sizes
assert all(p["start"] % 8192 == 0 for p in t["partitions"]), "partitions not 4 MiB aligned (SD erase blocks)"
print("ok: GPT config, bootA, bootB, rootA, rootB, data; root slots 1536 MiB; 4 MiB aligned")
PY
# part N FILE: copies partition N out of the image.
part() {
  local start size
  start=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['partitiontable']['partitions'][$1-1]['start'])" "$work/pt.json")
  size=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['partitiontable']['partitions'][$1-1]['size'])" "$work/pt.json")
  dd if="$img" of="$2" bs=512 skip="$start" count="$size" status=none
}

# --- 2. config partition -----------------------------------------------------------------------
part 1 "$work/p1"
for f in start4.elf fixup4.dat bcm2711-rpi-4-b.dtb u-boot.bin config.txt boot.scr uboot.env poshub.env.example; do
  mtype -i "$work/p1" "::$f" >/dev/null 2>&1 || fail "config partition lacks $f"
done
mtype -i "$work/p1" ::config.txt | grep -qx 'kernel=u-boot.bin' || fail "config.txt does not start U-Boot"
# The template a tech copies to poshub.env names real settings (it once said HUB_TENANT_ID).
keys=$(mtype -i "$work/p1" ::poshub.env.example | sed -n 's/^#\([A-Z_][A-Z0-9_]*\)=.*/\1/p')
[[ -n $keys ]] || fail "poshub.env.example names no setting"
# shellcheck disable=SC2016 # the backticks are Markdown's, matched literally
known=$(awk -F'|' '/^\| `/ {print $2}' "$image_dir/../docs/configuration.md" | grep -o '`[A-Z][A-Z0-9_]*`' | tr -d '`')
for k in $keys; do
  grep -qx "$k" <<<"$known" || fail "poshub.env.example: $k is not a setting of docs/configuration.md"
done
mcopy -i "$work/p1" ::uboot.env "$work/uboot.env"
mcopy -i "$work/p1" ::boot.scr "$work/boot.scr"
mkimage -l "$work/boot.scr" | grep -q 'Script' || fail "boot.scr is not a U-Boot script image"
printf '%s 0x0 0x4000\n' "$work/uboot.env" >"$work/fw_env.config"
env_get() { fw_printenv -c "$work/fw_env.config" -n "$1" 2>/dev/null || true; }
[[ "$(env_get BOOT_ORDER)|$(env_get BOOT_A_LEFT)|$(env_get BOOT_B_LEFT)" == "A B|3|3" ]] \
  || fail "uboot.env: BOOT_* not A B / 3 / 3"
[[ -n "$(env_get bootcmd)" ]] || fail "uboot.env lacks U-Boot's default bootcmd"
echo "ok: config partition: firmware, U-Boot, config.txt, boot.scr, uboot.env (defaults + BOOT_*)"

# --- 3. slot boot partitions -------------------------------------------------------------------
for n in 2 3; do
  s=$([[ $n == 2 ]] && echo A || echo B)
  part "$n" "$work/p$n"
  debugfs -R "cat /Image" "$work/p$n" 2>/dev/null | cmp -s - "$work/Image" || fail "boot$s: Image is not the decompressed kernel"
  debugfs -R "cat /initrd.img" "$work/p$n" 2>/dev/null | cmp -s - "$in/initrd.img" || fail "boot$s: initrd.img differs"
  debugfs -R "cat /dtbs/broadcom/bcm2711-rpi-4-b.dtb" "$work/p$n" 2>/dev/null | cmp -s - "$in/bcm2711-rpi-4-b.dtb" || fail "boot$s: dtb missing"
  debugfs -R "cat /cmdline.env" "$work/p$n" 2>/dev/null | grep -q "^bootargs_slot=.*rootfstype=squashfs ro rootwait" \
    || fail "boot$s: cmdline.env lacks the root options"
  ! debugfs -R "cat /cmdline.env" "$work/p$n" 2>/dev/null | grep -q "root=" \
    || fail "boot$s: cmdline.env names a root (the boot script does, per slot)"
done
cmp -s "$work/p2" "$work/p3" || fail "bootA and bootB differ (the boot partition must be slot-independent)"
cmp -s -n "$(stat -c %s "$work/w1/boot.ext4")" "$work/p2" "$work/w1/boot.ext4" || fail "WORK/boot.ext4 (for bundles) is not what bootA holds"
echo "ok: bootA/bootB: Image (decompressed), initrd.img, dtb, cmdline.env without a slot's root (the script adds it)"

# --- 4. roots, data, bmap ----------------------------------------------------------------------
part 4 "$work/p4"
cmp -s -n "$(stat -c %s "$in/root.squashfs")" "$work/p4" "$in/root.squashfs" || fail "rootA does not hold root.squashfs"
part 6 "$work/p6"
[[ $(blkid -o value -s LABEL "$work/p6") == data && $(blkid -o value -s TYPE "$work/p6") == ext4 ]] \
  || fail "data partition is not ext4 labelled data"
grep -q '<bmap version=' "$work/o1/card.bmap" || fail "card.bmap is not a block map"
# bmaptool copy verifies the checksum of every mapped range it writes.
bmaptool copy --bmap "$work/o1/card.bmap" "$img" "$work/copy.img" 2>/dev/null || fail "bmaptool copy with card.bmap failed"
rm -f "$work/copy.img"
echo "ok: rootA = root.squashfs, data = ext4 'data', card.bmap verified by bmaptool copy"

# --- 5. reproducible ---------------------------------------------------------------------------
sleep 1
"$image_dir/assemble" "$in" "$work/w2" "$work/o2" card >/dev/null
cmp -s "$img" "$work/o2/card.img" || fail "two assemblies of the same parts differ"
echo "ok: reproducible: two assemblies are byte-identical"
echo "layout: all checks passed"
