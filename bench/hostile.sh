#!/usr/bin/env bash
# Peak RSS of the release binary over the hostile image set (decompression bombs in every
# chunk kind the decoders inflate, headers claiming billions of pixels, corrupt and lying files)
# at concurrency 8, and whether every file got the reason it must. Bombs inflate to 400 MiB.
# Usage: bench/hostile.sh [DIR] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/retouch-hostile}
CONC=${2:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
[ -x /usr/bin/time ] || { echo "GNU time is required (apt-get install time)" >&2; exit 1; }

cargo build --release --quiet --bin retouch --example hostile
rm -rf "$DIR"
"$CARGO_TARGET_DIR/release/examples/hostile" "$DIR" --bomb-mib 400 > /dev/null
cat > "$DIR/pipeline.yaml" <<YAML
version: 1
name: hostile
inputs: ["in/*"]
output: { dir: out, format: png }
steps:
  - op: remove-bg
    models: [local]
  - op: fix-lighting
    models: [local]
limits: { concurrency: $CONC, max_megapixels: 12 }
YAML
set +e
/usr/bin/time -f "%e %M" -o "$DIR/time.txt" "$CARGO_TARGET_DIR/release/retouch" run "$DIR/pipeline.yaml" -q
CODE=$?
set -e
read -r WALL RSS_KB < <(tail -n 1 "$DIR/time.txt")
FILES=$(ls "$DIR/in" | wc -l)
BYTES=$(du -sb "$DIR/in" | cut -f1)
# The reason of each image: its first failed row's, else ok.
MISMATCHES=$(awk -F, 'NR==FNR { if ($1 == "image") want[$2] = $3; next }
  FNR > 1 { sub("^in/", "", $2); if (!($2 in got) || got[$2] == "ok") got[$2] = ($7 == "ok" ? "ok" : $6) }
  END { for (f in want) if (got[f] != want[f]) printf "%s: want %s, got %s\n", f, want[f], got[f] }' \
  "$DIR/expected.csv" "$DIR/out/report.csv")
awk -v f="$FILES" -v b="$BYTES" -v w="$WALL" -v r="$RSS_KB" -v c="$CONC" -v code="$CODE" 'BEGIN {
  printf "hostile: %d files (%.1f MB on disk, bombs inflating to 400 MiB), concurrency %d: exit %d, wall %.2f s, peak RSS %.0f MB\n",
         f, b / 1e6, c, code, w, r / 1024 }'
if [ -n "$MISMATCHES" ]; then echo "$MISMATCHES"; exit 1; fi
echo "every file got its expected reason"
