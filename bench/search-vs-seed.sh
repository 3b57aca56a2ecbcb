#!/usr/bin/env bash
# One search end to end, ours against the seed's pipeline in the same run, on two data sets: the
# project's bench recordings and the seed pipeline's own (`seed_pipeline/make_data.sh`). For each,
# the seed's pipeline (Python, Celery prefork c=2, cv2 reading every frame, the same NanoDet model)
# runs first on the same files; then `sentinela-api --standalone` searches twice (the second is
# answered from the cache). Prints both and the ratios.
#
# bash bench/search-vs-seed.sh   (SEED_ANCHORS_DIR: where the anchors are; ~6 min the first time,
#                                 which generates both data sets; ~3 min after)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# shellcheck source=bench/anchors.sh
source "$root/bench/anchors.sh"
data="$anchors/data/seed_pipeline"
DATA_DIR=$data bash "$anchors/seed_pipeline/make_data.sh" >&2
BENCH_SEED_ANCHORS=$anchors BENCH_SEED_MANIFEST=$data/manifest_big.json \
  cargo bench --locked -p sentinela-api --bench search
