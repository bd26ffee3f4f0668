//! A finalizer on objects whose deletion must first clean up outside the cluster (rows in
//! Postgres). The list is written with a merge patch that carries the resourceVersion it was
//! computed from: when another writer changed the object meanwhile, the API server answers
//! 409 and the reconcile runs again on the fresh object, so nobody's finalizer is lost.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::apply::Child;

/// Whether `obj` carries the finalizer `name`.
pub fn has<K: Child>(obj: &K, name: &str) -> bool {
    obj.finalizers().iter().any(|f| f == name)
}

/// Adds the finalizer `name` unless `obj` has it. Returns whether it wrote.
pub async fn add<K: Child>(
    client: &Client,
    ns: &str,
    obj: &K,
    name: &str,
) -> Result<bool, kube::Error> {
    if has(obj, name) {
        return Ok(false);
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(name.to_string());
    write(client, ns, obj, finalizers).await.map(|()| true)
}

/// Removes the finalizer `name` when `obj` has it. Returns whether it wrote.
pub async fn remove<K: Child>(
    client: &Client,
    ns: &str,
    obj: &K,
    name: &str,
) -> Result<bool, kube::Error> {
    if !has(obj, name) {
        return Ok(false);
    }
    let finalizers = obj
        .finalizers()
        .iter()
        .filter(|f| *f != name)
        .cloned()
        .collect();
    match write(client, ns, obj, finalizers).await {
        // Already gone: the object went away with its last finalizer.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        other => other.map(|()| true),
    }
}

async fn write<K: Child>(
    client: &Client,
    ns: &str,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = json!({
        "metadata": {
            "resourceVersion": obj.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}
