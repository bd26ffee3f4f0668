//! Kubernetes Events, so `kubectl describe` tells what the operator did and why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// Publishes an Event about `obj`. A failure to publish is logged, never returned: an Event
/// is a courtesy, not part of the reconcile.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, "cannot publish an event");
    }
}

/// A condition whose status or reason is not what it was.
#[derive(Clone, Copy, Debug)]
pub struct Transition<'a> {
    /// The condition before, `None` when it is new.
    pub before: Option<&'a Condition>,
    /// The condition now.
    pub now: &'a Condition,
}

/// The conditions of the given types, in that order, whose status or reason changed from
/// `previous` to `next`.
pub fn transitions<'a>(
    previous: &'a [Condition],
    next: &'a [Condition],
    types: &[&str],
) -> Vec<Transition<'a>> {
    let find = |list: &'a [Condition], t: &str| list.iter().find(|c| c.type_ == t);
    types
        .iter()
        .filter_map(|t| {
            let now = find(next, t)?;
            let before = find(previous, t);
            let same = before.is_some_and(|b| b.status == now.status && b.reason == now.reason);
            (!same).then_some(Transition { before, now })
        })
        .collect()
}

/// Publishes one Event per transition, named after the condition's reason, of the type
/// `severity` gives it; a transition it gives no type is not announced.
pub async fn announce<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    transitions: &[Transition<'_>],
    severity: impl Fn(&Transition<'_>) -> Option<EventType>,
) {
    for t in transitions {
        if let Some(type_) = severity(t) {
            let note = t.now.message.clone();
            publish(recorder, obj, type_, &t.now.reason, "Reconcile", note).await;
        }
    }
}
