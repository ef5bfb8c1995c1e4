#!/usr/bin/env bash
# Checks of systemd/ (issue 6 "systemd/", installed by yocto-layer/meta-poshub):
# 1. `systemd-analyze verify` of every unit in a throw-away root that holds the host's
#    systemd units plus ours and stub binaries at the ExecStart paths (verify checks that
#    they exist and are executable). verify exits 0 on warnings such as an unknown key,
#    so any output at all counts as a failure.
# 2. Every key of the systemd/journald drop-ins exists in the installed systemd
#    (systemd-analyze does not read drop-ins of system.conf/journald.conf), every time
#    span parses, and the hardware watchdog stays within the bcm2835's 15 s.
#    Plus `systemd-analyze security` exposure limits for the two long-running services.
# 3. sysusers.d parses (systemd-sysusers --dry-run into the throw-away root).
# 4. shellcheck of the helper scripts, the provisioning and Tailscale enrolment tests, with
#    the host's tools and with busybox's; the growth script's partition-table steps on
#    a disk image file.
# Installs what it needs (Debian); idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v strings >/dev/null || need+=(binutils)
[[ -x /bin/busybox ]] || need+=(busybox)
command -v sfdisk >/dev/null || need+=(fdisk)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "systemd: $(systemd-analyze --version | head -1)"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
units=systemd
sysunitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)

# --- 1. units --------------------------------------------------------------------------
mkdir -p "$root/usr/lib/systemd/system" "$root/usr/bin" "$root/usr/sbin" \
  "$root/usr/libexec/poshub" "$root/etc"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
cp -a "$sysunitdir/." "$root/usr/lib/systemd/system/"
cp "$units"/*.service "$units"/*.mount "$root/usr/lib/systemd/system/"
install -m 0755 "$units"/libexec/* "$root/usr/libexec/poshub/"
for exe in /usr/bin/poshub /usr/bin/poshub-supervisor /usr/bin/mkdir /usr/bin/chown \
  /usr/bin/tailscale /usr/sbin/tailscaled; do
  printf '#!/bin/sh\nexit 0\n' >"$root$exe"
  chmod 0755 "$root$exe"
done
# tailscaled.service as the official arm64 package (1.78) ships it, with our drop-in on top.
mkdir -p "$root/etc/default" "$root/usr/lib/systemd/system/tailscaled.service.d"
# shellcheck disable=SC2016 # ${PORT} and $FLAGS are systemd's, not the shell's
printf '%s\n' '[Unit]' 'Description=Tailscale node agent' 'Documentation=https://tailscale.com/kb/' \
  'Wants=network-pre.target' 'After=network-pre.target NetworkManager.service systemd-resolved.service' \
  '[Service]' 'EnvironmentFile=/etc/default/tailscaled' \
  'ExecStart=/usr/sbin/tailscaled --state=/var/lib/tailscale/tailscaled.state --socket=/run/tailscale/tailscaled.sock --port=${PORT} $FLAGS' \
  'ExecStopPost=/usr/sbin/tailscaled --cleanup' 'Restart=on-failure' 'RuntimeDirectory=tailscale' \
  'RuntimeDirectoryMode=0755' 'StateDirectory=tailscale' 'StateDirectoryMode=0700' \
  'CacheDirectory=tailscale' 'CacheDirectoryMode=0750' 'Type=notify' \
  '[Install]' 'WantedBy=multi-user.target' >"$root/usr/lib/systemd/system/tailscaled.service"
printf '%s\n' 'PORT="41641"' 'FLAGS=""' >"$root/etc/default/tailscaled"
cp "$units/tailscale/tailscaled-poshub.conf" "$root/usr/lib/systemd/system/tailscaled.service.d/poshub.conf"
mapfile -t names < <(cd "$units" && ls *.service *.mount | sed 's/^poshub@\.service$/poshub@realm2.service/')
names+=(tailscaled.service)
echo "verifying: ${names[*]}"
out=$(systemd-analyze verify --root="$root" --man=no "${names[@]}" 2>&1) || {
  echo "$out"; echo "FAIL: systemd-analyze verify exited non-zero"; exit 1; }
if [[ -n "$out" ]]; then
  echo "$out"; echo "FAIL: systemd-analyze verify printed warnings"; exit 1
fi
echo "ok: systemd-analyze verify clean"

# --- 2. drop-ins -----------------------------------------------------------------------
# keys_of FILE SECTION: the keys set in SECTION of FILE.
keys_of() { awk -v s="[$2]" '/^\[/{in_s=($0==s)} in_s && /^[A-Za-z]+=/{sub(/=.*/,"");print}' "$1"; }
journald=$(command -v systemd-journald || echo /lib/systemd/systemd-journald)
[[ -x "$journald" ]] || journald=/lib/systemd/systemd-journald
core=$( (ls /usr/lib/x86_64-linux-gnu/systemd/libsystemd-core-*.so /usr/lib/*/systemd/libsystemd-core-*.so /lib/systemd/systemd 2>/dev/null || true) | head -1)
# (Strings saved to files first: `strings | grep -q` would die of SIGPIPE under pipefail.)
strings "$journald" >"$root/journald.strings"
strings "$core" /lib/systemd/systemd >"$root/manager.strings"
bad=0
for k in $(keys_of "$units/journald.conf.d/poshub.conf" Journal); do
  grep -qx "Journal\.$k" "$root/journald.strings" || { echo "FAIL: journald has no key $k"; bad=1; }
done
for k in $(keys_of "$units/system.conf.d/poshub-watchdog.conf" Manager); do
  grep -qx "$k" "$root/manager.strings" || { echo "FAIL: systemd has no [Manager] key $k"; bad=1; }
done
# systemd-resolved is only unpacked, not installed: installing it would take over this
# machine's /etc/resolv.conf.
resolved=/lib/systemd/systemd-resolved
if [[ ! -x $resolved ]]; then
  (cd "$root" && apt-get download -qq systemd-resolved >/dev/null 2>&1 && dpkg-deb -x systemd-resolved_*.deb "$root/resolved-deb") || true
  resolved=$(find "$root/resolved-deb" -path '*/systemd/systemd-resolved' -type f 2>/dev/null | head -1)
fi
if [[ -n $resolved && -x $resolved ]]; then
  strings "$resolved" >"$root/resolved.strings"
  for k in $(keys_of "$units/resolved.conf.d/poshub.conf" Resolve); do
    grep -qx "Resolve\.$k" "$root/resolved.strings" || { echo "FAIL: resolved has no key $k"; bad=1; }
  done
else
  echo "FAIL: systemd-resolved not installable here: resolved.conf.d/poshub.conf not checked"; bad=1
fi
for f in "$units"/journald.conf.d/*.conf "$units"/system.conf.d/*.conf; do
  while IFS='=' read -r k v; do
    [[ "$k" == *Sec ]] || continue
    systemd-analyze timespan "$v" >/dev/null || { echo "FAIL: $f: $k=$v is not a time span"; bad=1; }
  done < <(grep -E '^[A-Za-z]+=' "$f")
done
wd=$(sed -n 's/^RuntimeWatchdogSec=//p' "$units/system.conf.d/poshub-watchdog.conf")
wd_us=$(systemd-analyze timespan "$wd" | sed -n 's/.*μs: *//p')
if [[ -z "$wd_us" ]] || ((wd_us > 15000000 || wd_us == 0)); then
  echo "FAIL: RuntimeWatchdogSec=$wd must be > 0 and <= 15 s (bcm2835 hardware maximum)"; bad=1
fi
((bad == 0)) || exit 1
echo "ok: drop-in keys known to systemd $(systemd-analyze --version | head -1 | cut -d' ' -f2), watchdog ${wd}"

# --- 2b. sandboxing regression guard: systemd's own exposure score (0 safe .. 10 unsafe).
# The supervisor is root with block-device and reboot rights (4.4 with systemd 252), the
# realm hub is sandboxed tightly (1.9); the limits leave room for scoring changes between
# systemd versions but catch a dropped hardening block.
for pair in poshub-supervisor.service:6.0 poshub@.service:3.0; do
  unit=${pair%%:*} max=${pair##*:}
  score=$(cd "$units" && systemd-analyze security --offline=yes --no-pager "$unit" 2>/dev/null |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  if [[ -z "$score" ]] || ! awk -v s="$score" -v m="$max" 'BEGIN{exit !(s <= m)}'; then
    echo "FAIL: $unit exposure ${score:-?} above $max (systemd-analyze security)"; exit 1
  fi
  echo "ok: $unit exposure $score (limit $max)"
done

# --- 3. sysusers -----------------------------------------------------------------------
out=$(systemd-sysusers --root="$root" --dry-run "$PWD/$units/sysusers.d/poshub.conf" 2>&1) || {
  echo "$out"; echo "FAIL: systemd-sysusers"; exit 1; }
echo "ok: sysusers.d parses"

# --- 4. scripts ------------------------------------------------------------------------
shellcheck -s sh "$units"/libexec/* "$units"/tests/*.sh
echo "ok: shellcheck"
sh "$units/tests/provision-test.sh"
sh "$units/tests/tailscale-test.sh" | tail -1
# Again with nothing but busybox (sh, sed, grep, tr, ...), as on a Yocto image whose base
# utilities are busybox.
bb="$root/busybox-bin"
mkdir -p "$bb"
/bin/busybox --install -s "$bb"
PATH="$bb" /bin/busybox sh "$units/tests/provision-test.sh" | tail -1 | sed 's/$/ (busybox)/'
PATH="$bb" /bin/busybox sh "$units/tests/tailscale-test.sh" | tail -1 | sed 's/$/ (busybox)/'
# The partition-table part of first-boot growth, on an image file.
sh "$units/tests/growdata-test.sh"
