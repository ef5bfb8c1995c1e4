#!/bin/sh
# Test of libexec/poshub-growdata's partition-table steps on a disk image file (no root,
# no loop device): a card image with the data partition last is "written to a bigger
# card" (the file grows), then the data partition must reach the end, the others stay,
# and a second run changes nothing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
img=$t/card.img
truncate -s 64M "$img"
printf 'label: gpt\nsize=4M, name=config\nsize=4M, name=bootA\nsize=4M, name=bootB\nsize=8M, name=rootA\nsize=8M, name=rootB\nsize=8M, name=data\n' |
    sfdisk -q "$img"
sfdisk -d "$img" | grep '^/' | head -5 >"$t/before"
truncate -s 128M "$img"
run() { POSHUB_GROW_DISK=$img POSHUB_GROW_PARTNUM=6 POSHUB_GROW_TABLE_ONLY=1 \
    sh "$here/../libexec/poshub-growdata" unused "$t/stamp" >"$t/log" 2>&1 || { cat "$t/log"; exit 1; }; }
run
sfdisk -d "$img" | grep '^/' | head -5 >"$t/after"
cmp -s "$t/before" "$t/after" || { echo "FAIL: partitions 1-5 changed"; diff "$t/before" "$t/after"; exit 1; }
# Last usable sector of a 128 MiB GPT disk: 262144 - 34 (backup table and header).
end=$(sfdisk -d "$img" | sed -n 's/.*6 : start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2/p' | awk '{print $1 + $2 - 1}')
[ "$end" = 262110 ] || { echo "FAIL: data partition ends at sector $end, want 262110"; exit 1; }
echo "ok   - data partition grown to the end of a bigger card, others unchanged"
sfdisk -d "$img" >"$t/once"
run
sfdisk -d "$img" | cmp -s - "$t/once" || { echo "FAIL: second run changed the table"; exit 1; }
echo "ok   - second run changes nothing"
echo "growdata tests passed"
