#!/usr/bin/env bash
# Checks of yocto-layer/meta-poshub (issue 8). Runs offline apart from the Debian/PyPI
# installs; idempotent (tools go into a cached venv). The real bitbake parse needs the
# upstream layers and is documented in yocto-layer/meta-poshub/README.md instead.
# 1. scripts/yocto-crates-inc --check: the crates .inc matches Cargo.lock, every
#    dependency comes from crates.io, the lockfile format is one wrynose's cargo reads.
# 2. scripts/yocto-wks-check: the .wks parses the way wic parses it, and the A/B layout
#    agrees with autoboot.txt, the per-slot cmdline.txt, the image recipe and the units.
# 2b. poshub-system installs (and enables) every file of systemd/, which issue 6 shares.
#    It also asserts that poshub-image.bb replaces WKS_FILE_DEPENDS, whose oe-core default
#    builds grub-efi and systemd-boot (aarch64) and syslinux-native for nothing on a Pi.
# 3. Both scripts are shown to fail on broken input (a stale and a non-crates.io
#    Cargo.lock; a swapped autoboot.txt, unequal slots, a misspelt wic option, the default
#    or bootloader-carrying WKS_FILE_DEPENDS), so a pass means something.
# 4. oelint-adv (pinned) with the layer's .oelint.cfg (--release wrynose): no finding of
#    any severity.
# 5. kas dump of each kas file. CI cannot reach the git servers, so the dump runs in a
#    scratch copy with an overlay that points the three upstream repos at empty local
#    directories (url: null); it still validates every file against kas's schema,
#    resolves the includes and merges them. The result must name the machine, distro
#    and target, and keep every upstream repo pinned to a full commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
layer=yocto-layer/meta-poshub
export DEBIAN_FRONTEND=noninteractive
OELINT_VERSION=9.11.2
KAS_VERSION=5.5

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v git >/dev/null || need+=(git)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import tomllib' || { echo "FAIL: python3 >= 3.11 needed (tomllib)"; exit 1; }
venv=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/poshub-ci/yocto-venv
if ! "$venv/bin/oelint-adv" --version 2>/dev/null | grep -qx "oelint-adv $OELINT_VERSION" ||
   ! "$venv/bin/kas" --version 2>/dev/null | grep -q "^kas $KAS_VERSION "; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "oelint-adv==$OELINT_VERSION" "kas==$KAS_VERSION"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. crates .inc ----------------------------------------------------------------------
python3 scripts/yocto-crates-inc --check

# --- 2. .wks -------------------------------------------------------------------------------
python3 scripts/yocto-wks-check

# --- 2b. poshub-system installs all of systemd/ --------------------------------------------
# systemd/ is shared with the Debian image (issue 6): a unit or helper added there must
# also reach the Yocto image, and every non-template unit must be enabled.
python3 - "$layer"/recipes-poshub/poshub-system/poshub-system_*.bb <<'PY'
import pathlib, re, sys
recipe = pathlib.Path(sys.argv[1]).read_text()
src = set(re.findall(r"file://(\S+)", re.search(r'^SRC_URI = "(.*?)"', recipe, re.S | re.M).group(1)))
enabled = set(re.search(r'SYSTEMD_SERVICE:\$\{PN\} = "(.*?)"', recipe, re.S).group(1).replace("\\", " ").split())
root = pathlib.Path("systemd")
files = {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and f.parts[1] != "tests"}
bad = [f"systemd/{f} is not in SRC_URI of {pathlib.Path(sys.argv[1]).name}" for f in sorted(files - src)]
bad += [f"SRC_URI names {f}, missing in systemd/" for f in sorted(src - files)]
units = {f for f in files if re.fullmatch(r"[^/]+\.(service|mount|timer|socket)", f) and "@." not in f}
bad += [f"{u} is not in SYSTEMD_SERVICE (not enabled)" for u in sorted(units - enabled)]
bad += [f"systemd/{f} is not installed by do_install" for f in sorted(files) if f.rsplit("/", 1)[-1] not in recipe.split("do_install", 1)[1]]
if bad:
    sys.exit("FAIL: " + "\n  ".join(bad))
print(f"ok: poshub-system installs all {len(files)} files of systemd/, enables {len(units)} units")
PY

# --- 3. the two scripts catch breakage (on scratch copies) --------------------------------
expect_fail() { # expect_fail WHAT PATTERN COMMAND...: COMMAND must fail, saying PATTERN
  local what=$1 pattern=$2; shift 2
  if out=$("$@" 2>&1); then echo "FAIL: $what was not detected"; exit 1; fi
  grep -q -- "$pattern" <<<"$out" || { echo "$out"; echo "FAIL: $what: wrong message"; exit 1; }
  echo "ok: detects $what"
}
scratch() { # a scratch copy of what the scripts read
  rm -rf "$tmp/s" && mkdir -p "$tmp/s"
  tar -cf - Cargo.toml Cargo.lock hub/Cargo.toml supervisor/Cargo.toml envfile/Cargo.toml scripts systemd "$layer" |
    tar -xf - -C "$tmp/s"
}
scratch
sed -i '0,/^checksum = "[0-9a-f]/s/^checksum = "\([0-9a-f]\)/checksum = "0\1/' "$tmp/s/Cargo.lock"
expect_fail "a stale crates .inc" "is stale" python3 "$tmp/s/scripts/yocto-crates-inc" --check
scratch
python3 - "$tmp/s/Cargo.lock" <<'PY'
import sys, re
p = sys.argv[1]; s = open(p).read()
s = re.sub(r'source = "registry\+[^"]*"\nchecksum = "[0-9a-f]+"',
           'source = "git+https://example.invalid/x.git#0123456789abcdef"', s, count=1)
open(p, "w").write(s)
PY
expect_fail "a git dependency" "not from crates.io" python3 "$tmp/s/scripts/yocto-crates-inc"
scratch
sed -i 's/^boot_partition=2$/boot_partition=X/; s/^boot_partition=3$/boot_partition=2/; s/^boot_partition=X$/boot_partition=3/' \
  "$tmp/s/$layer/recipes-bsp/poshub-boot/files/autoboot.txt"
expect_fail "a swapped autoboot.txt" "do not match bootA/bootB" python3 "$tmp/s/scripts/yocto-wks-check"
scratch
sed -i 's/--part-name rootB --align 4096 --fixed-size 1536M/--part-name rootB --align 4096 --fixed-size 1024M/' \
  "$tmp/s/$layer/files/wic/poshub-rpi-ab.wks"
expect_fail "slots of different sizes" "same --fixed-size" python3 "$tmp/s/scripts/yocto-wks-check"
scratch
sed -i 's/--fstype=ext4 --label data/--fstype=ext4 --lable data/' "$tmp/s/$layer/files/wic/poshub-rpi-ab.wks"
expect_fail "an unknown wic option" "unknown option --lable" python3 "$tmp/s/scripts/yocto-wks-check"
scratch
sed -i '/^WKS_FILE_DEPENDS = /d' "$tmp/s/$layer/recipes-core/images/poshub-image.bb"
expect_fail "oe-core's default WKS_FILE_DEPENDS (grub-efi, systemd-boot)" "must set WKS_FILE_DEPENDS" \
  python3 "$tmp/s/scripts/yocto-wks-check"
scratch
# shellcheck disable=SC2016 # a literal ${...} for bitbake
sed -i 's/^WKS_FILE_DEPENDS = "\(.*\)"/WKS_FILE_DEPENDS = "\1 ${WKS_FILE_DEPENDS_BOOTLOADERS}"/' \
  "$tmp/s/$layer/recipes-core/images/poshub-image.bb"
expect_fail "WKS_FILE_DEPENDS with the bootloaders" "still names WKS_FILE_DEPENDS_BOOTLOADERS" \
  python3 "$tmp/s/scripts/yocto-wks-check"

# --- 4. oelint-adv -------------------------------------------------------------------------
(
  cd "$layer"   # .oelint.cfg is read from the working directory
  mapfile -t files < <(find . -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' -o -name '*.conf' | sort)
  rc=0
  out=$("$venv/bin/oelint-adv" --quiet --relpaths "${files[@]}" 2>&1) || rc=$?
  if ((rc != 0)) || [[ -n "$out" ]]; then
    echo "$out"; echo "FAIL: oelint-adv findings (rc=$rc)"; exit 1
  fi
  grep -qx 'release = wrynose' .oelint.cfg || { echo "FAIL: .oelint.cfg must set release = wrynose"; exit 1; }
  echo "ok: oelint-adv $OELINT_VERSION --release wrynose clean on ${#files[@]} files"
)

# --- 5. kas dump ---------------------------------------------------------------------------
mkdir -p "$tmp/kas/repo" "$tmp/kas/work"
cp -r --parents "$layer" "$tmp/kas/repo/"
git -C "$tmp/kas/repo" init -q
overlay="$tmp/kas/repo/ci-offline.yml"
printf 'header:\n  version: 14\nrepos:\n' >"$overlay"
for r in bitbake openembedded-core meta-raspberrypi; do
  mkdir -p "$tmp/kas/work/$r"
  printf '  %s:\n    url: null\n    path: %s\n' "$r" "$tmp/kas/work/$r" >>"$overlay"
done
for kasfile in "$layer"/kas/poshub-rpi*.yml; do
  machine=$(sed -n 's/^machine: //p' "$kasfile")
  (cd "$tmp/kas/repo" && KAS_WORK_DIR="$tmp/kas/work" "$venv/bin/kas" dump --format json \
    "$kasfile:ci-offline.yml" >"$tmp/kas/dump.json" 2>"$tmp/kas/log") ||
    { cat "$tmp/kas/log"; echo "FAIL: kas dump $kasfile"; exit 1; }
  python3 - "$kasfile" "$machine" "$repo/$layer/kas/poshub-common.yml" "$tmp/kas/dump.json" <<'PY'
import json, re, sys
kasfile, machine, common, dump = sys.argv[1:]
d = json.load(open(dump))
want = {"machine": machine, "distro": "poshub-os", "target": "poshub-image"}
bad = [f"{k}={d.get(k)!r}, want {v!r}" for k, v in want.items() if d.get(k) != v]
if machine not in ("raspberrypi4-64", "raspberrypi5"):
    bad.append(f"unexpected machine {machine}")
for name in ("bitbake", "openembedded-core", "meta-raspberrypi"):
    commit = d["repos"].get(name, {}).get("commit", "")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        bad.append(f"repo {name} is not pinned to a full commit ({commit!r})")
if "yocto-layer/meta-poshub" not in d["repos"].get("poshub", {}).get("layers", {}):
    bad.append("the poshub repo does not add yocto-layer/meta-poshub")
urls = re.findall(r"^\s+url: (\S+)", open(common).read(), re.M)
if len(urls) != 3:
    bad.append(f"poshub-common.yml should name 3 upstream urls, has {urls}")
if bad:
    sys.exit(f"FAIL: kas dump {kasfile}: " + "; ".join(bad))
print(f"ok: kas dump {kasfile}: machine {machine}, distro poshub-os, 3 pinned repos")
PY
done
echo "yocto checks passed"
