# syntax=docker/dockerfile:1.7
# Sentinela: one image with the three binaries (sentinela-api, sentinela-worker,
# sentinela-scheduler) and the migration CLI, built once. The compose file picks the command.
#
# Package lists are the repository's single source of truth: deps/apt-build.txt is also what
# scripts/setup.sh installs for CI; deps/apt-runtime.txt is checked against the binaries' linked
# libraries by scripts/check_config.py.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY deps/apt-build.txt deps/apt-build.txt
RUN apt-get update \
 && grep -Ev '^\s*(#|$)' deps/apt-build.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p sentinela-api -p sentinela-worker -p sentinela-scheduler -p migration -p sentinela-cli \
 && mkdir -p /out \
 && cp target/release/sentinela-api target/release/sentinela-worker \
       target/release/sentinela-scheduler target/release/migration target/release/sentinela /out/

FROM debian:bookworm-slim AS runtime
COPY deps/apt-runtime.txt /tmp/apt-runtime.txt
RUN apt-get update \
 && grep -Ev '^\s*(#|$)' /tmp/apt-runtime.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/apt-runtime.txt \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin sentinela \
 && mkdir -p /app/models /recordings /snapshots \
 && chown sentinela:sentinela /recordings /snapshots
COPY --from=build /out/ /usr/local/bin/
COPY models/nanodet_m_416.onnx models/PROVENANCE.md /app/models/
WORKDIR /app
ENV SENTINELA__DETECTOR__MODEL_PATH=/app/models/nanodet_m_416.onnx \
    RECORDINGS_DIR=/recordings \
    SNAPSHOT_DIR=/snapshots \
    API_BIND=0.0.0.0:8000 \
    LOG_FORMAT=json \
    RUST_LOG=info \
    MALLOC_ARENA_MAX=1
USER sentinela:sentinela
EXPOSE 8000 9998 9999
# The API's liveness; worker and scheduler containers override it with their /health/live on
# their metrics port (docker-compose.prod.yml).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health/live || exit 1
CMD ["sentinela-api"]
