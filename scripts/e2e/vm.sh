# shellcheck shell=bash disable=SC2034,SC2154  # sourced: `me` and `repo` come from the script; the globals it sets are used there
# Shared by scripts/qemu-e2e and scripts/qemu-powercut (sourced, not run): installing the
# tools, provisioning a copy of the SD card image, free loopback ports, starting and killing
# the VM (qemu-system-aarch64 -M virt, TCG, Debian's u-boot-qemu running the image's own
# boot.scr), and bounded waits. The sourcing script sets `me` (its name, for messages) first;
# these functions set the globals the scripts use (disk, console, qemu_pid, ws, http, upd...).

die() {
  echo "$me: FAIL: $*" >&2
  [[ -f ${console:-/nonexistent} ]] && tail -n 40 "$console" | sed 's/^/  console | /' >&2
  exit 1
}
say() { printf '\n=== %s [%s] %s\n' "$me" "$(date -u +%T)" "$*"; }
ok() { echo "ok: $*"; }

# vm_install PACKAGE...: installs those that are missing (Debian/Ubuntu, as root).
vm_install() {
  local need=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}
# vm_tools [EXTRA_PACKAGE...]: what the VM runs need.
vm_tools() { vm_install qemu-system-arm u-boot-qemu python3-websockets curl openssl mtools fdisk jq "$@"; }
python=/usr/bin/python3   # Debian's, which has python3-websockets (not a pyenv/venv one)
uboot=/usr/lib/u-boot/qemu_arm64/u-boot.bin

# vm_provision IMAGE RUN_DIR: a provisioned copy of IMAGE in RUN_DIR/disk.img (sets `disk`,
# `admin`, `api`), grown by 1 GiB (first-boot growth of the data partition); RUN_DIR/poshub.env
# holds the settings (realm, admin token, the public key that verifies the terminals' cluster
# tokens from `vm_token`, update API token, a 30 s health window).
vm_provision() {
  local image=$1 run=$2
  rm -rf "$run"
  mkdir -p "$run/keys"
  export TENANT_ID=e2e STORE_ID=store-e2e
  # The "cloud" side: a key pair whose public half the hub trusts for terminal tokens.
  openssl genpkey -algorithm ed25519 -out "$run/keys/hub-signing-key.pem" 2>/dev/null
  host_poshub=$repo/target/debug/poshub
  [[ -x $host_poshub ]] || cargo build -q -p poshub --bin poshub
  keys_db=$run/keys/hub.redb
  admin=$(openssl rand -hex 16)
  api=$(openssl rand -hex 16)
  cat >"$run/poshub.env" <<EOF
TENANT_ID=$TENANT_ID
STORE_ID=$STORE_ID
HUB_ADMIN_TOKEN=$admin
CLUSTER_PUBLIC_KEY_BASE64=$(openssl pkey -in "$run/keys/hub-signing-key.pem" -pubout | base64 -w0)
SUPERVISOR_API_TOKEN=$api
# The test reaches the update API through QEMU's port forward, which arrives on the guest's
# LAN interface: open it there for this test only (the image listens on 127.0.0.1,tailscale0).
SUPERVISOR_API_BIND=0.0.0.0
SUPERVISOR_HEALTH_WINDOW_S=30
SUPERVISOR_TRIAL_TIMEOUT_S=240
EOF
  disk=$run/disk.img
  cp --sparse=always "$image" "$disk"
  scripts/provision "$disk" --env "$run/poshub.env" >/dev/null
  truncate -s +1G "$disk"
  sfdisk --relocate gpt-bak-std "$disk" >/dev/null 2>&1   # backup GPT to the new end, as on a bigger card
}

# vm_token TERMINAL_ID: prints a cluster token for that terminal, signed by vm_provision's key.
vm_token() { HUB_DB_PATH=$keys_db "$host_poshub" token issue --terminal "$1"; }

# vm_ports: free ports on 127.0.0.1 only for the hub (WebSocket, HTTP) and the update API.
vm_ports() {
  read -r p_ws p_http p_api < <("$python" -c '
import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
  ws=ws://127.0.0.1:$p_ws/
  http=http://127.0.0.1:$p_http
  upd=http://127.0.0.1:$p_api
}

qemu_pid=
boots=0
# start_vm: powers the VM on, its console appended to $console. The disk is $disk, or what
# `vm_drive` names (-drive options after id=disk, e.g. an NBD export).
start_vm() {
  boots=$((boots + 1))
  echo "--- power on $boots" >>"$console"
  qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic \
    -bios "$uboot" \
    -drive "if=none,id=disk,${vm_drive:-format=raw,file=$disk}" -device virtio-blk-device,drive=disk \
    -netdev "user,id=net,hostfwd=tcp:127.0.0.1:$p_ws-:8765,hostfwd=tcp:127.0.0.1:$p_http-:8766,hostfwd=tcp:127.0.0.1:$p_api-:8767" \
    -device virtio-net-device,netdev=net \
    -device virtio-rng-device \
    </dev/null >>"$console" 2>&1 &
  qemu_pid=$!
  vm_started=$SECONDS
}
# stop_vm: the power cut of the CPU: SIGKILL, then reap.
stop_vm() { [[ -z $qemu_pid ]] || { kill -9 "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=; }; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 2 s.
wait_for() {
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    [[ -z $qemu_pid ]] || kill -0 "$qemu_pid" 2>/dev/null || die "QEMU exited while waiting for $what"
    ((SECONDS - t0 < limit)) || die "no $what within $limit s"
    sleep 2
  done
}
healthy() { curl -sf --max-time 5 "$http/health" | jq -e '.status == "ok"'; }
api_get() { curl -sf --max-time 10 -H "Authorization: Bearer $api" "$upd$1"; }
booted_slot() { api_get /slots | jq -r '.booted'; }
