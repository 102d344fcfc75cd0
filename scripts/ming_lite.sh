#!/usr/bin/env bash
# MING-lite from scratch, one command: data mix -> LoRA training on CPU -> base-vs-lite evaluation -> the
# packaged adapter (src/ming/lite/adapter) and its model card. Every stage resumes: rerun the same command
# after an interruption and finished stages are skipped, training continues from its last checkpoint and the
# evaluations from their last answered item.
#
#   bash scripts/ming_lite.sh              # everything (~1 h training + evaluation on 2 cores)
#   bash scripts/ming_lite.sh data|train|eval|export     # one stage
#
# Environment: MING_LITE_RUN (default runs/ming-lite), MING_DATA_DIR (default ../shared/data),
#              MING_LITE_EVAL (prefix of the four eval configs, default configs/eval/ming-lite: -gen, -ll, -open,
#              -consult), MING_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MING="$PY -m ming"
RUN=${MING_LITE_RUN:-runs/ming-lite}
DATA_RECIPE=configs/data/ming-lite.yaml
TRAIN_CFG=configs/train/ming-lite.yaml
EVAL_PREFIX=${MING_LITE_EVAL:-configs/eval/ming-lite}
STAGE=${1:-all}
say() { printf '\n== [ming-lite] %s\n' "$*"; }

stage_data() {
  local key
  key=$(cat "$DATA_RECIPE" | sha256sum | cut -c1-16)
  if [ -f "$RUN/data/stats.json" ] && [ "$(cat "$RUN/data/.recipe-key" 2>/dev/null)" = "$key" ]; then
    say "data: $RUN/data is built from this recipe (key $key): skipped"
    return
  fi
  say "data: ming data build --recipe $DATA_RECIPE --out $RUN/data"
  $MING data build --recipe "$DATA_RECIPE" --out "$RUN/data"
  echo "$key" > "$RUN/data/.recipe-key"
}

stage_train() {
  if [ -f "$RUN/train/train_summary.json" ]; then
    say "train: $RUN/train/train_summary.json exists: skipped (delete $RUN/train to retrain)"
    return
  fi
  local resume=()
  if ls "$RUN"/train/checkpoints/*/state.json >/dev/null 2>&1; then
    resume=(--resume auto)  # an interrupted run: continue from its newest complete checkpoint
  fi
  say "train: ming train --config $TRAIN_CFG ${resume[*]}"
  $MING train --config "$TRAIN_CFG" --data "$RUN/data/train.jsonl" --eval-data "$RUN/data/dev.jsonl" \
    --output "$RUN/train" "${resume[@]}"
}

stage_eval() {
  # the same settings for both models; the lite side is the exported (shipped, bf16) adapter
  say "eval: its base, the embedded 0.5B"
  for part in gen ll open consult; do
    $MING eval --config "$EVAL_PREFIX-$part.yaml" --model 0.5b --output "$RUN/eval/base-$part"
  done
  say "eval: MING-lite"
  for part in gen ll open consult; do
    $MING eval --config "$EVAL_PREFIX-$part.yaml" --model ming-lite --output "$RUN/eval/lite-$part"
  done
  $MING eval compare "$RUN/eval/base-gen,$RUN/eval/base-ll,$RUN/eval/base-open,$RUN/eval/base-consult" \
    "$RUN/eval/lite-gen,$RUN/eval/lite-ll,$RUN/eval/lite-open,$RUN/eval/lite-consult" | tee "$RUN/compare.md"
}

stage_export() {
  say "export: the adapter and its model card -> src/ming/lite/adapter"
  local cmp=()
  [ -f "$RUN/compare.md" ] && cmp=(--compare "$RUN/compare.md")
  $PY -m ming.models.lite_export --train "$RUN/train" --data "$RUN/data" "${cmp[@]}"
}

case "$STAGE" in
  data) stage_data ;;
  train) stage_train ;;
  eval) stage_eval ;;
  export) stage_export ;;
  all) stage_data; stage_train; stage_export; stage_eval; stage_export ;;
  *) echo "usage: bash scripts/ming_lite.sh [all|data|train|eval|export]" >&2; exit 2 ;;
esac
