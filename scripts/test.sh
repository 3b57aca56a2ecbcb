#!/usr/bin/env bash
# The test command: installs what is missing, makes sure PostgreSQL and Redis answer, then runs
# formatting, lints and every test of the workspace. `.ci/run` runs exactly this.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh
bash scripts/services.sh

# Shell scripts parse.
for script in scripts/*.sh .ci/run; do
  bash -n "$script"
done

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
