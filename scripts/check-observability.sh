#!/usr/bin/env bash
# Checks the monitoring configuration with the real tools: promtool (Prometheus config, alert
# rules and their unit tests), amtool (Alertmanager), and scripts/check_config.py (Grafana
# dashboards and runbook links). Run by scripts/test.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/config"

promtool check config prometheus/prometheus.yml
promtool check rules prometheus/rules/*.yml
promtool test rules prometheus/tests/*.yml
amtool check-config alertmanager/alertmanager.yml
python3 "$root/scripts/check_config.py" observability
