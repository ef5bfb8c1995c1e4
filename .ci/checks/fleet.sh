#!/usr/bin/env bash
# Checks of fleet/ (issue 15 "Fleet"): the Ansible playbooks that push bundles to the boxes in
# waves and write the fleet report.
# 1. A venv with fleet/requirements.txt (ansible-core and ansible-lint, pinned) in
#    target/fleet-venv (reused when the requirements did not change).
# 2. ansible-lint (production profile) on fleet/.
# 3. fleet/tests/test_units.py (the modules' logic, filters, inventory on recorded JSON), then
#    fleet/tests/test_fleet.py: 12 simulated boxes, each in a network namespace of its own on a
#    bridge the test creates (10.213.0.0/24 inside those namespaces only), each running the
#    real poshub-supervisor and poshub built here; ansible-playbook in a namespace on the same
#    bridge. Runs as root (ip netns). About 5 to 7 minutes on 2 cores shared with other builds
#    (test_fleet.py 6 min 26 s on 2026-12-05 with the format 4 scenario; the whole script 10 min 4 s
#    there, of which the rest was rebuilding the test binaries), plus a minute for the venv the
#    first time.
# Installs what it needs (Debian); idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

venv=target/fleet-venv
stamp="$venv/.requirements"
if ! cmp -s fleet/requirements.txt "$stamp"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r fleet/requirements.txt
  cp fleet/requirements.txt "$stamp"
fi
"$venv/bin/ansible-playbook" --version | sed -n 1p

echo "--- ansible-lint"
(cd fleet && PATH="$PWD/../$venv/bin:$PATH" ansible-lint --offline --profile production)

echo "--- fleet unit tests"
"$venv/bin/python" fleet/tests/test_units.py

echo "--- fleet tests"
# The binaries as .ci/run's test step built them (same feature resolution: nothing rebuilt there).
cargo test -q --workspace --locked --no-run
python3 fleet/tests/test_fleet.py --ansible-bin "$venv/bin" --bin-dir target/debug
