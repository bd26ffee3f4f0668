//! Helpers shared by the suite's tests.

use std::time::Duration;

use faas_crds::FaasService;
pub use faas_e2e::describe;
use faas_e2e::{TestNs, WAIT, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// Creates a FaasService from its `spec` (JSON, as a user would write it).
pub async fn create_fs(ns: &TestNs, name: &str, spec: Value) -> FaasService {
    let fs: FaasService = serde_json::from_value(json!({
        "apiVersion": "faas.motadata.io/v1alpha1",
        "kind": "FaasService",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a FaasService");
    ns.api::<FaasService>()
        .create(&PostParams::default(), &fs)
        .await
        .unwrap_or_else(|e| panic!("creating FaasService {name}: {e}"))
}

/// JSON merge patch of a FaasService's spec.
pub async fn patch_spec(ns: &TestNs, name: &str, spec: Value) -> FaasService {
    ns.api::<FaasService>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap_or_else(|e| panic!("patching FaasService {name}: {e}"))
}

/// Status of a condition of a FaasService: (status, reason, message).
pub fn condition(fs: &FaasService, type_: &str) -> Option<(String, String, String)> {
    fs.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `pred` holds for the FaasService (status written for the current generation).
pub async fn wait_fs<F>(ns: &TestNs, name: &str, what: &str, pred: F) -> FaasService
where
    F: Fn(&FaasService) -> bool,
{
    let api = ns.api::<FaasService>();
    wait_for(&format!("FaasService {name}: {what}"), WAIT, || async {
        let fs = api.get(name).await.map_err(|e| e.to_string())?;
        let current = fs
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation == fs.metadata.generation);
        if current && pred(&fs) {
            Ok(fs)
        } else {
            Err(describe(&fs))
        }
    })
    .await
}

/// Whether condition `type_` has status `status`.
pub fn has(fs: &FaasService, type_: &str, status: &str) -> bool {
    condition(fs, type_).is_some_and(|(s, _, _)| s == status)
}

/// Waits until Ready=True, Progressing=False and Degraded=False.
pub async fn wait_ready(ns: &TestNs, name: &str) -> FaasService {
    wait_fs(ns, name, "Ready=True", |fs| {
        has(fs, "Ready", "True") && has(fs, "Progressing", "False") && has(fs, "Degraded", "False")
    })
    .await
}

/// Waits until a namespaced object exists and satisfies `pred`.
pub async fn wait_obj<K, F>(ns: &TestNs, name: &str, what: &str, pred: F) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let api = ns.api::<K>();
    wait_for(
        &format!("{} {name}: {what}", K::kind(&())),
        WAIT,
        || async {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                Some(o) if pred(&o) => Ok(o),
                Some(_) => Err("exists, condition not met".to_string()),
                None => Err("not found".to_string()),
            }
        },
    )
    .await
}

/// Waits until a namespaced object is gone.
pub async fn wait_gone<K>(ns: &TestNs, name: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = ns.api::<K>();
    wait_for(
        &format!("{} {name} to be deleted", K::kind(&())),
        WAIT,
        || async {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(o) => Err(format!(
                    "still there (deletionTimestamp {:?})",
                    o.meta().deletion_timestamp
                )),
            }
        },
    )
    .await
}

/// Asserts the object has exactly one controller owner reference: the FaasService.
pub fn assert_owned<K: Resource>(obj: &K, fs: &FaasService) {
    let refs: Vec<&OwnerReference> = obj.meta().owner_references.iter().flatten().collect();
    let name = obj.meta().name.clone().unwrap_or_default();
    assert_eq!(refs.len(), 1, "{name}: owner references {refs:?}");
    let r = refs[0];
    assert_eq!(r.kind, "FaasService", "{name}: {r:?}");
    assert_eq!(r.api_version, "faas.motadata.io/v1alpha1", "{name}: {r:?}");
    assert_eq!(r.name, fs.name_any(), "{name}: {r:?}");
    assert_eq!(Some(&r.uid), fs.metadata.uid.as_ref(), "{name}: {r:?}");
    assert_eq!(r.controller, Some(true), "{name}: {r:?}");
}

/// Image of the Deployment's first container.
pub fn image_of(d: &Deployment) -> String {
    d.spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Pod-template annotation of a Deployment.
pub fn template_annotation(d: &Deployment, key: &str) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

/// ReplicaSets of a FaasService's Deployment.
pub async fn replica_sets(ns: &TestNs, name: &str) -> Vec<ReplicaSet> {
    ns.api::<ReplicaSet>()
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/name=faas-runtime,app.kubernetes.io/instance={name}"
        )))
        .await
        .expect("listing ReplicaSets")
        .items
}

/// What is known about one object's writes: resourceVersion, generation and, per field
/// manager (and subresource), the time of its last write.
#[derive(Clone, Debug, PartialEq)]
pub struct Writes {
    pub kind: String,
    pub name: String,
    pub resource_version: String,
    pub generation: Option<i64>,
    pub managers: std::collections::BTreeMap<String, String>,
}

/// The FaasService named `name` and every child of it that exists.
pub async fn children_versions(ns: &TestNs, name: &str) -> Vec<Writes> {
    async fn rv<K>(ns: &TestNs, name: &str, out: &mut Vec<Writes>)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        if let Some(o) = ns.api::<K>().get_opt(name).await.expect("get child") {
            let managers = o
                .meta()
                .managed_fields
                .iter()
                .flatten()
                .map(|m| {
                    (
                        format!(
                            "{}{}",
                            m.manager.clone().unwrap_or_default(),
                            m.subresource
                                .as_ref()
                                .map(|s| format!("/{s}"))
                                .unwrap_or_default()
                        ),
                        format!("{:?}", m.time),
                    )
                })
                .collect();
            out.push(Writes {
                kind: K::kind(&()).to_string(),
                name: name.to_string(),
                resource_version: o.resource_version().unwrap_or_default(),
                generation: o.meta().generation,
                managers,
            });
        }
    }
    let mut out = Vec::new();
    rv::<FaasService>(ns, name, &mut out).await;
    rv::<Deployment>(ns, name, &mut out).await;
    rv::<Service>(ns, name, &mut out).await;
    rv::<ServiceAccount>(ns, name, &mut out).await;
    rv::<ConfigMap>(ns, &format!("{name}-config"), &mut out).await;
    rv::<HorizontalPodAutoscaler>(ns, name, &mut out).await;
    rv::<Ingress>(ns, name, &mut out).await;
    rv::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(ns, name, &mut out).await;
    out
}

/// A pause for observing that nothing happens (only where no condition can be polled).
pub async fn observe_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// A FaasService spec with every optional child: autoscaling, ingress, config.
pub fn full_spec() -> Value {
    json!({
        "component": "rag",
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 4,
            "targetCPUUtilizationPercentage": 70
        },
        "ingress": { "host": "rag.e2e.example.com", "path": "/" },
        "config": { "FAAS_MAX_BODY_BYTES": 1048576 }
    })
}

/// The children every FaasService has, and the optional ones of `full_spec`, with owner refs.
pub async fn assert_children(ns: &TestNs, fs: &FaasService, optional: bool) {
    let name = fs.name_any();
    let d: Deployment = wait_obj(ns, &name, "exists", |_| true).await;
    assert_owned(&d, fs);
    let s: Service = wait_obj(ns, &name, "exists", |_| true).await;
    assert_owned(&s, fs);
    let sa: ServiceAccount = wait_obj(ns, &name, "exists", |_| true).await;
    assert_owned(&sa, fs);
    let cm: ConfigMap = wait_obj(ns, &format!("{name}-config"), "exists", |_| true).await;
    assert_owned(&cm, fs);
    if optional {
        let hpa: HorizontalPodAutoscaler = wait_obj(ns, &name, "exists", |_| true).await;
        assert_owned(&hpa, fs);
        let ing: Ingress = wait_obj(ns, &name, "exists", |_| true).await;
        assert_owned(&ing, fs);
    }
}
