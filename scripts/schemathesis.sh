#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from /openapi.json in all its
# phases (examples, coverage — boundary values such as numbers past i64 —, fuzzing, stateful) and
# checks that no answer is a 5xx and every answer matches the schema. Starts its own sentinela-api on a free
# port with a fresh SQLite database, authenticated with a bootstrap admin key.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin="$target/debug/sentinela-api"
[ -x "$bin" ] || cargo build -p sentinela-api --locked

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="snt_schemathesis_$(date +%s)"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [ -n "${api_pid:-}" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Seed first: it creates and migrates the database the server then opens.
(cd "$work" && DATABASE_URL="sqlite://$work/api.db?mode=rwc" "$bin" seed >/dev/null)
# `exec` so that $! is the server itself and the trap stops it.
(cd "$work" && DATABASE_URL="sqlite://$work/api.db?mode=rwc" API_BIND="127.0.0.1:$port" \
  METRICS_BIND=127.0.0.1:0 SENTINELA__API__REQUESTS_PER_MINUTE_PER_KEY=1000000 \
  SENTINELA__API__MAX_SEARCHES_IN_FLIGHT=1000000 SENTINELA_ADMIN_KEY="$key" RECORDINGS_DIR="$work" SNAPSHOT_DIR="$work/snapshots" \
  LOG_FORMAT=json RUST_LOG=warn exec "$bin" > "$work/api.log" 2>&1) &
api_pid=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break
  sleep 0.2
done

# Two passes: revoking API keys last (POST .../revoke and DELETE /api-keys/{id}), because a
# revoked key id may be the one this run authenticates with (the fuzzer guesses small ids), which
# would leave every later operation answering 401 and untested.
status=0
run() {
  local phases=$1
  shift
  schemathesis run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,response_schema_conformance \
    --phases "$phases" \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --seed 20261129 \
    --workers 1 "$@"
}
# The stateful phase follows the OpenAPI links from each create to the operations on what it
# created; the second pass has no create, so no links to follow.
run examples,coverage,fuzzing,stateful \
  --exclude-operation-id revoke_api_key --exclude-operation-id delete_api_key || status=$?
run examples,coverage,fuzzing \
  --include-operation-id revoke_api_key --include-operation-id delete_api_key || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed; API log:" >&2
  tail -n 50 "$work/api.log" >&2
fi
exit "$status"
