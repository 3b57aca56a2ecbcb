#!/usr/bin/env bash
# One search's throughput with 1, 2 and 3 `sentinela-worker` processes (distributed mode: the
# api and the workers on PostgreSQL and Redis at 127.0.0.1), each run on a fresh database so
# nothing comes from the cache; prints wall time, video-seconds per wall-second, the speed-up over
# one worker, CPU seconds per video-second and the largest worker's peak RSS.
#
# bash bench/scaling.sh   (~2 minutes after the build; uses the search bench's recordings)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -p sentinela-worker
BENCH_SCALING=1 cargo bench --locked -p sentinela-api --bench search
