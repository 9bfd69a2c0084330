#!/usr/bin/env bash
# Fetches ONNX Runtime's shared library for the tests of the `onnxruntime` feature, out of the
# PyPI wheel `onnxruntime` (pinned version and SHA-256 of the library), and prints the path to
# export as RETOUCH_ONNXRUNTIME. Needs python3 with pip (PyPI only); x86_64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/test-weights
VERSION=1.32.0
FILE=$OUT/libonnxruntime.so.$VERSION
SUM=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f
if [ -f "$FILE" ] && echo "$SUM  $FILE" | sha256sum -c --status; then
  echo "$PWD/$FILE"
  exit 0
fi
rm -rf "$OUT/ort-wheel" && mkdir -p "$OUT/ort-wheel"
python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
  "onnxruntime==$VERSION" -d "$OUT/ort-wheel" >&2
python3 - "$OUT/ort-wheel" "$FILE" "$VERSION" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
name = "onnxruntime/capi/libonnxruntime.so." + sys.argv[3]
with zipfile.ZipFile(wheel) as z, z.open(name) as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
shutil.move(sys.argv[2] + ".tmp", sys.argv[2])
PY
rm -rf "$OUT/ort-wheel"
echo "$SUM  $FILE" | sha256sum -c --status || { echo "$FILE: SHA-256 mismatch" >&2; rm -f "$FILE"; exit 1; }
echo "$PWD/$FILE"
