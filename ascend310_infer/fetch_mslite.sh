#!/usr/bin/env bash
# Fetch the MindSpore C++ inference API (headers + libraries) from the mindspore-lite 2.0.0
# wheel, so that src/main.cc can be compiled (and tests/test_infer310.py compiles it) on a
# machine without the Ascend toolkit:
#
#   bash ascend310_infer/fetch_mslite.sh [DEST]     # default ~/.cache/fastreid_ms/mindspore_lite
#   MINDSPORE_PATH=<DEST> bash ascend310_infer/build.sh
#
# The wheel (~170 MB) is downloaded with pip (the cp37 wheel: the API files do not depend on
# the Python version) and only include/ and the libraries the API library needs are unpacked
# (~310 MB). Runs once: an existing DEST with include/api/model.h is kept.
set -euo pipefail

DEST="${1:-${XDG_CACHE_HOME:-${HOME}/.cache}/fastreid_ms/mindspore_lite}"
VERSION="${MSLITE_VERSION:-2.0.0}"
PYTHON="${PYTHON:-python3}"

if [ -f "${DEST}/include/api/model.h" ]; then
  echo "fetch_mslite.sh: ${DEST} already holds the C++ API"
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT
"${PYTHON}" -m pip download --no-deps --only-binary=:all: --python-version 3.7 \
  "mindspore-lite==${VERSION}" -d "${TMP}"
WHEEL="$(ls "${TMP}"/mindspore_lite-*.whl | head -n 1)"
STAGE="${DEST}.partial"
rm -rf "${STAGE}"
"${PYTHON}" - "${WHEEL}" "${STAGE}" <<'PY'
import os, shutil, sys, zipfile
wheel, stage = sys.argv[1], sys.argv[2]
# The API library and what it links against (its DT_NEEDED entries found in the wheel).
libs = {"libmindspore-extendrt_python.so", "libmindspore_core.so", "libmindspore_glog.so.0",
        "libdnnl.so.2", "libmindspore_converter.so", "libmslite_converter_plugin.so",
        "libopencv_core.so.4.5", "libopencv_imgcodecs.so.4.5", "libopencv_imgproc.so.4.5"}
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        rel = name.split("/", 1)[1] if name.startswith("mindspore_lite/") else None
        if rel is None or name.endswith("/"):
            continue
        if rel.startswith("include/") or (rel.startswith("lib/") and rel[4:] in libs):
            target = os.path.join(stage, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
mkdir -p "$(dirname "${DEST}")"
rm -rf "${DEST}"
mv "${STAGE}" "${DEST}"
echo "fetch_mslite.sh: C++ API of mindspore-lite ${VERSION} in ${DEST}"
