#!/usr/bin/env bash
# Deploys (or updates) the Sentinela production stack with Docker Compose:
#   1. creates .env from .env.prod.example with random secrets on first run (mode 600), and
#      writes each secret the containers read as a Docker secret under ./secrets;
#   2. builds the image;
#   3. starts PostgreSQL (the control database and São Paulo's) and Redis, and runs the one-shot
#      migration (the control database and every city's own database);
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

# One file per secret (Docker secrets, read through the *_FILE variables), rewritten from .env on
# every run so .env stays the one place to change them. The folder is the deploying user's alone
# (700); the files are world-readable (644) because a bind-mounted secret keeps its host mode and
# each container reads it as its own user — only the containers that declare a secret get it.
env_value() {
  grep -m1 -E "^$1=" .env | cut -d= -f2- || true
}
write_secret() {
  printf '%s' "$2" > "secrets/$1.tmp"
  chmod 644 "secrets/$1.tmp"
  mv "secrets/$1.tmp" "secrets/$1"
}
mkdir -p secrets
chmod 700 secrets
postgres_password=$(env_value POSTGRES_PASSWORD)
redis_password=$(env_value REDIS_PASSWORD)
write_secret postgres_password "$postgres_password"
write_secret postgres_cidade_sp_password "$(env_value POSTGRES_CIDADE_SP_PASSWORD)"
write_secret redis_password "$redis_password"
write_secret database_url "postgres://sentinela:${postgres_password}@postgres_admin:5432/sentinela"
write_secret redis_url "redis://:${redis_password}@redis:6379/0"
write_secret admin_key "$(env_value SENTINELA_ADMIN_KEY)"
write_secret grafana_admin_password "$(env_value GRAFANA_ADMIN_PASSWORD)"
write_secret mediamtx_metrics_password "$(env_value MEDIAMTX_METRICS_PASSWORD)"
aws_key=$(env_value AWS_ACCESS_KEY_ID)
if [ -n "$aws_key" ]; then
  write_secret aws_credentials "$(printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$aws_key" "$(env_value AWS_SECRET_ACCESS_KEY)")"
else
  # No keys: the workers' SDK falls back to the instance or task role.
  write_secret aws_credentials ""
fi
certs_dir=$(env_value TLS_CERTS_DIR)
mkdir -p "${certs_dir:-./certs}"

compose=(docker compose -f docker-compose.prod.yml --env-file .env)
"${compose[@]}" config -q

# 2. Image.
if [ "$build" -eq 1 ]; then
  "${compose[@]}" build api
fi

# 3. Data services and migrations (the one-shot `migrate` service).
"${compose[@]}" up -d --wait --wait-timeout "$timeout" postgres_admin postgres_cidade_sp redis
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
host=$(env_value SENTINELA_HOST)
api_port=$(env_value API_HTTPS_PORT)
grafana_port=$(env_value GRAFANA_HTTPS_PORT)
cat <<EOF

Sentinela is up (TLS: $(env_value TLS_MODE); with "internal", trust the proxy's root certificate:
  docker compose -f docker-compose.prod.yml cp proxy:/data/caddy/pki/authorities/local/root.crt .).
  API and Swagger UI: https://${host:-localhost}:${api_port:-443}/docs  (admin key: SENTINELA_ADMIN_KEY in .env)
  Grafana:            https://${host:-localhost}:${grafana_port:-3000}   (admin / GRAFANA_ADMIN_PASSWORD in .env)
  Prometheus:         http://127.0.0.1:9090   Alertmanager: http://127.0.0.1:9093
  RTSP (viewer):      rtsp://viewer:<MEDIAMTX_VIEWER_PASSWORD>@$(env_value RTSP_HOST_IP):8554/<camera path>
  Workers:            $("${compose[@]}" ps --format '{{.Service}}' worker | wc -l)
EOF
