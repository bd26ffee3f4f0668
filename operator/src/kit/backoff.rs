//! Exponential backoff of failed reconciles, counted per object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

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
