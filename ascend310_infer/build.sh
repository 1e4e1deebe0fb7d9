#!/usr/bin/env bash
# Builds the Ascend 310 feature extractor: ascend310_infer/build/fastreid_infer.
#
#   bash ascend310_infer/build.sh            # MINDSPORE_PATH from the environment or pip
#   MINDSPORE_PATH=/path/to/mindspore bash ascend310_infer/build.sh
#   BUILD_DIR=/tmp/b bash ascend310_infer/build.sh
#
# MINDSPORE_PATH is the folder holding include/api/model.h and lib/ (see CMakeLists.txt).
# Unset, it is taken from the installed mindspore-ascend / mindspore / mindspore-lite package.
# Extra CMake arguments may be given in CMAKE_ARGS (e.g. -DFASTREID_USE_ASCEND_DEVICE_INFO=ON).
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="${BUILD_DIR:-${SRC_DIR}/build}"
PYTHON="${PYTHON:-python3}"

die() { echo "build.sh: ERROR: $*" >&2; exit 1; }

command -v cmake >/dev/null 2>&1 || die "cmake not found: install CMake >= 3.14 (apt-get install cmake)."
command -v "${CXX:-c++}" >/dev/null 2>&1 || die "no C++ compiler ('${CXX:-c++}') found: install g++ >= 7."

has_api() { [ -n "$1" ] && [ -f "$1/include/api/model.h" ]; }

if [ -z "${MINDSPORE_PATH:-}" ]; then
  for pkg in mindspore-ascend mindspore mindspore-lite mindspore_lite; do
    loc="$("${PYTHON}" -m pip show "${pkg}" 2>/dev/null | sed -n 's/^Location: //p' | head -n 1)" || true
    [ -n "${loc}" ] || continue
    for sub in mindspore mindspore_lite; do
      if has_api "${loc}/${sub}"; then MINDSPORE_PATH="${loc}/${sub}"; break 2; fi
    done
  done
fi
if [ -z "${MINDSPORE_PATH:-}" ]; then
  die "MindSpore C++ inference API not found. Set MINDSPORE_PATH to the folder holding
  include/api/model.h and lib/ (the Ascend inference package, or a mindspore-lite wheel / tarball;
  the MindSpore CPU/GPU wheels do not ship the C++ API). See the Ascend 310 inference guide:
  source the Ascend toolkit's set_env.sh before building."
fi
has_api "${MINDSPORE_PATH}" || die "MINDSPORE_PATH=${MINDSPORE_PATH} has no include/api/model.h."
ls "${MINDSPORE_PATH}"/lib/libmindspore*.so >/dev/null 2>&1 \
  || die "MINDSPORE_PATH=${MINDSPORE_PATH} has no lib/libmindspore*.so."

echo "build.sh: MindSpore C++ API from ${MINDSPORE_PATH}"
mkdir -p "${BUILD_DIR}"
# shellcheck disable=SC2086
cmake -S "${SRC_DIR}" -B "${BUILD_DIR}" -DMINDSPORE_PATH="${MINDSPORE_PATH}" ${CMAKE_ARGS:-}
cmake --build "${BUILD_DIR}" -j "$(nproc 2>/dev/null || echo 2)"
echo "build.sh: built ${BUILD_DIR}/fastreid_infer"
echo "build.sh: at run time add ${MINDSPORE_PATH}/lib to LD_LIBRARY_PATH"
