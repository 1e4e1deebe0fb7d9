#!/usr/bin/env bash
# Data-parallel training with MindSpore's msrun on any device kind (CPU, GPU, Ascend),
# on one machine or several (run it once per machine with its --node_rank).

usage() {
    cat <<'USAGE'
Usage: bash run_distributed_msrun.sh [options] [KEY VALUE ...] [--dry-run]

Options (defaults in brackets):
  --worker_num N        processes in the whole job, over all machines [8]
  --local_worker_num M  processes on this machine [N]
  --master_addr ADDR    IP address of machine 0 (where msrun's scheduler runs) [127.0.0.1]
  --master_port PORT    free TCP port on machine 0, 1024-65535 [8118]
  --node_rank R         index of this machine, 0 .. machines-1 [unset: single machine]
  --config-file FILE    config, relative to the repository root or absolute
                        [configs/Market1501/alignedpp_R50.yml, or $CONFIG_FILE]
  --device DEV          CPU, GPU or Ascend (sets MODEL.DEVICE) [the config's]
  --log_dir DIR         msrun's per-worker logs (scheduler.log, worker_<r>.log) [./msrun_log]
  --ims_per_device B    images per device and step: sets SOLVER.IMS_PER_BATCH to B x N
                        [unset: the config's SOLVER.IMS_PER_BATCH, the global batch]
  --dry-run             print the msrun command instead of running it (or DRY_RUN=1)
  KEY VALUE             config overrides, e.g. DATASETS.ROOT /data SOLVER.MAX_EPOCH 120

SOLVER.IMS_PER_BATCH is the global batch: it must be a multiple of
N x DATALOADER.NUM_INSTANCE (or use --ims_per_device). Only rank 0 writes OUTPUT_DIR.

Examples:
  # 8 devices on one machine
  bash run_distributed_msrun.sh --worker_num 8 --ims_per_device 32 --device Ascend \
      DATASETS.ROOT /dataset
  # 2 machines x 8 GPUs: the same command on both, node_rank 0 on 192.168.1.10
  bash run_distributed_msrun.sh --worker_num 16 --local_worker_num 8 \
      --master_addr 192.168.1.10 --node_rank 0 --device GPU DATASETS.ROOT /dataset
  bash run_distributed_msrun.sh --worker_num 16 --local_worker_num 8 \
      --master_addr 192.168.1.10 --node_rank 1 --device GPU DATASETS.ROOT /dataset
USAGE
}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
strip_dry_run "$@"
set -- "${ARGS[@]}"

WORKER_NUM=8
LOCAL_WORKER_NUM=""
MASTER_ADDR=127.0.0.1
MASTER_PORT=8118
NODE_RANK=""
DEVICE=""
IMS_PER_DEVICE=""
LOG_DIR="$(pwd)/msrun_log"
OVERRIDES=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --worker_num|--local_worker_num|--master_addr|--master_port|--node_rank|--config-file|--device|--log_dir|--ims_per_device)
            [ "$#" -ge 2 ] || die "option $1 needs a value."
            case "$1" in
                --worker_num) WORKER_NUM="$2" ;;
                --local_worker_num) LOCAL_WORKER_NUM="$2" ;;
                --master_addr) MASTER_ADDR="$2" ;;
                --master_port) MASTER_PORT="$2" ;;
                --node_rank) NODE_RANK="$2" ;;
                --config-file) CONFIG_FILE="$2" ;;
                --device) DEVICE="$2" ;;
                --log_dir) LOG_DIR="$(abs_path "$2")" ;;
                --ims_per_device) IMS_PER_DEVICE="$2" ;;
            esac
            shift 2 ;;
        --*) die "unknown option $1." ;;
        *) OVERRIDES+=("$1"); shift ;;
    esac
done
LOCAL_WORKER_NUM="${LOCAL_WORKER_NUM:-$WORKER_NUM}"

check_uint --worker_num "$WORKER_NUM"
check_uint --local_worker_num "$LOCAL_WORKER_NUM"
check_uint --master_port "$MASTER_PORT"
[ "$WORKER_NUM" -ge 1 ] || die "--worker_num must be at least 1."
[ "$LOCAL_WORKER_NUM" -ge 1 ] || die "--local_worker_num must be at least 1."
[ "$LOCAL_WORKER_NUM" -le "$WORKER_NUM" ] \
    || die "--local_worker_num ($LOCAL_WORKER_NUM) cannot exceed --worker_num ($WORKER_NUM)."
[ "$MASTER_PORT" -ge 1024 ] && [ "$MASTER_PORT" -le 65535 ] \
    || die "--master_port must be within 1024-65535, got $MASTER_PORT."
if [ -n "$NODE_RANK" ]; then
    check_uint --node_rank "$NODE_RANK"
    NODES=$(( (WORKER_NUM + LOCAL_WORKER_NUM - 1) / LOCAL_WORKER_NUM ))
    [ "$NODE_RANK" -lt "$NODES" ] \
        || die "--node_rank $NODE_RANK is out of range: $WORKER_NUM workers / $LOCAL_WORKER_NUM per machine = $NODES machine(s), ranks 0..$((NODES - 1))."
fi
if [ "$LOCAL_WORKER_NUM" -lt "$WORKER_NUM" ]; then
    case "$MASTER_ADDR" in
        127.*|localhost) die "a job over several machines ($WORKER_NUM workers, $LOCAL_WORKER_NUM here) needs --master_addr set to machine 0's address, not $MASTER_ADDR." ;;
    esac
fi
case "$DEVICE" in
    ''|CPU|GPU|Ascend) ;;
    *) die "--device must be CPU, GPU or Ascend, got '$DEVICE'." ;;
esac
[ -z "$IMS_PER_DEVICE" ] || check_uint --ims_per_device "$IMS_PER_DEVICE"
[ $(( ${#OVERRIDES[@]} % 2 )) -eq 0 ] || die "config overrides come in KEY VALUE pairs, got: ${OVERRIDES[*]}"
resolve_config

MSRUN="${MSRUN:-msrun}"
if [ "$DRY_RUN" != "1" ]; then
    command -v "$MSRUN" > /dev/null 2>&1 \
        || die "'$MSRUN' not found: it comes with MindSpore >= 2.3 (pip install mindspore), or set MSRUN."
fi

CMD=("$MSRUN" "--worker_num=${WORKER_NUM}" "--local_worker_num=${LOCAL_WORKER_NUM}"
     "--master_addr=${MASTER_ADDR}" "--master_port=${MASTER_PORT}")
[ -z "$NODE_RANK" ] || CMD+=("--node_rank=${NODE_RANK}")
CMD+=("--log_dir=${LOG_DIR}" "--join=True" tools/train_net.py --config-file "$CONFIG_PATH")
[ -z "$DEVICE" ] || CMD+=(MODEL.DEVICE "$DEVICE")
[ -z "$IMS_PER_DEVICE" ] || CMD+=(SOLVER.IMS_PER_BATCH "$((IMS_PER_DEVICE * WORKER_NUM))")
CMD+=("${OVERRIDES[@]}")

if [ "$DRY_RUN" = "1" ]; then
    echo "+ cd $(quote "$REPO_ROOT") && $(quote "${CMD[@]}")"
    exit 0
fi
echo "Worker logs: ${LOG_DIR}/worker_<rank>.log"
cd "$REPO_ROOT" && exec "${CMD[@]}"
