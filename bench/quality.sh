#!/usr/bin/env bash
# Quality benchmark: generate a seeded test set, run our ops and the baselines, score everything
# with the crate's own metrics. Usage: bench/quality.sh [OUT_DIR] [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/retouch-quality}
COUNT=${2:-60}
SEED=${3:-7}
JOBS=${JOBS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

command -v convert >/dev/null && convert -version | grep -q ImageMagick || { echo "ImageMagick 'convert' is required" >&2; exit 1; }
command -v vips >/dev/null || { echo "vips is required" >&2; exit 1; }
python3 -c 'import cv2, numpy' 2>/dev/null || python3 -m pip install --quiet opencv-python-headless numpy

rm -rf "$OUT"
cargo build --release --quiet --examples
cargo run --release --quiet --example testset -- --out "$OUT" --count "$COUNT" --seed "$SEED" --min 400 --max 1000
cargo run --release --quiet --example quality -- --dir "$OUT"

python3 bench/grabcut.py "$OUT"

# Baselines per case: ImageMagick -auto-level (lighting), ImageMagick and vips Lanczos 2x (upscale).
baseline() {
  d=$1
  convert "$d/degraded.png" -auto-level "$d/autolevel.png"
  convert "$d/down.png" -filter Lanczos -resize 200% "$d/im_up.png"
  vips resize "$d/down.png" "$d/vips_up.png" 2 --kernel lanczos3
}
export -f baseline
find "$OUT" -mindepth 1 -maxdepth 1 -type d -print0 | xargs -0 -P "$JOBS" -I{} bash -c 'baseline "$1"' _ {}

cargo run --release --quiet --example score -- --dir "$OUT"
