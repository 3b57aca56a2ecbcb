#!/usr/bin/env bash
# Sourced by the benchmarks that run the seed's stack beside ours: prepares a private copy of the
# anchors (the seed's Celery, FastAPI + Celery, Python sampling and search pipeline) and its
# Python environment, and sets `anchors` to it.
#
# The anchors are not part of this repository: point SEED_ANCHORS_DIR at them (default: an
# `anchors` folder beside the checkout's parent, `../shared/anchors` on the team's machines).
# They write results next to themselves, so they run from a copy under the cache folder.
root=${root:?set root before sourcing bench/anchors.sh}
source_dir=${SEED_ANCHORS_DIR:-$root/../shared/anchors}
if [[ ! -f $source_dir/seed_pipeline/seed_pipeline.sh ]]; then
  echo "bench: the seed's anchors are not at $source_dir; set SEED_ANCHORS_DIR" >&2
  exit 2
fi
anchors=${SEED_ANCHORS_COPY:-/var/cache/sentinela/anchors}
mkdir -p "$anchors"
# Refresh the scripts, keep the copy's .venv, data/ and results/.
(cd "$source_dir" && tar --exclude=./.venv --exclude=./data --exclude=./results/raw -cf - .) |
  (cd "$anchors" && tar -xf -)
bash "$anchors/scripts/ensure_venv.sh"
# The seed pipeline's detector: the same NanoDet-m file this repository ships.
export SEED_MODEL=$root/models/nanodet_m_416.onnx
export anchors
