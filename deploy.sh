#!/usr/bin/env bash
# Deploys (or updates) the Sentinela production stack with Docker Compose:
#   1. creates .env from .env.prod.example with random secrets on first run (mode 600);
#   2. builds the image;
#   3. starts PostgreSQL and Redis and runs the one-shot migration;
#   4. `up -d` (with --scale-workers N: N worker replicas);
#   5. waits until every service with a health check is healthy, then prints status and URLs.
# Idempotent: running it again rebuilds, migrates (a no-op when up to date) and recreates only
# what changed.
#
# Usage: ./deploy.sh [--scale-workers N] [--no-build] [--timeout SECONDS]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

workers=""
build=1
timeout=300

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --scale-workers)
      [ "$#" -ge 2 ] || { echo "deploy: --scale-workers needs a number" >&2; exit 2; }
      workers=$2
      shift 2
      ;;
    --no-build)
      build=0
      shift
      ;;
    --timeout)
      [ "$#" -ge 2 ] || { echo "deploy: --timeout needs a number of seconds" >&2; exit 2; }
      timeout=$2
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "deploy: unknown argument: $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

if [ -n "$workers" ] && ! [[ "$workers" =~ ^[1-9][0-9]*$ ]]; then
  echo "deploy: --scale-workers must be a positive whole number, got '$workers'" >&2
  exit 2
fi
if ! [[ "$timeout" =~ ^[1-9][0-9]*$ ]]; then
  echo "deploy: --timeout must be a positive number of seconds, got '$timeout'" >&2
  exit 2
fi

for tool in docker openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "deploy: $tool is not installed" >&2; exit 1; }
done
docker compose version >/dev/null 2>&1 || { echo "deploy: the Docker Compose v2 plugin is missing (docker compose)" >&2; exit 1; }

# 1. .env with generated secrets.
if [ ! -f .env ]; then
  umask 077
  cp .env.prod.example .env
  echo "deploy: created .env from .env.prod.example"
fi
chmod 600 .env
while grep -qE '^[A-Z_]+=generate$' .env; do
  var=$(grep -m1 -E '^[A-Z_]+=generate$' .env | cut -d= -f1)
  if [ "$var" = SENTINELA_ADMIN_KEY ]; then
    secret="snt_$(openssl rand -hex 24)"
  else
    secret=$(openssl rand -hex 24)
  fi
  sed -i "s/^${var}=generate\$/${var}=${secret}/" .env
  echo "deploy: generated $var"
done

compose=(docker compose -f docker-compose.prod.yml --env-file .env)
"${compose[@]}" config -q

# 2. Image.
if [ "$build" -eq 1 ]; then
  "${compose[@]}" build api
fi

# 3. Data services and migrations (the one-shot `migrate` service).
"${compose[@]}" up -d --wait --wait-timeout "$timeout" postgres redis
"${compose[@]}" run --rm migrate

# 4. Everything. Without --scale-workers, keep the number of workers already running.
if [ -z "$workers" ]; then
  running=$("${compose[@]}" ps -q worker | wc -l)
  if [ "$running" -gt 0 ]; then
    workers=$running
  fi
fi
scale=()
if [ -n "$workers" ]; then
  scale=(--scale "worker=$workers")
fi
"${compose[@]}" up -d --remove-orphans "${scale[@]}"

# 5. Healthy?
deadline=$((SECONDS + timeout))
while :; do
  unhealthy=$("${compose[@]}" ps --format '{{.Service}} {{.Health}}' | awk '$2 != "" && $2 != "healthy" {print $1}' | sort -u | tr '\n' ' ')
  if [ -z "$unhealthy" ]; then
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "deploy: still not healthy after ${timeout}s: $unhealthy" >&2
    echo "deploy: see \`${compose[*]} logs <service>\` and docs/troubleshooting.md" >&2
    "${compose[@]}" ps >&2
    exit 1
  fi
  sleep 3
done

"${compose[@]}" ps
api_port=$(grep -E '^API_PORT=' .env | cut -d= -f2)
grafana_port=$(grep -E '^GRAFANA_PORT=' .env | cut -d= -f2)
cat <<EOF

Sentinela is up.
  API and Swagger UI: http://localhost:${api_port:-8000}/docs  (admin key: SENTINELA_ADMIN_KEY in .env)
  Grafana:            http://localhost:${grafana_port:-3000}   (admin / GRAFANA_ADMIN_PASSWORD in .env)
  Prometheus:         http://127.0.0.1:9090   Alertmanager: http://127.0.0.1:9093
  RTSP (viewer):      rtsp://viewer:<MEDIAMTX_VIEWER_PASSWORD>@localhost:8554/<camera path>
  Workers:            $("${compose[@]}" ps --format '{{.Service}}' worker | wc -l)
EOF
