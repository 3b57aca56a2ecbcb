#!/usr/bin/env bash
# Kubernetes manifests (deploy/k8s, docs/kubernetes.md), offline: every overlay (and production with
# the optional KEDA component) renders with `kubectl kustomize`; the rendered objects validate
# against the Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors); checkov's
# Kubernetes checks pass, each skipped rule justified in place (a checkov.io/skip annotation with
# its reason). Every check is first seen to fail on a seeded fault, so a check that cannot fail
# does not pass silently. Run by scripts/test.sh.
#
# CRDs (KEDA's ScaledObject, the Prometheus Operator's PodMonitor): their schemas are published
# with those projects (GitHub releases), not in a registry CI reaches, so kubernetes-validate
# cannot check them (it says so and skips them); their structure is checked below instead
# (kind, apiVersion, the Deployment and labels they point at exist in the same rendering).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
k8s_version=1.32.0

if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; then
  echo "check-k8s: kubectl with kustomize v5 is needed (kubectl >= 1.27)" >&2
  exit 1
fi

tools=${SENTINELA_K8S_TOOLS:-/var/cache/sentinela/k8s-tools}
if ! "$tools/bin/pip" freeze 2>/dev/null | grep -qxF "$(grep -E '^checkov==' deps/pip-k8s.txt)"; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check -r deps/pip-k8s.txt
fi

# Inside deploy/k8s: kustomize refers to bases by relative paths only.
work=$(mktemp -d "$root/deploy/k8s/.check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# What production looks like with the optional KEDA component.
mkdir -p "$work/production-keda"
# (one level below $work: ../../ reaches deploy/k8s)
cat > "$work/production-keda/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../overlays/production
components:
  - ../../components/keda
YAML

validate() { "$tools/bin/kubernetes-validate" -k "$k8s_version" --strict --quiet "$@"; }
lint() {
  "$tools/bin/checkov" --framework kubernetes --skip-download --compact --quiet -f "$1" \
    >"$work/checkov.log" 2>&1
}
# The CRD objects: right kind and version, pointing at what exists in the same rendering.
crds() {
  "$tools/bin/python" - "$1" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
faults = []
for d in docs:
    if d["kind"] == "ScaledObject":
        if d["apiVersion"] != "keda.sh/v1alpha1":
            faults.append("ScaledObject apiVersion")
        target = d["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            faults.append(f"ScaledObject targets missing Deployment {target}")
        if not d["spec"].get("triggers"):
            faults.append("ScaledObject without triggers")
        if any(h["spec"]["scaleTargetRef"]["name"] == target for h in hpas):
            faults.append(f"{target} has both an HPA and a ScaledObject")
    if d["kind"] == "PodMonitor":
        if d["apiVersion"] != "monitoring.coreos.com/v1":
            faults.append("PodMonitor apiVersion")
        want = d["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in d["spec"]["podMetricsEndpoints"]}
        for name, dep in deployments.items():
            labels = dep["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in want.items()):
                names = {p.get("name") for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                if not ports & names:
                    faults.append(f"PodMonitor port {ports} not on {name}")
if faults:
    print("\n".join(faults))
    sys.exit(1)
PY
}
expect_failure() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "check-k8s: the seeded fault ($what) was not caught" >&2
    exit 1
  fi
  echo "seeded fault caught: $what"
}

# 1. Rendering.
for overlay in small production; do
  kubectl kustomize "deploy/k8s/overlays/$overlay" >"$work/$overlay.yaml"
done
kubectl kustomize "$work/production-keda" >"$work/production-keda.yaml"
mkdir -p "$work/broken"
cat > "$work/broken/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
patches:
  - target:
      kind: Deployment
      name: sentinela-api
    patch: |-
      - op: replace
        path: /spec/no-such-field/replicas
        value: 1
YAML
expect_failure "kustomize: a patch of a path that does not exist" kubectl kustomize "$work/broken"

# 2. Schemas.
sed 's/^  replicas: 1$/  replicas: 1\n  replica: 2/' "$work/small.yaml" >"$work/unknown-field.yaml"
expect_failure "kubernetes-validate: an unknown field in a Deployment" validate "$work/unknown-field.yaml"
for rendered in small production production-keda; do
  validate "$work/$rendered.yaml" 2>&1 | { grep -v "Couldn't find schema for kind \(PodMonitor\|ScaledObject\)" || true; }
  validate "$work/$rendered.yaml" >/dev/null 2>&1
  crds "$work/$rendered.yaml"
done
sed 's/^    name: sentinela-worker$/    name: sentinela-workers/' "$work/production-keda.yaml" >"$work/bad-crd.yaml"
expect_failure "CRD structure: a ScaledObject aimed at a missing Deployment" crds "$work/bad-crd.yaml"

# 3. Security linter.
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/; s/runAsNonRoot: true/runAsNonRoot: false/' \
  "$work/small.yaml" >"$work/insecure.yaml"
expect_failure "checkov: a writable root file system and root allowed" lint "$work/insecure.yaml"
for rendered in small production production-keda; do
  if ! lint "$work/$rendered.yaml"; then
    cat "$work/checkov.log" >&2
    echo "check-k8s: checkov failed on $rendered" >&2
    exit 1
  fi
  echo "$rendered: $(grep -c '^kind:' "$work/$rendered.yaml") objects render, validate against Kubernetes $k8s_version and pass checkov ($(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$work/checkov.log"))"
done
