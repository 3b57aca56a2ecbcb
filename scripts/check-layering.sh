#!/usr/bin/env bash
# Persistence goes through core::repo only: fails when a sea-orm query builder, an ActiveModel or
# SQL text appears in the binaries' or the core library's sources outside core/src/repo. (The
# migration crate owns the schema, the entity crate mirrors it, core/src/queue.rs is the queue
# backend and speaks to the embedded queue's own tables, the test kit (testkit/) creates
# test databases; tests and benchmarks seed data as they need.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

pattern='Entity::(find|insert|update|delete)|::find_by_id\(|ActiveModel \{|Statement::from|execute_unprepared|query_(all|one)(_raw)?\(|sea_query::Query|Query::(select|insert|update|delete)\(|"(SELECT|INSERT|UPDATE|DELETE) '
found=$(grep -rnE "$pattern" --include='*.rs' api/src worker/src scheduler/src core/src \
  | grep -v -e '^core/src/repo/' -e '^core/src/queue.rs:' || true)
if [ -n "$found" ]; then
  echo "check-layering: queries outside core/src/repo (move them into a repo function):" >&2
  echo "$found" >&2
  exit 1
fi
echo "check-layering: no query builder or SQL outside core/src/repo"

# The binaries carry no test-only code, and the scheduler does not need the worker crate.
for bin in sentinela-api sentinela-worker sentinela-scheduler; do
  if cargo tree --locked -p "$bin" -e normal --prefix none | grep -q '^sentinela-testkit '; then
    echo "check-layering: $bin depends on the test kit outside its dev-dependencies" >&2
    exit 1
  fi
done
if cargo tree --locked -p sentinela-scheduler -e normal --prefix none | grep -q '^sentinela-worker '; then
  echo "check-layering: the scheduler depends on the worker crate" >&2
  exit 1
fi
echo "check-layering: no test kit in the binaries; the scheduler does not depend on the worker"
