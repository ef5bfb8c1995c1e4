#!/usr/bin/env bash
# Tests of scripts/provision and scripts/flash on a small GPT disk image laid out like the
# poshub card's first partition (FAT `config`), made without loop mounts.
# 1. provision writes poshub.env and poshub-<realm>.env into the FAT partition (read back with
#    mtools), replaces an earlier copy, and refuses: a malformed settings file, an image without
#    a `config` partition, a missing image.
# 2. flash refuses: a regular file as target, the disk holding this machine's root, a partition.
# 3. flash writes through bmaptool to a loop device, when this machine allows loop devices
#    (root, loop module): written bytes equal the image; then refuses one of its partitions.
#    Skipped with a notice otherwise (no loop device is ever mounted).
# Installs what it needs (Debian).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive
need=()
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v bmaptool >/dev/null || need+=(bmap-tools)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
loopdev=
cleanup() { [[ -n $loopdev ]] && losetup -d "$loopdev"; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# refuses WHAT EXPECTED_MESSAGE CMD...: CMD must fail and say EXPECTED_MESSAGE.
refuses() {
  local what=$1 msg=$2 out
  shift 2
  if out=$("$@" 2>&1); then fail "$what: accepted ($out)"; fi
  grep -q -- "$msg" <<<"$out" || fail "$what: refused, but without '$msg': $out"
  echo "ok: refuses $what"
}

# --- disk: GPT, partition 1 `config` (FAT, 8 MiB), partition 2 `bootA` (empty) ---------------
img=$work/card.img
truncate -s 16M "$img"
sfdisk -q "$img" <<EOF
label: gpt
start=2048, size=16384, type=uefi, name=config
start=18432, size=8192, type=linux, name=bootA
EOF
mkfs.vfat -C -n CONFIG "$work/config.fat" 8192 >/dev/null
dd if="$work/config.fat" of="$img" bs=512 seek=2048 conv=notrunc status=none
fat="$img@@$((2048 * 512))"

# --- 1. provision ------------------------------------------------------------------------------
cat >"$work/poshub.env" <<'EOF'
# realm and upstream
HUB_TENANT_ID=acme
HUB_STORE_ID=store-007
export HUB_ODOO_URL=https://odoo.example
HUB_ODOO_PASSWORD=s3cret with spaces
SUPERVISOR_UPDATE_TOKEN=abc
EOF
printf 'HUB_STORE_ID=bar\r\nHUB_PORT=8775\r\n' >"$work/bar.env"   # CRLF, as from a Windows editor
"$repo/scripts/provision" "$img" --env "$work/poshub.env" --realm bar "$work/bar.env" >/dev/null
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/poshub.env" || fail "poshub.env on FAT differs"
cmp -s <(mtype -i "$fat" ::poshub-bar.env) "$work/bar.env" || fail "poshub-bar.env on FAT differs"
echo "ok: provision wrote poshub.env and poshub-bar.env to the config partition"
echo 'HUB_STORE_ID=store-008' >"$work/second.env"
"$repo/scripts/provision" "$img" --env "$work/second.env" >/dev/null
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/second.env" || fail "poshub.env not replaced"
echo "ok: provision replaces an earlier poshub.env"
printf 'HUB_STORE_ID=x\nhub_port=1\nJUSTAWORD\n' >"$work/bad.env"
refuses "a settings file with malformed lines" "bad.env:2: not KEY=VALUE" \
  "$repo/scripts/provision" "$img" --env "$work/bad.env"
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/second.env" || fail "a refused file changed the image"
truncate -s 4M "$work/plain.img"
sfdisk -q "$work/plain.img" <<<'label: gpt
start=2048, size=4096, type=linux, name=root'
refuses "an image without a config partition" "no GPT partition named 'config'" \
  "$repo/scripts/provision" "$work/plain.img" --env "$work/second.env"
refuses "a missing image" "no such image file" \
  "$repo/scripts/provision" "$work/nothere.img" --env "$work/second.env"

# --- 2. flash refusals ---------------------------------------------------------------------------
refuses "a regular file as target" "is not a block device" \
  "$repo/scripts/flash" "$img" "$work/plain.img" --dry-run
rootdisk=$(lsblk -sno NAME,TYPE "$(findmnt -no SOURCE /)" 2>/dev/null | awk '$2 == "disk" {gsub(/^[^[:alnum:]]+/, "", $1); print $1; exit}' || true)
if [[ -n $rootdisk && -b /dev/$rootdisk ]]; then
  refuses "the disk holding / (/dev/$rootdisk)" "system disk" "$repo/scripts/flash" "$img" "/dev/$rootdisk" --dry-run
  rootpart=$(lsblk -nro NAME,TYPE "/dev/$rootdisk" | awk '$2 == "part" {print $1; exit}')
  if [[ -n $rootpart ]]; then
    refuses "a partition (/dev/$rootpart)" "not a whole disk" "$repo/scripts/flash" "$img" "/dev/$rootpart" --dry-run
  fi
else
  echo "notice: / is not on a block device here; system-disk refusal not exercised"
fi

# --- 3. flash to a loop device -------------------------------------------------------------------
if ((EUID == 0)) && truncate -s 32M "$work/target" && loopdev=$(losetup -f --show "$work/target" 2>/dev/null); then
  bmaptool create -o "${img%.img}.bmap" "$img" 2>/dev/null   # found by flash next to the image
  "$repo/scripts/flash" "$img" "$loopdev" --yes >/dev/null 2>&1 || fail "flash to $loopdev failed"
  cmp -s -n "$(stat -c %s "$img")" "$img" "$loopdev" || fail "$loopdev does not hold the image after flashing"
  echo "ok: flash wrote the image to $loopdev through bmaptool (bytes compared)"
  # The written card has partitions now: re-read them and try to flash one.
  losetup -d "$loopdev"
  loopdev=$(losetup -f --show -P "$work/target")
  if [[ -b ${loopdev}p1 ]]; then
    refuses "a partition (${loopdev}p1)" "not a whole disk" "$repo/scripts/flash" "$img" "${loopdev}p1" --dry-run
  else
    echo "notice: no partition device nodes here (no udev); partition refusal not exercised"
  fi
else
  loopdev=
  echo "notice: no loop device available here; the writing path of flash not exercised"
fi
echo "provision/flash: all checks passed"
