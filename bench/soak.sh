#!/usr/bin/env bash
# The resilience soak (not in CI): SOAK_MINUTES (30) of searches from 3 cities with a worker
# killed every 2 minutes, one Redis restart and one PostgreSQL restart; it fails unless every
# search completes with every task done and every point there once. Prints its figures.
#   bash bench/soak.sh            # 30 minutes
#   SOAK_MINUTES=5 bash bench/soak.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/sentinela/target}
bash scripts/setup.sh >/dev/null
bash scripts/services.sh >/dev/null
cargo build --locked --workspace --bins
cargo test --locked -p sentinela-worker --test resilience soak -- --ignored --nocapture
