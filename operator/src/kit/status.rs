//! Status written by server-side apply, and only when it says something new: a reconcile
//! that changes nothing writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use kube::runtime::events::{EventType, Recorder};

use super::apply::{Child, MANAGER};
use super::events::{self, Transition};

/// A status with metav1 conditions.
pub trait Conditions: Clone + PartialEq + Serialize {
    /// The conditions, so that comparisons can leave out when each was set.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

/// Writes `next` like [`update`]; when it wrote, announces as Events the transitions of the
/// condition `types` that `severity` picks.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one thing the caller knows"
)]
pub async fn update_and_announce<K: Child, S: Conditions>(
    client: &Client,
    recorder: &Recorder,
    ns: &str,
    obj: &K,
    previous: &S,
    next: &S,
    types: &[&str],
    severity: impl Fn(&Transition<'_>) -> Option<EventType>,
) -> Result<(), kube::Error> {
    if update(client, ns, obj, previous, next).await? {
        let (mut before, mut after) = (previous.clone(), next.clone());
        let transitions =
            events::transitions(before.conditions_mut(), after.conditions_mut(), types);
        events::announce(recorder, obj, &transitions, severity).await;
    }
    Ok(())
}

/// Whether two statuses say the same, ignoring when and in which order conditions were set.
pub fn same<S: Conditions>(a: &S, b: &S) -> bool {
    let strip = |s: &S| {
        let mut s = s.clone();
        let conditions = s.conditions_mut();
        conditions.sort_by(|x, y| x.type_.cmp(&y.type_));
        for c in conditions.iter_mut() {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

/// Writes `next` as the status of `obj` unless it says the same as `previous`. Returns
/// whether it wrote.
pub async fn update<K: Child, S: Conditions>(
    client: &Client,
    ns: &str,
    obj: &K,
    previous: &S,
    next: &S,
) -> Result<bool, kube::Error> {
    if same(previous, next) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}
