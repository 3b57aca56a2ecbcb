#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the tests use answer on 127.0.0.1, starting the local
# servers if they are installed but stopped. Tests can be pointed elsewhere with TEST_DATABASE_URL
# and TEST_REDIS_URL.
set -euo pipefail

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 30); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "services: $what does not answer" >&2
  return 1
}

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "services: starting PostgreSQL" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | head -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  echo "services: starting Redis" >&2
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for Redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
fi
