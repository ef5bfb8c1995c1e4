#!/bin/sh
# Functional test of libexec/poshub-provision in a temp directory (no root needed):
# import, merge, secret scrubbing, realm files, supervisor settings, re-import.
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
printf 'TENANT_ID=acme\r\nSTORE_ID=store-042\r\n# comment\r\nODOO_PASSWORD=hunter2\r\nexport HUB_ADMIN_TOKEN=tok en\r\nSUPERVISOR_HEALTH_WINDOW_S=300\r\nnot a setting\r\n$(touch %s/pwned)=1\r\nCLUSTER_PUBLIC_KEY_BASE64=cHVi\r\nODOO_API_KEY=k3y\r\n' "$t" >"$t/fat/poshub.env"
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

[ "$fails" -eq 0 ] || { echo "$fails provisioning test(s) failed"; exit 1; }
echo "provisioning tests passed"
