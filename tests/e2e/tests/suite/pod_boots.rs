//! The pod template the operator generates boots the real runtime. For every component, the
//! Deployment's pod template is materialised the way a kubelet would: the environment from
//! the literal values, the Secrets and ConfigMaps it references and the downward API; the
//! files of its volumes (ConfigMap, Secret, projected, emptyDir) at their mount paths under
//! a scratch root; the image's own environment and entrypoint. The real `faas-runtime` binary
//! is then started with the container's arguments and that environment against the suite's
//! Postgres, Redis and NATS, and must answer its readiness probe and one request signed with
//! the key the operator wired in (and refuse one without). A component the image does not
//! serve is refused by the operator instead of getting pods that would exit.
//!
//! What a pod has that a process here cannot: a network namespace of its own (the listen
//! address is moved to a free loopback port) and a root filesystem (absolute paths under
//! the volumes' mount paths are moved under the scratch root).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use faas_crds::Component;
use faas_e2e::{Database, TestNs, free_port, runtime_bin};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, KeyToPath, PodSpec, Secret, Volume,
};
use kube::api::ObjectMeta;
use serde_json::{Value, json};

use crate::common::*;

/// The image's own environment (`ENV` of the runtime stage of the Dockerfile): the embedding
/// model's files, which the image ships at this path and the suite has at its own.
const IMAGE_MODEL_DIR: &str = "/opt/faas/models/all-MiniLM-L6-v2";

fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: tests/e2e/run.sh sets it (scripts/services.sh, scripts/models.sh)"
        )
    })
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// What a kubelet would give the container: its environment, and its files under `root`.
struct Materialised {
    env: BTreeMap<String, String>,
    /// Mount paths, longest first.
    mounts: Vec<String>,
}

async fn secret_data(ns: &TestNs, name: &str) -> Option<BTreeMap<String, String>> {
    let s = ns
        .api::<Secret>()
        .get_opt(name)
        .await
        .expect("reading a Secret")?;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, ByteString(v))| (k, String::from_utf8(v).expect("UTF-8 Secret data")))
            .collect(),
    )
}

async fn config_map_data(ns: &TestNs, name: &str) -> Option<BTreeMap<String, String>> {
    let cm = ns
        .api::<ConfigMap>()
        .get_opt(name)
        .await
        .expect("reading a ConfigMap")?;
    Some(cm.data.unwrap_or_default())
}

/// Writes `data`'s keys (all, or the items' keys at their paths) under `dir`; a missing
/// source is an error unless it is optional, as for the kubelet.
fn write_files(
    dir: &Path,
    source: &str,
    data: Option<BTreeMap<String, String>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
) {
    let Some(data) = data else {
        assert!(
            optional,
            "{source} does not exist and is not optional: the pod would not start"
        );
        return;
    };
    let files: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| match data.get(&i.key) {
                Some(v) => Some((i.path.clone(), v.clone())),
                None => {
                    assert!(
                        optional,
                        "{source} has no key {} and is not optional",
                        i.key
                    );
                    None
                }
            })
            .collect(),
        None => data.into_iter().collect(),
    };
    for (path, value) in files {
        assert!(
            !path.starts_with('/') && !path.split('/').any(|p| p == ".."),
            "{source}: item path {path} leaves its volume"
        );
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, value).unwrap();
    }
}

/// What a volume's files come from.
#[derive(Clone, Copy, Debug)]
enum Kind {
    ConfigMap,
    Secret,
}

/// The files of one ConfigMap or Secret source of a volume, written under `dir`.
async fn files(
    ns: &TestNs,
    dir: &Path,
    kind: Kind,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
) {
    let data = match kind {
        Kind::ConfigMap => config_map_data(ns, name).await,
        Kind::Secret => secret_data(ns, name).await,
    };
    write_files(dir, &format!("{kind:?} {name}"), data, items, optional);
}

/// A ConfigMap or Secret a volume's files come from: its kind, name, items, and whether it is
/// optional.
type Source<'a> = (Kind, &'a str, Option<&'a Vec<KeyToPath>>, bool);

/// The sources of a volume's files (none for an emptyDir).
fn sources(v: &Volume) -> Vec<Source<'_>> {
    let optional = |o: Option<bool>| o == Some(true);
    if v.empty_dir.is_some() {
        Vec::new()
    } else if let Some(cm) = &v.config_map {
        vec![(
            Kind::ConfigMap,
            &cm.name,
            cm.items.as_ref(),
            optional(cm.optional),
        )]
    } else if let Some(s) = &v.secret {
        let name = s
            .secret_name
            .as_deref()
            .expect("a Secret volume names its Secret");
        vec![(Kind::Secret, name, s.items.as_ref(), optional(s.optional))]
    } else if let Some(p) = &v.projected {
        p.sources
            .iter()
            .flatten()
            .map(|source| {
                if let Some(s) = &source.secret {
                    (
                        Kind::Secret,
                        s.name.as_str(),
                        s.items.as_ref(),
                        optional(s.optional),
                    )
                } else if let Some(cm) = &source.config_map {
                    (
                        Kind::ConfigMap,
                        cm.name.as_str(),
                        cm.items.as_ref(),
                        optional(cm.optional),
                    )
                } else {
                    panic!("a projected source this test does not materialise: {source:?}")
                }
            })
            .collect()
    } else {
        panic!(
            "volume {} is of a kind this test does not materialise: {v:?}",
            v.name
        )
    }
}

async fn materialise(ns: &TestNs, pod: &PodSpec, c: &Container, root: &Path) -> Materialised {
    let volumes: BTreeMap<&str, _> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        assert!(
            m.sub_path.is_none() && m.sub_path_expr.is_none(),
            "subPath is not materialised"
        );
        let v = volumes
            .get(m.name.as_str())
            .unwrap_or_else(|| panic!("the mount {} names no volume of the pod", m.name));
        let dir = root.join(m.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for (kind, name, items, optional) in sources(v) {
            files(ns, &dir, kind, name, items, optional).await;
        }
        mounts.push(m.mount_path.clone());
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));

    // The image's environment, then envFrom, then env: later entries win, as in a pod.
    let mut env = BTreeMap::from([(
        "FAAS_EMBEDDING_MODEL_DIR".to_string(),
        IMAGE_MODEL_DIR.to_string(),
    )]);
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            secret_data(ns, &s.name).await
        } else if let Some(cm) = &from.config_map_ref {
            config_map_data(ns, &cm.name).await
        } else {
            None
        };
        for (k, v) in data.unwrap_or_default() {
            env.insert(format!("{prefix}{k}"), v);
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in c.env.iter().flatten()
    {
        let value = match (value, value_from) {
            (Some(v), _) => {
                assert!(
                    !v.contains("$("),
                    "{name}: variable references are not materialised"
                );
                Some(v.clone())
            }
            (None, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    let data = secret_data(ns, &r.name).await;
                    let v = data.and_then(|d| d.get(&r.key).cloned());
                    assert!(
                        v.is_some() || r.optional == Some(true),
                        "{name}: Secret {} key {} is missing: the pod would not start",
                        r.name,
                        r.key
                    );
                    v
                } else if let Some(r) = &from.config_map_key_ref {
                    let data = config_map_data(ns, &r.name).await;
                    data.and_then(|d| d.get(&r.key).cloned())
                } else if let Some(f) = &from.field_ref {
                    Some(match f.field_path.as_str() {
                        "metadata.name" => "runtime-0".to_string(),
                        "metadata.namespace" => ns.name.clone(),
                        "status.podIP" | "status.hostIP" => "127.0.0.1".to_string(),
                        "spec.nodeName" => "kwok-node-0".to_string(),
                        "spec.serviceAccountName" => {
                            pod.service_account_name.clone().unwrap_or_default()
                        }
                        other => {
                            panic!("{name}: the downward-API field {other} is not materialised")
                        }
                    })
                } else {
                    panic!("{name}: a value source this test does not materialise: {from:?}");
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            env.insert(name.clone(), v);
        }
    }
    Materialised { env, mounts }
}

/// The request each component must answer for an authenticated caller.
fn probe_request(component: Component) -> (&'static str, &'static str, Option<Value>) {
    match component {
        Component::Gateway => ("GET", "/v1/models", None),
        Component::Cache => ("POST", "/v1/cache/batch-get", Some(json!({"keys": ["k"]}))),
        Component::Prompt => ("GET", "/v1/prompts", None),
        Component::Llmops => ("GET", "/v1/llmops/pricing", None),
        Component::Rag => ("GET", "/v1/collections", None),
        Component::DataIngestion => ("GET", "/v1/ingestion/jobs", None),
        Component::Agent => ("GET", "/v1/agents", None),
        Component::PromptGenerator => ("GET", "/v1/generations", None),
        other => panic!("no request is known for the component {other}"),
    }
}

fn token(env: &BTreeMap<String, String>, tenant: &str) -> String {
    assert_eq!(
        env.get("FAAS_AUTH").map(String::as_str),
        Some("jwt"),
        "the pod verifies callers"
    );
    let key = env
        .get("FAAS_JWT_HS256_SECRET")
        .expect("the operator wires in the HS256 key");
    let mut claims = json!({
        "sub": "e2e", "tenant_id": tenant, "roles": ["admin"],
        "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600,
    });
    if let Some(iss) = env.get("FAAS_JWT_ISSUER") {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = env.get("FAAS_JWT_AUDIENCE") {
        claims["aud"] = json!(aud);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Starts the runtime as the pod would run it, checks it, and stops it; the log on failure.
async fn boot(ns: &TestNs, component: Component, deployment: &Deployment) {
    let pod = deployment
        .spec
        .template
        .spec
        .clone()
        .expect("a pod template");
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == "runtime")
        .expect("the runtime container");
    assert!(
        c.command.is_none(),
        "the image's entrypoint (faas-runtime) runs"
    );
    let root = ns.dir.join(format!("root-{component}"));
    let _ = std::fs::remove_dir_all(&root);
    let m = materialise(ns, &pod, c, &root).await;

    // The pod's own network: its listen port moved to a free one on loopback.
    let port = free_port();
    let container_port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("an http port")
        .container_port;
    let mut env = m.env.clone();
    let listen = env
        .get("FAAS_LISTEN")
        .expect("the pod says where to listen")
        .clone();
    assert!(
        listen.ends_with(&format!(":{container_port}")),
        "FAAS_LISTEN {listen} is not the container's http port {container_port}"
    );
    env.insert("FAAS_LISTEN".into(), format!("127.0.0.1:{port}"));
    if env.get("FAAS_EMBEDDING_MODEL_DIR").map(String::as_str) == Some(IMAGE_MODEL_DIR) {
        env.insert(
            "FAAS_EMBEDDING_MODEL_DIR".into(),
            require_env("FAAS_EMBEDDING_MODEL_DIR"),
        );
    }
    // Paths into the volumes, as seen from the scratch root.
    for v in env.values_mut() {
        if let Some(mount) = m.mounts.iter().find(|mp| v.starts_with(mp.as_str())) {
            *v = format!(
                "{}{}",
                root.join(mount.trim_start_matches('/')).display(),
                &v[mount.len()..]
            );
        }
    }
    let log_path = ns.dir.join(format!("runtime-{component}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(runtime_bin())
        .args(c.args.clone().unwrap_or_default())
        .env_clear()
        .envs(&env)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("starting faas-runtime");
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let readiness = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("an HTTP readiness probe");
    let path = readiness.path.clone().unwrap_or_else(|| "/".into());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{component}: the runtime exited ({status}) before it was ready:\n{}",
                logs()
            );
        }
        let ok = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{component}: {path} never answered 200:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (method, uri, body) = probe_request(component);
    let request = |token: Option<String>| {
        let mut r = http.request(method.parse().unwrap(), format!("{base}{uri}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = &body {
            r = r.json(b);
        }
        r
    };
    let anonymous = request(None).send().await.expect("the runtime answers");
    assert_eq!(
        anonymous.status().as_u16(),
        401,
        "{component}: {method} {uri} without a token"
    );
    let signed = request(Some(token(&env, &ns.name)))
        .send()
        .await
        .expect("the runtime answers");
    let status = signed.status();
    let text = signed.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{component}: {method} {uri} answered {status}: {text}\n{}",
        logs()
    );
    child.kill().await.ok();
}

#[tokio::test]
async fn every_component_boots_from_the_pod_template_the_operator_generates() {
    let ns = TestNs::new("boots").await;
    let db = Database::new().await;
    let signing_key = format!("pod-boots-signing-key-{}", faas_e2e::suffix());
    for s in [
        secret("faas-database", &[("url", &db.url)]),
        secret("faas-cache", &[("url", &require_env("REDIS_URL"))]),
        secret("faas-nats", &[("url", &require_env("NATS_URL"))]),
        secret("faas-auth", &[("jwt-hs256-secret", &signing_key)]),
        secret(
            "desk-api",
            &[
                ("token", "Bearer boots-tool-credential"),
                ("other", "never mounted"),
            ],
        ),
    ] {
        ns.create(&s).await;
    }
    // An Agent served by the agent service, whose tool names a Secret key: its pods mount it.
    let agent: faas_crds::Agent = serde_json::from_value(json!({
        "apiVersion": "faas.motadata.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "desk"},
        "spec": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "systemPrompt": "Help.",
            "serviceRef": {"name": "agent"},
            "tools": [{"name": "ticket", "type": "http", "http": {"url": "https://desk.example.com/t",
                "headers": [{"name": "Authorization", "secretKeyRef": {"name": "desk-api", "key": "token"}}]}}],
        }
    }))
    .unwrap();
    ns.create(&agent).await;
    let op = ns.start_operator("faas-operator-e2e", "op-boots").await;
    op.wait_ready().await;

    for &component in Component::ALL {
        let name = component.as_str();
        create_fs(&ns, name, json!({"component": name, "replicas": 1})).await;
        if !component.served() {
            let fs = wait_fs(&ns, name, "refused: the image does not serve it", |f| {
                condition(f, "Ready")
                    .is_some_and(|(s, r, _)| s == "False" && r == "ComponentNotServed")
            })
            .await;
            assert!(
                ns.api::<Deployment>()
                    .get_opt(name)
                    .await
                    .unwrap()
                    .is_none(),
                "{}",
                describe(&fs)
            );
            continue;
        }
        let deployment: Deployment =
            wait_obj(&ns, name, "its pod template is built", |d: &Deployment| {
                component != Component::Agent
                    || d.spec.template.spec.as_ref().is_some_and(|p| {
                        p.volumes
                            .iter()
                            .flatten()
                            .any(|v| v.name == "agent-secrets")
                    })
            })
            .await;
        boot(&ns, component, &deployment).await;
        if component == Component::Agent {
            // The tool's key is where the agent component reads it, and nothing else is.
            let dir = ns
                .dir
                .join("root-agent/var/run/faas/agent-secrets")
                .join(&ns.name)
                .join("desk-api");
            assert_eq!(
                std::fs::read_to_string(dir.join("token")).unwrap(),
                "Bearer boots-tool-credential"
            );
            assert!(!dir.join("other").exists());
        }
    }
}
