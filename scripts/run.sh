#!/usr/bin/env bash
# The run command: builds Sentinela and starts it in embedded mode (SQLite database file, embedded
# queue, local detector) with the demo city. Extra arguments go to sentinela-api.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh
cargo build --release --locked -p sentinela-api
bin="${CARGO_TARGET_DIR:-$root/target}/release/sentinela-api"
"$bin" seed
exec "$bin" --standalone --demo "$@"
