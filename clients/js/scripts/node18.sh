#!/usr/bin/env bash
# Runs Debian bookworm's Node 18 (the oldest Node the library supports, `engines: >=18`) next to
# whatever Node the machine has, without installing it: the .debs are fetched with
# `apt-get download` and unpacked into a cache (default ~/.cache/poshub-ci/node18; again only
# when missing). Debian's Node loads acorn, cjs-module-lexer and undici (fetch) from
# /usr/share/nodejs, so the binary runs in a private mount namespace where the cache's
# usr/share is overlaid on /usr/share (needs root, as the netns tests do).
#   clients/js/scripts/node18.sh --version
#   clients/js/scripts/node18.sh --test test/client.test.mjs
set -euo pipefail
D="${NODE18_CACHE:-$HOME/.cache/poshub-ci/node18}"
LIB="$D/usr/lib/x86_64-linux-gnu"

# The .deb providing each shared library Debian's libnode108 needs beyond libc/libstdc++.
declare -A PKG_OF=([libuv.so.1]=libuv1 [libcares.so.2]=libc-ares2 [libicuuc.so.72]=libicu72
  [libicui18n.so.72]=libicu72 [libicudata.so.72]=libicu72 [libbrotlidec.so.1]=libbrotli1
  [libbrotlienc.so.1]=libbrotli1 [libnghttp2.so.14]=libnghttp2-14 [libssl.so.3]=libssl3
  [libcrypto.so.3]=libssl3 [libz.so.1]=zlib1g)

# `apt-get download` into a scratch dir and unpack into the cache; one `apt-get update` if the
# package lists are empty or the download fails.
fetch_debs() {
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && timeout 300 apt-get download -qq "$@" 2>/dev/null); then
    timeout 300 apt-get update -qq
    (cd "$tmp" && timeout 300 apt-get download -qq "$@")
  fi
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$D"; done
  rm -rf "$tmp"
}

missing_libs() {
  LD_LIBRARY_PATH="$LIB" ldd "$D/usr/bin/node" | awk '/not found/ {print $1}'
}

install_node18() {
  mkdir -p "$D"
  [ -n "$(apt-cache madison nodejs 2>/dev/null | awk '$3 ~ /^18\./')" ] || timeout 300 apt-get update -qq
  local v
  v=$(apt-cache madison nodejs | awk '$3 ~ /^18\./ && !v {v = $3} END {print v}')
  [ -n "$v" ] || { echo "node18.sh: no nodejs 18.x in the apt sources (Debian bookworm has it)" >&2; exit 1; }
  fetch_debs "nodejs=$v" "libnode108=$v" node-acorn node-cjs-module-lexer node-undici
  local pkgs=() lib
  for lib in $(missing_libs); do
    [ -n "${PKG_OF[$lib]:-}" ] || { echo "node18.sh: no package known for $lib" >&2; exit 1; }
    pkgs+=("${PKG_OF[$lib]}")
  done
  [ ${#pkgs[@]} -eq 0 ] || { mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u); fetch_debs "${pkgs[@]}"; }
  [ -z "$(missing_libs)" ] || { echo "node18.sh: still missing: $(missing_libs)" >&2; exit 1; }
  touch "$D/.complete"
}

[ -f "$D/.complete" ] || install_node18
# shellcheck disable=SC2016 # expanded by the inner sh: $0 is the cache, "$@" node's arguments
exec unshare -m sh -c 'mount -t overlay node18 -o "lowerdir=$0/usr/share:/usr/share" /usr/share &&
  LD_LIBRARY_PATH="$0/usr/lib/x86_64-linux-gnu" exec "$0/usr/bin/node" "$@"' "$D" "$@"
