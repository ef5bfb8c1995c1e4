#!/usr/bin/env bash
# Offsite copies (issue 19, docs/backups.md "Offsite copies") against a real S3-compatible
# server on loopback: s3s-fs from crates.io, built with its `binary` feature into
# target/tools/ (once, then reused: about 15 minutes here on 2 cores shared with other builds;
# its 400 MB build directory is deleted afterwards). s3s-fs 0.14.1: cargo names it the newest
# release for rustc 1.95, the one here (0.17 needs 1.96); pinned so CI builds the same. Then the tests of
# supervisor/tests/offsite.rs with the server required (without it they would skip).
# Then about 3 minutes (the hub binary build and five tests of 25 s in all).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=target/tools/s3s-fs
if [[ ! -x $root/bin/s3s-fs ]]; then
  CARGO_TARGET_DIR=target/tools/build cargo install s3s-fs@0.14.1 --features binary --locked \
    --root "$root"
  rm -rf target/tools/build
fi
cargo build -p poshub --locked
POSHUB_OFFSITE_REQUIRED=1 POSHUB_S3S_FS="$PWD/$root/bin/s3s-fs" \
  cargo test -p poshub-supervisor --test offsite --locked -- --test-threads 2
