//! The FaasService controller: what it watches, what it shares between reconciles, and how a
//! failed reconcile is retried.

use std::sync::Arc;

use faas_crds::{Agent, Component, FaasService};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::cache::{self, Cached, Caches, Reads};
use super::{CONTROLLER, Defaults, Error, reconcile};
use crate::kit::Backoff;
use crate::kit::backoff::Failure;
use crate::kit::watch::{self, api, cached};
use crate::metrics::Metrics;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub defaults: Defaults,
    pub metrics: Metrics,
    /// The watch caches of this run of the controller.
    pub caches: Caches,
    /// Secret key names, read by name.
    pub reads: Reads,
    /// Consecutive failures per object, for exponential backoff.
    pub(super) backoff: Backoff<FaasService>,
}

impl Context {
    /// A context for the given client, with empty caches that nothing fills: [`run`] makes
    /// one with watched caches for each run, and a test may fill these with
    /// [`Context::with_caches`].
    pub fn new(client: Client, recorder: Recorder, defaults: Defaults, metrics: Metrics) -> Self {
        Self::with_caches(client, recorder, defaults, metrics, cache::caches().0)
    }

    /// A context reading from the given caches.
    pub fn with_caches(
        client: Client,
        recorder: Recorder,
        defaults: Defaults,
        metrics: Metrics,
        caches: Caches,
    ) -> Self {
        Self {
            client,
            recorder,
            defaults,
            metrics,
            caches,
            reads: Reads::default(),
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
/// until `shutdown` resolves. `base` gives the client, recorder, defaults and metrics; the
/// caches are this run's own, filled by its watches: of every object of the child kinds (its
/// own children trigger a reconcile of their owner), of the runtime's pods, whose failures
/// the status explains, and of Agents, whose tools' Secret keys the pods of an agent service
/// mount. No reconcile runs before every cache has listed what exists.
pub async fn run(
    base: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &base.client.clone();
    let ns = namespace.as_deref();
    // Lists are paged (500 objects a page), so a restart among thousands of objects never
    // holds one huge answer in memory.
    let everything = watcher::Config::default();
    let pods_of_ours = watcher::Config::default().labels("app.kubernetes.io/name=faas-runtime");
    let (caches, w) = cache::caches();
    // FaasServices are kept without their managed fields, like every other cached object.
    let own = watcher(api::<FaasService>(client, ns), watcher::Config::default())
        .default_backoff()
        .modify(|fs: &mut FaasService| fs.metadata.managed_fields = None)
        .reflect(w.faas_services)
        .applied_objects();
    let services = caches.faas_services.clone();
    let controller = Controller::for_stream(own, caches.faas_services.clone())
        .owns_stream(children::<Deployment>(client, ns, w.deployments))
        .owns_stream(children::<Service>(client, ns, w.services))
        .owns_stream(children::<ConfigMap>(client, ns, w.config_maps))
        .owns_stream(children::<ServiceAccount>(client, ns, w.service_accounts))
        .owns_stream(children::<HorizontalPodAutoscaler>(client, ns, w.hpas))
        .owns_stream(children::<Ingress>(client, ns, w.ingresses))
        .owns_stream(children::<PodDisruptionBudget>(client, ns, w.pdbs))
        .watches_stream(
            cached(
                api::<Pod>(client, ns),
                pods_of_ours,
                w.pods,
                cache::slim_pod,
            ),
            service_of_pod,
        )
        .watches_stream(
            cached(
                api::<Agent>(client, ns),
                everything.clone(),
                w.agents,
                cache::keep,
            ),
            move |agent| services_of_agent(&services, &agent),
        );
    let ctx = Arc::new(Context::with_caches(
        base.client.clone(),
        base.recorder.clone(),
        base.defaults.clone(),
        base.metrics.clone(),
        caches,
    ));
    controller
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(
            |fs, ctx: Arc<Context>| async move {
                // Returns at once after the first lists; until then the reconcile waits, since
                // a child missing from a cache not yet filled would look absent.
                if ctx.caches.ready().await.is_err() {
                    return Err(Error::CachesGone);
                }
                reconcile(fs, ctx).await
            },
            error_policy,
            ctx,
        )
        .for_each(watch::log_result)
        .await;
}

/// The watch of every object of a child kind in the namespace(s), kept in the cache.
fn children<K: Cached>(
    client: &Client,
    ns: Option<&str>,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    let everything = watcher::Config::default();
    cached(
        api::<K>(client, ns),
        everything,
        writer,
        cache::slim_child::<K>,
    )
}

/// The FaasService a runtime pod belongs to, from its instance label.
fn service_of_pod(pod: Pod) -> Option<ObjectRef<FaasService>> {
    let ns = pod.namespace()?;
    let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
    Some(ObjectRef::<FaasService>::new(&instance).within(&ns))
}

/// The FaasServices an Agent's change may concern: the one its serviceRef names, and every
/// other agent service of its namespace. An event carries only the Agent as it is now, so the
/// service it named before a change of serviceRef (or before it was deleted) is not known;
/// each of those services lists its Agents afresh, and one the change does not concern
/// finds its Deployment up to date and writes nothing.
pub fn services_of_agent(
    services: &Store<FaasService>,
    agent: &Agent,
) -> Vec<ObjectRef<FaasService>> {
    let Some(ns) = agent.namespace() else {
        return Vec::new();
    };
    let named = ObjectRef::<FaasService>::new(&agent.spec.service_ref.name).within(&ns);
    let mut refs: Vec<ObjectRef<FaasService>> = services
        .state()
        .iter()
        .filter(|fs| fs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|fs| fs.spec.component == Component::Agent)
        .map(|fs| ObjectRef::from_obj(fs.as_ref()))
        .filter(|r| *r != named)
        .collect();
    refs.push(named);
    refs
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use serde_json::json;

    use super::*;

    fn service(ns: &str, name: &str, component: &str) -> FaasService {
        serde_json::from_value(json!({
            "apiVersion": "faas.motadata.io/v1alpha1", "kind": "FaasService",
            "metadata": {"name": name, "namespace": ns}, "spec": {"component": component},
        }))
        .unwrap()
    }

    fn agent(ns: &str, service: &str) -> Agent {
        serde_json::from_value(json!({
            "apiVersion": "faas.motadata.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "helper", "namespace": ns},
            "spec": {"model": {"provider": "openai", "name": "m"}, "systemPrompt": "Hi.",
                     "serviceRef": {"name": service}},
        }))
        .unwrap()
    }

    #[test]
    fn an_agent_change_reaches_its_service_and_every_other_agent_service_of_its_namespace() {
        let (store, mut writer) = reflector::store::<FaasService>();
        for fs in [
            service("team-a", "agents", "agent"),
            service("team-a", "more-agents", "agent"),
            service("team-a", "rag", "rag"),
            service("team-b", "agents", "agent"),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(fs));
        }
        let names = |agent: &Agent| {
            let mut refs: Vec<String> = services_of_agent(&store, agent)
                .into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap(), r.name))
                .collect();
            refs.sort();
            refs
        };
        // The one it names now, and the others, one of which it may have named before.
        assert_eq!(
            names(&agent("team-a", "agents")),
            ["team-a/agents", "team-a/more-agents"]
        );
        // A service not (yet) in the cache is still asked.
        assert_eq!(
            names(&agent("team-a", "new-agents")),
            ["team-a/agents", "team-a/more-agents", "team-a/new-agents"]
        );
        assert_eq!(names(&agent("team-c", "agents")), ["team-c/agents"]);
    }
}
