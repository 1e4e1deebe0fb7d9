#!/usr/bin/env bash
# Ascend 310 inference of an exported AlignedReID++ MINDIR on a query / gallery pair of
# image folders: preprocess -> fastreid_infer (C++, ascend310_infer/) -> postprocess.
# The CMC / mAP table (and the re-ranking table) is written to acc.log in the current folder.
#
#   bash projects/AlignedReIDpp/scripts/run_infer_310.sh [MINDIR] [QUERY_DIR] [GALLERY_DIR] \
#        [--config-file FILE] [--device-id N] [--work-dir DIR] [--python-runner] \
#        [--batch-size N] [--dry-run] [-- KEY VALUE ...]
#
# Set up the Ascend environment first (source the toolkit's set_env.sh, as the MindSpore C++
# inference guide says); MINDSPORE_PATH may point at the C++ API (see ascend310_infer/build.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../../.." && pwd)"
INFER_DIR="${REPO_ROOT}/ascend310_infer"
PYTHON="${PYTHON:-python3}"

usage() {
  cat >&2 <<EOF
Usage: bash run_infer_310.sh [MINDIR] [QUERY_DIR] [GALLERY_DIR] [options] [-- KEY VALUE ...]
  MINDIR        model exported by tools/export.py --format MINDIR (batch 1 or dynamic)
  QUERY_DIR     folder of query images (Market1501 names, e.g. Market-1501-v15.09.15/query)
  GALLERY_DIR   folder of gallery images (e.g. Market-1501-v15.09.15/bounding_box_test)
Options:
  --config-file FILE  config of the exported model (default \$CONFIG_FILE or
                      configs/Market1501/alignedpp_R50.yml)
  --device-id N       Ascend device id (default \$DEVICE_ID or 0)
  --work-dir DIR      preprocessed images, features and logs (default ./infer_310)
  --python-runner     run the MINDIR with ascend310_infer/infer_mindir.py instead of the
                      C++ program (also: INFER_RUNNER=python); any MindSpore device
  --batch-size N      images per call of the Python runner (the export's batch; default 1)
  --dry-run           print the commands without running them
  -h, --help          this text
Overrides after -- go to preprocess and postprocess (default: TEST.RERANK.ENABLED True).
Results: ./acc.log; each step's log in the work folder.
EOF
}

die_usage() { echo "run_infer_310.sh: error: $*" >&2; usage; exit 2; }

CONFIG_FILE="${CONFIG_FILE:-${REPO_ROOT}/configs/Market1501/alignedpp_R50.yml}"
DEVICE_ID="${DEVICE_ID:-0}"
WORK_DIR="./infer_310"
RUNNER="${INFER_RUNNER:-cpp}"
BATCH_SIZE=1
DRY_RUN=0
POSITIONAL=()
OPTS=()

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --config-file) [ $# -ge 2 ] || die_usage "--config-file needs a value"; CONFIG_FILE="$2"; shift 2 ;;
    --device-id) [ $# -ge 2 ] || die_usage "--device-id needs a value"; DEVICE_ID="$2"; shift 2 ;;
    --work-dir) [ $# -ge 2 ] || die_usage "--work-dir needs a value"; WORK_DIR="$2"; shift 2 ;;
    --batch-size) [ $# -ge 2 ] || die_usage "--batch-size needs a value"; BATCH_SIZE="$2"; shift 2 ;;
    --python-runner) RUNNER=python; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; OPTS=("$@"); break ;;
    -*) die_usage "unknown option '$1'" ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done

[ ${#POSITIONAL[@]} -eq 3 ] || die_usage "expected 3 arguments (MINDIR QUERY_DIR GALLERY_DIR), got ${#POSITIONAL[@]}"
case "${RUNNER}" in cpp|python) ;; *) die_usage "INFER_RUNNER must be 'cpp' or 'python', got '${RUNNER}'" ;; esac
[[ "${DEVICE_ID}" =~ ^[0-9]+$ ]] || die_usage "--device-id must be a non-negative integer, got '${DEVICE_ID}'"
[[ "${BATCH_SIZE}" =~ ^[1-9][0-9]*$ ]] || die_usage "--batch-size must be a positive integer, got '${BATCH_SIZE}'"

MINDIR="${POSITIONAL[0]}"
QUERY_DIR="${POSITIONAL[1]}"
GALLERY_DIR="${POSITIONAL[2]}"
[ -f "${MINDIR}" ] || die_usage "MINDIR '${MINDIR}' is not a file (export it with tools/export.py --format MINDIR)"
[ -d "${QUERY_DIR}" ] || die_usage "QUERY_DIR '${QUERY_DIR}' is not a folder"
[ -d "${GALLERY_DIR}" ] || die_usage "GALLERY_DIR '${GALLERY_DIR}' is not a folder"
[ -f "${CONFIG_FILE}" ] || die_usage "config file '${CONFIG_FILE}' not found (pass --config-file)"

abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
MINDIR="$(abspath "${MINDIR}")"
QUERY_DIR="$(cd "${QUERY_DIR}" && pwd)"
GALLERY_DIR="$(cd "${GALLERY_DIR}" && pwd)"
CONFIG_FILE="$(abspath "${CONFIG_FILE}")"
case "${WORK_DIR}" in /*) ;; *) WORK_DIR="$(pwd)/${WORK_DIR#./}" ;; esac
if [ "${DRY_RUN}" -eq 0 ]; then mkdir -p "${WORK_DIR}"; fi
export DEVICE_ID
PREP_DIR="${WORK_DIR}/prep"
RESULT_DIR="${WORK_DIR}/result_Files"
BUILD_DIR="${BUILD_DIR:-${INFER_DIR}/build}"
if [ ${#OPTS[@]} -eq 0 ]; then OPTS=(TEST.RERANK.ENABLED True); fi

# Print a command (quoted so that it can be pasted), then run it unless --dry-run, its output
# going to the log file given first.
run() {
  local log="$1"; shift
  printf '%q ' "$@"; printf '> %q 2>&1\n' "${log}"
  if [ "${DRY_RUN}" -eq 0 ]; then
    if ! "$@" > "${log}" 2>&1; then
      echo "run_infer_310.sh: step failed, see ${log}:" >&2
      tail -n 20 "${log}" >&2
      exit 1
    fi
  fi
}

run "${WORK_DIR}/preprocess.log" "${PYTHON}" "${INFER_DIR}/preprocess.py" --config-file "${CONFIG_FILE}" \
  --query-dir "${QUERY_DIR}" --gallery-dir "${GALLERY_DIR}" --output-dir "${PREP_DIR}" "${OPTS[@]}"

if [ "${RUNNER}" = "cpp" ]; then
  if [ ! -x "${BUILD_DIR}/fastreid_infer" ]; then
    run "${WORK_DIR}/build.log" env BUILD_DIR="${BUILD_DIR}" bash "${INFER_DIR}/build.sh"
  fi
  if [ -n "${MINDSPORE_PATH:-}" ]; then
    export LD_LIBRARY_PATH="${MINDSPORE_PATH}/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
  fi
  for split in query gallery; do
    run "${WORK_DIR}/infer_${split}.log" "${BUILD_DIR}/fastreid_infer" --mindir_path="${MINDIR}" \
      --input_path="${PREP_DIR}/${split}" --output_path="${RESULT_DIR}/${split}" --device_id="${DEVICE_ID}"
  done
else
  for split in query gallery; do
    run "${WORK_DIR}/infer_${split}.log" "${PYTHON}" "${INFER_DIR}/infer_mindir.py" --mindir_path "${MINDIR}" \
      --input_path "${PREP_DIR}/${split}" --output_path "${RESULT_DIR}/${split}" --batch-size "${BATCH_SIZE}"
  done
fi

run "${WORK_DIR}/postprocess.log" "${PYTHON}" "${INFER_DIR}/postprocess.py" --config-file "${CONFIG_FILE}" \
  --preprocess-dir "${PREP_DIR}" --result-dir "${RESULT_DIR}" --output "$(pwd)/acc.log" "${OPTS[@]}"

if [ "${DRY_RUN}" -eq 0 ]; then
  echo "run_infer_310.sh: results in $(pwd)/acc.log"
  cat "$(pwd)/acc.log"
fi
