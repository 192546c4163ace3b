#!/usr/bin/env bash
# The GPU half of the speed work in one short run, for a CUDA machine without network that has torch,
# transformers and accelerate (not diffusers): installs the wheels carried in .whl/, prints the card and
# versions, runs the embedded model through the CLI on CUDA (PNG folders in and out), then the chosen
# rows of the full-size speed table, each printed as it completes, then the runtime options' accuracy.
#
#   bench/gpu_check.sh --fetch-wheels        # here, with PyPI: fill .whl/ (run once before carrying it)
#   bench/gpu_check.sh [--quick] [--modes plain,faithful,new-shot,reprompt] [--accuracy fp8,sage8,compile]
#                      [--budget 480] [--out DIR] [--dry-run]
#
# --quick halves the steps (25, 5 guided). Every stage runs under what is left of --budget seconds
# (default 480: 8 minutes), so the script ends in time whatever a stage does; a stage cut short says so.
# --dry-run prints what would run, and runs nothing.
set -u
cd "$(dirname "$0")/.."

QUICK=0 DRY=0 FETCH=0 BUDGET=480 OUT="${OUT:-out/gpu_check}"
MODES="plain,faithful,new-shot,reprompt,memory-saver"
ACCURACY="fp8,sage8,compile"
PYTHON="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --dry-run) DRY=1 ;;
    --fetch-wheels) FETCH=1 ;;
    --modes) MODES="${2:?--modes needs a comma-separated list}"; shift ;;
    --accuracy) ACCURACY="${2?--accuracy needs a comma-separated list (empty: none)}"; shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac

# Pure-Python wheels, and Pillow for the Pythons a CUDA box is likely to have.
WHEELS="diffusers==0.42.1 ftfy wcwidth importlib_metadata zipp imageio torchao sageattention==1.0.6"
if [ "$FETCH" = 1 ]; then
  mkdir -p .whl
  "$PYTHON" -m pip download --no-deps -d .whl $WHEELS || exit 1
  for version in 310 311 312 313; do
    "$PYTHON" -m pip download --no-deps -d .whl --only-binary=:all: --python-version "$version" \
      --platform manylinux_2_28_x86_64 pillow || exit 1
  done
  du -sh .whl; exit 0
fi

STEPS=50 GUIDED=10
[ "$QUICK" = 1 ] && STEPS=25 GUIDED=5
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
stage() {  # stage NAME COMMAND...: run under the time left, say if it was cut short
  local name="$1"; shift
  echo; echo "== $name"
  if [ "$DRY" = 1 ]; then echo "would run: $*"; return 0; fi
  local budget; budget=$(left)
  if [ "$budget" -le 5 ]; then echo "skipped: the $BUDGET s budget is spent"; return 0; fi
  timeout --signal=INT --kill-after=10 "$budget" "$@"
  local code=$?
  [ "$code" = 124 ] || [ "$code" = 130 ] && echo "cut short at the $BUDGET s budget"
  return 0
}

if [ "$DRY" = 0 ]; then
  if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA GPU here; --dry-run shows what would run" >&2
    exit 1
  fi
  if ls .whl/*.whl > /dev/null 2>&1; then
    # The card's own torch, transformers and accelerate stay; only what is missing is added.
    for wheel in .whl/*.whl; do
      "$PYTHON" -m pip install --quiet --no-index --no-deps --target /tmp/site "$wheel" 2> /dev/null \
        || echo "gpu_check: $(basename "$wheel") does not install here (another Python's build), skipped"
    done
  else
    echo "gpu_check: no .whl/ folder; run bench/gpu_check.sh --fetch-wheels where PyPI is reachable" >&2
  fi
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
mkdir -p "$OUT"

stage "card and versions" sh -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
  $PYTHON -c 'import torch, transformers, accelerate, importlib; \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0)); \
print(\"transformers\", transformers.__version__, \"accelerate\", accelerate.__version__); \
[print(n, getattr(importlib.import_module(n), \"__version__\", \"?\")) if importlib.util.find_spec(n) else print(n, \"missing\") \
 for n in (\"diffusers\", \"torchao\", \"sageattention\")]'"

stage "embedded model through the CLI on CUDA ($STEPS steps)" sh -c "\
  $PYTHON -c 'import sys; sys.path.insert(0, \"bench\"); from speed import source_video; \
from flowmotion.video import write_video; write_video(source_video(17, 64, 96)[0], \"$OUT/source\", fps=24)' && \
  $PYTHON -m flowmotion transfer $OUT/source --prompt 'a red ball on grass' --out $OUT/take_faithful \
    --device cuda --quiet --num-inference-steps $STEPS --guided-steps $GUIDED && \
  $PYTHON -m flowmotion transfer $OUT/source --prompt 'a red ball on grass' --out $OUT/take_optimized \
    --device cuda --quiet --optimized --num-inference-steps $STEPS --guided-steps $GUIDED"

stage "full-size speed table, rows: $MODES" "$PYTHON" bench/speed.py --size full --device cuda \
  --steps "$STEPS" --guided-steps "$GUIDED" --modes "$MODES" --step-cache 0

if [ -n "$ACCURACY" ]; then
  stage "runtime options against bf16: $ACCURACY" "$PYTHON" bench/accuracy.py --size full --device cuda \
    --options "$ACCURACY" --steps 10
fi
echo; echo "gpu_check: done in $(( $(date +%s) - START )) s"
