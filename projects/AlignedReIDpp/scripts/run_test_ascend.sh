#!/usr/bin/env bash
# Evaluate an AlignedReID++ checkpoint on one Ascend device, with and without
# k-reciprocal re-ranking, in the background (log: ./test.log).

usage() {
    cat <<'USAGE'
Usage: bash run_test_ascend.sh [DATA_ROOT] [CHECKPOINT] [DEVICE_ID] [KEY VALUE ...] [--dry-run]

  DATA_ROOT   folder holding the dataset folder (e.g. the parent of Market-1501-v15.09.15)
  CHECKPOINT  the trained model (e.g. logs/market1501/alignedpp_R50/model_final.ckpt)
  DEVICE_ID   the Ascend device to evaluate on (0, 1, ...)
  KEY VALUE   extra config overrides, e.g. TEST.DISTANCE global
  --dry-run   print the command instead of running it (or DRY_RUN=1)

The results (plain and re-ranked rows) go to ./test.log (FOREGROUND=1 waits for the run
instead). Environment: CONFIG_FILE (default configs/Market1501/alignedpp_R50.yml), PYTHON.

Example:
  bash run_test_ascend.sh /dataset logs/market1501/alignedpp_R50/model_final.ckpt 0
USAGE
}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
strip_dry_run "$@"
set -- "${ARGS[@]}"

[ "$#" -ge 3 ] || die "expected DATA_ROOT, CHECKPOINT and DEVICE_ID, got $# argument(s)."
DATA_ROOT="$(abs_path "$1")"
CHECKPOINT="$(abs_path "$2")"
DEVICE_ID="$3"
shift 3
[ $(( $# % 2 )) -eq 0 ] || die "config overrides come in KEY VALUE pairs, got: $*"
check_dir DATA_ROOT "$DATA_ROOT"
check_file CHECKPOINT "$CHECKPOINT"
check_uint DEVICE_ID "$DEVICE_ID"
resolve_config

run_logged "$(pwd)/test.log" -u RANK_TABLE_FILE -u MS_ROLE \
    "RANK_SIZE=1" "RANK_ID=0" "DEVICE_ID=${DEVICE_ID}" -- \
    "$PYTHON" tools/train_net.py --config-file "$CONFIG_PATH" --eval-only \
    DATASETS.ROOT "$DATA_ROOT" MODEL.WEIGHTS "$CHECKPOINT" \
    MODEL.DEVICE Ascend TEST.RERANK.ENABLED True "$@"
