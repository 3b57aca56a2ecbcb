#!/usr/bin/env bash
# Job-queue throughput, ours against Celery in the same run: the anchors' celery_throughput.sh
# (Celery 5.7, prefork c=2 with its defaults, Redis broker: 20,000 no-op tasks drained from a
# pre-filled queue, and end to end while enqueueing) runs first; then the queue bench (apalis-redis
# with the production configuration, separate worker processes) prints its figures beside them.
#
# bash bench/queue-vs-celery.sh   (Redis on 127.0.0.1:6379 for ours; the anchor starts its own;
#                                  SEED_ANCHORS_DIR: where the anchors are; ~3 minutes)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# shellcheck source=bench/anchors.sh
source "$root/bench/anchors.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== Celery (anchors/celery_throughput.sh, N=20000)" >&2
N=20000 N_IO=0 OUT="$work/celery.json" RAW_DIR="$work/raw" \
  EXTRA_ARGS="--noop-configs=prefork_c2_default --overlap-configs=prefork_c2_default --io-configs=" \
  bash "$anchors/celery_throughput.sh" >&2
BENCH_CELERY_JSON="$work/celery.json" cargo bench --locked -p sentinela-worker --bench queue
