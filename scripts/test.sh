#!/usr/bin/env bash
# The test command: installs what is missing, makes sure PostgreSQL and Redis answer, then runs
# formatting, lints and every test of the workspace. `.ci/run` runs exactly this.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh
bash scripts/services.sh

# Shell scripts parse and pass shellcheck.
for script in scripts/*.sh .ci/run bench/*.sh deploy.sh; do
  bash -n "$script"
done
shellcheck scripts/*.sh .ci/run bench/*.sh deploy.sh

# Monitoring configuration: promtool, amtool, dashboards and runbook links.
bash scripts/check-observability.sh

# Persistence only through core::repo.
bash scripts/check-layering.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# Production deploy files: Compose v2 validation, compose rules, Dockerfile package lists and the
# runtime image's libraries against the binaries just built.
bash scripts/check-deploy.sh

# Kubernetes manifests: every overlay renders, validates against the schemas offline and passes
# checkov; each check seen to fail on a seeded fault.
bash scripts/check-k8s.sh

# Property-based API tests against the OpenAPI document: no 5xx, every answer matches the schema.
bash scripts/schemathesis.sh

# The README's run command, end to end: Swagger UI answers and the printed search finds the bus.
bash scripts/check-run.sh

# Installing like a real tool: cargo install runs the demo from an empty directory; the Debian
# package builds, its units verify, its unpacked api answers /health/ready.
bash scripts/check-deb.sh
