# shellcheck shell=bash disable=SC2034,SC2154  # sourced: `me` comes from the script; the globals it sets are used there
# Shared by scripts/offsite-figures and scripts/backup-figures (sourced, not run): which year
# database they measure. The sourcing script sets `me` (its name, for messages) and calls
#
#   year_db_args "$@"     before it changes directory: parses [--db FILE | POSHUB_YEAR_OPTION...]
#   figures_build         from the repository root: the release build both scripts measure
#   year_db_place DEST    once built: puts the database at DEST
#
# With `--db FILE`, DEST is a copy of FILE (a closed hub database, e.g. the `hub.redb` that
# `poshub-year --dir DIR` kept); FILE itself is only read. Without it, `poshub-year` (issue 17's
# year of a busy store, written through the hub's own server and engine; about 285 MB and
# 8-9 minutes on a 2-core machine) runs into a directory beside DEST with the other options
# given (`--days 9` for a quick try), prints its report, and its database becomes DEST.

year_db_file=
year_db_opts=()

year_db_args() {
  while (($#)); do
    case $1 in
      --db)
        [[ $# -ge 2 ]] || { echo "$me: --db needs a FILE" >&2; exit 2; }
        year_db_file=$2
        shift 2
        ;;
      --db=*)
        year_db_file=${1#--db=}
        shift
        ;;
      -h | --help)
        echo "usage: $me [--db FILE | POSHUB_YEAR_OPTION...]   (see the comment at the top of $0)"
        exit 0
        ;;
      *)
        year_db_opts+=("$1")
        shift
        ;;
    esac
  done
  [[ -z $year_db_file || ${#year_db_opts[@]} -eq 0 ]] || {
    echo "$me: --db FILE measures that database: poshub-year options (${year_db_opts[*]}) do not apply" >&2
    exit 2
  }
  [[ -z $year_db_file ]] && return
  [[ -f $year_db_file && -r $year_db_file ]] || {
    echo "$me: --db $year_db_file: no such readable file" >&2
    exit 2
  }
  # The first bytes of every redb file (redb's MAGICNUMBER).
  [[ $(head -c 9 "$year_db_file" | od -An -tx1 | tr -d ' \n') == 726564621a0aa90d0a ]] || {
    echo "$me: --db $year_db_file: not a redb database" >&2
    exit 2
  }
  year_db_file=$(realpath -e "$year_db_file")
}

# The same binaries for both scripts and poshub-year, whatever they need this time: cargo
# unifies dependency features over the packages of one build, so building fewer would rebuild
# the dependencies, and measure a different build. Set CARGO_PROFILE_RELEASE_LTO=false
# CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 to build in minutes on 2 cores (the figures are then of
# that build).
figures_build() {
  cargo build --release -p poshub --bin poshub-year --bin poshub \
    -p poshub-supervisor --bin poshub-supervisor --locked --quiet
}

year_db_place() {
  local dest=$1
  if [[ -n $year_db_file ]]; then
    cp -- "$year_db_file" "$dest"
    echo "database: a copy of $year_db_file"
    return
  fi
  local dir
  dir=$(dirname "$dest")/poshub-year
  target/release/poshub-year --dir "$dir" "${year_db_opts[@]}"
  mv "$dir/hub.redb" "$dest"
  rm -rf "$dir"
}
