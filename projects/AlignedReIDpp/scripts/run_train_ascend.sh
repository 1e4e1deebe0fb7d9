#!/usr/bin/env bash
# Distributed AlignedReID++ training on the Ascend devices of an HCCL rank table
# (one process per device, started in the background; logs in device<i>/log).

usage() {
    cat <<'EOF'
Usage: bash run_train_ascend.sh [DATA_ROOT] [PRETRAINED] [RANK_TABLE_FILE] [KEY VALUE ...] [--dry-run]

  DATA_ROOT        folder holding the dataset folder (e.g. the parent of Market-1501-v15.09.15)
  PRETRAINED       ImageNet ResNet-50 checkpoint (.ckpt, .npz or .safetensors)
  RANK_TABLE_FILE  HCCL rank table (JSON, version 1.0) listing this server's devices
  KEY VALUE        extra config overrides, e.g. SOLVER.MAX_EPOCH 120
  --dry-run        print the commands instead of running them (or DRY_RUN=1)

One process per device of the table: DEVICE_ID, RANK_ID and RANK_SIZE come from the
table; logs go to ./device<i>/log. Only rank 0 writes OUTPUT_DIR (checkpoints, log.txt,
metrics.json). Each device trains on IMS_PER_DEVICE images per step (default 32, the
seed's 4 identities x 8), i.e. SOLVER.IMS_PER_BATCH = IMS_PER_DEVICE x RANK_SIZE (a
SOLVER.IMS_PER_BATCH override wins). Environment: CONFIG_FILE (default
configs/Market1501/alignedpp_R50.yml), PYTHON, IMS_PER_DEVICE, SERVER_ID (this server's
server_id in a multi-server table).

Example:
  bash run_train_ascend.sh /dataset resnet50_imagenet.ckpt /scripts/rank_table_8pcs.json
EOF
}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
strip_dry_run "$@"
set -- "${ARGS[@]}"

[ "$#" -ge 3 ] || die "expected DATA_ROOT, PRETRAINED and RANK_TABLE_FILE, got $# argument(s)."
DATA_ROOT="$(abs_path "$1")"
PRETRAINED="$(abs_path "$2")"
RANK_TABLE="$(abs_path "$3")"
shift 3
[ $(( $# % 2 )) -eq 0 ] || die "config overrides come in KEY VALUE pairs, got: $*"
check_dir DATA_ROOT "$DATA_ROOT"
check_file PRETRAINED "$PRETRAINED"
check_file RANK_TABLE_FILE "$RANK_TABLE"
resolve_config
IMS_PER_DEVICE="${IMS_PER_DEVICE:-32}"
check_uint IMS_PER_DEVICE "$IMS_PER_DEVICE"

# "device_id rank_id" of this server's devices, and the table's total device count.
TABLE_LINES="$("$PYTHON" - "$RANK_TABLE" "${SERVER_ID:-}" <<'PYEOF'
import json, sys
path, server_id = sys.argv[1], sys.argv[2]
try:
    with open(path, "r", encoding="utf-8") as f:
        table = json.load(f)
    servers = table["server_list"]
    total = sum(len(s["device"]) for s in servers)
except (OSError, ValueError, KeyError, TypeError) as exc:
    sys.exit(f"rank table {path} is not an HCCL rank table (version 1.0 with server_list[].device[]): {exc}")
if server_id:
    servers = [s for s in servers if str(s.get("server_id")) == server_id]
    if not servers:
        sys.exit(f"SERVER_ID={server_id} is not a server_id of the rank table {path}")
elif len(servers) != 1:
    sys.exit(f"the rank table {path} lists {len(servers)} servers: set SERVER_ID to this server's server_id")
print(total)
for dev in servers[0]["device"]:
    print(int(dev["device_id"]), int(dev["rank_id"]))
PYEOF
)" || die "cannot use the rank table '$RANK_TABLE' (see the message above)."

RANK_SIZE="$(echo "$TABLE_LINES" | head -n 1)"
echo "Rank table ${RANK_TABLE}: ${RANK_SIZE} device(s) in the job"

RUN_DIR="$(pwd)"
echo "$TABLE_LINES" | tail -n +2 | while read -r DEVICE_ID RANK_ID; do
    run_logged "${RUN_DIR}/device${DEVICE_ID}/log" \
        "RANK_TABLE_FILE=${RANK_TABLE}" "RANK_SIZE=${RANK_SIZE}" "RANK_ID=${RANK_ID}" \
        "DEVICE_ID=${DEVICE_ID}" -- \
        "$PYTHON" tools/train_net.py --config-file "$CONFIG_PATH" \
        DATASETS.ROOT "$DATA_ROOT" \
        MODEL.BACKBONE.PRETRAIN True MODEL.BACKBONE.PRETRAIN_PATH "$PRETRAINED" \
        MODEL.DEVICE Ascend SOLVER.IMS_PER_BATCH "$((IMS_PER_DEVICE * RANK_SIZE))" "$@"
done
[ "$DRY_RUN" = "1" ] || echo "Training in the background; follow it with: tail -f ${RUN_DIR}/device0/log"
