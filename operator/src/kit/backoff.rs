//! Exponential backoff of failed reconciles, counted per object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::Category;
use crate::metrics::Metrics;

/// A failed reconcile, as the error policy reports it.
pub struct Failure<'a> {
    pub step: &'static str,
    pub category: &'static str,
    pub error: &'a dyn std::fmt::Display,
}

/// Consecutive failures per object. A success forgets the object, so its next failure is
/// retried after a second again.
pub struct Backoff<K: Resource<DynamicType = ()>> {
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
}

impl<K: Resource<DynamicType = ()>> Default for Backoff<K> {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Backoff<K> {
    /// Counts a failure of `obj`; returns how long to wait before retrying it.
    pub fn failed(&self, obj: &K) -> Duration {
        let mut failures = self.failures.lock().expect("not poisoned");
        let count = failures.entry(ObjectRef::from(obj)).or_insert(0);
        *count = count.saturating_add(1);
        delay(*count)
    }

    /// What a controller's error policy does: counts the failure of `obj` in the metrics,
    /// logs it with the step and category, and requeues the object after its backoff.
    pub fn requeue_failed(
        &self,
        obj: &K,
        metrics: &Metrics,
        controller: &'static str,
        failure: Failure<'_>,
    ) -> Action {
        metrics.failure(controller, failure.category);
        let delay = self.failed(obj);
        warn!(
            namespace = obj.namespace().unwrap_or_default(),
            name = obj.name_any(),
            step = failure.step,
            category = failure.category,
            error = %failure.error,
            retry_in_seconds = delay.as_secs(),
            "reconcile failed"
        );
        Action::requeue(delay)
    }

    /// When to look at `obj` again after a reconcile that ran to its end and wrote its status:
    /// after its backoff when the database failed (counted in the metrics; the status already
    /// says why, and it is no hot loop), else after `then`.
    pub fn requeue_after(
        &self,
        obj: &K,
        metrics: &Metrics,
        controller: &'static str,
        database_failed: bool,
        then: Duration,
    ) -> Action {
        if database_failed {
            metrics.failure(controller, Category::Database.as_str());
            return Action::requeue(self.failed(obj));
        }
        self.succeeded(obj);
        Action::requeue(then)
    }

    /// Forgets the failures of `obj`.
    pub fn succeeded(&self, obj: &K) {
        self.failures
            .lock()
            .expect("not poisoned")
            .remove(&ObjectRef::from(obj));
    }
}

/// Delay before retry number `attempt` (from 1): 1 s, 2 s, 4 s … up to 5 minutes.
pub fn delay(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs(2));
        assert_eq!(delay(5), Duration::from_secs(16));
        assert_eq!(delay(50), Duration::from_secs(300));
    }
}
