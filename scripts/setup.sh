#!/usr/bin/env bash
# Installs the system packages Sentinela needs to build and run (deps/apt-build.txt) and the tools
# its checks use (deps/apt-tools.txt) when they are missing. Idempotent and quick when everything
# is there. Needs root (or sudo) only to install.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mapfile -t wanted < <(grep -hEv '^\s*(#|$)' "$root/deps/apt-build.txt" "$root/deps/apt-tools.txt")
missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

# Python tools from PyPI, pinned (deps/pip-tools.txt); a no-op when they are already there.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  -r "$root/deps/pip-tools.txt"

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "setup: these packages are missing and I am not root: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
