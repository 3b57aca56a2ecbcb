#!/usr/bin/env bash
# Frame sampling at 1 fps, ours against the seed's loop in the same run: the sampler bench's three
# modes (the seed's loop on our OpenCV, the exact sampler, the keyframe-aligned sampler), then the
# seed's own Python loop (the anchors' frames_bench, opencv-python reading every frame) on the
# same 10-minute file.
#
# bash bench/sampler-vs-seed.sh   (SEED_ANCHORS_DIR: where the anchors are; ~3 minutes, plus two
#                                  to generate the recording the first time)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# shellcheck source=bench/anchors.sh
source "$root/bench/anchors.sh"
BENCH_SEED_ANCHORS=$anchors cargo bench --locked -p sentinela-core --bench sampler
