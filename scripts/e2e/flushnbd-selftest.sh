#!/usr/bin/env bash
# Proves that scripts/e2e/flushnbd.py loses what was not flushed, and only that, with QEMU's own
# NBD client (qemu-io, the block layer qemu-system uses) against a 16 MiB backing file:
#   1. a write never flushed is gone after the server is killed (SIGKILL) and reopened;
#   2. a write followed by a flush is there;   3. a FUA write (qemu-io write -f) is there;
#   4. before the cut the client reads its own unflushed writes;   5. a flushed discard reads zeros;
#   6. control: the same check on a server that writes through (--write-through, a plain disk
#      file, as a killed QEMU on a host file) reports the write as kept: the loss check can fail;
#   7. --cut-keep 0.5 (SIGUSR1): half of 64 unflushed pages are kept, half dropped;
#   8. only the client is killed (SIGKILL, as QEMU at a power cut): the server drops the
#      unflushed write by itself and exits;
#   9. control: on a server that ignores flushes (--ignore-flushes, a card that lies) the
#      flushed and the FUA write are lost: checks 2 and 3 can fail;
#  10. an armed cut (SIGUSR2) comes by itself after N (1-16) plain writes, with those N pages
#      held: a FUA write before them is kept, the N writes are lost.
# Used by `scripts/qemu-powercut --selftest` and .ci/checks/powercut-selftest.sh. Needs qemu-io
# (qemu-utils) and python3. Takes a few seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
dir=$(mktemp -d /tmp/flushnbd-selftest.XXXXXX)
srv=
client=
cleanup() {
  for p in $client $srv; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "flushnbd-selftest: FAIL: $*" >&2; for f in "$dir"/*.log; do sed "s#^#  $(basename "$f") | #" "$f" >&2; done; exit 1; }
ok() { echo "ok: $*"; }
img=$dir/card.img
sock=$dir/nbd.sock
url="nbd+unix:///?socket=$sock"

start_server() {   # start_server [FLAGS...]: a fresh server on $img (the card powered on)
  rm -f "$sock"
  "$py" "$here/flushnbd.py" "$img" "$sock" "$@" >>"$dir/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 100); do [[ -S $sock ]] && return; sleep 0.05; done
  fail "server did not listen on $sock"
}
cut() {   # cut [SIGNAL|client]: the power cut: kill the server (SIGKILL) and the client
  if [[ ${1:-} == client ]]; then   # only the client (QEMU) is killed: the server must notice
    kill -9 "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true; client=
    for _ in $(seq 100); do kill -0 "$srv" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$srv" 2>/dev/null && fail "the server did not exit when its client vanished"
  fi
  kill "-${1/client/KILL}" "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  srv=
  [[ -z $client ]] || { kill -9 "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true; client=; }
}
# write_then_cut QEMU_IO_COMMANDS... [-- SERVER_FLAGS]: runs the commands in a client that
# stays connected, waits until qemu-io reports them done, then cuts the power.
write_then_cut() {
  local cmds=() flags=()
  while (($#)) && [[ $1 != -- ]]; do cmds+=(-c "$1"); shift; done
  (($#)) && shift && flags=("$@")
  start_server "${flags[@]}"
  : >"$dir/client.log"
  # The last read is the marker: qemu-io runs its commands in order, so once it is printed
  # every write before it has been answered by the server.
  # -t writeback: qemu-io's default is writethrough, which makes every write FUA (durable).
  stdbuf -oL qemu-io -f raw -t writeback "${cmds[@]}" -c "read 15M 512" -c 'sleep 60000' "$url" >>"$dir/client.log" 2>&1 &
  client=$!
  for _ in $(seq 200); do
    grep -q "^read 512/512 bytes at offset 15728640" "$dir/client.log" && break
    kill -0 "$client" 2>/dev/null || fail "qemu-io exited early"
    sleep 0.05
  done
  grep -q "^read 512/512 bytes at offset 15728640" "$dir/client.log" || fail "qemu-io did not finish its commands"
  cut "${CUT_SIGNAL:-KILL}"
}
# reads_back PATTERN OFFSET LEN: after a fresh power-on, is the range PATTERN? (exit status)
reads_back() {
  start_server
  qemu-io -f raw -c "read -P $1 $2 $3" "$url" >"$dir/read.log" 2>&1 || true
  wait "$srv" 2>/dev/null || true
  srv=
  grep -q "^read [0-9]* bytes\|^read \([0-9]*\)/\1 bytes" "$dir/read.log" && ! grep -q "Pattern verification failed" "$dir/read.log"
}
fresh() { rm -f "$img"; truncate -s 16M "$img"; }

fresh
write_then_cut 'write -P 0xab 0 64k'
reads_back 0xab 0 64k && fail "1. a write that was never flushed survived the cut"
reads_back 0 0 64k || fail "1. the range of the unflushed write does not read as before it"
ok "1. unflushed write (64 KiB) lost at the cut: the range reads zeros again"

fresh
write_then_cut 'write -P 0xab 0 64k' 'flush' 'write -P 0xcd 64k 64k'
reads_back 0xab 0 64k || fail "2. a flushed write was lost at the cut"
reads_back 0 64k 64k || fail "2. the write after the flush survived the cut"
ok "2. write + flush kept; the write after the flush lost"

fresh
write_then_cut 'write -P 0xab 0 64k' 'write -f -P 0xee 1M 4k'
reads_back 0xee 1M 4k || fail "3. a FUA write was lost at the cut"
reads_back 0 0 64k || fail "3. the FUA write made an earlier unflushed write durable"
ok "3. FUA write kept without a flush (an earlier plain write still lost)"

fresh
write_then_cut 'write -P 0xab 4k 8k' 'read -P 0xab 4k 8k' 'write -P 0x11 6k 1k' 'read -P 0x11 6k 1k'
grep -q "Pattern verification failed" "$dir/client.log" && fail "4. the client did not read its own unflushed writes"
ok "4. before the cut the client reads its unflushed (also unaligned) writes"

fresh
write_then_cut 'write -P 0xab 0 64k' 'flush' 'discard 0 64k' 'flush'
reads_back 0 0 64k || fail "5. a flushed discard does not read zeros"
ok "5. discard + flush reads zeros"

fresh
write_then_cut 'write -P 0xab 0 64k' -- --write-through
reads_back 0xab 0 64k || fail "6. control: a write-through server lost a write"
ok "6. control: with --write-through the unflushed write is still there, so check 1 would fail"

fresh
CUT_SIGNAL=USR1 write_then_cut 'write -P 0xab 0 256k' -- --cut-keep 0.5 --seed 7
kept=$("$py" -c '
import sys
page = b"\xab" * 4096
with open(sys.argv[1], "rb") as f:
    print(sum(f.read(4096) == page for _ in range(64)))' "$img")
[[ $kept == 32 ]] || fail "7. --cut-keep 0.5 kept $kept of 64 unflushed pages, not 32"
grep -q "64 unflushed pages (262144 bytes) held, 32 kept, 32 dropped" "$dir/server.log" \
  || fail "7. the server did not report the cut"
ok "7. --cut-keep 0.5: 32 of 64 unflushed pages kept, 32 dropped"

fresh
CUT_SIGNAL=client write_then_cut 'write -P 0xab 0 64k' 'flush' 'write -P 0xcd 64k 64k'
reads_back 0xab 0 64k || fail "8. a flushed write was lost when the client was killed"
reads_back 0 64k 64k || fail "8. an unflushed write survived the client's SIGKILL"
grep -q "power cut (the client vanished without NBD_CMD_DISC): 16 unflushed pages" "$dir/server.log" \
  || fail "8. the server did not report the 16 pages it dropped"
ok "8. client killed alone: the server dropped its 16 unflushed pages and exited"

fresh
write_then_cut 'write -P 0xab 0 64k' 'flush' 'write -f -P 0xee 1M 4k' -- --ignore-flushes
reads_back 0 0 64k || fail "9. control: a server that ignores flushes kept a flushed write"
reads_back 0 1M 4k || fail "9. control: a server that ignores flushes kept a FUA write"
ok "9. control: with --ignore-flushes the flushed and the FUA write are lost, so checks 2 and 3 would fail"

fresh
start_server --seed 5
kill -USR2 "$srv"
ios=(-c 'write -f -P 0xee 1M 4k')
for i in $(seq 0 19); do ios+=(-c "write -P 0xcd $((i * 4))k 4k"); done
timeout 30 qemu-io -f raw -t writeback "${ios[@]}" "$url" >"$dir/client.log" 2>&1 || true
wait "$srv" 2>/dev/null || true
srv=
held=$(sed -n 's/.*power cut (armed by SIGUSR2, \([0-9]*\) plain writes later): \1 unflushed pages.*/\1/p' "$dir/server.log")
if [[ -z $held ]] || ((held < 1 || held > 16)); then
  fail "10. the armed cut did not come after 1-16 writes holding as many pages"
fi
reads_back 0xee 1M 4k || fail "10. the FUA write before the armed cut was lost"
reads_back 0 0 80k || fail "10. a plain write before the armed cut survived it"
ok "10. armed cut: after $held plain writes, holding $held unflushed pages; they are lost, the FUA write before is kept"
echo "flushnbd-selftest: all 10 checks passed"
