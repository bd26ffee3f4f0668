//! What the watch setup of every kube-runtime controller shares.

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::{Action, Error};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

/// The API of a namespaced kind in one namespace, or in all when `namespace` is `None`.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Logs what a controller's stream yields. Failed reconciles are not logged here: the error
/// policy reports them, with their category.
pub async fn log_result<K, E>(result: Result<(ObjectRef<K>, Action), Error<E, watcher::Error>>)
where
    K: Resource<DynamicType = ()>,
    E: std::error::Error + 'static,
{
    match result {
        Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
        Err(Error::ObjectNotFound(obj)) => {
            tracing::debug!(object = %obj, "deleted before it was reconciled")
        }
        Err(e) => tracing::debug!(error = %e, "controller event"),
    }
}
