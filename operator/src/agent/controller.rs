//! The Agent controller: what it watches, what it shares between reconciles, and how a
//! failed reconcile is retried.

use std::sync::Arc;
use std::time::Duration;

use faas_crds::{Agent, FaasService, PromptTemplate};
use futures::StreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use sqlx::PgPool;

use super::{CONTROLLER, Error, reconcile, validate};
use crate::kit::Backoff;
use crate::kit::backoff::Failure;
use crate::kit::watch::{self, api};
use crate::metrics::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The platform's Postgres; `None` when the operator has none configured.
    pub db: Option<PgPool>,
    /// DNS domain of the cluster, for the endpoint of a FaasService without a URL yet.
    pub cluster_domain: String,
    /// Consecutive failures per object, for exponential backoff.
    pub(super) backoff: Backoff<Agent>,
}

impl Context {
    /// A context for the given client and database.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        db: Option<PgPool>,
        cluster_domain: String,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            db,
            cluster_domain,
            backoff: Backoff::default(),
        }
    }
}

/// Retries a failed reconcile with exponential backoff.
pub fn error_policy(agent: Arc<Agent>, error: &Error, ctx: Arc<Context>) -> Action {
    let failure = Failure {
        step: error.step(),
        category: error.category(),
        error,
    };
    ctx.backoff
        .requeue_failed(&agent, &ctx.metrics, CONTROLLER, failure)
}

/// Runs the Agent controller over one namespace, or all when `namespace` is `None`, until
/// `shutdown` resolves. Besides Agents it watches what they reference — PromptTemplates,
/// FaasServices and other Agents — and maps each change to the Agents that reference the
/// object, from the controller's own cache of Agents. Secrets are not watched: the operator
/// may not list them (see the chart's RBAC), so an Agent missing one is checked again after
/// [`super::UNRESOLVED_RECHECK`].
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client.clone();
    let ns = namespace.as_deref();
    let controller = Controller::new(api::<Agent>(client, ns), watcher::Config::default());
    let agents = controller.store();
    let (by_template, by_service, by_tool) = (agents.clone(), agents.clone(), agents);
    controller
        .watches(
            api::<PromptTemplate>(client, ns),
            watcher::Config::default(),
            move |pt| {
                referencing(&by_template, &pt, |a, name| {
                    a.spec
                        .prompt_template_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
                })
            },
        )
        .watches(
            api::<FaasService>(client, ns),
            watcher::Config::default(),
            move |fs| referencing(&by_service, &fs, |a, name| a.spec.service_ref.name == name),
        )
        .watches(
            api::<Agent>(client, ns),
            watcher::Config::default(),
            move |other| {
                referencing(&by_tool, &other, |a, name| {
                    validate::tool_agents(a).iter().any(|t| t == name)
                })
            },
        )
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

/// The Agents of `obj`'s namespace for which `refers(agent, obj's name)` holds.
pub fn referencing<K: ResourceExt>(
    agents: &Store<Agent>,
    obj: &K,
    refers: impl Fn(&Agent, &str) -> bool,
) -> Vec<ObjectRef<Agent>> {
    let ns = obj.namespace();
    let name = obj.name_any();
    agents
        .state()
        .iter()
        .filter(|a| a.namespace() == ns && refers(a, &name))
        .map(|a| ObjectRef::from_obj(a.as_ref()))
        .collect()
}
