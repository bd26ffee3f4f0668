//! The key names of the Secrets a controller is told about, read once for every reconcile that
//! needs them within a short while.
//!
//! The operator may `get` Secrets but not list or watch them: a watch would hand it every
//! Secret value of every watched namespace. So it reads each referenced Secret by name and
//! keeps only its key names, for [`PRESENT_FOR`] when it exists and for [`ABSENT_FOR`] when it
//! does not. A thousand FaasServices naming the same four Secrets then cost four reads a minute
//! between them, not four each per reconcile; a Secret created later is seen within
//! [`ABSENT_FOR`] by the next reconcile that asks for it. Concurrent reconciles asking for the
//! same Secret wait for one read. Failed reads are not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use tokio::sync::OnceCell;

/// How long the key names of a Secret that exists are used before it is read again.
pub const PRESENT_FOR: Duration = Duration::from_secs(30);
/// How long a Secret found missing counts as missing before it is read again.
pub const ABSENT_FOR: Duration = Duration::from_secs(3);

/// Key names of a Secret (sorted), or `None` when it does not exist.
pub type Keys = Option<Arc<Vec<String>>>;

type Slot = Arc<OnceCell<(Instant, Keys)>>;

/// Key names of Secrets by namespace and name, each read at most once per
/// [`PRESENT_FOR`] (or [`ABSENT_FOR`]).
#[derive(Default)]
pub struct SecretKeys {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl SecretKeys {
    /// The key names of the Secret `name` in `ns`; values never leave this function.
    pub async fn get(&self, client: &Client, ns: &str, name: &str) -> Result<Keys, kube::Error> {
        let slot = self.slot(ns, name);
        let read = slot
            .get_or_try_init(|| async {
                let api: Api<Secret> = Api::namespaced(client.clone(), ns);
                let keys = api.get_opt(name).await?.map(|s| Arc::new(key_names(s)));
                Ok::<_, kube::Error>((Instant::now(), keys))
            })
            .await;
        match read {
            Ok((_, keys)) => Ok(keys.clone()),
            Err(e) => {
                self.forget(ns, name, &slot);
                Err(e)
            }
        }
    }

    /// The slot of a Secret: the current one while it is fresh, else a new empty one that the
    /// next read fills.
    fn slot(&self, ns: &str, name: &str) -> Slot {
        let mut slots = self.slots.lock().expect("not poisoned");
        let key = (ns.to_string(), name.to_string());
        let fresh = slots.get(&key).filter(|slot| match slot.get() {
            Some((at, keys)) => at.elapsed() < ttl(keys),
            // Being read right now.
            None => true,
        });
        if let Some(slot) = fresh {
            return slot.clone();
        }
        let slot = Slot::default();
        slots.insert(key, slot.clone());
        slot
    }

    /// Drops a slot whose read failed, unless another one has replaced it meanwhile.
    fn forget(&self, ns: &str, name: &str, failed: &Slot) {
        let mut slots = self.slots.lock().expect("not poisoned");
        let key = (ns.to_string(), name.to_string());
        if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, failed)) {
            slots.remove(&key);
        }
    }
}

fn ttl(keys: &Keys) -> Duration {
    if keys.is_some() {
        PRESENT_FOR
    } else {
        ABSENT_FOR
    }
}

/// The key names of a Secret, from both `data` and `stringData`, sorted and each once.
fn key_names(secret: Secret) -> Vec<String> {
    let mut keys: Vec<String> = secret
        .data
        .unwrap_or_default()
        .into_keys()
        .chain(secret.string_data.unwrap_or_default().into_keys())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_secret_is_read_again_sooner_than_one_that_exists() {
        assert!(ttl(&None) < ttl(&Some(Arc::new(vec!["url".into()]))));
    }

    #[test]
    fn only_key_names_are_kept() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"},
            "data": {"url": "c2VjcmV0", "password": "c2VjcmV0"},
            "stringData": {"url": "secret"},
        }))
        .unwrap();
        assert_eq!(key_names(secret), ["password", "url"]);
    }
}
