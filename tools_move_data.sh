#!/usr/bin/env bash
# issue 30: hsi/data/ by job. Moves the modules of hsi/data/ into their rooms (git mv) and rewrites
# every reference to them (imports, mock / monkeypatch strings, Hydra `_target_`s, docstrings, file
# paths in comments and docs) across hsi/ tests/ bench/ docs/ conf/ and the top-level text files.
# Idempotent: run it again on a merged tree and it moves what is still at an old path and rewrites
# what still names an old module; a tree already moved is left as it is.
#   bash tools_move_data.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

# module -> room (hsi/data/<module>.py -> hsi/data/<room>/<module>.py)
READERS="io raster vector_labels download"
SCENES="scene geo_scene large_scene synthetic invalid_pixels catalogue loading"
SAMPLING="patches augment pools"

declare -A DOC=(
  [readers]="Readers: arrays, rasters and polygons from files, and fetched files; torch-free, below the other rooms."
  [scenes]="Scenes: a cube and its labels, in memory or streamed; the standard scenes; the invalid-pixel rule."
  [sampling]="Sampling: windows and tiles cut from a padded cube, batch augmentation, unlabelled pools."
)

status=0
for room in readers scenes sampling; do
  mkdir -p "hsi/data/$room"
  if [ ! -e "hsi/data/$room/__init__.py" ]; then
    printf '"""%s"""\n' "${DOC[$room]}" > "hsi/data/$room/__init__.py"
    git add "hsi/data/$room/__init__.py"
  fi
done

move() {  # move <room> <module>...
  local room=$1; shift
  for m in "$@"; do
    local old="hsi/data/$m.py" new="hsi/data/$room/$m.py"
    if [ -e "$old" ] && [ -e "$new" ]; then
      echo "both $old and $new exist: merge $old's changes into $new by hand, then git rm $old" >&2
      status=1
    elif [ -e "$old" ]; then
      git mv "$old" "$new"
    fi
  done
}
move readers $READERS
move scenes $SCENES
move sampling $SAMPLING

alt() { echo "$*" | tr ' ' '|'; }
# text files that may name a module; fixtures (old checkpoints, configs as they were) keep theirs
mapfile -t FILES < <(git ls-files -- hsi tests bench docs conf README.md pyproject.toml Makefile \
                       | grep -E '\.(py|md|yaml|yml|toml|txt|cfg|ini|sh)$|Makefile$' \
                       | grep -v '^tests/fixtures/checkpoints/' | while read -r f; do [ -f "$f" ] && echo "$f"; done)

for pair in "readers:$READERS" "scenes:$SCENES" "sampling:$SAMPLING"; do
  room=${pair%%:*}; mods=$(alt ${pair#*:})
  sed -i -E \
    -e "s/(^|[^.[:alnum:]_])hsi\.data\.($mods)\b/\1hsi.data.$room.\2/g" \
    -e "s/(^|[^[:alnum:]_])from hsi\.data import ($mods)\b/\1from hsi.data.$room import \2/g" \
    -e "s#(^|[^/[:alnum:]_.])(hsi/)?data/($mods)\.py\b#\1\2data/$room/\3.py#g" \
    "${FILES[@]}"
done

# names (issue 30, item 5): the network's check is `check_network_eval_path` (the datamodule's is
# `check_eval_settings`)
sed -i -E 's/\bcheck_eval_path\b/check_network_eval_path/g' "${FILES[@]}"

# imports sorted again where a new module path moved a line (ruff's isort rule only)
RUFF=${RUFF:-$(command -v ruff || echo /work/main/.venv/bin/ruff)}
"$RUFF" check --quiet --select I001 --fix hsi tests bench || true

# what is left naming an old module path (should print nothing)
all=$(alt $READERS $SCENES $SAMPLING)
if git grep -nE "(^|[^.[:alnum:]_])hsi\.data\.($all)\b|from hsi\.data import ($all)\b|\bcheck_eval_path\b" -- hsi tests bench docs conf \
     ':!tests/fixtures/checkpoints'; then
  echo "the lines above still name an old module of hsi.data" >&2
  status=1
fi
exit $status
