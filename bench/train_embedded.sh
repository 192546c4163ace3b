#!/usr/bin/env bash
# Train the embedded model in one command, on a CUDA machine without network (torch, transformers,
# tokenizers, numpy there; diffusers carried as a wheel in .whl/) or on CPU with small step counts:
# installs the carried wheels into /tmp/site when diffusers is missing, trains on the Blender shots
# in --shots mixed with procedural clips, and packs the saved model folder into ONE file,
# $OUT/embedded.tar, beside a copy of its TRAINING.json and the training log.
#
#   bench/train_embedded.sh [--shots .data/world80x48] [--max-minutes 6.5] [-- TRAIN_ARGS...]
#
# --shots takes a folder of shots or the .tar.xz that `python -m flowmotion.toy.blender_world --pack`
# makes of one (about half the size: a 112x64 set of 960 shots is 32 MB packed, 73 MB as a folder).
#
# The model folder itself is written under $WORK (default /tmp/flowmotion_train), so $OUT holds
# three files. TRAIN_ARGS go to `python -m flowmotion.toy.train` (e.g. --device cpu --steps 3).
# Unpack the result with `tar -xf embedded.tar` (an `embedded/` folder, ready for load_pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."

SHOTS=.data/world80x48 MAX_MINUTES=6.5
OUT="${OUT:-out/train_embedded}" WORK="${WORK:-/tmp/flowmotion_train}"
PYTHON="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --shots) SHOTS="${2:?--shots needs a folder}"; shift ;;
    --max-minutes) MAX_MINUTES="${2:?--max-minutes needs minutes}"; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "train_embedded: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -f "$SHOTS/shots.json" ] && ! { [ -f "$SHOTS" ] && [ "${SHOTS%.tar.xz}" != "$SHOTS" ]; }; then
  echo "train_embedded: $SHOTS holds no shots.json and is no .tar.xz of them; render the shots first (python -m flowmotion.toy.blender_world)" >&2
  exit 2
fi

if ! "$PYTHON" -c 'import diffusers' 2> /dev/null; then
  if ! ls .whl/*.whl > /dev/null 2>&1; then
    echo "train_embedded: diffusers is missing and there is no .whl/ folder; run bench/gpu_check.sh --fetch-wheels" >&2
    exit 2
  fi
  # The machine's own torch and transformers stay; only what is missing is added.
  for wheel in .whl/*.whl; do
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target /tmp/site "$wheel" 2> /dev/null \
      || echo "train_embedded: $(basename "$wheel") does not install here (another Python's build), skipped"
  done
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

mkdir -p "$OUT" "$WORK"
rm -rf "$WORK/embedded"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda",
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
"$PYTHON" -m flowmotion.toy.train --out "$WORK/embedded" --shots "$SHOTS" --max-minutes "$MAX_MINUTES" "$@" \
  2>&1 | tee "$OUT/train.log"
tar -cf "$OUT/embedded.tar" -C "$WORK" embedded
cp "$WORK/embedded/TRAINING.json" "$OUT/TRAINING.json"
echo "train_embedded: $(du -h "$OUT/embedded.tar" | cut -f1) in $OUT/embedded.tar"
