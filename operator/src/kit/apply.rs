//! Server-side apply of the objects a controller keeps for its resource.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::diff::first_difference;

/// Field manager of every server-side apply the operator makes.
pub const MANAGER: &str = "faas-operator";
/// Annotation on every generated object holding the hash of what was last applied.
pub const APPLIED_HASH_ANNOTATION: &str = "faas.motadata.io/applied-hash";

/// What a controller creates for its resource: a namespaced object it can apply and read.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
{
}

impl<K> Child for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
{
}

/// SHA-256 of a value's JSON form, hex encoded.
pub fn hash_json<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("generated objects serialize");
    hex::encode(Sha256::digest(bytes))
}

/// Stamps an object with the hash of its desired content, so [`ensure`] can tell a spec change
/// (hash differs) from a steady state (hash equal and fields unchanged) without a write.
pub fn stamp<K: Resource + Serialize>(mut obj: K) -> K {
    let hash = hash_json(&obj);
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH_ANNOTATION.into(), hash);
    obj
}

/// The controller reference a child carries to its owner.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let mut reference = owner
        .controller_owner_ref(&())
        .expect("an object read from the API has a name and uid");
    // Foreground deletion of the owner waits until its children are gone.
    reference.block_owner_deletion = Some(true);
    reference
}

/// A child's name is taken: an object of that kind and name exists and the owner the desired
/// object names does not control it. The operator never takes such an object over.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {kind} {name} already exists and {holder}; the operator does not take over objects it did not create: delete or rename it"
)]
pub struct Conflict {
    pub kind: String,
    pub name: String,
    /// Who controls it, as a phrase: "has no controller", "is controlled by FaasService rag
    /// (uid …)".
    pub holder: String,
}

/// Why [`ensure`] did not apply.
#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    /// The name is taken by an object the desired owner does not control.
    #[error(transparent)]
    Conflict(Conflict),
    /// A request failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Applies `desired` unless the live object already matches it. Returns whether it applied,
/// and the live object afterwards. When `desired` names a controller and a live object of that
/// name is not controlled by it (someone else made it, or an earlier owner of the same name
/// whose children the garbage collector has yet to delete), nothing is written.
pub async fn ensure<K: Child>(
    client: &Client,
    ns: &str,
    desired: &K,
) -> Result<(bool, K), EnsureError> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = desired.name_any();
    if let Some(actual) = api.get_opt(&name).await? {
        if let Some(conflict) = taken(desired, &actual) {
            return Err(EnsureError::Conflict(conflict));
        }
        if up_to_date(desired, &actual) {
            return Ok((false, actual));
        }
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
    Ok((true, applied))
}

/// The conflict when `desired` names a controller that does not control `actual`.
fn taken<K: Resource<DynamicType = ()>>(desired: &K, actual: &K) -> Option<Conflict> {
    let controller = |k: &K| {
        k.owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .cloned()
    };
    let wanted = controller(desired)?;
    let holder = match controller(actual) {
        Some(held) if held.uid == wanted.uid => return None,
        Some(held) => format!(
            "is controlled by {} {} (uid {})",
            held.kind, held.name, held.uid
        ),
        None => "has no controller".to_string(),
    };
    Some(Conflict {
        kind: K::kind(&()).into_owned(),
        name: desired.name_any(),
        holder,
    })
}

/// Whether `actual` carries the hash `desired` was stamped with and every field of `desired`.
/// An object that cannot be turned into JSON counts as out of date: applying it reports why.
fn up_to_date<K: Serialize + Resource>(desired: &K, actual: &K) -> bool {
    let hash = |k: &K| {
        k.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(APPLIED_HASH_ANNOTATION).cloned())
    };
    if hash(desired) != hash(actual) {
        return false;
    }
    let (Ok(d), Ok(a)) = (serde_json::to_value(desired), serde_json::to_value(actual)) else {
        return false;
    };
    let difference = first_difference(&d, &a);
    if let Some(path) = &difference {
        tracing::debug!(name = desired.meta().name.as_deref().unwrap_or_default(), field = %path, "live object differs");
    }
    difference.is_none()
}
