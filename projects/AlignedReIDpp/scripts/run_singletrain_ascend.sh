#!/usr/bin/env bash
# AlignedReID++ training on one Ascend device, in the background (log: ./train.log).

usage() {
    cat <<'USAGE'
Usage: bash run_singletrain_ascend.sh [DATA_ROOT] [PRETRAINED] [DEVICE_ID] [KEY VALUE ...] [--dry-run]

  DATA_ROOT   folder holding the dataset folder (e.g. the parent of Market-1501-v15.09.15)
  PRETRAINED  ImageNet ResNet-50 checkpoint (.ckpt, .npz or .safetensors)
  DEVICE_ID   the Ascend device to train on (0, 1, ...)
  KEY VALUE   extra config overrides, e.g. SOLVER.MAX_EPOCH 120
  --dry-run   print the command instead of running it (or DRY_RUN=1)

The log goes to ./train.log (FOREGROUND=1 waits for the run instead). Environment:
CONFIG_FILE (default configs/Market1501/alignedpp_R50_1card.yml, the seed's single-card run:
32 images = 8 ids x 4), PYTHON.

Example:
  bash run_singletrain_ascend.sh /dataset resnet50_imagenet.ckpt 0
USAGE
}

CONFIG_FILE="${CONFIG_FILE:-configs/Market1501/alignedpp_R50_1card.yml}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
strip_dry_run "$@"
set -- "${ARGS[@]}"

[ "$#" -ge 3 ] || die "expected DATA_ROOT, PRETRAINED and DEVICE_ID, got $# argument(s)."
DATA_ROOT="$(abs_path "$1")"
PRETRAINED="$(abs_path "$2")"
DEVICE_ID="$3"
shift 3
[ $(( $# % 2 )) -eq 0 ] || die "config overrides come in KEY VALUE pairs, got: $*"
check_dir DATA_ROOT "$DATA_ROOT"
check_file PRETRAINED "$PRETRAINED"
check_uint DEVICE_ID "$DEVICE_ID"
resolve_config

# A single process: no rank table, no cluster variables inherited from the shell.
run_logged "$(pwd)/train.log" -u RANK_TABLE_FILE -u MS_ROLE \
    "RANK_SIZE=1" "RANK_ID=0" "DEVICE_ID=${DEVICE_ID}" -- \
    "$PYTHON" tools/train_net.py --config-file "$CONFIG_PATH" \
    DATASETS.ROOT "$DATA_ROOT" \
    MODEL.BACKBONE.PRETRAIN True MODEL.BACKBONE.PRETRAIN_PATH "$PRETRAINED" \
    MODEL.DEVICE Ascend "$@"
