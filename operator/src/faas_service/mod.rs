//! The FaasService controller.
//!
//! Reconcile is a pipeline: dereference (read what the spec references and what exists) →
//! validate (pure) → build the desired children (pure) → apply them with server-side apply,
//! skipping those already up to date → prune children no longer wanted → write the status
//! only when it changed.

pub mod build;
pub mod status;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_crds::faas_service::Backend;
use faas_crds::{API_VERSION, FaasService};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{info, instrument, warn};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use status::{Observed, Outcome};
use validate::Resolved;

/// Field manager of every server-side apply the operator makes.
pub const MANAGER: &str = "faas-operator";
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
    failures: Mutex<HashMap<ObjectRef<FaasService>, u32>>,
}

impl Context {
    /// A context for the given client.
    pub fn new(client: Client, recorder: Recorder, defaults: Defaults, metrics: Metrics) -> Self {
        Self {
            client,
            recorder,
            defaults,
            metrics,
            failures: Mutex::new(HashMap::new()),
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
        publish(
            &ctx,
            &fs,
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
    if !status::same(&previous, &next) {
        write_status(client, &ns, &fs, &next).await?;
        announce_transition(&ctx, &fs, &previous, &next).await;
    }

    ctx.failures
        .lock()
        .expect("not poisoned")
        .remove(&ObjectRef::from(fs.as_ref()));
    Ok(match outcome {
        Outcome::Invalid(_) => Action::requeue(INVALID_RECHECK),
        _ => Action::requeue(RESYNC),
    })
}

/// Retries a failed reconcile with exponential backoff: 1 s, 2 s, 4 s … up to 5 minutes.
pub fn error_policy(fs: Arc<FaasService>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(CONTROLLER, error.category());
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let count = failures.entry(ObjectRef::from(fs.as_ref())).or_insert(0);
    *count = count.saturating_add(1);
    let delay = backoff(*count);
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

/// Delay before retry number `attempt` (from 1).
pub fn backoff(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
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

/// The first field (as a JSON path) whose value in `desired` is not the one in `actual`, or
/// `None` when every field of `desired` has the same value in `actual`. Fields that only
/// `actual` has (defaults, other managers' fields, status) do not matter.
pub fn first_difference(desired: &Value, actual: &Value) -> Option<String> {
    difference(desired, actual, false)
}

/// Fields whose values the API server rewrites into canonical quantities ("0.5" → "500m").
const QUANTITY_FIELDS: &[&str] = &["requests", "limits", "sizeLimit"];

fn difference(desired: &Value, actual: &Value, quantities: bool) -> Option<String> {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().find_map(|(k, dv)| {
            if dv.is_null() {
                return None;
            }
            let quantities = quantities || QUANTITY_FIELDS.contains(&k.as_str());
            match a.get(k) {
                None => Some(format!(".{k}")),
                Some(av) => difference(dv, av, quantities).map(|rest| format!(".{k}{rest}")),
            }
        }),
        (Value::Array(d), Value::Array(a)) if d.len() == a.len() => {
            d.iter().zip(a).enumerate().find_map(|(i, (x, y))| {
                difference(x, y, quantities).map(|rest| format!("[{i}]{rest}"))
            })
        }
        (Value::Array(_), Value::Array(_)) => Some(" (length)".into()),
        (d, a) if d == a => None,
        (Value::String(d), Value::String(a)) if quantities && same_quantity(d, a) => None,
        _ => Some(String::new()),
    }
}

/// Whether two Kubernetes quantities ("500m", "0.5", "1Gi", "1024Mi") denote the same amount.
pub fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity_value(a), quantity_value(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 8.0,
        _ => false,
    }
}

fn quantity_value(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// Whether every field of `desired` has the same value in `actual`.
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    first_difference(desired, actual).is_none()
}

fn up_to_date<K: Serialize + Resource>(desired: &K, actual: &K) -> Result<bool> {
    let hash = |k: &K| {
        k.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(build::APPLIED_HASH_ANNOTATION).cloned())
    };
    if hash(desired) != hash(actual) {
        return Ok(false);
    }
    let difference = first_difference(
        &serde_json::to_value(desired)?,
        &serde_json::to_value(actual)?,
    );
    if let Some(path) = &difference {
        tracing::debug!(name = desired.meta().name.as_deref().unwrap_or_default(), field = %path, "live object differs");
    }
    Ok(difference.is_none())
}

/// What the operator creates for a FaasService: a namespaced object it can apply and read.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
{
}

impl<K> Child for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
{
}

/// Whether `obj` is controlled by this FaasService.
fn owned_by(obj: &impl Resource, fs: &FaasService) -> bool {
    obj.owner_references()
        .iter()
        .any(|o| Some(&o.uid) == fs.metadata.uid.as_ref() && o.controller == Some(true))
}

/// Applies `desired` unless the live object already matches it. Returns whether it applied,
/// and the live object afterwards.
async fn ensure<K: Child>(client: &Client, ns: &str, desired: &K) -> Result<(bool, K)> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = desired.name_any();
    if let Some(actual) = api.get_opt(&name).await?
        && up_to_date(desired, &actual)?
    {
        return Ok((false, actual));
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
    Ok((true, applied))
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
    if let Some(desired) = desired {
        return Ok(ensure(client, ns, desired).await?.0);
    }
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(actual) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if !owned_by(&actual, fs) {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
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
    .filter(|d| owned_by(d, fs));
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

async fn write_status(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    status: &faas_crds::FaasServiceStatus,
) -> Result<()> {
    let api: Api<FaasService> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "FaasService",
        "status": status,
    });
    api.patch_status(
        &fs.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Publishes an Event when Ready or Degraded changed, so `kubectl describe` tells the story.
async fn announce_transition(
    ctx: &Context,
    fs: &FaasService,
    previous: &faas_crds::FaasServiceStatus,
    next: &faas_crds::FaasServiceStatus,
) {
    use faas_crds::conditions::{DEGRADED, READY, find};
    for type_ in [READY, DEGRADED] {
        let Some(now) = find(&next.conditions, type_) else {
            continue;
        };
        let before = find(&previous.conditions, type_);
        if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
            continue;
        }
        let bad = (type_ == READY
            && now.status == "False"
            && now.reason != "Creating"
            && now.reason != "Starting")
            || (type_ == DEGRADED && now.status == "True");
        if type_ == DEGRADED && !bad && before.is_none() {
            continue;
        }
        let kind = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, fs, kind, &now.reason, "Reconcile", now.message.clone()).await;
    }
}

async fn publish(
    ctx: &Context,
    fs: &FaasService,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &fs.object_ref(&())).await {
        warn!(error = %e, "cannot publish an event");
    }
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
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=faas-operator");
    let pods_of_ours = watcher::Config::default().labels("app.kubernetes.io/name=faas-runtime");
    Controller::new(
        api::<FaasService>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<Deployment>(&client, &namespace), managed.clone())
    .owns(api::<Service>(&client, &namespace), managed.clone())
    .owns(api::<ConfigMap>(&client, &namespace), managed.clone())
    .owns(api::<ServiceAccount>(&client, &namespace), managed.clone())
    .owns(
        api::<HorizontalPodAutoscaler>(&client, &namespace),
        managed.clone(),
    )
    .owns(api::<Ingress>(&client, &namespace), managed.clone())
    .owns(api::<PodDisruptionBudget>(&client, &namespace), managed)
    .watches(api::<Pod>(&client, &namespace), pods_of_ours, |pod: Pod| {
        let ns = pod.namespace()?;
        let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
        Some(ObjectRef::<FaasService>::new(&instance).within(&ns))
    })
    .with_config(
        kube::runtime::controller::Config::default()
            .concurrency(concurrency)
            .debounce(Duration::from_millis(500)),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
            Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                tracing::debug!(object = %obj, "deleted before it was reconciled")
            }
            Err(e) => tracing::debug!(error = %e, "controller event"),
        }
    })
    .await;
}

/// Labels of a FaasService's children, for tests and tools.
pub fn child_labels(fs: &FaasService) -> BTreeMap<String, String> {
    build::labels(fs)
}
