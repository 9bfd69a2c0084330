# retouch in a container, for AWS Batch array jobs and Kubernetes Indexed Jobs (deploy/).
#   docker build -t retouch .
#   docker run --rm -v "$PWD:/work" -w /work retouch run pipelines/demo.yaml
# Two stages: the build (the Rust toolchain, crates from crates.io) and a small runtime image
# holding only the binary and CA certificates, run as a non-root user. Model weights are never
# part of the image: install them into RETOUCH_MODEL_DIR (a volume) with `retouch models install`.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin retouch \
 && strip target/release/retouch

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/retouch retouch
COPY --from=build /src/target/release/retouch /usr/local/bin/retouch
USER 10001:10001
ENV RETOUCH_MODEL_DIR=/home/retouch/models
WORKDIR /home/retouch
ENTRYPOINT ["retouch"]
CMD ["--help"]
