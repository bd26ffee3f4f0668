//! The FaasService controller.
//!
//! Reconcile is a pipeline: dereference (read what the spec references and what exists) →
//! validate (pure) → build the desired children (pure) → apply them with server-side apply,
//! skipping those already up to date → prune children no longer wanted → write the status
//! only when it changed.

pub mod build;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use faas_crds::FaasService;
use faas_crds::conditions::{DEGRADED, READY};
use faas_crds::faas_service::Backend;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, instrument, warn};

use crate::error::{Error, Result};
use crate::kit::{self, Backoff, Child, events, watch};
use crate::metrics::Metrics;
use status::{Observed, Outcome};
use validate::Resolved;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "faasservice";
/// How often a FaasService with an unresolved reference is checked again. Secrets are not
/// watched (the operator may only read the ones it is told about), so this is how a Secret
/// created later is noticed; a change of the FaasService itself is noticed at once.
pub const INVALID_RECHECK: Duration = Duration::from_secs(120);
/// How often a healthy FaasService is reconciled even when nothing happens.
pub const RESYNC: Duration = Duration::from_secs(600);

/// Defaults the operator applies to every generated service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub runtime_image: String,
    pub database_secret: String,
    pub cache_secret: String,
    pub nats_secret: String,
    /// Secret with the HS256 key (`jwt-hs256-secret`) services use when spec.auth is unset.
    pub auth_secret: String,
    pub cluster_domain: String,
}

impl Defaults {
    /// The default Secret for a backing service.
    pub fn secret_for(&self, backend: Backend) -> &str {
        match backend {
            Backend::Database => &self.database_secret,
            Backend::Cache => &self.cache_secret,
            Backend::Nats => &self.nats_secret,
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            runtime_image: "motadata/faas-runtime:0.1.0".into(),
            database_secret: "faas-database".into(),
            cache_secret: "faas-cache".into(),
            nats_secret: "faas-nats".into(),
            auth_secret: "faas-auth".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub defaults: Defaults,
    pub metrics: Metrics,
    /// Consecutive failures per object, for exponential backoff.
    backoff: Backoff<FaasService>,
}

impl Context {
    /// A context for the given client.
    pub fn new(client: Client, recorder: Recorder, defaults: Defaults, metrics: Metrics) -> Self {
        Self {
            client,
            recorder,
            defaults,
            metrics,
            backoff: Backoff::default(),
        }
    }
}

/// Reconciles one FaasService.
#[instrument(skip_all, fields(namespace = fs.namespace().unwrap_or_default(), name = fs.name_any()))]
pub async fn reconcile(fs: Arc<FaasService>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = fs
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(fs.name_any()))?;
    let client = &ctx.client;
    if fs.metadata.deletion_timestamp.is_some() {
        // The garbage collector is removing the children; applying them again would fight it.
        return Ok(Action::await_change());
    }

    // Dereference.
    let resolved = resolve(client, &ns, &fs, &ctx.defaults).await?;

    // Validate and build (pure).
    let (outcome, changed, deployment) = match validate::validate(&fs, &ctx.defaults, &resolved) {
        Err(invalid) => (Outcome::Invalid(invalid), Vec::new(), None),
        Ok(_) if fs.spec.paused => (Outcome::Paused, Vec::new(), None),
        Ok(valid) => {
            let desired = build::children(&fs, &valid, &ctx.defaults);
            let (changed, deployment) = apply_children(client, &ns, &fs, desired).await?;
            (Outcome::Applied, changed, Some(deployment))
        }
    };

    if !changed.is_empty() {
        info!(changed = ?changed, "applied");
        events::publish(
            &ctx.recorder,
            fs.as_ref(),
            EventType::Normal,
            "Applied",
            "Apply",
            format!("updated {}", changed.join(", ")),
        )
        .await;
    }

    // Observe and write the status.
    let observed = observe(client, &ns, &fs, deployment).await?;
    let next = status::compute(&fs, &ctx.defaults, &outcome, &observed, Timestamp::now());
    let previous = fs.status.clone().unwrap_or_default();
    if kit::status::update(client, &ns, fs.as_ref(), &previous, &next).await? {
        let transitions =
            events::transitions(&previous.conditions, &next.conditions, &[READY, DEGRADED]);
        events::announce(&ctx.recorder, fs.as_ref(), &transitions, status::severity).await;
    }

    ctx.backoff.succeeded(&fs);
    Ok(match outcome {
        Outcome::Invalid(_) => Action::requeue(INVALID_RECHECK),
        _ => Action::requeue(RESYNC),
    })
}

/// Retries a failed reconcile with exponential backoff.
pub fn error_policy(fs: Arc<FaasService>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(CONTROLLER, error.category());
    let delay = ctx.backoff.failed(&fs);
    warn!(
        namespace = fs.namespace().unwrap_or_default(),
        name = fs.name_any(),
        category = error.category(),
        error = %error,
        retry_in_seconds = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

async fn resolve(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    defaults: &Defaults,
) -> Result<Resolved> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = validate::secret_refs(fs, defaults)
        .into_iter()
        .map(|(_, s)| s.name)
        .chain(
            validate::auth(fs, defaults)
                .secret()
                .map(|s| s.name.clone()),
        )
        .collect();
    names.sort();
    names.dedup();
    let found =
        futures::future::try_join_all(names.iter().map(|name| secrets.get_opt(name))).await?;
    let mut resolved = Resolved::default();
    for (name, secret) in names.into_iter().zip(found) {
        // Only the key names are kept; values never leave this function.
        let keys = secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_keys()
                .chain(s.string_data.unwrap_or_default().into_keys())
                .collect()
        });
        resolved.secrets.insert(name, keys);
    }

    let services: Api<FaasService> = Api::namespaced(client.clone(), ns);
    let mut deps: Vec<String> = validate::dependency_names(fs)
        .into_iter()
        .filter(|n| *n != fs.name_any())
        .collect();
    deps.sort();
    deps.dedup();
    let found =
        futures::future::try_join_all(deps.iter().map(|name| services.get_opt(name))).await?;
    for (name, dep) in deps.into_iter().zip(found) {
        resolved
            .dependencies
            .insert(name, dep.map(|d| d.spec.component));
    }
    Ok(resolved)
}

/// Applies every child; returns the kinds that were out of date and the live Deployment.
async fn apply_children(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    desired: build::Children,
) -> Result<(Vec<String>, Deployment)> {
    let name = fs.name_any();
    // The pods' ServiceAccount and ConfigMap first, so the Deployment's pods never wait for
    // them; the other children do not depend on each other and are applied at once.
    let ((sa, _), (cm, _)) = futures::try_join!(
        ensure(client, ns, &desired.service_account),
        ensure(client, ns, &desired.config_map),
    )?;
    let ((deploy, deployment), (svc, _), hpa, ingress, pdb) = futures::try_join!(
        ensure(client, ns, &desired.deployment),
        ensure(client, ns, &desired.service),
        ensure_optional(client, ns, fs, &name, desired.hpa.as_ref()),
        ensure_optional(client, ns, fs, &name, desired.ingress.as_ref()),
        ensure_optional(client, ns, fs, &name, desired.pdb.as_ref()),
    )?;
    let changed = [
        (sa, "ServiceAccount"),
        (cm, "ConfigMap"),
        (deploy, "Deployment"),
        (svc, "Service"),
        (hpa, "HorizontalPodAutoscaler"),
        (ingress, "Ingress"),
        (pdb, "PodDisruptionBudget"),
    ]
    .into_iter()
    .filter(|(c, _)| *c)
    .map(|(_, kind)| kind.to_string())
    .collect();
    Ok((changed, deployment))
}

/// Reads what the status is computed from; `applied` is the Deployment as the apply just left
/// it, so it is not read again.
async fn observe(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    applied: Option<Deployment>,
) -> Result<Observed> {
    let deployment = match applied {
        Some(d) => Some(d),
        None => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            deployments.get_opt(&fs.name_any()).await?
        }
    }
    .filter(|d| kit::owned_by(d, fs));
    // Pods are only looked at to explain replicas that are not ready.
    let all_ready = deployment.as_ref().is_some_and(|d| {
        let wanted = d.spec.replicas.unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        st.ready_replicas.unwrap_or(0) >= wanted && st.replicas.unwrap_or(0) == wanted
    });
    let pods = if deployment.is_some() && !all_ready {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        pods.list(&ListParams::default().labels(&build::selector_string(fs)))
            .await?
            .items
    } else {
        Vec::new()
    };
    Ok(Observed { deployment, pods })
}

/// Runs the FaasService controller over one namespace, or all when `namespace` is `None`,
/// until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let namespace = namespace.as_deref();
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=faas-operator");
    let pods_of_ours = watcher::Config::default().labels("app.kubernetes.io/name=faas-runtime");
    Controller::new(
        watch::api::<FaasService>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(
        watch::api::<Deployment>(&client, namespace),
        managed.clone(),
    )
    .owns(watch::api::<Service>(&client, namespace), managed.clone())
    .owns(watch::api::<ConfigMap>(&client, namespace), managed.clone())
    .owns(
        watch::api::<ServiceAccount>(&client, namespace),
        managed.clone(),
    )
    .owns(
        watch::api::<HorizontalPodAutoscaler>(&client, namespace),
        managed.clone(),
    )
    .owns(watch::api::<Ingress>(&client, namespace), managed.clone())
    .owns(
        watch::api::<PodDisruptionBudget>(&client, namespace),
        managed,
    )
    .watches(
        watch::api::<Pod>(&client, namespace),
        pods_of_ours,
        |pod: Pod| {
            let ns = pod.namespace()?;
            let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::<FaasService>::new(&instance).within(&ns))
        },
    )
    .with_config(
        kube::runtime::controller::Config::default()
            .concurrency(concurrency)
            .debounce(Duration::from_millis(500)),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(watch::log_result)
    .await;
}

/// Applies a child unless it is up to date; returns whether it applied, and the live object.
async fn ensure<K: Child>(client: &Client, ns: &str, desired: &K) -> Result<(bool, K)> {
    Ok(kit::ensure(client, ns, desired).await?)
}

/// Applies an optional child, or deletes it (when this FaasService owns it) when it is no
/// longer wanted.
async fn ensure_optional<K: Child>(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    name: &str,
    desired: Option<&K>,
) -> Result<bool> {
    Ok(match desired {
        Some(desired) => kit::ensure(client, ns, desired).await?.0,
        None => kit::prune::<K>(client, ns, name, fs).await?,
    })
}

/// Labels of a FaasService's children, for tests and tools.
pub fn child_labels(fs: &FaasService) -> BTreeMap<String, String> {
    build::labels(fs)
}
