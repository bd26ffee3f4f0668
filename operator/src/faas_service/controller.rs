//! The FaasService controller: what it watches, what it shares between reconciles, and how a
//! failed reconcile is retried.

use std::sync::Arc;
use std::time::Duration;

use faas_crds::{Agent, Component, FaasService};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
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
/// until `shutdown` resolves. It watches the children it labels as managed, the runtime's
/// pods, whose failures the status explains, and Agents, whose tools' Secret keys the pods of
/// an agent service mount.
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
    let controller = Controller::new(api::<FaasService>(client, ns), watcher::Config::default());
    let services = controller.store();
    controller
        .owns(api::<Deployment>(client, ns), managed.clone())
        .owns(api::<Service>(client, ns), managed.clone())
        .owns(api::<ConfigMap>(client, ns), managed.clone())
        .owns(api::<ServiceAccount>(client, ns), managed.clone())
        .owns(api::<HorizontalPodAutoscaler>(client, ns), managed.clone())
        .owns(api::<Ingress>(client, ns), managed.clone())
        .owns(api::<PodDisruptionBudget>(client, ns), managed)
        .watches(api::<Pod>(client, ns), pods_of_ours, service_of_pod)
        .watches(
            api::<Agent>(client, ns),
            watcher::Config::default(),
            move |agent| services_of_agent(&services, &agent),
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
