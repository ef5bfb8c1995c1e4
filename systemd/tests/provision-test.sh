#!/bin/sh
# Functional test of libexec/poshub-provision in a temp directory (root only for section 5):
# import, merge, secret scrubbing, realm files, supervisor settings, re-import, Wi-Fi, a
# read-only and a full data partition (tmpfs in a mount namespace), and --check.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prov="$here/../libexec/poshub-provision"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
export POSHUB_FAT_DIR="$t/fat" POSHUB_DATA_ROOT="$t/data" POSHUB_RUN_DIR="$t/run" \
    POSHUB_SUPERVISOR_DEFAULTS="$here/../supervisor.env"
mkdir -p "$t/fat" "$t/data"
fails=0
check() { # check DESCRIPTION COMMAND...
    desc=$1; shift
    if "$@"; then echo "ok   - $desc"; else echo "FAIL - $desc"; fails=$((fails + 1)); fi
}
has() { grep -qxF -- "$2" "$1"; }
hasnt() { ! grep -qF -- "$2" "$1"; }

# 1. First boot: a poshub.env written on Windows (CRLF), with secrets, a supervisor
#    override, a comment, a malformed line and a line that must not be executed.
# shellcheck disable=SC2016 # the $(...) must reach the file unexpanded
printf 'TENANT_ID=acme\r\nSTORE_ID=store-042\r\n# comment\r\nODOO_PASSWORD=hunter2\r\nexport HUB_ADMIN_TOKEN=tok en\r\nSUPERVISOR_HEALTH_WINDOW_S=300\r\nnot a setting\r\n$(touch %s/pwned)=1\r\nCLUSTER_PUBLIC_KEY_BASE64=cHVi\r\nODOO_API_KEY=k3y\r\nBACKUP_S3_URL=s3://bk/x\r\nBACKUP_S3_ACCESS_KEY_ID=AKIAB4CK\r\nBACKUP_S3_SECRET_ACCESS_KEY=s3cr3t\r\nBACKUP_KEY=0fffe\r\n' "$t" >"$t/fat/poshub.env"
printf 'TENANT_ID=other\nHUB_PORT=8775\n' >"$t/fat/poshub-bar.env"
printf 'X=1\n' >"$t/fat/poshub-Bad_Name.env"
sh "$prov" 2>"$t/log"
d="$t/data/poshub/poshub.env"
check "hub settings imported" has "$d" "STORE_ID=store-042"
check "secret imported to data" has "$d" "ODOO_PASSWORD=hunter2"
check "export prefix dropped" has "$d" "HUB_ADMIN_TOKEN=tok en"
check "no CR left" hasnt "$d" "$(printf '\r')"
check "supervisor keys kept out of poshub.env" hasnt "$d" "SUPERVISOR_"
check "malformed line skipped" hasnt "$d" "not a setting"
check "nothing executed from FAT" test ! -e "$t/pwned"
check "FAT original removed" test ! -e "$t/fat/poshub.env"
check "scrubbed copy has no password" hasnt "$t/fat/poshub.env.imported" "hunter2"
check "scrubbed copy has no token" hasnt "$t/fat/poshub.env.imported" "tok en"
check "scrubbed copy keeps public key" has "$t/fat/poshub.env.imported" "CLUSTER_PUBLIC_KEY_BASE64=cHVi"
check "scrubbed copy has no API key" hasnt "$t/fat/poshub.env.imported" "k3y"
check "API key imported" has "$d" "ODOO_API_KEY=k3y"
for v in AKIAB4CK s3cr3t 0fffe; do
    check "offsite secret $v imported" grep -q "=$v\$" "$d"
    check "offsite secret $v scrubbed from FAT" hasnt "$t/fat/poshub.env.imported" "$v"
done
check "offsite URL kept on FAT" has "$t/fat/poshub.env.imported" "BACKUP_S3_URL=s3://bk/x"
check "realm imported" has "$t/data/poshub-bar/poshub.env" "HUB_PORT=8775"
check "bad realm name skipped" test -e "$t/fat/poshub-Bad_Name.env"
check "bad realm name logged" grep -q "Bad_Name" "$t/log"
s="$t/run/supervisor.env"
check "supervisor defaults present" has "$s" "SUPERVISOR_DATA_DIR=/data/poshub"
check "supervisor override applied" has "$s" "SUPERVISOR_HEALTH_WINDOW_S=300"
check "supervisor default replaced, not duplicated" test "$(grep -c '^SUPERVISOR_HEALTH_WINDOW_S=' "$s")" = 1

# 2. A later boot without poshub.env: nothing changes, supervisor settings rebuilt.
cp "$d" "$t/before"
rm -f "$s"
sh "$prov" 2>/dev/null
check "idempotent without new file" cmp -s "$d" "$t/before"
check "supervisor settings rebuilt" has "$s" "SUPERVISOR_HEALTH_WINDOW_S=300"

# 3. Re-provision: the tech copies the scrubbed file back and changes one key.
sed 's/^STORE_ID=.*/STORE_ID=store-043/' "$t/fat/poshub.env.imported" >"$t/fat/poshub.env"
sh "$prov" 2>/dev/null
check "changed key updated" has "$d" "STORE_ID=store-043"
check "secret survives re-import of scrubbed copy" has "$d" "ODOO_PASSWORD=hunter2"
check "key not duplicated" test "$(grep -c '^STORE_ID=' "$d")" = 1

# 4. Wi-Fi: settings kept apart from the hub's, the passphrase scrubbed from FAT, a config for
#    wpa_supplicant with the SSID in hex; a bad country code means no config; SSID= turns it off.
printf 'WIFI_SSID=Café "Bar"\nWIFI_PSK=correct horse\nWIFI_COUNTRY=DE\n' >"$t/fat/poshub.env"
sh "$prov" 2>"$t/log"
w="$t/run/wpa_supplicant-wlan0.conf"
check "wifi settings kept out of the hub's settings" hasnt "$d" "WIFI_"
check "wifi settings imported" has "$t/data/poshub/wifi.env" "WIFI_COUNTRY=DE"
check "wifi settings private" test "$(stat -c %a "$t/data/poshub/wifi.env")" = 600
check "passphrase scrubbed from FAT" hasnt "$t/fat/poshub.env.imported" "correct horse"
check "wpa_supplicant config written" test -f "$w"
check "wpa_supplicant config private" test "$(stat -c %a "$w")" = 600
check "SSID in hex" has "$w" "    ssid=$(printf 'Café "Bar"' | od -An -v -tx1 | tr -d ' \n')"
check "country set" has "$w" "country=DE"
check "key set" grep -Eq '^    psk=("correct horse"|[0-9a-f]{64})$' "$w"
printf 'WIFI_COUNTRY=Germany\n' >"$t/fat/poshub.env"
sh "$prov" 2>"$t/log"
check "bad country: no config" test ! -e "$w"
check "bad country: logged" grep -q "WIFI_COUNTRY must be" "$t/log"
printf 'WIFI_COUNTRY=DE\nWIFI_PSK=short\n' >"$t/fat/poshub.env"
sh "$prov" 2>"$t/log"
check "short passphrase: no config" test ! -e "$w"
printf 'WIFI_PSK=\n' >"$t/fat/poshub.env"
sh "$prov" 2>/dev/null
check "open network" has "$w" "    key_mgmt=NONE"
printf 'WIFI_SSID=\n' >"$t/fat/poshub.env"
sh "$prov" 2>/dev/null
check "empty SSID turns Wi-Fi off" test ! -e "$w"

# 5. The data partition cannot be written (mounted read-only, or full): the FAT file stays as it
#    was (secrets included, nothing renamed), the data partition keeps its old settings, and the
#    failure is logged and recorded in $RUN_DIR/provision.status for `poshub-supervisor status`.
#    Each case runs in its own mount namespace on a small tmpfs holding a copy of the data.
st="$t/run/provision.status"
check "status file says ok after a good import" grep -q '^imported ' "$st"
# in_small_data MODE: runs the provisioning with POSHUB_DATA_ROOT on a tmpfs that is read-only
# (MODE=ro) or full (MODE=full); copies the data it ends up with to $t/ns-data.
in_small_data() {
    rm -rf "$t/small" "$t/ns-data" && mkdir "$t/small"
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare -m sh -c '
        mode=$1 small=$2 t=$3 prov=$4
        mount -t tmpfs -o size=256k tmpfs "$small"
        cp -R "$t/data/." "$small/"
        if [ "$mode" = ro ]; then
            mount -o remount,ro "$small"
        else
            dd if=/dev/zero of="$small/fill" bs=1024 2>/dev/null || true
        fi
        POSHUB_DATA_ROOT=$small sh "$prov" 2>"$t/log" || echo "exit $?" >>"$t/log"
        cp -R "$small/." "$t/ns-data/"' sh "$1" "$t/small" "$t" "$prov"
}
if unshare -m true 2>/dev/null; then
    for mode in ro full; do
        printf 'STORE_ID=store-099\nODOO_PASSWORD=new-secret\n' >"$t/fat/poshub.env"
        cp "$t/fat/poshub.env" "$t/orig"
        cp "$t/fat/poshub.env.imported" "$t/imported-before"
        mkdir -p "$t/ns-data"
        in_small_data "$mode"
        check "$mode data: FAT original kept as it was" cmp -s "$t/fat/poshub.env" "$t/orig"
        check "$mode data: earlier scrubbed copy untouched" cmp -s "$t/fat/poshub.env.imported" "$t/imported-before"
        check "$mode data: old settings still on data" has "$t/ns-data/poshub/poshub.env" "STORE_ID=store-043"
        check "$mode data: failure logged" grep -q "poshub.env: not imported" "$t/log"
        check "$mode data: not logged as imported" hasnt "$t/log" "imported $t/fat/poshub.env"
        check "$mode data: failure in the status file" grep -q "^failed $t/fat/poshub.env: " "$st"
        check "$mode data: supervisor settings still built" has "$s" "SUPERVISOR_HEALTH_WINDOW_S=300"
    done
    # The next boot with a writable data partition imports what was left on FAT.
    sh "$prov" 2>"$t/log"
    check "after the fault: imported" has "$d" "STORE_ID=store-099"
    check "after the fault: secret imported" has "$d" "ODOO_PASSWORD=new-secret"
    check "after the fault: FAT scrubbed" hasnt "$t/fat/poshub.env.imported" "new-secret"
    check "after the fault: status ok again" grep -q "^imported $t/fat/poshub.env into " "$st"
else
    echo "skip - read-only/full data partition (no mount namespace here: unshare -m failed)"
fi

# 6. --check (what scripts/provision runs before writing a card): the same rules, strictly.
# checked FILE NAME EXPECTED_EXIT TEXT: --check exits EXPECTED_EXIT and prints TEXT.
checked() {
    out=$(sh "$prov" --check "$1" "$2") && rc=0 || rc=$?
    [ "$rc" = "$3" ] && printf '%s\n' "$out" | grep -qF -- "$4"
}
printf 'WIFI_SSID=Shop\r\nWIFI_PSK=correct horse\r\nWIFI_COUNTRY=DE\r\nSTORE_ID=s1\r\n' >"$t/good.env"
check "--check: a good file passes" checked "$t/good.env" poshub.env 0 ""
printf 'WIFI_SSID=Shop\nWIFI_PSK=short\nWIFI_COUNTRY=DE\n' >"$t/c.env"
check "--check: 5-character passphrase refused" checked "$t/c.env" poshub.env 1 "WIFI_PSK must be 8-63"
printf 'WIFI_SSID=Shop\nWIFI_PSK=correct horse\n' >"$t/c.env"
check "--check: SSID without country refused" checked "$t/c.env" poshub.env 1 "WIFI_COUNTRY must be"
printf 'WIFI_SSID=Shop\nWIFI_COUNTRY=de\nWIFI_PASS=x\n' >"$t/c.env"
check "--check: lower-case country refused" checked "$t/c.env" poshub.env 1 "(got 'de')"
check "--check: unknown WIFI_ key refused" checked "$t/c.env" poshub.env 1 "WIFI_PASS is not a Wi-Fi setting"
printf 'WIFI_SSID=%s\nWIFI_COUNTRY=DE\n' 123456789012345678901234567890123 >"$t/c.env"
check "--check: 33-byte SSID refused" checked "$t/c.env" poshub.env 1 "longer than 32 bytes"
printf 'STORE_ID=x\nstore_id=y\n' >"$t/c.env"
check "--check: a line the device would skip" checked "$t/c.env" poshub.env 1 "c.env:2: not KEY=VALUE"
check "--check: a realm name the device would refuse" checked "$t/good.env" poshub-Bar.env 1 "realm name 'Bar'"
check "--check: a 33-character realm name" checked "$t/good.env" "poshub-$(printf '%033d' 0).env" 1 "realm name"

[ "$fails" -eq 0 ] || { echo "$fails provisioning test(s) failed"; exit 1; }
echo "provisioning tests passed"
