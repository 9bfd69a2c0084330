#!/usr/bin/env bash
# Full three-step pipeline (remove-bg → fix-lighting → upscale 2x, PNG out) over 200 generated
# 1–2 MP JPEGs through the release binary: images/s and peak RSS at concurrency 8.
# Usage: bench/pipeline.sh [DIR] [COUNT] [CONCURRENCY]; FEATURES=onnxruntime builds with that
# cargo feature (then RETOUCH_ONNXRUNTIME picks the engine); RETOUCH_MODEL_DIR picks the networks.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/retouch-pipeline}
COUNT=${2:-200}
CONC=${3:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
[ -x /usr/bin/time ] || { echo "GNU time is required (apt-get install time)" >&2; exit 1; }

cargo build --release --quiet --bin retouch --example testset ${FEATURES:+--features "$FEATURES"}
if [ "$(ls "$DIR/in"/*.jpg 2>/dev/null | wc -l)" -ne "$COUNT" ]; then
  rm -rf "$DIR"
  "$CARGO_TARGET_DIR/release/examples/testset" --out "$DIR/in" --count "$COUNT" --seed 42 --min 1000 --max 1400 --jpeg
fi
MP=$(awk -F, 'NR>1 {s += $7*$8} END {printf "%.2f", s/(NR-1)/1e6}' "$DIR/in/manifest.csv")
cat > "$DIR/pipeline.yaml" <<YAML
version: 1
name: bench
inputs: ["in/*.jpg"]
output: { dir: out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: fix-lighting
    models: [local]
  - op: upscale
    models: [local]
    factor: 2
limits: { concurrency: $CONC }
YAML
rm -rf "$DIR/out" "$DIR/.retouch"   # a fresh run: nothing cached
/usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$CARGO_TARGET_DIR/release/retouch" run "$DIR/pipeline.yaml" -q
read -r WALL RSS_KB < "$DIR/time.txt"
ROWS=$(($(wc -l < "$DIR/out/report.csv") - 1))
OK=$(grep -c ',ok,' "$DIR/out/report.csv" || true)
awk -v n="$COUNT" -v w="$WALL" -v r="$RSS_KB" -v mp="$MP" -v c="$CONC" -v rows="$ROWS" -v ok="$OK" -v cores="$(nproc)" 'BEGIN {
  printf "pipeline: %d images (mean %s MP), concurrency %d, %d cores: wall %.2f s, %.2f images/s, peak RSS %.0f MB, rows %d (%d ok)\n",
         n, mp, c, cores, w, n / w, r / 1024, rows, ok }'
