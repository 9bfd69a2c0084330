#!/usr/bin/env bash
# Upscale speed: the same 200 generated 1–2 MP JPEGs upscaled 2x to PNG by ours (rayon over
# files), vips and ImageMagick (each `xargs -P 2` over files). Usage: bench/upscale_speed.sh [DIR] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/retouch-speed}
COUNT=${2:-200}
JOBS=${JOBS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

command -v convert >/dev/null && convert -version | grep -q ImageMagick || { echo "ImageMagick 'convert' is required" >&2; exit 1; }
command -v vips >/dev/null || { echo "vips is required" >&2; exit 1; }

cargo build --release --quiet --examples
if [ "$(ls "$DIR/in"/*.jpg 2>/dev/null | wc -l)" -ne "$COUNT" ]; then
  rm -rf "$DIR"
  cargo run --release --quiet --example testset -- --out "$DIR/in" --count "$COUNT" --seed 99 --min 1000 --max 1500 --jpeg
fi
MP=$(awk -F, 'NR>1 {s += $7*$8} END {printf "%.2f", s/(NR-1)/1e6}' "$DIR/in/manifest.csv")
echo "inputs: $COUNT JPEGs, mean $MP MP; output 2x PNG; $JOBS-way parallel over files; $(nproc) cores"

rate() { awk -v n="$COUNT" -v s="$1" 'BEGIN {printf "%.2f", n/s}'; }
timeit() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}'; }

rm -rf "$DIR/ours" "$DIR/vips" "$DIR/im"; mkdir -p "$DIR/vips" "$DIR/im"
echo "ours: $(RAYON_NUM_THREADS=$JOBS cargo run --release --quiet --example upscale_dir -- --input "$DIR/in" --output "$DIR/ours")"

vips_one() { vips resize "$1" "$2/vips/$(basename "${1%.jpg}").png" 2 --kernel lanczos3; }
im_one() { convert "$1" -filter Lanczos -resize 200% "$2/im/$(basename "${1%.jpg}").png"; }
export -f vips_one im_one
T=$(timeit bash -c "ls '$DIR'/in/*.jpg | xargs -P $JOBS -I{} bash -c 'vips_one \"\$1\" \"\$2\"' _ {} '$DIR'")
echo "vips: wall_s=$T images_per_s=$(rate "$T")"
T=$(timeit bash -c "ls '$DIR'/in/*.jpg | xargs -P $JOBS -I{} bash -c 'im_one \"\$1\" \"\$2\"' _ {} '$DIR'")
echo "imagemagick: wall_s=$T images_per_s=$(rate "$T")"
