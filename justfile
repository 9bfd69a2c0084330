# retouch tasks. `just --list` shows them.

# Build the release binary.
build:
    cargo build --release

# Run the whole test suite (what CI runs after lint).
test:
    cargo test

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Run the demo pipeline on the bundled samples (no AWS account needed).
demo:
    cargo run --release -- run pipelines/demo.yaml

# Validate the demo manifest and show the routes, processing nothing.
check:
    cargo run --release -- check pipelines/demo.yaml

# All benchmarks; figures go to BENCHMARKS.md by hand.
bench: bench-quality bench-upscale bench-pipeline

# Quality of the local ops against ground truth and against GrabCut / ImageMagick baselines.
bench-quality:
    bash bench/quality.sh

# Upscale speed against vips and ImageMagick on the same files.
bench-upscale:
    bash bench/upscale_speed.sh

# Throughput and peak RSS of the full three-step pipeline over 200 generated 1-2 MP images.
bench-pipeline:
    bash bench/pipeline.sh

# The same checks CI runs, from scratch.
ci:
    bash .ci/run
