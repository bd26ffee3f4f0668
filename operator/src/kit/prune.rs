//! Deletion of children a controller no longer wants.

use kube::api::{Api, DeleteParams};
use kube::{Client, Resource, ResourceExt};

use super::apply::Child;

/// Whether `obj` is controlled by `owner`.
pub fn owned_by(obj: &impl Resource, owner: &impl Resource) -> bool {
    obj.owner_references()
        .iter()
        .any(|o| Some(&o.uid) == owner.meta().uid.as_ref() && o.controller == Some(true))
}

/// Deletes `live`, the child of kind `K` as the controller's watch cache holds it, when
/// `owner` controls it; an object someone else made under that name is left alone, and a child
/// the cache does not hold costs no request. Returns whether it deleted.
pub async fn prune<K: Child>(
    client: &Client,
    ns: &str,
    live: Option<&K>,
    owner: &impl Resource,
) -> Result<bool, kube::Error> {
    let Some(actual) = live.filter(|actual| owned_by(*actual, owner)) else {
        return Ok(false);
    };
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api
        .delete(&actual.name_any(), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
