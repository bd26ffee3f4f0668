//! Harness of the end-to-end suite: a cluster named by `FAAS_E2E_KUBECONFIG`, one labelled
//! namespace per test (deleted afterwards, also when the test fails), the CRDs, the Helm
//! chart's RBAC, and the operator run as a local process under the chart's ServiceAccount.
//!
//! The suite never reads the ambient `KUBECONFIG`: pointing it at a cluster is an explicit act.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use faas_crds::FaasService;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod faults;

/// Label on every namespace the suite creates.
pub const E2E_LABEL: &str = "faas.motadata.io/e2e";
/// Field manager of the suite's own server-side applies.
pub const MANAGER: &str = "faas-e2e";
/// Default timeout of a polled wait.
pub const WAIT: Duration = Duration::from_secs(90);

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Path of the kubeconfig the suite runs against. Panics when `FAAS_E2E_KUBECONFIG` is unset.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("FAAS_E2E_KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "FAAS_E2E_KUBECONFIG is not set. The end-to-end suite creates and deletes namespaces, \
             cluster roles and CRDs, so it only runs against a cluster named explicitly: run \
             tests/e2e/run.sh, or set FAAS_E2E_KUBECONFIG to the admin kubeconfig of a disposable \
             cluster (for example `tests/e2e/cluster.sh kubeconfig`)."
        ),
    }
}

/// An admin client for the suite's cluster.
pub async fn admin_client() -> Client {
    let path = kubeconfig_path();
    client_from(&path)
        .await
        .unwrap_or_else(|e| panic!("cannot build a client from {}: {e:#}", path.display()))
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A tool of the local control plane: `$ENV`, else `.cache/controlplane/current/NAME`, else PATH.
pub fn tool(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let local = repo_root().join(".cache/controlplane/current").join(name);
    if local.is_file() {
        return local;
    }
    PathBuf::from(name)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the repository when relative),
/// else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => repo_root().join(t),
        None => repo_root().join("target"),
    }
}

/// A binary of the workspace: `$env`, else `<target dir>/debug/<name>`, which must exist.
fn workspace_bin(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let bin = target_dir().join("debug").join(name);
    assert!(
        bin.is_file(),
        "{name} binary {} not found: run `cargo build -p {name}` or set {env}",
        bin.display()
    );
    bin
}

/// The operator binary: `FAAS_OPERATOR_BIN`, else `<target dir>/debug/faas-operator`.
pub fn operator_bin() -> PathBuf {
    workspace_bin("faas-operator", "FAAS_OPERATOR_BIN")
}

/// The runtime binary: `FAAS_RUNTIME_BIN`, else `<target dir>/debug/faas-runtime`.
pub fn runtime_bin() -> PathBuf {
    workspace_bin("faas-runtime", "FAAS_RUNTIME_BIN")
}

/// A one-line summary of a FaasService's status, for timeouts and failed checks.
pub fn describe(fs: &FaasService) -> String {
    match &fs.status {
        None => "no status".into(),
        Some(s) => {
            let conds: Vec<String> = s
                .conditions
                .iter()
                .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
                .collect();
            format!(
                "observedGeneration={:?} generation={:?} conditions=[{}] url={:?}",
                s.observed_generation,
                fs.metadata.generation,
                conds.join("; "),
                s.url
            )
        }
    }
}

/// A short random-enough suffix for names (time, process id and a counter).
pub fn suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    format!("{:06x}", x & 0xff_ffff)
}

/// Polls `check` every 250 ms until it returns `Ok`, or panics after `timeout` with the last
/// state it reported.
pub async fn wait_for<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Applies the CRDs of manifests/crds/ (server-side) and waits until they are Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = repo_root().join("manifests/crds");
    let mut names = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("CRD file");
        let mut crd: CustomResourceDefinition = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", file.display()));
        crd.metadata.managed_fields = None;
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        names.push(name);
    }
    assert!(!names.is_empty(), "no CRDs in {}", dir.display());
    for name in names {
        wait_for(&format!("CRD {name} Established"), WAIT, || async {
            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                Ok(())
            } else {
                Err("not Established yet".to_string())
            }
        })
        .await;
    }
}

/// One test's namespace, with the chart's RBAC for an operator release of its own. Dropping it
/// deletes the namespace and the release's cluster-scoped RBAC, also when the test panicked.
pub struct TestNs {
    pub name: String,
    pub client: Client,
    /// Helm release name: prefix of the ServiceAccount and the cluster roles.
    pub release: String,
    /// Directory for logs and kubeconfigs of this test.
    pub dir: PathBuf,
}

impl TestNs {
    /// Creates the namespace `faas-e2e-<prefix>-<suffix>` and installs the CRDs.
    pub async fn new(prefix: &str) -> TestNs {
        let client = admin_client().await;
        install_crds(&client).await;
        let sfx = suffix();
        let name = format!("faas-e2e-{prefix}-{sfx}");
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    E2E_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let dir = std::env::temp_dir().join("faas-e2e").join(&name);
        std::fs::create_dir_all(&dir).expect("test directory");
        TestNs {
            release: format!("e2e-{sfx}"),
            name,
            client,
            dir,
        }
    }

    /// A namespaced API.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates `object` in the namespace; panics with the API server's answer when refused.
    pub async fn create<K>(&self, object: &K) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .create(&PostParams::default(), object)
            .await
            .unwrap_or_else(|e| panic!("creating the {} {}: {e}", K::kind(&()), object.name_any()))
    }

    /// Creates the Secrets the operator's defaults name: faas-database, faas-cache and
    /// faas-nats (key `url`) and faas-auth (key `jwt-hs256-secret`).
    pub async fn create_backend_secrets(&self) {
        let api: Api<Secret> = self.api();
        for (name, key, value) in [
            (
                "faas-database",
                "url",
                "postgres://faas:secret@postgres:5432/faas",
            ),
            ("faas-cache", "url", "redis://redis:6379"),
            ("faas-nats", "url", "nats://nats:4222"),
            (
                "faas-auth",
                "jwt-hs256-secret",
                "e2e-only-signing-key-0123456789abcdef",
            ),
        ] {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                string_data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
                ..Secret::default()
            };
            api.create(&PostParams::default(), &secret)
                .await
                .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
        }
    }

    /// Renders the Helm chart (release `self.release`, namespace `self.name`) and applies its
    /// ServiceAccount, ClusterRole(Binding) and leader-election Role(Binding) for `lease`.
    /// Returns the ServiceAccount's name.
    pub async fn install_chart_rbac(&self, lease: &str) -> String {
        let docs = render_chart(&self.release, &self.name, lease);
        let pp = PatchParams::apply(MANAGER).force();
        let mut sa_name = None;
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "ServiceAccount" => {
                    let sa: ServiceAccount = from_doc(doc);
                    sa_name = sa.metadata.name.clone();
                    apply(&self.api::<ServiceAccount>(), &sa, &pp).await;
                }
                "Role" => apply(&self.api::<Role>(), &from_doc::<Role>(doc), &pp).await,
                "RoleBinding" => {
                    apply(
                        &self.api::<RoleBinding>(),
                        &from_doc::<RoleBinding>(doc),
                        &pp,
                    )
                    .await
                }
                "ClusterRole" => {
                    let api = Api::<ClusterRole>::all(self.client.clone());
                    apply(&api, &from_doc::<ClusterRole>(doc), &pp).await
                }
                "ClusterRoleBinding" => {
                    let api = Api::<ClusterRoleBinding>::all(self.client.clone());
                    apply(&api, &from_doc::<ClusterRoleBinding>(doc), &pp).await
                }
                _ => {}
            }
        }
        sa_name.expect("the chart renders a ServiceAccount")
    }

    /// Mints a token for the ServiceAccount and writes a kubeconfig that uses it.
    pub async fn service_account_kubeconfig(&self, sa: &str) -> PathBuf {
        let api: Api<ServiceAccount> = self.api();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = api
            .create_token_request(sa, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {sa}: {e}"))
            .status
            .and_then(|s| s.token)
            .expect("TokenRequest status with a token");
        let path = self.dir.join(format!("{sa}.kubeconfig"));
        write_token_kubeconfig(&path, &token).expect("writing the operator's kubeconfig");
        path
    }

    /// Installs the chart's RBAC and starts one operator process under its ServiceAccount.
    pub async fn start_operator(&self, lease: &str, identity: &str) -> Operator {
        let sa = self.install_chart_rbac(lease).await;
        let kubeconfig = self.service_account_kubeconfig(&sa).await;
        Operator::start(self, &kubeconfig, lease, identity, None)
    }

    /// [`start_operator`](Self::start_operator), with the operator's database URL set.
    pub async fn start_operator_with_database(
        &self,
        lease: &str,
        identity: &str,
        database_url: &str,
    ) -> Operator {
        let sa = self.install_chart_rbac(lease).await;
        let kubeconfig = self.service_account_kubeconfig(&sa).await;
        Operator::start_with(self, &kubeconfig, lease, identity, None, Some(database_url))
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Logs and the ServiceAccount kubeconfigs are kept only for a failed test.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let name = self.name.clone();
        let release = self.release.clone();
        let keep = std::env::var_os("FAAS_E2E_KEEP_NAMESPACES").is_some();
        if keep {
            eprintln!("[e2e] keeping namespace {name} (FAAS_E2E_KEEP_NAMESPACES is set)");
            return;
        }
        // The test's runtime may be shutting down: clean up on a thread with a runtime of its own.
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async move {
                let client = client_from(&kubeconfig_path()).await?;
                let dp = DeleteParams::background();
                let crb = Api::<ClusterRoleBinding>::all(client.clone());
                let cr = Api::<ClusterRole>::all(client.clone());
                for n in [format!("{release}-faas-operator")] {
                    let _ = crb.delete(&n, &dp).await;
                    let _ = cr.delete(&n, &dp).await;
                }
                Api::<Namespace>::all(client).delete(&name, &dp).await?;
                anyhow::Ok(())
            })
        });
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("[e2e] cleanup of namespace {} failed: {e:#}", self.name),
            Err(_) => eprintln!("[e2e] cleanup of namespace {} panicked", self.name),
        }
    }
}

fn from_doc<K: DeserializeOwned>(doc: serde_json::Value) -> K {
    serde_json::from_value(doc).expect("a chart object of a known kind")
}

async fn apply<K>(api: &Api<K>, obj: &K, pp: &PatchParams)
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().expect("named object");
    api.patch(&name, pp, &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", K::kind(&())));
}

/// `helm template` of the chart with the release's namespace and Lease; returns every object.
/// The CRD templates are left out (the suite applies manifests/crds itself), so the chart is
/// rendered from a copy without templates/crds.
pub fn render_chart(release: &str, namespace: &str, lease: &str) -> Vec<serde_json::Value> {
    let helm = tool("helm", "HELM");
    let src = repo_root().join("charts/faas-operator");
    let copy = std::env::temp_dir()
        .join("faas-e2e")
        .join(format!("chart-{release}"));
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&src, &copy, &src.join("templates/crds")).expect("copying the chart");
    let out = Command::new(&helm)
        .args(["template", release])
        .arg(&copy)
        .args(["--namespace", namespace, "--kube-version", "1.37.2"])
        .args(["--set", "crds.install=false"])
        .args(["--set", &format!("leaderElection.leaseName={lease}")])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm.display()));
    let _ = std::fs::remove_dir_all(&copy);
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("helm output is UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML to JSON"))
        .collect()
}

use serde::Deserialize as _;

fn copy_dir(src: &Path, dst: &Path, skip: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let path = entry.path();
        if path == skip {
            continue;
        }
        let target = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&path, &target, skip)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// Writes a kubeconfig with the admin kubeconfig's server and CA and the given bearer token.
pub fn write_token_kubeconfig(path: &Path, token: &str) -> anyhow::Result<()> {
    let admin = kubeconfig_path();
    let kc = Kubeconfig::read_from(&admin)?;
    let context_name = kc
        .current_context
        .clone()
        .context("admin kubeconfig has no current-context")?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .context("current context not found")?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .context("cluster of the current context not found")?;
    let server = cluster.server.context("cluster has no server")?;
    let ca = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => format!("    certificate-authority-data: {data}\n"),
        (None, Some(file)) => format!("    certificate-authority: {file}\n"),
        (None, None) if cluster.insecure_skip_tls_verify == Some(true) => {
            "    insecure-skip-tls-verify: true\n".to_string()
        }
        (None, None) => bail!("cluster has no CA"),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n{ca}\
         users:\n- name: operator\n  user:\n    token: {token}\n\
         contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: operator\n\
         current-context: e2e\n"
    );
    std::fs::write(path, text)?;
    Ok(())
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The operator, running as a local process. Dropping it kills the process (SIGKILL) and,
/// when the test is failing, prints the tail of its log.
pub struct Operator {
    child: Option<Child>,
    pub identity: String,
    pub port: u16,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator with the given kubeconfig, watching only the test's namespace,
    /// leader election on the given Lease in that namespace.
    pub fn start(
        ns: &TestNs,
        kubeconfig: &Path,
        lease: &str,
        identity: &str,
        lease_duration_seconds: Option<u64>,
    ) -> Operator {
        Self::start_with(
            ns,
            kubeconfig,
            lease,
            identity,
            lease_duration_seconds,
            None,
        )
    }

    /// [`start`](Self::start), with `FAAS_OPERATOR_DATABASE_URL` when a URL is given.
    pub fn start_with(
        ns: &TestNs,
        kubeconfig: &Path,
        lease: &str,
        identity: &str,
        lease_duration_seconds: Option<u64>,
        database_url: Option<&str>,
    ) -> Operator {
        let port = free_port();
        let log = ns.dir.join(format!("operator-{identity}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let mut cmd = Command::new(operator_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("NO_COLOR", "1")
            .env(
                "FAAS_LEASE_DURATION_SECONDS",
                lease_duration_seconds.unwrap_or(15).to_string(),
            )
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            // On a cluster with real kubelets (kind) the pods run the image built for it.
            .args(
                std::env::var("FAAS_RUNTIME_IMAGE")
                    .ok()
                    .map(|i| format!("--runtime-image={i}")),
            )
            .envs(database_url.map(|u| ("FAAS_OPERATOR_DATABASE_URL", u)))
            .args(["--log-format", "text"])
            .args(["--log-level", "info,faas_operator=debug"])
            .args(["--leader-election", "true"])
            .args(["--lease-name", lease])
            .args(["--lease-namespace", &ns.name])
            .args(["--namespaces", &ns.name])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let bin = operator_bin();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting the operator {}: {e}", bin.display()));
        Operator {
            child: Some(child),
            identity: identity.to_string(),
            port,
            log,
        }
    }

    /// GET of a path on the operator's HTTP server: (status, body).
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await??;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await??;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Value of a metric line (first sample whose name and labels start with `prefix`).
    pub async fn metric(&self, prefix: &str) -> anyhow::Result<Option<f64>> {
        let (status, body) = self.http_get("/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
            .next())
    }

    /// Whether this replica says it holds the Lease (`faas_operator_leader`).
    pub async fn is_leader(&self) -> anyhow::Result<bool> {
        Ok(self.metric("faas_operator_leader ").await? == Some(1.0))
    }

    /// The sum of every sample of a metric family on /metrics (all label sets).
    pub async fn metric_sum(&self, family: &str) -> anyhow::Result<f64> {
        let (status, body) = self.http_get("/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum())
    }

    /// FaasService reconciles this replica ran (`faas_operator_reconcile_total` of the
    /// faasservice controller, not the first controller /metrics happens to list).
    pub async fn reconciles(&self) -> anyhow::Result<f64> {
        Ok(self
            .metric("faas_operator_reconcile_total{controller=\"faasservice\"}")
            .await?
            .unwrap_or(0.0))
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&self) {
        wait_for(
            &format!("operator {} /readyz", self.identity),
            WAIT,
            || async {
                if let Some(code) = self.exit_code() {
                    panic!(
                        "operator {} exited with {code:?}; log tail:\n{}",
                        self.identity,
                        self.log_tail(40)
                    );
                }
                match self.http_get("/readyz").await {
                    Ok((200, _)) => Ok(()),
                    Ok((s, b)) => Err(format!("{s} {b}")),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
    }

    /// The exit status when the process has ended.
    pub fn exit_code(&self) -> Option<Option<i32>> {
        // try_wait needs &mut; read /proc instead to keep &self.
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        match stat {
            None => Some(None),
            Some(s) if s.split_whitespace().nth(2) == Some("Z") => Some(None),
            Some(_) => None,
        }
    }

    /// Process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM (what Kubernetes sends on pod deletion) and waits for the process to end;
    /// returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        child.wait().ok().and_then(|s| s.code())
    }

    /// SIGKILLs the process and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "[e2e] operator {} log ({}), last lines:\n{}",
                self.identity,
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

/// A database of its own for one test, on the Postgres `DATABASE_URL` names
/// (scripts/services.sh; tests/e2e/run.sh starts it), with the runtime's migrations applied as
/// the runtime applies them at start: the operator never migrates.
pub struct Database {
    pub url: String,
    pub pool: sqlx::PgPool,
}

impl Database {
    /// Creates the database `e2e_<suffix>` and migrates it.
    pub async fn new() -> Database {
        use sqlx::Connection as _;
        let admin_url = std::env::var("DATABASE_URL").expect(
            "DATABASE_URL is not set: tests/e2e/run.sh starts Postgres (scripts/services.sh) for the suite",
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("DATABASE_URL answers");
        let name = format!("e2e_{}_{}", suffix(), std::process::id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        let options: sqlx::postgres::PgConnectOptions = admin_url.parse().expect("a Postgres URL");
        let options = options.database(&name);
        let pool = sqlx::PgPool::connect_with(options.clone())
            .await
            .expect("connecting to the test database");
        sqlx::migrate::Migrator::new(repo_root().join("service-runtime/migrations"))
            .await
            .expect("the runtime's migrations")
            .run(&pool)
            .await
            .expect("applying the runtime's migrations");
        let (base, _) = admin_url.rsplit_once('/').expect("a URL with a database");
        Database {
            url: format!("{base}/{name}"),
            pool,
        }
    }
}

/// A TCP relay on loopback to another address, which a test can stop (connections refused,
/// open ones cut) and start again on the same port: Postgres going away and coming back, as
/// the operator sees it.
pub struct Relay {
    pub port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// A relay to `target` (`host:port`), started.
    pub async fn start(target: &str) -> Relay {
        let mut relay = Relay {
            port: free_port(),
            target: target.to_string(),
            task: None,
        };
        relay.resume().await;
        relay
    }

    /// Stops accepting and cuts every open connection.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Accepts again, on the same port.
    pub async fn resume(&mut self) {
        self.stop();
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                open.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The message of an API error, with its HTTP code.
pub fn api_error(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.message.clone())),
        _ => None,
    }
}
