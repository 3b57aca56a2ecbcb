#!/usr/bin/env bash
# POST /api/v1/searches under load: 32 connections on loopback for 15 s with wrk (Debian's `wrk`),
# against the release `sentinela-api` on (a) the embedded default (SQLite + embedded queue) and
# (b) PostgreSQL + Redis. Each request validates the body, inserts a search and enqueues a job.
# The seed's endpoint (FastAPI + uvicorn + SQLite + Celery apply_async, the anchors'
# api_baseline.sh) runs first in the same run, with the same wrk load, and the ratios are printed.
#
# bash bench/post-searches.sh    (needs PostgreSQL and Redis on 127.0.0.1 for the second case;
#                                 SEED_ANCHORS_DIR: where the anchors are;
#                                 SENTINELA_API_BIN: measure that binary instead of this build)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -p sentinela-api >/dev/null 2>&1
# shellcheck source=bench/anchors.sh
source "$root/bench/anchors.sh"
echo "== seed: FastAPI + uvicorn (1 worker) + SQLite + Celery apply_async on Redis (anchors/api_baseline.sh)"
seed=$(bash "$anchors/api_baseline.sh")
echo "$seed"
seed_rps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["req_per_s"])' "$seed")
# SENTINELA_API_BIN: another build to measure (an older commit's, say), instead of this one's.
bin=${SENTINELA_API_BIN:-$CARGO_TARGET_DIR/release/sentinela-api}
work=$(mktemp -d)
key="snt_bench_key"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
wrk.body = '{"city_id": 1, "vehicle_type": "ônibus", "color": "vermelho", "plate": "ABC1D23", "start_date": "2026-11-29T08:00:00-03:00", "end_date": "2026-11-29T12:00:00-03:00"}'
LUA

finish_searches() {
  local sql="UPDATE vehicle_search SET status = 'completed', frames_analyzed = 10, detector_calls = 1 WHERE status = 'pending'"
  # On PostgreSQL, through one psql session (as a worker keeps its connection), one UPDATE per
  # shard of the city's in-flight count (`search_load`, by id modulo 8), each its own
  # transaction: a transaction then holds one of those rows, as a worker ending a search does. One
  # UPDATE of every pending search held them all in whatever order it met them, for tens of ms,
  # and deadlocked with a batch of starts taking them in order (PostgreSQL breaks a deadlock
  # after 1 s).
  case $1 in
    postgres*)
      # `exec`: killing this job stops psql, and the loop feeding it ends on its next write.
      exec psql -q "$1" >/dev/null 2>&1 < <(while sleep 0.2; do
        for k in 0 1 2 3 4 5 6 7; do echo "$sql AND id % 8 = $k;"; done
      done) ;;
  esac
  local file=${1#sqlite://}
  file=${file%%\?*}
  while sleep 0.2; do
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=5); c.execute(sys.argv[2]); c.commit()' \
      "$file" "$sql" 2>/dev/null || true
  done
}

run_case() {
  local name=$1 db=$2 redis=$3 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  DATABASE_URL="$db" REDIS_URL="$redis" "$bin" seed >/dev/null
  # The quotas are lifted: this measures the request path, not the policy (which would answer
  # 429 after 4 searches in flight and 600 requests a minute).
  DATABASE_URL="$db" REDIS_URL="$redis" API_BIND="127.0.0.1:$port" SENTINELA_ADMIN_KEY="$key" \
    METRICS_BIND=127.0.0.1:0 SENTINELA__API__MAX_SEARCHES_IN_FLIGHT=1000000000 \
    SENTINELA__API__REQUESTS_PER_MINUTE_PER_KEY=1000000000 RUST_LOG=warn LOG_FORMAT=json "$bin" > "$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
  echo "== $name"
  # No worker runs: a loop stands in for them and ends the searches as they come (every 0.2 s),
  # so the city's searches in flight stay as few as in production, where the quota (4 by
  # default) bounds them; lifting the quota alone would let 15,000 pending searches pile up.
  finish_searches "$db" &
  pids+=($!)
  # The same warm-up as the seed's run (3 s, not counted).
  wrk -t2 -c32 -d3s -s "$work/post.lua" "http://127.0.0.1:$port/api/v1/searches" >/dev/null
  wrk -t2 -c32 -d15s --latency -s "$work/post.lua" "http://127.0.0.1:$port/api/v1/searches" \
    > "$work/$name.wrk"
  grep -E "Requests/sec|Non-2xx|Socket errors|^ +50%|^ +99%" "$work/$name.wrk"
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.wrk")
  echo "   ratio to the seed (same run): $(python3 -c "print(f'{$rps / $seed_rps:.2f}x')")"
}

run_case "embedded (SQLite + embedded queue)" "sqlite://$work/bench.db?mode=rwc" ""
if pg_isready -h 127.0.0.1 -q && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  db="sentinela_bench_$$"
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $db" >/dev/null
  redis-cli -n 13 flushdb >/dev/null
  # Loopback without TLS, as compose's PostgreSQL runs: Debian's server offers TLS, and the
  # default `sslmode=prefer` would encrypt every query (see DATABASE_URL in docs/configuration.md).
  run_case "distributed (PostgreSQL + Redis)" "postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" "redis://127.0.0.1:6379/13"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null || true
fi
echo "targets (issue): >= 5x the seed's requests/s, p99 < 20 ms on PostgreSQL + Redis"
