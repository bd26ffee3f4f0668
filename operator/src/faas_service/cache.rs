//! What a FaasService reconcile reads without asking the API server: the controller's watch
//! caches of the child kinds, of the runtime's pods, of Agents and of FaasServices, and the key
//! names of referenced Secrets (read by name, kept a short while; see [`SecretKeys`]).
//!
//! The child kinds are watched without a label selector, so an object someone else made under
//! a child's name is in the cache too and is refused rather than taken over. Objects that are
//! not the operator's are kept as their name, uid and owner references only, so a namespace's
//! other ConfigMaps or Services cost the operator little memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use faas_crds::{Agent, FaasService};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Resource, ResourceExt};

use crate::kit::{Child, SecretKeys};

/// Label every object the operator generates carries.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "faas-operator");

/// The watch caches one run of the controller reads from.
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub service_accounts: Store<ServiceAccount>,
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub ingresses: Store<Ingress>,
    pub pdbs: Store<PodDisruptionBudget>,
    /// The runtime's pods, without their spec.
    pub pods: Store<Pod>,
    pub agents: Store<Agent>,
    /// The controller's own watch of FaasServices, which dependsOn is resolved from.
    pub faas_services: Store<FaasService>,
}

/// The writing ends of [`Caches`], which the watches fill.
pub struct Writers {
    pub deployments: Writer<Deployment>,
    pub services: Writer<Service>,
    pub config_maps: Writer<ConfigMap>,
    pub service_accounts: Writer<ServiceAccount>,
    pub hpas: Writer<HorizontalPodAutoscaler>,
    pub ingresses: Writer<Ingress>,
    pub pdbs: Writer<PodDisruptionBudget>,
    pub pods: Writer<Pod>,
    pub agents: Writer<Agent>,
    pub faas_services: Writer<FaasService>,
}

/// Empty caches and the writers that fill them.
pub fn caches() -> (Caches, Writers) {
    let (deployments, deployments_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (config_maps, config_maps_w) = reflector::store();
    let (service_accounts, service_accounts_w) = reflector::store();
    let (hpas, hpas_w) = reflector::store();
    let (ingresses, ingresses_w) = reflector::store();
    let (pdbs, pdbs_w) = reflector::store();
    let (pods, pods_w) = reflector::store();
    let (agents, agents_w) = reflector::store();
    let (faas_services, faas_services_w) = reflector::store();
    (
        Caches {
            deployments,
            services,
            config_maps,
            service_accounts,
            hpas,
            ingresses,
            pdbs,
            pods,
            agents,
            faas_services,
        },
        Writers {
            deployments: deployments_w,
            services: services_w,
            config_maps: config_maps_w,
            service_accounts: service_accounts_w,
            hpas: hpas_w,
            ingresses: ingresses_w,
            pdbs: pdbs_w,
            pods: pods_w,
            agents: agents_w,
            faas_services: faas_services_w,
        },
    )
}

impl Caches {
    /// Waits until every watch has listed what exists, so that no reconcile takes a child the
    /// cache has yet to see for one that does not exist.
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        futures::try_join!(
            self.deployments.wait_until_ready(),
            self.services.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.hpas.wait_until_ready(),
            self.ingresses.wait_until_ready(),
            self.pdbs.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.agents.wait_until_ready(),
        )
        .map(|_| ())
    }

    /// The child of kind `K` named `name` in `ns`, as the cache holds it.
    pub fn child<K: Cached>(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        K::store(self).get(&ObjectRef::new(name).within(ns))
    }

    /// The pods of `ns` whose labels include every one of `selector`.
    pub fn pods(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<Arc<Pod>> {
        self.pods.state_filter(|pod| {
            pod.namespace().as_deref() == Some(ns)
                && selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
        })
    }

    /// The FaasService `name` of `ns`.
    pub fn faas_service(&self, ns: &str, name: &str) -> Option<Arc<FaasService>> {
        self.faas_services.get(&ObjectRef::new(name).within(ns))
    }

    /// The Agents of `ns`.
    pub fn agents(&self, ns: &str) -> Vec<Arc<Agent>> {
        self.agents
            .state_filter(|agent| agent.namespace().as_deref() == Some(ns))
    }
}

/// Everything a reconcile shares besides the caches: Secret key names read by name.
#[derive(Default)]
pub struct Reads {
    pub secret_keys: SecretKeys,
}

/// A child kind the controller caches.
pub trait Cached: Child + Default + Send + Sync + 'static {
    /// Its store among the caches.
    fn store(caches: &Caches) -> &Store<Self>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn store(caches: &Caches) -> &Store<Self> {
                &caches.$field
            }
        })*
    };
}

cached! {
    Deployment => deployments,
    Service => services,
    ConfigMap => config_maps,
    ServiceAccount => service_accounts,
    HorizontalPodAutoscaler => hpas,
    Ingress => ingresses,
    PodDisruptionBudget => pdbs,
}

/// What the cache keeps of a child-kind object: all of one the operator generated, and of any
/// other only what tells who holds the name.
pub fn slim_child<K: Cached>(obj: &mut K) {
    let ours = obj.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
    if ours {
        return;
    }
    let meta = obj.meta();
    let kept = ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        owner_references: meta.owner_references.clone(),
        ..ObjectMeta::default()
    };
    *obj = K::default();
    *obj.meta_mut() = kept;
}

/// What the cache keeps of a runtime pod: its metadata and status, which explain a failing
/// replica; the spec is the Deployment's, and large.
pub fn slim_pod(pod: &mut Pod) {
    pod.spec = None;
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            phase: status.phase.take(),
            reason: status.reason.take(),
            message: status.message.take(),
            container_statuses: status.container_statuses.take(),
            ..PodStatus::default()
        };
    }
    pod.meta_mut().annotations = None;
}

/// Agents are kept whole: a reconcile reads their tools.
pub fn keep<K>(_: &mut K) {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn another_owners_object_keeps_only_who_holds_the_name() {
        let mut cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "llm-config", "namespace": "a", "uid": "1",
                         "labels": {"team": "x"}, "annotations": {"note": "big"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "t",
                                              "uid": "9", "controller": true}]},
            "data": {"k": "v"},
        }))
        .unwrap();
        slim_child(&mut cm);
        assert_eq!(cm.data, None);
        assert_eq!(cm.metadata.labels, None);
        assert_eq!(cm.metadata.annotations, None);
        assert_eq!(cm.metadata.owner_references.as_ref().unwrap()[0].uid, "9");
        assert_eq!(cm.metadata.name.as_deref(), Some("llm-config"));
    }

    #[test]
    fn the_operators_own_object_is_kept_whole() {
        let mut cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "llm-config", "namespace": "a",
                         "labels": {"app.kubernetes.io/managed-by": "faas-operator"},
                         "annotations": {"faas.motadata.io/applied-hash": "h"}},
            "data": {"k": "v"},
        }))
        .unwrap();
        let before = cm.clone();
        slim_child(&mut cm);
        assert_eq!(cm, before);
    }

    #[test]
    fn a_pod_keeps_what_explains_its_failure() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "a", "annotations": {"x": "y"}},
            "spec": {"containers": [{"name": "runtime", "image": "i"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "containerStatuses": [{"name": "runtime", "image": "i", "imageID": "",
                                              "ready": false, "restartCount": 3}]},
        }))
        .unwrap();
        slim_pod(&mut pod);
        assert!(pod.spec.is_none());
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip, None);
        assert_eq!(status.container_statuses.unwrap()[0].restart_count, 3);
    }
}
