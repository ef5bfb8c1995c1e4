#!/usr/bin/env bash
# Fails (listing their command lines) if processes started from this workspace's build output
# (poshub, poshub-supervisor, poshub-fake-hub under the cargo target directory) are still
# running: a test that starts a process must end it, also when it fails. Called by .ci/run after
# the tests; waits up to 10 s first, since a hub told to stop may take up to 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")

leftovers() {
  local link exe pid
  # One find for every process: "/proc/<pid>/exe <target of the link>".
  find /proc/[0-9]*/exe -maxdepth 0 -printf '%p %l\n' 2>/dev/null |
    while read -r link exe; do
      pid=${link#/proc/}
      pid=${pid%/exe}
      exe=${exe% (deleted)}
      case "$exe" in
        "$target"/*/poshub | "$target"/*/poshub-supervisor | "$target"/*/poshub-fake-hub)
          printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" ;;
      esac
    done
}

for _ in $(seq 1 20); do
  [ -z "$(leftovers)" ] && { echo "no poshub process outlived the tests"; exit 0; }
  sleep 0.5
done
echo "processes started by the tests are still running (pid, command line):" >&2
leftovers >&2
exit 1
