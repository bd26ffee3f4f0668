//! Kubernetes Events, so `kubectl describe` tells what the operator did and why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use super::text;

/// Longest note the API server accepts on an Event, in bytes.
pub const MAX_NOTE: usize = 1024;

/// Publishes an Event about `obj`, its note cut to [`MAX_NOTE`] (a longer one would be
/// refused, and the Event lost). A failure to publish is logged, never returned: an Event is
/// a courtesy, not part of the reconcile.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = event(type_, reason, action, note);
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, "cannot publish an event");
    }
}

/// The Event [`publish`] sends.
fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(text::bounded(note, MAX_NOTE)),
        action: action.to_string(),
        secondary: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_to_what_the_api_server_accepts() {
        let short = event(EventType::Normal, "Applied", "Reconcile", "updated".into());
        assert_eq!(short.note.as_deref(), Some("updated"));
        // Multi-byte characters across the limit: cut on a boundary, never over it.
        let long = "Secret team-a/é does not exist; ".repeat(100);
        let e = event(
            EventType::Warning,
            "SecretNotFound",
            "Reconcile",
            long.clone(),
        );
        let note = e.note.unwrap();
        assert!(note.len() <= MAX_NOTE, "{} bytes", note.len());
        assert!(note.len() > MAX_NOTE - 8, "only what is over is cut");
        assert!(note.ends_with('…'));
        assert!(long.starts_with(note.trim_end_matches('…')));
    }
}
