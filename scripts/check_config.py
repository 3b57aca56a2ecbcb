#!/usr/bin/env python3
"""Static checks of the observability and deploy configuration that promtool, amtool and
`docker-compose config` do not cover.

`check_config.py observability`:
- Grafana dashboards: valid JSON, unique panel ids, every datasource uid one that
  config/grafana/provisioning/datasources provisions, every Prometheus query parsed by promtool
  (written as recording rules into a temporary file for `promtool check rules`).
- Alert rules: every alert has severity, summary, description and a runbook_url whose anchor is a
  heading of docs/troubleshooting.md (GitHub's anchor rules).

`check_config.py deploy BIN...`:
- docker-compose.prod.yml, as resolved by the real Compose binary with the sample .env, follows
  the production rules (scalable worker, health checks, healthy dependencies, volumes, Redis AOF,
  restart policies), and its raw text holds no literal secret.
- The Dockerfile installs the build packages from deps/apt-build.txt (what CI installs) and the
  runtime packages from deps/apt-runtime.txt, runs as a non-root user, has a HEALTHCHECK.
- Every shared library the given binaries link belongs to a runtime package (or the base image),
  at the version the build used.

Exit status 1 with one line per problem.
"""

import json
import os
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
    print(f"alerts: {alerts} rules checked (labels, annotations, runbook anchors)")


SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|ADMIN_KEY", re.I)
LONG_RUNNING = {"postgres_admin", "postgres_cidade_sp", "redis", "mediamtx", "api", "worker", "scheduler", "prometheus",
                "alertmanager", "node-exporter", "loki", "alloy", "grafana"}
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def check_compose() -> None:
    raw_text = (ROOT / "docker-compose.prod.yml").read_text()
    raw = yaml.safe_load(raw_text)
    # No literal secrets: every secret-like variable and every URL with credentials interpolates.
    for name, svc in raw["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        for key, value in env.items():
            value = "" if value is None else str(value)
            if key.endswith("_FILE"):
                if not value.startswith("/run/secrets/"):
                    problems.append(f"compose: {name}: {key} must name a Docker secret under /run/secrets")
                continue
            if SECRET_WORDS.search(key) and value and "${" not in value:
                problems.append(f"compose: {name}: {key} is a literal, not ${{...}} from .env")
            if re.search(r"://[^/\s:@]*:[^@${}]+@", value):
                problems.append(f"compose: {name}: {key} has credentials in a literal URL")
    resolved = json.loads(subprocess.run(
        ["docker-compose", "-f", "docker-compose.prod.yml", "--env-file", ".env.prod.example",
         "config", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    services = resolved["services"]
    for name in sorted(LONG_RUNNING - set(services)):
        problems.append(f"compose: service {name} is missing")
    for name in LONG_RUNNING & set(services):
        if services[name].get("restart") != "unless-stopped":
            problems.append(f"compose: {name}: restart should be unless-stopped")
    worker = services.get("worker", {})
    if "container_name" in worker or worker.get("ports"):
        problems.append("compose: worker must be scalable (no container_name, no host ports)")
    for name in ("postgres_admin", "postgres_cidade_sp", "redis", "api", "worker", "scheduler"):
        if "healthcheck" not in services.get(name, {}):
            problems.append(f"compose: {name} has no health check")
    for name in ("api", "worker", "scheduler"):
        deps = services.get(name, {}).get("depends_on", {})
        for dep in ("postgres_admin", "redis"):
            if deps.get(dep, {}).get("condition") != "service_healthy":
                problems.append(f"compose: {name} must wait for {dep} to be healthy")
        # A city's database that is down must stop only that city, not keep the stack down.
        if "postgres_cidade_sp" in deps:
            problems.append(f"compose: {name} must not wait for a city's database")
        if deps.get("migrate", {}).get("condition") != "service_completed_successfully":
            problems.append(f"compose: {name} must wait for the migrate service")

    def mounts(name: str) -> dict:
        return {v["target"]: v for v in services.get(name, {}).get("volumes", [])}

    volumes = set(resolved.get("volumes", {}))
    for name, target in (("postgres_admin", "/var/lib/postgresql/data"),
                         ("postgres_cidade_sp", "/var/lib/postgresql/data"), ("redis", "/data")):
        m = mounts(name).get(target)
        if not m or m.get("type") != "volume" or m.get("source") not in volumes:
            problems.append(f"compose: {name} must keep {target} on a named volume")
    for name, read_only in (("worker", True), ("api", True), ("scheduler", False), ("mediamtx", False)):
        m = mounts(name).get("/recordings")
        if not m or m.get("source") != "recordings":
            problems.append(f"compose: {name} must mount the recordings volume")
        elif bool(m.get("read_only")) != read_only:
            problems.append(f"compose: {name} must mount recordings {'read-only' if read_only else 'read-write'}")
    command = " ".join(services.get("redis", {}).get("command") or [])
    if "--appendonly yes" not in command:
        problems.append("compose: redis must run with --appendonly yes (AOF)")
    check_exposure(raw, services)
    print(f"compose: {len(services)} services checked against the production rules")


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def check_exposure(raw: dict, services: dict) -> None:
    """TLS in front of everything published; nothing else on 0.0.0.0; secrets as files; AWS
    credentials only where AWS is called; no docker.sock."""
    proxy = services.get("proxy")
    if not proxy or not str(proxy.get("image", "")).startswith("caddy:"):
        problems.append("compose: a TLS proxy service `proxy` (Caddy) must front the API and Grafana")
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") or "0.0.0.0"
            if host_ip in LOOPBACK:
                continue
            if name != "proxy":
                problems.append(
                    f"compose: {name} publishes {port.get('published')} on {host_ip}: only the TLS "
                    "proxy may be published beyond the loopback interface")
        for volume in svc.get("volumes", []):
            if "docker.sock" in str(volume.get("source", "")):
                problems.append(f"compose: {name} mounts docker.sock (control of the Docker engine)")
        env = svc.get("environment") or {}
        aws = sorted(k for k in env if k.startswith("AWS_"))
        if aws and name != "worker":
            problems.append(f"compose: {name} gets {aws}; only the workers call AWS")
        declared = {s.get("source") for s in svc.get("secrets", [])}
        for key, value in env.items():
            if key.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                secret = str(value).removeprefix("/run/secrets/")
                if secret not in declared:
                    problems.append(f"compose: {name}: {key} names secret {secret!r} it does not declare")
    for name in ("api", "grafana"):
        if services.get(name, {}).get("ports"):
            problems.append(f"compose: {name} must not publish ports (the TLS proxy fronts it)")
        env = services.get(name, {}).get("environment") or {}
        for key, value in env.items():
            if SECRET_WORDS.search(key) and not key.endswith("_FILE") and value:
                problems.append(f"compose: {name}: {key} is in the environment; use a *_FILE secret")
    if proxy:
        published = {str(p.get("target")) for p in proxy.get("ports", [])}
        if "443" not in published:
            problems.append("compose: the proxy must publish HTTPS (443)")
        check_caddyfile(ROOT / "config/caddy/Caddyfile")


def check_caddyfile(path: pathlib.Path) -> None:
    """Caddy parses it, every site is HTTPS with a `tls` setting, and it proxies the API and
    Grafana."""
    text = path.read_text()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
        result = subprocess.run(
            ["caddy", "validate", "--adapter", "caddyfile", "--config", str(path)],
            capture_output=True, text=True, env=env)
        if result.returncode != 0:
            problems.append(f"Caddyfile: caddy validate failed: {result.stderr.strip()[-400:]}")
        adapted = subprocess.run(
            ["caddy", "adapt", "--adapter", "caddyfile", "--config", str(path)],
            capture_output=True, text=True, env=env)
    sites = re.findall(r"^([^\s#].*?)[ \t]+\{[ \t]*$", text, flags=re.M)
    sites = [s.strip() for s in sites if s.strip() and not s.startswith("(")]
    if not sites:
        problems.append("Caddyfile: no site blocks")
    for site in sites:
        if not site.startswith("https://"):
            problems.append(f"Caddyfile: site {site!r} is not HTTPS")
    if "auto_https disable_redirects" not in text:
        problems.append("Caddyfile: it must not open a plain-HTTP redirect listener")
    try:
        config = json.loads(adapted.stdout)
    except json.JSONDecodeError:
        problems.append("Caddyfile: caddy adapt gave no JSON")
        return
    servers = config.get("apps", {}).get("http", {}).get("servers", {})
    upstreams = set(re.findall(r'"dial":"([^"]+)"', json.dumps(config, separators=(",", ":"))))
    for needed in ("api:8000", "grafana:3000"):
        if needed not in upstreams:
            problems.append(f"Caddyfile: nothing proxies to {needed}")
    for name, server in servers.items():
        listen = server.get("listen", [])
        if any(l.endswith(":80") for l in listen):
            problems.append(f"Caddyfile: server {name} listens on port 80 (plain HTTP)")
    policies = config.get("apps", {}).get("tls", {})
    if not policies:
        problems.append("Caddyfile: no TLS app (certificates) configured")
    print(f"Caddyfile: {len(sites)} HTTPS sites, upstreams {sorted(upstreams)}")


def check_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    if len(stages) < 2:
        problems.append("Dockerfile: expected a build stage and a runtime stage")
        return
    build, runtime = stages[0], stages[-1]
    if "deps/apt-build.txt" not in build or "xargs apt-get install" not in build:
        problems.append("Dockerfile: the build stage must install deps/apt-build.txt")
    if "apt-runtime.txt" not in runtime or "xargs apt-get install" not in runtime:
        problems.append("Dockerfile: the runtime stage must install deps/apt-runtime.txt")
    user = re.findall(r"^USER\s+(\S+)", runtime, flags=re.M)
    if not user or user[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the runtime image must run as a non-root user")
    if "HEALTHCHECK" not in runtime:
        problems.append("Dockerfile: no HEALTHCHECK")
    if "nanodet_m_416.onnx" not in runtime:
        problems.append("Dockerfile: the runtime image must carry the local model")
    for binary in ("sentinela-api", "sentinela-worker", "sentinela-scheduler", "migration"):
        if binary not in build:
            problems.append(f"Dockerfile: {binary} is not built")
    print("Dockerfile: checked package lists, user, health check, model")


def package_lines(name: str) -> list[str]:
    return [l.strip() for l in (ROOT / "deps" / name).read_text().splitlines()
            if l.strip() and not l.strip().startswith("#")]


def check_runtime_libraries(binaries: list[str]) -> None:
    runtime = set(package_lines("apt-runtime.txt"))
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    paths = {}
    for line in cache.splitlines():
        m = re.match(r"\s*(\S+) \(libc6,x86-64[^)]*\) => (\S+)", line)
        if m:
            paths.setdefault(m.group(1), m.group(2))
    needed = set()
    for binary in binaries:
        out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out))
    if not needed:
        problems.append("runtime: no linked libraries found (are the binaries built?)")
    for lib in sorted(needed):
        path = paths.get(lib)
        if not path:
            problems.append(f"runtime: {lib} is not installed on this machine")
            continue
        real = os.path.realpath(path)
        owner = None
        for candidate in (real, real.replace("/usr/lib/", "/lib/", 1), path):
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        if owner is None:
            problems.append(f"runtime: no Debian package owns {lib} ({real})")
        elif owner not in runtime and owner not in BASE_IMAGE_PACKAGES:
            problems.append(f"runtime: {lib} comes from {owner}, which deps/apt-runtime.txt lacks")
    # OpenCV runtime packages at the version of the -dev package the build compiled against.
    dev = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libopencv-dev"],
                         capture_output=True, text=True).stdout
    for pkg in sorted(p for p in runtime if p.startswith("libopencv-")):
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                                 capture_output=True, text=True).stdout
        if not version or version != dev:
            problems.append(f"runtime: {pkg} {version or 'not installed'} differs from libopencv-dev {dev}")
    print(f"runtime: {len(needed)} linked libraries checked against deps/apt-runtime.txt")


def check_configuration_doc() -> None:
    """docs/configuration.md documents every setting the code and the compose .env know."""
    doc = (ROOT / "docs/configuration.md").read_text()
    settings = (ROOT / "core/src/settings.rs").read_text()
    keys = set(re.findall(r'set_default\("([a-z_.]+)"', settings))
    plain = set(re.findall(r'^\s*\("([A-Z_]+)",\s*"[a-z_.]+"', settings, flags=re.M))
    plain |= set(re.findall(r'^\s*"([A-Z_]+)",\n\s*"[a-z_.]+",', settings, flags=re.M))
    env = {l.split("=", 1)[0] for l in (ROOT / ".env.prod.example").read_text().splitlines()
           if re.match(r"^[A-Z_]+=", l)}
    missing = sorted(k for k in keys | plain | env if f"`{k}`" not in doc and k not in doc)
    if len(keys) < 20 or len(plain) < 10:
        problems.append(f"configuration doc check found too few settings ({len(keys)} keys, {len(plain)} variables)")
    for k in missing:
        problems.append(f"docs/configuration.md does not mention {k}")
    print(f"configuration.md: {len(keys)} settings keys, {len(plain)} plain variables, {len(env)} .env variables checked")


mode = sys.argv[1] if len(sys.argv) > 1 else "observability"
if mode == "observability":
    check_dashboards()
    check_alerts()
elif mode == "deploy":
    check_compose()
    check_dockerfile()
    check_configuration_doc()
    check_runtime_libraries(sys.argv[2:])
else:
    print(f"check_config: unknown mode {mode!r} (observability or deploy)", file=sys.stderr)
    sys.exit(2)
if problems:
    for p in problems:
        print(f"check_config: {p}", file=sys.stderr)
    sys.exit(1)
