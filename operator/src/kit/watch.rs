//! What the watch setup of every kube-runtime controller shares.

use std::fmt::Debug;

use futures::Stream;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::{Action, Error};
use kube::runtime::reflector::{ObjectRef, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

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

/// A watch whose objects are kept in `writer`'s store for the reconciles to read, as the
/// trigger stream of a controller. Each object goes in without its managed fields (no
/// reconcile reads them) and after `slim`, which drops what else its reconciles do not read.
/// The watch resumes by itself after errors, with kube-runtime's default backoff.
pub fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    slim: fn(&mut K),
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(api, config)
        .default_backoff()
        .modify(move |obj: &mut K| {
            obj.meta_mut().managed_fields = None;
            slim(obj);
        })
        .reflect(writer)
        .touched_objects()
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
        // A watch that fails (the API server is away, or a permission is missing) keeps
        // reconciles waiting for its cache: say so.
        Err(Error::QueueError(e)) => tracing::warn!(error = %e, "a watch failed; retrying"),
        Err(e) => tracing::debug!(error = %e, "controller event"),
    }
}
