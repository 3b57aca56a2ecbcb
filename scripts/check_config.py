#!/usr/bin/env python3
"""Static checks of the observability and deploy configuration that promtool/amtool do not cover.

- Grafana dashboards: valid JSON, unique panel ids, every datasource uid one that
  config/grafana/provisioning/datasources provisions, every Prometheus query parsed by promtool
  (written as recording rules into a temporary file for `promtool check rules`).
- Alert rules: every alert has severity, summary, description and a runbook_url whose anchor is a
  heading of docs/troubleshooting.md (GitHub's anchor rules).

Exit status 1 with one line per problem.
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
problems: list[str] = []


def github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def provisioned_uids() -> set[str]:
    uids = set()
    for path in (ROOT / "config/grafana/provisioning/datasources").glob("*.yml"):
        for ds in yaml.safe_load(path.read_text()).get("datasources", []):
            uids.add(ds["uid"])
    return uids


def grafana_to_promql(expr: str) -> str:
    # Grafana's interval variables are not PromQL; give them a value the parser accepts.
    for var in ("$__rate_interval", "$__interval", "$__range"):
        expr = expr.replace(var, "5m")
    return expr


def check_dashboards() -> None:
    uids = provisioned_uids()
    if {"prometheus", "loki"} - uids:
        problems.append(f"datasources: expected uids prometheus and loki, got {sorted(uids)}")
    queries = []
    dashboards = sorted((ROOT / "config/grafana/dashboards").glob("*.json"))
    if not dashboards:
        problems.append("no dashboards under config/grafana/dashboards")
    dashboard_uids = set()
    for path in dashboards:
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}: invalid JSON: {e}")
            continue
        if dash.get("uid") in dashboard_uids:
            problems.append(f"{path.name}: dashboard uid {dash.get('uid')} used twice")
        dashboard_uids.add(dash.get("uid"))
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)) or None in ids:
            problems.append(f"{path.name}: panel ids not unique: {ids}")
        for panel in dash.get("panels", []):
            sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            for ds in sources:
                if ds is None:
                    continue
                if ds.get("uid") not in uids:
                    problems.append(f"{path.name}: panel {panel.get('id')} uses datasource uid {ds.get('uid')!r}")
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == "prometheus":
                    if not target.get("expr"):
                        problems.append(f"{path.name}: panel {panel.get('id')} has an empty query")
                        continue
                    queries.append((f"{path.stem}:{panel['id']}:{target.get('refId')}", grafana_to_promql(target["expr"])))
    if not queries:
        problems.append("no Prometheus queries found in the dashboards")
        return
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
        name = f.name
    result = subprocess.run(["promtool", "check", "rules", name], capture_output=True, text=True)
    pathlib.Path(name).unlink()
    if result.returncode != 0:
        problems.append("dashboard queries do not parse:\n" + result.stdout + result.stderr)
    else:
        print(f"dashboards: {len(dashboards)} files, {len(queries)} Prometheus queries parsed by promtool")


def check_alerts() -> None:
    doc = (ROOT / "docs/troubleshooting.md").read_text()
    anchors = {github_anchor(m) for m in re.findall(r"^#+\s+(.*)$", doc, flags=re.M)}
    alerts = 0
    for path in sorted((ROOT / "config/prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                alerts += 1
                name = rule["alert"]
                if not rule.get("labels", {}).get("severity"):
                    problems.append(f"{name}: no severity label")
                ann = rule.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        problems.append(f"{name}: no {key} annotation")
                url = ann.get("runbook_url", "")
                page, _, anchor = url.partition("#")
                if page != "docs/troubleshooting.md" or anchor not in anchors:
                    problems.append(f"{name}: runbook_url {url!r} is not a heading of docs/troubleshooting.md")
    print(f"alerts: {alerts} rules, every runbook_url resolves")


check_dashboards()
check_alerts()
if problems:
    for p in problems:
        print(f"check_config: {p}", file=sys.stderr)
    sys.exit(1)
