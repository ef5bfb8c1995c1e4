#!/usr/bin/env bash
# Fuzzing (issue 21): each cargo-fuzz target of fuzz/ runs a fixed number of iterations from its
# seed corpus (fuzz/seeds/<target>, in the repo) with a fixed libFuzzer seed. A crash, a hang
# (the targets' own 10 s limits) or a sanitizer report fails the check; libFuzzer writes the
# input to fuzz/artifacts/<target>/. Longer runs: docs/reliability.md §2.
# Installs what it needs (a C++ compiler for libFuzzer, the nightly toolchain, cargo-fuzz);
# idempotent. Time: the first build of the fuzz crate with sanitizers takes about as long as a
# clean release build of the workspace (41 min on a heavily shared 2-core machine, seconds when
# fuzz/target is cached); the runs 95 s in all (measured, same machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
# Iterations per target after its seeds (FUZZ_RUNS overrides all): about 30-60 s each at the
# rates measured on a loaded 2-core machine (docs/reliability.md §2).
runs_for() {
  case "$1" in
    protocol) echo "${FUZZ_RUNS:-600}" ;;
    http_admin) echo "${FUZZ_RUNS:-1000}" ;;
    config) echo "${FUZZ_RUNS:-5000}" ;;
    *) echo "${FUZZ_RUNS:-5000}" ;;
  esac
}

step() { printf -- '--- fuzz: %s\n' "$*"; }

if ! command -v c++ >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  step "installing the nightly toolchain (cargo fuzz needs -Z flags)"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd fuzz
step "build"
cargo +nightly fuzz build --release
for target in protocol http_admin config bundle; do
  runs=$(runs_for "$target")
  step "$target: $runs runs"
  mkdir -p "corpus/$target"
  started=$SECONDS
  log="artifacts/$target.log"
  mkdir -p artifacts
  if ! cargo +nightly fuzz run --release "$target" "corpus/$target" "seeds/$target" -- \
    -runs="$runs" -seed=21 -max_len=8192 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "FAIL: fuzz target $target; the input is in fuzz/artifacts/$target/, the log in fuzz/$log" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
  echo "ok: $target, $runs runs in $((SECONDS - started)) s"
done
