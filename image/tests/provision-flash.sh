#!/usr/bin/env bash
# Tests of scripts/provision and scripts/flash on a small GPT disk image laid out like the
# poshub card's first partition (FAT `config`), made without loop mounts.
# 1. provision writes poshub.env and poshub-<realm>.env into the FAT partition (read back with
#    mtools), replaces an earlier copy, and refuses: a malformed settings file, an image without
#    a `config` partition, a missing image, and settings the box would refuse (a short WIFI_PSK,
#    values poshub / poshub-supervisor check-config reject); warns about unknown keys.
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
TENANT_ID=acme
STORE_ID=store-007
export ODOO_URL=https://odoo.example
ODOO_PASSWORD=s3cret with spaces
SUPERVISOR_API_TOKEN=abc
WIFI_SSID=Shop
WIFI_PSK=correct horse
WIFI_COUNTRY=DE
EOF
printf 'STORE_ID=bar\r\nHUB_PORT=8775\r\n' >"$work/bar.env"   # CRLF, as from a Windows editor
"$repo/scripts/provision" "$img" --env "$work/poshub.env" --realm bar "$work/bar.env" >/dev/null
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/poshub.env" || fail "poshub.env on FAT differs"
cmp -s <(mtype -i "$fat" ::poshub-bar.env) "$work/bar.env" || fail "poshub-bar.env on FAT differs"
echo "ok: provision wrote poshub.env and poshub-bar.env to the config partition"
echo 'STORE_ID=store-008' >"$work/second.env"
"$repo/scripts/provision" "$img" --env "$work/second.env" >/dev/null
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/second.env" || fail "poshub.env not replaced"
echo "ok: provision replaces an earlier poshub.env"
printf 'STORE_ID=x\nhub_port=1\nJUSTAWORD\n' >"$work/bad.env"
refuses "a settings file with malformed lines" "bad.env:2: not KEY=VALUE" \
  "$repo/scripts/provision" "$img" --env "$work/bad.env"
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/second.env" || fail "a refused file changed the image"
# Settings the box would refuse (issue 14, point 8) are refused here, before anything is written:
# the device's Wi-Fi rules, and what poshub / poshub-supervisor check-config say (the binaries of
# this checkout, built if missing).
bins=${CARGO_TARGET_DIR:-$repo/target}/debug
if [[ ! -x $bins/poshub || ! -x $bins/poshub-supervisor ]]; then
  (cd "$repo" && cargo build -q --locked --bin poshub --bin poshub-supervisor)
fi
# refused NAME EXPECTED_MESSAGE ARGS...: provision with ARGS is refused and the image unchanged.
refused() {
  local what=$1 msg=$2
  shift 2
  refuses "$what" "$msg" "$repo/scripts/provision" "$img" --bin-dir "$bins" "$@"
  cmp -s <(mtype -i "$fat" ::poshub.env) "$work/second.env" || fail "$what: the image changed"
}
printf 'WIFI_SSID=Shop\nWIFI_PSK=short\nWIFI_COUNTRY=DE\n' >"$work/wifi.env"
refused "a 5-character WIFI_PSK" "WIFI_PSK must be 8-63 printable ASCII characters" --env "$work/wifi.env"
printf 'WIFI_SSID=Shop\nWIFI_PSK=correct horse\nWIFI_COUNTRY=Germany\n' >"$work/wifi.env"
refused "WIFI_COUNTRY=Germany" "WIFI_COUNTRY must be a two-letter country code" --env "$work/wifi.env"
printf 'TENANT_ID=acme\nHUB_PORT=87650\nHUB_AUTH_MODE=odoo\nSUPERVISOR_HEALTH_WINDOW_S=soon\n' >"$work/hub.env"
refused "a hub port out of range" "hub.env (hub): HUB_PORT: " --env "$work/hub.env"
refused "odoo auth without ODOO_URL" "hub.env (hub): HUB_AUTH_MODE: " --env "$work/hub.env"
refused "a supervisor setting the supervisor refuses" "hub.env (supervisor): SUPERVISOR_HEALTH_WINDOW_S: " \
  --env "$work/hub.env"
printf 'STORE_ID=bar\nHUB_HTTP_PORT=http\n' >"$work/bar-bad.env"
refused "a realm's hub setting" "bar-bad.env (hub): HUB_HTTP_PORT: " --env "$work/second.env" --realm bar "$work/bar-bad.env"
refused "a realm name the device skips" "realm name 'b_r'" --realm b_r "$work/bar.env"
# A key no binary reads is a warning, not a refusal (the device ignores it).
printf 'STORE_ID=store-008\nHUB_STORE_ID=typo\n' >"$work/typo.env"
out=$("$repo/scripts/provision" "$img" --bin-dir "$bins" --env "$work/typo.env" 2>&1) || fail "unknown key refused: $out"
grep -q "warning: HUB_STORE_ID: not a poshub setting" <<<"$out" || fail "no warning for HUB_STORE_ID: $out"
echo "ok: warns about a key the hub does not read"
# Without the binaries: the device's rules still apply, the rest is skipped with a warning.
out=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin CARGO_TARGET_DIR=$work/none "$repo/scripts/provision" "$img" \
  --env "$work/second.env" 2>&1) || fail "without binaries: refused: $out"
grep -q "warning: no poshub with check-config" <<<"$out" || fail "without binaries: no warning: $out"
echo "ok: without the binaries: provisions, saying what was not checked"
cmp -s <(mtype -i "$fat" ::poshub.env) "$work/second.env" || fail "poshub.env not written without binaries"
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
