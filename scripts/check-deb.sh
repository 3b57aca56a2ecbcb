#!/usr/bin/env bash
# Installing like a real tool (docs/install-debian.md):
# 1. `cargo install` into a scratch root; the installed sentinela-api, started from an empty
#    directory (no models/, nothing of the checkout), runs the demo search to completion.
# 2. The Debian package builds (cargo-deb); dpkg-deb --info/--contents list the units, the model,
#    the settings file; systemd-analyze verify passes on the units (and fails on a seeded error).
# 3. Unpacked into a scratch root (dpkg -x), the packaged sentinela-api starts with the packaged
#    settings file and answers /health/ready.
# Run by scripts/test.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/demo-search.sh
source "$root/scripts/demo-search.sh"
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

tools=/var/cache/sentinela/cargo-tools
cargo_deb_version=3.8.0
if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -qF "$cargo_deb_version"; then
  cargo install --locked --quiet cargo-deb --version "$cargo_deb_version" --root "$tools"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 1. cargo install, then the demo from an empty directory.
for crate in api worker scheduler cli; do
  cargo install --locked --quiet --path "$crate" --root "$work/cargo-root" --force
done
ls "$work/cargo-root/bin/sentinela-api" "$work/cargo-root/bin/sentinela-worker" \
  "$work/cargo-root/bin/sentinela-scheduler" "$work/cargo-root/bin/sentinela" >/dev/null
mkdir "$work/empty"
port=$(free_port)
(cd "$work/empty" && exec env -u SENTINELA__DETECTOR__MODEL_PATH API_BIND="127.0.0.1:$port" \
  METRICS_BIND=127.0.0.1:0 "$work/cargo-root/bin/sentinela-api" --standalone --demo \
  >"$work/demo.out" 2>"$work/demo.err") &
pids+=($!)
wait_for_banner "$work/demo.out" "${pids[-1]}" || { cat "$work/demo.out" "$work/demo.err" >&2; exit 1; }
found=$(run_printed_search "$work/demo.out")
echo "cargo install: the installed sentinela-api, started in an empty directory, found $found"
grep -q 'model compiled into this binary' "$work/demo.err" \
  || { echo "the demo did not say it used the compiled-in model" >&2; exit 1; }
kill "${pids[-1]}"

# 2. The package.
cargo build --release --locked --quiet -p sentinela-api -p sentinela-worker -p sentinela-scheduler \
  -p sentinela-cli
"$tools/bin/cargo-deb" -p sentinela-api --no-build --quiet --output "$work/deb/"
deb=$(ls "$work"/deb/sentinela_*.deb)
dpkg-deb --info "$deb" >"$work/info.txt"
dpkg-deb --contents "$deb" >"$work/contents.txt"
for field in "Package: sentinela" "Depends:.*ffmpeg" "Depends:.*libopencv"; do
  grep -q "$field" "$work/info.txt" || { cat "$work/info.txt" >&2; echo "no $field" >&2; exit 1; }
done
for path in usr/bin/sentinela-api usr/bin/sentinela-worker usr/bin/sentinela-scheduler \
  usr/bin/sentinela usr/share/sentinela/models/nanodet_m_416.onnx etc/sentinela/sentinela.env \
  'lib/systemd/system/sentinela-api.service' 'lib/systemd/system/sentinela-worker@.service' \
  'lib/systemd/system/sentinela-scheduler.service'; do
  grep -q " \./$path\$" "$work/contents.txt" \
    || { cat "$work/contents.txt" >&2; echo "the package lacks $path" >&2; exit 1; }
done
echo "package: $(basename "$deb"), $(du -h "$deb" | cut -f1); units, model, settings listed"

# 3. Unpacked into a scratch root: the units verify, the api starts with the packaged settings.
dpkg-deb -x "$deb" "$work/root"
units="$work/root/lib/systemd/system"
# systemd-analyze verify checks that ExecStart= names an executable on this machine: the units are
# verified as packaged, with only /usr/bin/ pointed at the unpacked binaries.
mkdir -p "$work/units"
for unit in sentinela-api.service sentinela-scheduler.service 'sentinela-worker@.service'; do
  sed "s|/usr/bin/|$work/root/usr/bin/|" "$units/$unit" >"$work/units/$unit"
done
cp "$work/units/sentinela-worker@.service" "$work/units/sentinela-worker@2.service"
verify() { systemd-analyze verify --man=no "$@" >"$work/verify.txt" 2>&1 && ! grep -q . "$work/verify.txt"; }
verify "$work/units/sentinela-api.service" "$work/units/sentinela-scheduler.service" \
  "$work/units/sentinela-worker@2.service" \
  || { cat "$work/verify.txt" >&2; echo "systemd-analyze verify reported problems" >&2; exit 1; }
echo "systemd-analyze verify: sentinela-api, sentinela-scheduler, sentinela-worker@2 pass"
sed 's/^NoNewPrivileges=yes/NoNewPrivileges=maybe/' "$work/units/sentinela-api.service" \
  >"$work/units/broken.service"
if verify "$work/units/broken.service"; then
  echo "systemd-analyze verify did not catch a seeded error" >&2
  exit 1
fi
echo "seeded fault caught: systemd-analyze verify on a unit with NoNewPrivileges=maybe"

port=$(free_port)
mkdir -p "$work/state"
(
  set -a
  # shellcheck source=/dev/null
  . "$work/root/etc/sentinela/sentinela.env"
  set +a
  # Only what systemd and this check change: the state directory (StateDirectory=) and free
  # ports. The model is found beside the binary (<root>/usr/share/sentinela/models).
  export STATE_DIRECTORY="$work/state" API_BIND="127.0.0.1:$port" METRICS_BIND=127.0.0.1:0
  cd /
  # Split into words, as systemd splits an unbraced $VAR in ExecStart=.
  # shellcheck disable=SC2086
  exec "$work/root/usr/bin/sentinela-api" $SENTINELA_API_ARGS >"$work/pkg.out" 2>"$work/pkg.err"
) &
pids+=($!)
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$port/health/ready" >"$work/ready.json" 2>/dev/null; then break; fi
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/pkg.out" "$work/pkg.err" >&2; exit 1; }
  sleep 1
done
grep -q '"status":"ok"' "$work/ready.json" || { cat "$work/pkg.err" >&2; exit 1; }
ls "$work/state/sentinela.db" >/dev/null
grep -q "$work/root/usr/bin/../share/sentinela/models/nanodet_m_416.onnx" "$work/pkg.err" \
  || { echo "the packaged api did not load the packaged model" >&2; grep -i model "$work/pkg.err" >&2; exit 1; }
echo "unpacked package: sentinela-api with the packaged settings answers /health/ready: $(cat "$work/ready.json")"
