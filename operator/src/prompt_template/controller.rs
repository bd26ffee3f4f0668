//! The PromptTemplate controller: what it watches, what it shares between reconciles, and
//! how a failed reconcile is retried.

use std::sync::Arc;
use std::time::Duration;

use faas_crds::{Agent, PromptTemplate};
use futures::StreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use sqlx::PgPool;

use super::{CONTROLLER, Error, reconcile};
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
    /// Consecutive failures per object, for exponential backoff.
    pub(super) backoff: Backoff<PromptTemplate>,
}

impl Context {
    /// A context for the given client and database.
    pub fn new(client: Client, recorder: Recorder, metrics: Metrics, db: Option<PgPool>) -> Self {
        Self {
            client,
            recorder,
            metrics,
            db,
            backoff: Backoff::default(),
        }
    }
}

/// Retries a failed reconcile with exponential backoff.
pub fn error_policy(pt: Arc<PromptTemplate>, error: &Error, ctx: Arc<Context>) -> Action {
    let failure = Failure {
        step: error.step(),
        category: error.category(),
        error,
    };
    ctx.backoff
        .requeue_failed(&pt, &ctx.metrics, CONTROLLER, failure)
}

/// Runs the PromptTemplate controller over one namespace, or all when `namespace` is `None`,
/// until `shutdown` resolves. It watches Agents, so a template whose deletion waits for the
/// Agents that reference it goes as soon as the last one lets go.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client.clone();
    let ns = namespace.as_deref();
    Controller::new(
        api::<PromptTemplate>(client, ns),
        watcher::Config::default(),
    )
    .watches(
        api::<Agent>(client, ns),
        watcher::Config::default(),
        template_of_agent,
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

/// The PromptTemplate an Agent references.
pub fn template_of_agent(agent: Agent) -> Option<ObjectRef<PromptTemplate>> {
    let ns = agent.namespace()?;
    let name = agent.spec.prompt_template_ref?.name;
    Some(ObjectRef::<PromptTemplate>::new(&name).within(&ns))
}
