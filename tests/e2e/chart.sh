#!/usr/bin/env bash
# Checks of the faas-operator Helm chart and the plain manifests:
#   - helm lint (default values; watchNamespaces with crds.install=false, --strict)
#   - helm template for several value sets: which kinds appear, RBAC exactly as the operator
#     needs it, security contexts, the operator's environment
#   - values.schema.json rejects bad values
#   - manifests/install.yaml is what manifests/render.sh renders now
#   - samples and Argo CD manifests are well-formed (samples checked against the CRD schemas
#     in manifests/crds/, Argo CD health checks run with lua5.1 when it is installed)
#   - with KUBECONFIG set: server-side dry run of the rendered chart (and of the samples when
#     the CRDs are installed) against that cluster
#
# Tools: $HELM and $KUBECTL, else the local control plane's build (.cache/controlplane),
# else PATH. Needs python3 with PyYAML. Prints `chart: N passed, M failed` and exits non-zero
# on any failure.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
chart="$root/charts/faas-operator"
kube_version=1.37.2

find_tool() {
  local name=$1 override=$2 c
  if [[ -n "$override" ]]; then
    command -v "$override" && return
    echo "chart: $override is not executable" >&2
    return 1
  fi
  for c in "$root/.cache/controlplane/current/$name" "$root"/.cache/controlplane/bin-*/"$name"; do
    [[ -x "$c" ]] && { echo "$c"; return; }
  done
  command -v "$name"
}

HELM=$(find_tool helm "${HELM:-}") || { echo "chart: helm not found; set HELM or run tests/e2e/controlplane/build.sh" >&2; exit 2; }
python3 -c 'import yaml' 2>/dev/null || { echo "chart: python3 needs PyYAML (pip install pyyaml)" >&2; exit 2; }

work=$(mktemp -d)
live_ns=""
cleanup() {
  if [[ -n "$live_ns" ]]; then
    "$KUBECTL" delete namespace "$live_ns" --wait=false >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
# check NAME COMMAND...: runs COMMAND, counts it, shows its output only when it fails.
check() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$work/out" | tail -n 30
  fi
}

# render NAME ARGS...: helm template into $work/NAME.yaml (release faas-operator, namespace faas-system).
render() {
  local name=$1
  shift
  "$HELM" template faas-operator "$chart" --namespace faas-system --kube-version "$kube_version" "$@" \
    >"$work/$name.yaml" 2>"$work/$name.err"
}
# render_failed NAME: a failed render, counted as one failure with helm's message.
render_failed() {
  cat "$work/$1.err"
  return 1
}

# rejects ARGS...: helm template must fail because of values.schema.json.
rejects() {
  if "$HELM" template faas-operator "$chart" --kube-version "$kube_version" "$@" >/dev/null 2>"$work/err"; then
    echo "helm template accepted: $*"
    return 1
  fi
  grep -qi "schema" "$work/err" || { echo "failed, but not on the schema:"; cat "$work/err"; return 1; }
}

# fails_with TEXT ARGS...: helm template must fail with TEXT in its message.
fails_with() {
  local text=$1
  shift
  if "$HELM" template faas-operator "$chart" --kube-version "$kube_version" "$@" >/dev/null 2>"$work/err"; then
    echo "helm template accepted: $*"
    return 1
  fi
  grep -qF -- "$text" "$work/err" || { echo "expected \"$text\" in:"; cat "$work/err"; return 1; }
}

# The assertions on rendered YAML, in Python: `py SUBCOMMAND ARGS...`.
cat >"$work/checks.py" <<'PY'
import json, os, subprocess, sys
import yaml

def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def fail(msg):
    print(msg)
    sys.exit(1)

def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]

def one(docs, kind):
    found = of_kind(docs, kind)
    if len(found) != 1:
        fail(f"expected one {kind}, found {len(found)}")
    return found[0]

# What the operator needs from the API server, and nothing more: (group, resource) -> verbs.
CONTRACT = {
    ("faas.motadata.io", "faasservices"): {"get", "list", "watch"},
    ("faas.motadata.io", "faasservices/status"): {"get", "patch", "update"},
    ("faas.motadata.io", "faasservices/finalizers"): {"update"},
    ("faas.motadata.io", "agents"): {"get", "list", "watch", "patch"},
    ("faas.motadata.io", "prompttemplates"): {"get", "list", "watch", "patch"},
    ("faas.motadata.io", "agents/status"): {"patch"},
    ("faas.motadata.io", "prompttemplates/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "patch", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "ingresses"): {"get", "list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "secrets"): {"get"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE = {("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"}}

def grants(rules):
    out = {}
    for r in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            if "*" in (r.get(field) or []):
                fail(f"wildcard in {field}: {r}")
        if r.get("nonResourceURLs"):
            fail(f"unexpected nonResourceURLs: {r}")
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
    return out

def same_grants(got, want, what):
    if got != want:
        extra = {k: sorted(v - want.get(k, set())) for k, v in got.items() if v - want.get(k, set())}
        missing = {k: sorted(v - got.get(k, set())) for k, v in want.items() if v - got.get(k, set())}
        fail(f"{what}: rules differ from what the operator needs\n  extra: {extra}\n  missing: {missing}")

def cmd_kinds(path, *specs):
    """Each spec is Kind=N: exactly N objects of that kind."""
    docs = load(path)
    for spec in specs:
        kind, n = spec.split("=")
        got = len(of_kind(docs, kind))
        if got != int(n):
            fail(f"{kind}: expected {n}, found {got} (kinds: {sorted(d['kind'] for d in docs)})")

def cmd_labels(path, namespace):
    for d in load(path):
        md = d["metadata"]
        labels = md.get("labels") or {}
        if d["kind"] != "CustomResourceDefinition":
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                        "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"):
                if key not in labels:
                    fail(f"{d['kind']}/{md['name']} lacks label {key}")
        cluster_scoped = d["kind"] in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace")
        if not cluster_scoped and md.get("namespace") is None:
            fail(f"{d['kind']}/{md['name']} has no namespace")
        if cluster_scoped and "namespace" in md:
            fail(f"{d['kind']}/{md['name']} is cluster-scoped but has a namespace")

def cmd_rbac_cluster(path):
    docs = load(path)
    cr = one(docs, "ClusterRole")
    same_grants(grants(cr["rules"]), CONTRACT, "ClusterRole")
    crb = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    if crb["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cr["metadata"]["name"]}:
        fail(f"ClusterRoleBinding roleRef: {crb['roleRef']}")
    if crb["subjects"] != [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}]:
        fail(f"ClusterRoleBinding subjects: {crb['subjects']}")
    cmd_rbac_lease(path)

def cmd_rbac_lease(path):
    docs = load(path)
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    if len(roles) != 1:
        fail(f"expected one leader-election Role, found {len(roles)}")
    role = roles[0]
    same_grants(grants(role["rules"]), LEASE, "leader-election Role")
    dep = one(docs, "Deployment")
    env = container_env(dep)
    if role["metadata"]["namespace"] != env["FAAS_LEASE_NAMESPACE"]:
        fail("leader-election Role is not in the Lease namespace")
    for r in role["rules"]:
        if set(r["verbs"]) - {"create"} and r.get("resourceNames") != [env["FAAS_LEASE_NAME"]]:
            fail(f"Lease rule {r} is not limited to the Lease {env['FAAS_LEASE_NAME']}")
    binding = [b for b in of_kind(docs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]]
    if len(binding) != 1 or binding[0]["metadata"]["namespace"] != role["metadata"]["namespace"]:
        fail("leader-election RoleBinding missing or in another namespace")

def cmd_rbac_namespaced(path, *namespaces):
    docs = load(path)
    if of_kind(docs, "ClusterRole") or of_kind(docs, "ClusterRoleBinding"):
        fail("cluster-wide RBAC rendered although watchNamespaces is set")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader-election")}
    if sorted(roles) != sorted(namespaces):
        fail(f"Roles in {sorted(roles)}, expected {sorted(namespaces)}")
    sa = one(docs, "ServiceAccount")
    for ns, role in roles.items():
        same_grants(grants(role["rules"]), CONTRACT, f"Role in {ns}")
        b = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns and b["roleRef"]["name"] == role["metadata"]["name"]]
        if len(b) != 1 or b[0]["roleRef"]["kind"] != "Role":
            fail(f"no RoleBinding for the Role in {ns}")
        if b[0]["subjects"] != [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}]:
            fail(f"RoleBinding in {ns} binds {b[0]['subjects']}")

def container_env(dep):
    c = dep["spec"]["template"]["spec"]["containers"][0]
    out = {}
    for e in c.get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            out[e["name"]] = e["valueFrom"]
    return out

def cmd_env(path, *pairs):
    """NAME=VALUE: the variable has that value; NAME=: it is absent or empty; !NAME: absent."""
    env = container_env(one(load(path), "Deployment"))
    for p in pairs:
        if p.startswith("!"):
            if p[1:] in env:
                fail(f"{p[1:]} is set: {env[p[1:]]!r}")
            continue
        name, value = p.split("=", 1)
        if env.get(name, "") != value:
            fail(f"{name}={env.get(name)!r}, expected {value!r}")

def cmd_deployment(path, replicas):
    docs = load(path)
    dep = one(docs, "Deployment")
    spec = dep["spec"]
    if spec["replicas"] != int(replicas):
        fail(f"replicas {spec['replicas']}, expected {replicas}")
    pod = spec["template"]["spec"]
    sel = spec["selector"]["matchLabels"]
    if any(pod_l != v for k, v in sel.items() for pod_l in [spec["template"]["metadata"]["labels"].get(k)]):
        fail("pod labels do not match the selector")
    if pod.get("automountServiceAccountToken") is not True:
        fail("the operator pod must mount its ServiceAccount token")
    sa = one(docs, "ServiceAccount")
    if pod["serviceAccountName"] != sa["metadata"]["name"]:
        fail("pod does not run as the chart's ServiceAccount")
    if sa.get("automountServiceAccountToken") is not False:
        fail("the ServiceAccount should not mount tokens into other pods")
    psc = pod["securityContext"]
    want_pod = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    for k, v in want_pod.items():
        if psc.get(k) != v:
            fail(f"pod securityContext.{k}={psc.get(k)!r}, expected {v!r}")
    (c,) = pod["containers"]
    sc = c["securityContext"]
    want = {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
    for k, v in want.items():
        if sc.get(k) != v:
            fail(f"container securityContext.{k}={sc.get(k)!r}, expected {v!r}")
    if c["ports"] != [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]:
        fail(f"ports {c['ports']}")
    if c["livenessProbe"]["httpGet"] != {"path": "/healthz", "port": "http"}:
        fail(f"livenessProbe {c['livenessProbe']}")
    if c["readinessProbe"]["httpGet"] != {"path": "/readyz", "port": "http"}:
        fail(f"readinessProbe {c['readinessProbe']}")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits", {}).get("memory"):
        fail(f"resources need requests and a memory limit: {res}")
    env = container_env(dep)
    if env.get("POD_NAME") != {"fieldRef": {"fieldPath": "metadata.name"}}:
        fail(f"POD_NAME {env.get('POD_NAME')}")
    if env.get("POD_NAMESPACE") != {"fieldRef": {"fieldPath": "metadata.namespace"}}:
        fail(f"POD_NAMESPACE {env.get('POD_NAMESPACE')}")
    svc = one(docs, "Service")
    if svc["spec"]["selector"] != sel or svc["spec"]["ports"][0]["targetPort"] != "http":
        fail("the metrics Service does not select the operator pods' http port")

def cmd_netpol(path, *cidrs):
    docs = load(path)
    np = one(docs, "NetworkPolicy")
    spec = np["spec"]
    dep = one(docs, "Deployment")
    if spec["podSelector"]["matchLabels"] != dep["spec"]["selector"]["matchLabels"]:
        fail("NetworkPolicy does not select the operator pods")
    if sorted(spec["policyTypes"]) != ["Egress", "Ingress"]:
        fail(f"policyTypes {spec['policyTypes']}")
    if len(spec["ingress"]) != 1 or spec["ingress"][0]["ports"] != [{"port": "http", "protocol": "TCP"}]:
        fail(f"ingress must allow the metrics port only: {spec['ingress']}")
    api = spec["egress"][0]
    ports = sorted(p["port"] for p in api["ports"])
    if ports != [443, 6443]:
        fail(f"API server egress ports {ports}")
    got = [t["ipBlock"]["cidr"] for t in api.get("to", [])]
    if got != list(cidrs):
        fail(f"API server egress to {got}, expected {list(cidrs)}")
    dns = spec["egress"][1]
    if sorted((p["port"], p["protocol"]) for p in dns["ports"]) != [(53, "TCP"), (53, "UDP")] or not dns.get("to"):
        fail(f"DNS egress {dns}")

def cmd_database(path, secret, key, port, *cidrs):
    """The operator reads its database URL from the Secret, and may reach Postgres."""
    docs = load(path)
    env = container_env(one(docs, "Deployment"))
    want = {"secretKeyRef": {"name": secret, "key": key}}
    if env.get("FAAS_OPERATOR_DATABASE_URL") != want:
        fail(f"FAAS_OPERATOR_DATABASE_URL {env.get('FAAS_OPERATOR_DATABASE_URL')}, expected {want}")
    rules = [e for e in one(docs, "NetworkPolicy")["spec"]["egress"] if e.get("ports") == [{"port": int(port), "protocol": "TCP"}]]
    if len(rules) != 1:
        fail(f"no egress rule for Postgres port {port}")
    got = [t["ipBlock"]["cidr"] for t in rules[0].get("to", [])]
    if got != list(cidrs):
        fail(f"Postgres egress to {got}, expected {list(cidrs)}")

def cmd_pdb(path):
    docs = load(path)
    pdb = one(docs, "PodDisruptionBudget")
    dep = one(docs, "Deployment")
    if pdb["spec"]["selector"]["matchLabels"] != dep["spec"]["selector"]["matchLabels"]:
        fail("PodDisruptionBudget does not select the operator pods")
    if pdb["spec"]["minAvailable"] != 1:
        fail(f"minAvailable {pdb['spec']['minAvailable']}")

def cmd_servicemonitor(path, label):
    docs = load(path)
    sm = one(docs, "ServiceMonitor")
    if sm["apiVersion"] != "monitoring.coreos.com/v1":
        fail(sm["apiVersion"])
    k, v = label.split("=")
    if sm["metadata"]["labels"].get(k) != v:
        fail(f"ServiceMonitor lacks label {label}")
    svc = one(docs, "Service")
    if sm["spec"]["selector"]["matchLabels"] != svc["spec"]["selector"]:
        fail("ServiceMonitor does not select the metrics Service")
    if sm["spec"]["endpoints"][0]["port"] != "http" or sm["spec"]["endpoints"][0]["path"] != "/metrics":
        fail(f"endpoints {sm['spec']['endpoints']}")

def cmd_image(path, image):
    c = one(load(path), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    if c["image"] != image:
        fail(f"image {c['image']}, expected {image}")

def cmd_crds_keep(path):
    for crd in of_kind(load(path), "CustomResourceDefinition"):
        ann = crd["metadata"].get("annotations") or {}
        if ann.get("helm.sh/resource-policy") != "keep":
            fail(f"CRD {crd['metadata']['name']} is not kept on uninstall")
        if crd["spec"]["group"] != "faas.motadata.io":
            fail(f"CRD {crd['metadata']['name']} in group {crd['spec']['group']}")

def cmd_install(path, namespace):
    docs = load(path)
    if docs[0]["kind"] != "Namespace" or docs[0]["metadata"]["name"] != namespace:
        fail("install.yaml must start with its Namespace")
    if docs[0]["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") != "restricted":
        fail("the Namespace must enforce the restricted Pod Security Standard")
    for d in docs[1:]:
        ns = d["metadata"].get("namespace")
        if ns not in (None, namespace):
            fail(f"{d['kind']}/{d['metadata']['name']} in namespace {ns}")

# --- samples against the CRD schemas -------------------------------------------------------

def crd_schemas(crd_dir):
    out = {}
    if not os.path.isdir(crd_dir):
        return out
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith(".yaml"):
            continue
        for crd in load(os.path.join(crd_dir, name)):
            for v in crd["spec"]["versions"]:
                out[(crd["spec"]["group"] + "/" + v["name"], crd["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out

TYPES = {"string": str, "boolean": bool, "object": dict, "array": list}

def validate(value, schema, where, errors):
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errors.append(f"{where}: expected an integer or a string")
        return
    if "anyOf" in schema or "oneOf" in schema:
        return
    t = schema.get("type")
    if t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{where}: expected an integer, got {value!r}")
        return
    if t == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{where}: expected a number, got {value!r}")
        return
    if t in TYPES and not isinstance(value, TYPES[t]):
        errors.append(f"{where}: expected {t}, got {type(value).__name__}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties")
        for req in schema.get("required", []):
            if req not in value:
                errors.append(f"{where}: missing required field {req}")
        for k, v in value.items():
            if props is not None and k in props:
                validate(v, props[k], f"{where}.{k}", errors)
            elif isinstance(schema.get("additionalProperties"), dict):
                validate(v, schema["additionalProperties"], f"{where}.{k}", errors)
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{where}: unknown field {k}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]", errors)

def cmd_samples(sample_dir, crd_dir):
    docs = []
    for name in sorted(os.listdir(sample_dir)):
        if name.endswith((".yaml", ".yml")):
            for d in load(os.path.join(sample_dir, name)):
                docs.append((name, d))
    kinds = [d["kind"] for _, d in docs]
    for kind in ("FaasService", "Agent", "PromptTemplate"):
        if kind not in kinds:
            fail(f"no {kind} sample")
    services = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "FaasService"}
    comps = {d["spec"]["component"] for d in services.values()}
    if not {"gateway", "rag"} <= comps:
        fail(f"samples need a gateway and a rag FaasService, have {sorted(comps)}")
    rag = next(d for d in services.values() if d["spec"]["component"] == "rag")
    if "autoscaling" not in rag["spec"] or "replicas" in rag["spec"]:
        fail("the rag sample should autoscale (and leave replicas to the HPA)")
    ing = rag["spec"].get("ingress") or {}
    if not ing.get("tls") or not ing.get("className"):
        fail("the rag sample's ingress needs tls and className")
    templates = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "PromptTemplate"}
    for _, a in ((n, d) for n, d in docs if d["kind"] == "Agent"):
        ref = a["spec"].get("promptTemplateRef", {}).get("name")
        if ref not in templates:
            fail(f"Agent {a['metadata']['name']} references a PromptTemplate {ref!r} that no sample defines")
        declared = {v["name"] for v in templates[ref]["spec"].get("variables", [])}
        given = set(a["spec"]["promptTemplateRef"].get("variables", {}))
        if given - declared:
            fail(f"Agent {a['metadata']['name']} sets undeclared variables {sorted(given - declared)}")
        required = {v["name"] for v in templates[ref]["spec"].get("variables", []) if v.get("required")}
        if required - given:
            fail(f"Agent {a['metadata']['name']} misses required variables {sorted(required - given)}")
        svc = a["spec"]["serviceRef"]["name"]
        if services.get(svc, {}).get("spec", {}).get("component") != "agent":
            fail(f"Agent {a['metadata']['name']} is served by {svc!r}, which is no agent FaasService sample")
        types = {t["type"] for t in a["spec"].get("tools", [])}
        if not {"http", "rag", "builtin"} <= types:
            fail(f"the Agent sample should show http, rag and builtin tools, has {sorted(types)}")
        http = [t for t in a["spec"]["tools"] if t["type"] == "http"][0]
        if not any("secretKeyRef" in h for h in http["http"].get("headers", [])):
            fail("the http tool should take its credential from a Secret")
    for d in services.values():
        for k, v in (d["spec"].get("config") or {}).items():
            if isinstance(v, (dict, list)) or v is None:
                fail(f"FaasService {d['metadata']['name']}: config.{k} must be a string, number or boolean (the runtime reads a flat map)")
    for d in templates.values():
        if not d["spec"].get("variables"):
            fail(f"PromptTemplate {d['metadata']['name']} declares no variables")
    for name, d in docs:
        if "namespace" in d["metadata"]:
            fail(f"{name}: samples leave the namespace to `kubectl -n`")
    schemas = crd_schemas(crd_dir)
    if not schemas:
        print("no CRDs in manifests/crds yet: schema check skipped")
        return
    errors = []
    for name, d in docs:
        schema = schemas.get((d["apiVersion"], d["kind"]))
        if schema is None:
            errors.append(f"{name}: no CRD for {d['apiVersion']} {d['kind']}")
            continue
        body = {k: v for k, v in d.items() if k not in ("apiVersion", "kind", "metadata")}
        props = dict(schema.get("properties", {}))
        props.pop("metadata", None)
        validate(body, {"type": "object", "properties": props, "required": [r for r in schema.get("required", []) if r != "metadata"]}, f"{name}: {d['kind']}", errors)
    if errors:
        fail("\n".join(errors))

# --- Argo CD ---------------------------------------------------------------------------------

def lua_literal(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "{" + ", ".join(lua_literal(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(v)

def cond(t, s, msg="m"):
    return {"type": t, "status": s, "reason": "R", "message": msg}

def res(gen, observed, conds, spec=None, **status):
    st = dict(status)
    if conds is not None:
        st["conditions"] = conds
    if observed is not None:
        st["observedGeneration"] = observed
    return {"metadata": {"generation": gen}, "spec": spec or {}, "status": st if (conds is not None or status) else None}

HEALTH_CASES = {
    "FaasService": [
        (res(1, None, None), "Progressing"),
        (res(2, 1, [cond("Ready", "True")]), "Progressing"),
        (res(1, 1, [cond("Ready", "True"), cond("Progressing", "False"), cond("Degraded", "False")]), "Healthy"),
        (res(1, 1, [cond("Ready", "False"), cond("Progressing", "True"), cond("Degraded", "False")]), "Progressing"),
        (res(1, 1, [cond("Ready", "False"), cond("Progressing", "False"), cond("Degraded", "True")]), "Degraded"),
        (res(1, 1, [cond("Ready", "False"), cond("Progressing", "False")]), "Degraded"),
        (res(1, 1, [cond("Ready", "True")], spec={"paused": True}), "Suspended"),
    ],
    "Agent": [
        (res(1, None, None), "Progressing"),
        (res(1, 1, [cond("Ready", "True"), cond("ReferencesResolved", "True"), cond("Synced", "True")]), "Healthy"),
        (res(1, 1, [cond("Ready", "False"), cond("ReferencesResolved", "False"), cond("Synced", "True")]), "Degraded"),
        (res(1, 1, [cond("Ready", "False"), cond("ReferencesResolved", "True"), cond("Synced", "False")]), "Degraded"),
        (res(1, 1, [cond("Ready", "False"), cond("ReferencesResolved", "True")]), "Progressing"),
        (res(3, 2, [cond("Ready", "True")]), "Progressing"),
    ],
    "PromptTemplate": [
        (res(1, None, None), "Progressing"),
        (res(1, 1, [cond("Valid", "True"), cond("Synced", "True")], version=3), "Healthy"),
        (res(1, 1, [cond("Valid", "False", "line 2, column 5: unexpected end of block")]), "Degraded"),
        (res(1, 1, [cond("Synced", "False")]), "Degraded"),
        (res(1, 1, [cond("Valid", "True")]), "Progressing"),
        (res(1, 1, [cond("Valid", "True"), cond("Synced", "True"), cond("Ready", "True")], version=1), "Healthy"),
        (res(1, 1, [cond("Valid", "True"), cond("Synced", "True"), cond("Ready", "False", "deletion waits")]), "Progressing"),
        (res(1, 1, [cond("Valid", "True"), cond("Synced", "False", "NoDatabase"), cond("Ready", "False")]), "Degraded"),
    ],
}

def cmd_argocd(app_path, health_path, chart_dir, lua):
    (app,) = load(app_path)
    if app["kind"] != "Application" or app["apiVersion"] != "argoproj.io/v1alpha1":
        fail("application.yaml is not an Argo CD Application")
    src = app["spec"]["source"]
    if src["path"] != "charts/faas-operator" or not os.path.isfile(os.path.join(chart_dir, "Chart.yaml")):
        fail(f"Application source path {src['path']}")
    values = src["helm"].get("valuesObject", {})
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        defaults = yaml.safe_load(f)
    unknown = set(values) - set(defaults)
    if unknown:
        fail(f"Application sets values the chart does not have: {sorted(unknown)}")
    (cm,) = load(health_path)
    data = cm["data"]
    for kind in HEALTH_CASES:
        if f"resource.customizations.health.faas.motadata.io_{kind}" not in data:
            fail(f"no health check for {kind}")
    if lua == "-":
        print("lua5.1 not installed: health checks not executed")
        return
    problems = []
    for kind, cases in HEALTH_CASES.items():
        script = data[f"resource.customizations.health.faas.motadata.io_{kind}"]
        for i, (obj, want) in enumerate(cases):
            prog = (f"obj = {lua_literal(obj)}\n"
                    f"local f = assert(loadstring({json.dumps(script)}))\n"
                    "local hs = f()\nprint(hs.status)\nprint(hs.message)\n")
            r = subprocess.run([lua, "-"], input=prog, capture_output=True, text=True)
            got = r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else f"error: {r.stderr.strip()}"
            if got != want:
                problems.append(f"{kind} case {i}: {got}, expected {want}")
    if problems:
        fail("\n".join(problems))

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
PY
py() { python3 "$work/checks.py" "$@"; }

crd_templates=$(ls "$chart"/templates/crds/*.yaml 2>/dev/null | wc -l)

echo "chart: helm $("$HELM" version --template '{{.Version}}' 2>/dev/null), $crd_templates CRD template(s)"

# --- lint --------------------------------------------------------------------------------------
check "helm lint (default values)" "$HELM" lint "$chart" --kube-version "$kube_version"
check "helm lint --strict (watchNamespaces, crds.install=false)" \
  "$HELM" lint --strict "$chart" --kube-version "$kube_version" \
  --set 'watchNamespaces={team-a,team-b}' --set crds.install=false

# --- default values ----------------------------------------------------------------------------
if render default; then
  check "default: expected kinds" py kinds "$work/default.yaml" \
    Deployment=1 ServiceAccount=1 ClusterRole=1 ClusterRoleBinding=1 Role=1 RoleBinding=1 \
    Service=1 NetworkPolicy=1 PodDisruptionBudget=1 ServiceMonitor=0 \
    CustomResourceDefinition="$crd_templates"
  check "default: labels and namespaces" py labels "$work/default.yaml" faas-system
  check "default: ClusterRole is exactly what the operator needs, Lease Role limited to its Lease" \
    py rbac-cluster "$work/default.yaml"
  check "default: Deployment (2 replicas, restricted security, probes, token, downward API)" \
    py deployment "$work/default.yaml" 2
  check "default: operator environment" py env "$work/default.yaml" \
    FAAS_RUNTIME_IMAGE=motadata/faas-runtime:0.1.0 FAAS_DATABASE_SECRET=faas-database \
    FAAS_CACHE_SECRET=faas-cache FAAS_NATS_SECRET=faas-nats FAAS_AUTH_SECRET=faas-auth '!FAAS_WATCH_NAMESPACES' \
    FAAS_HTTP_ADDR=0.0.0.0:8080 FAAS_LOG_LEVEL=info FAAS_LOG_FORMAT=json \
    FAAS_LEADER_ELECTION=true FAAS_LEASE_NAME=faas-operator FAAS_LEASE_NAMESPACE=faas-system \
    FAAS_CLUSTER_DOMAIN=cluster.local '!OTEL_EXPORTER_OTLP_ENDPOINT'
  check "default: no operator database" py env "$work/default.yaml" '!FAAS_OPERATOR_DATABASE_URL'
  check "default: image is the chart's appVersion" py image "$work/default.yaml" motadata/faas-operator:0.1.0
  check "default: NetworkPolicy (metrics ingress; API server and DNS egress)" py netpol "$work/default.yaml"
  check "default: PodDisruptionBudget" py pdb "$work/default.yaml"
  check "default: CRDs kept on uninstall" py crds-keep "$work/default.yaml"
else
  check "helm template with default values" render_failed default
fi

# --- other value sets --------------------------------------------------------------------------
if render watch --set 'watchNamespaces={team-a,team-b}' --set crds.install=false; then
  check "watchNamespaces: Role and RoleBinding per namespace, no cluster-wide RBAC" \
    py rbac-namespaced "$work/watch.yaml" team-a team-b
  check "watchNamespaces: Lease Role still in the release namespace" py rbac-lease "$work/watch.yaml"
  check "watchNamespaces: FAAS_WATCH_NAMESPACES" py env "$work/watch.yaml" FAAS_WATCH_NAMESPACES=team-a,team-b
  check "crds.install=false: no CRDs" py kinds "$work/watch.yaml" CustomResourceDefinition=0
else
  check "helm template with watchNamespaces" render_failed watch
fi

if render single --set replicaCount=1 --set leaderElection.enabled=false; then
  check "1 replica without leader election: no PDB, no Lease RBAC" py kinds "$work/single.yaml" \
    PodDisruptionBudget=0 Role=0 RoleBinding=0 ClusterRole=1
  check "1 replica without leader election: FAAS_LEADER_ELECTION=false" py env "$work/single.yaml" FAAS_LEADER_ELECTION=false
  check "1 replica: Deployment" py deployment "$work/single.yaml" 1
else
  check "helm template with replicaCount=1" render_failed single
fi
check "2 replicas without leader election are refused" \
  fails_with "requires leaderElection.enabled" --set leaderElection.enabled=false

if render monitored --set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.labels.release=prometheus \
  --set networkPolicy.enabled=false; then
  check "serviceMonitor.enabled: ServiceMonitor for the metrics Service" py servicemonitor "$work/monitored.yaml" release=prometheus
  check "networkPolicy.enabled=false: no NetworkPolicy" py kinds "$work/monitored.yaml" NetworkPolicy=0 ServiceMonitor=1
else
  check "helm template with a ServiceMonitor" render_failed monitored
fi

if render custom --set runtime.image.repository=registry.example.com/faas-runtime --set runtime.image.tag=1.2.3 \
  --set runtime.secrets.database=pg --set runtime.secrets.cache=dragonfly --set runtime.secrets.nats=nats-url --set runtime.secrets.auth=idp-key \
  --set runtime.clusterDomain=corp.internal --set logging.format=text --set logging.level=debug \
  --set tracing.otlpEndpoint=http://otel.observability:4317 --set leaderElection.leaseName=faas-leader \
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  --set 'networkPolicy.apiServer.cidrs={10.0.0.10/32,10.0.0.11/32}'; then
  check "custom values reach the operator's environment" py env "$work/custom.yaml" \
    FAAS_RUNTIME_IMAGE=registry.example.com/faas-runtime:1.2.3 FAAS_DATABASE_SECRET=pg \
    FAAS_CACHE_SECRET=dragonfly FAAS_NATS_SECRET=nats-url FAAS_AUTH_SECRET=idp-key FAAS_CLUSTER_DOMAIN=corp.internal \
    FAAS_LOG_FORMAT=text FAAS_LOG_LEVEL=debug OTEL_EXPORTER_OTLP_ENDPOINT=http://otel.observability:4317 \
    FAAS_LEASE_NAME=faas-leader
  check "custom values: Lease Role follows leaseName" py rbac-lease "$work/custom.yaml"
  check "custom values: image pinned by digest" py image "$work/custom.yaml" \
    motadata/faas-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  check "custom values: API server egress narrowed to its CIDRs" py netpol "$work/custom.yaml" 10.0.0.10/32 10.0.0.11/32
else
  check "helm template with custom values" render_failed custom
fi

if render database --set database.secret.name=faas-operator-db --set database.secret.key=dsn \
  --set 'database.cidrs={10.1.0.0/24}'; then
  check "database.secret: the URL from the Secret, Postgres egress" py database "$work/database.yaml" \
    faas-operator-db dsn 5432 10.1.0.0/24
else
  check "helm template with a database Secret" render_failed database
fi

if render external --set rbac.create=false --set serviceAccount.create=false --set serviceAccount.name=faas-ops; then
  check "rbac.create=false, existing ServiceAccount: no RBAC, no ServiceAccount" py kinds "$work/external.yaml" \
    ClusterRole=0 ClusterRoleBinding=0 Role=0 RoleBinding=0 ServiceAccount=0 Deployment=1
else
  check "helm template with rbac.create=false" render_failed external
fi
check "serviceAccount.create=false needs a name" fails_with "serviceAccount.name is required" --set serviceAccount.create=false

# --- schema ------------------------------------------------------------------------------------
check "schema rejects replicaCount as a string" rejects --set-string replicaCount=two
check "schema rejects logging.format=xml" rejects --set logging.format=xml
check "schema rejects an unknown top-level key" rejects --set replicas=3
check "schema rejects an unknown nested key" rejects --set runtime.secrets.postgres=pg
check "schema rejects an invalid namespace name" rejects --set 'watchNamespaces={Team_A}'
check "schema rejects a CIDR that is not one" rejects --set 'networkPolicy.apiServer.cidrs={10.0.0.1}'
check "schema rejects crds.install as a string" rejects --set-string crds.install=yes
check "schema rejects an invalid Secret name" rejects --set runtime.secrets.database=Bad_Name
check "schema rejects an out-of-range port" rejects --set metrics.port=70000
check "schema rejects an invalid database Secret name" rejects --set database.secret.name=Bad_Name

# --- generated files ---------------------------------------------------------------------------
drift() {
  HELM="$HELM" "$root/manifests/render.sh" "$work/install.yaml" 2>/dev/null || return 1
  if ! diff -u "$root/manifests/install.yaml" "$work/install.yaml" >"$work/diff"; then
    head -n 40 "$work/diff"
    echo "manifests/install.yaml is stale: run manifests/render.sh"
    return 1
  fi
}
check "manifests/install.yaml matches a fresh render" drift
check "manifests/install.yaml: Namespace first, everything in it" py install "$root/manifests/install.yaml" faas-system
check "samples: one of each kind, consistent references, valid against the CRD schemas" \
  py samples "$root/manifests/samples" "$root/manifests/crds"
lua=$(command -v lua5.1 || echo -)
check "Argo CD: Application, health checks run on sample statuses" \
  py argocd "$root/manifests/argocd/application.yaml" "$root/manifests/argocd/health.yaml" "$chart" "$lua"

# --- live cluster ------------------------------------------------------------------------------
if [[ -n "${KUBECONFIG:-}" ]]; then
  KUBECTL=$(find_tool kubectl "${KUBECTL:-}") || { echo "chart: kubectl not found; set KUBECTL" >&2; exit 2; }
  if "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
    live_ns="faas-chart-$(date +%s)-$$"
    release="chart-check-$$"
    check "live: create namespace $live_ns" "$KUBECTL" create namespace "$live_ns"
    live_render() {
      "$HELM" template "$release" "$chart" --namespace "$live_ns" --kube-version "$kube_version" "$@" >"$work/live.yaml" &&
        "$KUBECTL" apply --server-side --dry-run=server --force-conflicts --field-manager=chart-check -f "$work/live.yaml"
    }
    check "live: server-side dry run of the chart (default values)" live_render
    check "live: server-side dry run of the chart (watchNamespaces, 1 replica, no CRDs)" \
      live_render --set "watchNamespaces={$live_ns}" --set crds.install=false --set replicaCount=1
    if "$KUBECTL" get crd faasservices.faas.motadata.io agents.faas.motadata.io prompttemplates.faas.motadata.io >/dev/null 2>&1; then
      check "live: server-side dry run of the samples (CRD validation and CEL rules)" \
        "$KUBECTL" apply --server-side --dry-run=server --field-manager=chart-check -n "$live_ns" -f "$root/manifests/samples"
    else
      echo "skip  live: samples (the CRDs are not installed in this cluster)"
    fi
  else
    echo "skip  live: KUBECONFIG=$KUBECONFIG does not answer /readyz"
  fi
else
  echo "skip  live: KUBECONFIG not set"
fi

echo "chart: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
