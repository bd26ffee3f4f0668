//! The FaasService controller: what it watches, what it shares between reconciles, and how a
//! failed reconcile is retried.

use std::sync::Arc;
use std::time::Duration;

use faas_crds::FaasService;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::{CONTROLLER, Defaults, Error, reconcile};
use crate::kit::Backoff;
use crate::kit::backoff::Failure;
use crate::kit::watch::{self, api};
use crate::metrics::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub defaults: Defaults,
    pub metrics: Metrics,
    /// Consecutive failures per object, for exponential backoff.
    pub(super) backoff: Backoff<FaasService>,
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

/// Retries a failed reconcile with exponential backoff.
pub fn error_policy(fs: Arc<FaasService>, error: &Error, ctx: Arc<Context>) -> Action {
    let failure = Failure {
        step: error.step(),
        category: error.category(),
        error,
    };
    ctx.backoff
        .requeue_failed(&fs, &ctx.metrics, CONTROLLER, failure)
}

/// Runs the FaasService controller over one namespace, or all when `namespace` is `None`,
/// until `shutdown` resolves. It watches the children it labels as managed, and the runtime's
/// pods, whose failures the status explains.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client.clone();
    let ns = namespace.as_deref();
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=faas-operator");
    let pods_of_ours = watcher::Config::default().labels("app.kubernetes.io/name=faas-runtime");
    Controller::new(api::<FaasService>(client, ns), watcher::Config::default())
        .owns(api::<Deployment>(client, ns), managed.clone())
        .owns(api::<Service>(client, ns), managed.clone())
        .owns(api::<ConfigMap>(client, ns), managed.clone())
        .owns(api::<ServiceAccount>(client, ns), managed.clone())
        .owns(api::<HorizontalPodAutoscaler>(client, ns), managed.clone())
        .owns(api::<Ingress>(client, ns), managed.clone())
        .owns(api::<PodDisruptionBudget>(client, ns), managed)
        .watches(api::<Pod>(client, ns), pods_of_ours, service_of_pod)
        .with_config(
            controller::Config::default()
                .concurrency(concurrency)
                .debounce(Duration::from_millis(500)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(watch::log_result)
        .await;
}

/// The FaasService a runtime pod belongs to, from its instance label.
fn service_of_pod(pod: Pod) -> Option<ObjectRef<FaasService>> {
    let ns = pod.namespace()?;
    let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
    Some(ObjectRef::<FaasService>::new(&instance).within(&ns))
}
