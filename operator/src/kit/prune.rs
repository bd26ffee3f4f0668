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

/// Deletes the child `name` of kind `K` when `owner` controls it; an object someone else made
/// under that name is left alone. Returns whether it deleted.
pub async fn prune<K: Child>(
    client: &Client,
    ns: &str,
    name: &str,
    owner: &impl Resource,
) -> Result<bool, kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(actual) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if !owned_by(&actual, owner) {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
