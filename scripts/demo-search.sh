#!/usr/bin/env bash
# Sourced by check-run.sh and check-deb.sh: waits for a `sentinela-api --standalone --demo` to print
# its banner, then runs the search it printed and checks the red bus was found on 3 cameras.

# wait_for_banner <stdout file> <pid>: until the printed search appears (or the process dies).
wait_for_banner() {
  local out=$1 pid=$2
  for _ in $(seq 1 900); do
    grep -q "^  curl -s http" "$out" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "sentinela-api ended before it printed the demo search" >&2
      return 1
    fi
    sleep 1
  done
  echo "no demo banner in 900 s" >&2
  return 1
}

# run_printed_search <stdout file>: the printed commands, as printed; prints what was found.
run_printed_search() {
  local out=$1 commands trajectory
  # The pattern's `$(` is literal text, not an expansion.
  # shellcheck disable=SC2016
  commands=$(sed -n '/^  id=\$(curl/,/^  curl -s http/p' "$out" | sed 's/^  //')
  trajectory=$(timeout 300 bash -c "$commands")
  echo "$trajectory" | python3 -c '
import json, sys
t = json.load(sys.stdin)
points = t["points"]
assert points, "no sightings"
assert all(p["label"] == "bus" and p["color"] == "red" for p in points), points
cams = [c["camera_name"] for c in t["cameras_visited"]]
assert len(cams) == 3, cams
print(f"{len(points)} sightings of the red bus across {cams}")
'
}
