#!/usr/bin/env bash
# The run command: builds Sentinela and starts it in embedded mode (SQLite database file, embedded
# queue, local detector, workers in-process) with a demo city whose generated recordings show a red
# bus crossing three cameras. It prints the Swagger UI address and a ready search.
# Extra arguments go to sentinela-api; data lives in ./sentinela.db, ./recordings, ./snapshots.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh
cargo build --release --locked -p sentinela-api
bin="${CARGO_TARGET_DIR:-$root/target}/release/sentinela-api"
export API_BIND="${API_BIND:-127.0.0.1:8000}"
exec "$bin" --standalone --demo "$@"
