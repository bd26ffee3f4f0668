//! The key names of the Secrets a controller is told about, read once for every reconcile that
//! needs them within a short while.
//!
//! The operator may `get` Secrets but not list or watch them: a watch would hand it every
//! Secret value of every watched namespace. So it reads each referenced Secret by name and
//! keeps only its key names. A thousand FaasServices naming the same four Secrets then cost
//! four reads between them, not four each per reconcile.
//!
//! The first reconcile to ask for a Secret waits for its read, and so do those asking while
//! that read runs. After that, an answer older than [`PRESENT_FOR`] ([`ABSENT_FOR`] for a
//! Secret found missing) is still given once more, while a read in the background replaces it,
//! so no later reconcile waits for a Secret. A Secret created, or a key removed, is therefore
//! seen by the second reconcile that asks after [`ABSENT_FOR`] (or [`PRESENT_FOR`]). A failed
//! first read is not kept; a failed background read leaves the old answer, which the next
//! reconcile then reads again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use tokio::sync::OnceCell;

/// How long the key names of a Secret that exists are given before they are read again.
pub const PRESENT_FOR: Duration = Duration::from_secs(30);
/// How long a Secret found missing counts as missing before it is read again.
pub const ABSENT_FOR: Duration = Duration::from_secs(3);

/// Key names of a Secret (sorted), or `None` when it does not exist.
pub type Keys = Option<Arc<Vec<String>>>;

/// A read: when it was made, and what it found.
type Read = (Instant, Keys);
/// A read that may still be running.
type Slot = Arc<OnceCell<Read>>;

/// What is known of one Secret.
struct Entry {
    /// The latest read, perhaps still running.
    read: Slot,
    /// While `read` runs in the background, the answer it replaces.
    previous: Option<Read>,
}

/// Key names of Secrets by namespace and name.
#[derive(Default)]
pub struct SecretKeys {
    entries: Arc<Mutex<HashMap<(String, String), Entry>>>,
}

/// What [`SecretKeys::get`] does once it has looked at the entry.
enum Next {
    /// Answer at once.
    Answer(Keys),
    /// Wait for this read.
    Wait(Slot),
}

impl SecretKeys {
    /// The key names of the Secret `name` in `ns`; values never leave this module.
    pub async fn get(&self, client: &Client, ns: &str, name: &str) -> Result<Keys, kube::Error> {
        let key = (ns.to_string(), name.to_string());
        let next = {
            let mut entries = self.entries.lock().expect("not poisoned");
            match entries.get_mut(&key) {
                None => {
                    let read = Slot::default();
                    let entry = Entry {
                        read: read.clone(),
                        previous: None,
                    };
                    entries.insert(key.clone(), entry);
                    Next::Wait(read)
                }
                Some(entry) => match (entry.read.get(), &entry.previous) {
                    (Some((at, keys)), _) if at.elapsed() < ttl(keys) => Next::Answer(keys.clone()),
                    (Some(stale), _) => {
                        let answer = stale.1.clone();
                        entry.previous = Some(stale.clone());
                        entry.read = Slot::default();
                        self.refresh(client, key.clone(), entry.read.clone());
                        Next::Answer(answer)
                    }
                    (None, Some((_, keys))) => Next::Answer(keys.clone()),
                    (None, None) => Next::Wait(entry.read.clone()),
                },
            }
        };
        match next {
            Next::Answer(keys) => Ok(keys),
            Next::Wait(slot) => match slot.get_or_try_init(|| read(client, ns, name)).await {
                Ok((_, keys)) => Ok(keys.clone()),
                Err(e) => {
                    let mut entries = self.entries.lock().expect("not poisoned");
                    if entries
                        .get(&key)
                        .is_some_and(|e| Arc::ptr_eq(&e.read, &slot))
                    {
                        entries.remove(&key);
                    }
                    Err(e)
                }
            },
        }
    }

    /// Reads the Secret again in the background into `slot`; on failure, puts the previous
    /// answer back, still stale, so that the next reconcile asking tries again.
    fn refresh(&self, client: &Client, key: (String, String), slot: Slot) {
        let client = client.clone();
        let entries = self.entries.clone();
        tokio::spawn(async move {
            let (ns, name) = &key;
            let result = slot.get_or_try_init(|| read(&client, ns, name)).await;
            let mut entries = entries.lock().expect("not poisoned");
            let Some(entry) = entries
                .get_mut(&key)
                .filter(|e| Arc::ptr_eq(&e.read, &slot))
            else {
                return;
            };
            match result {
                Ok(_) => entry.previous = None,
                Err(e) => {
                    tracing::debug!(secret = %format!("{ns}/{name}"), error = %e, "cannot read the Secret again; keeping what was read before");
                    if let Some(previous) = entry.previous.take() {
                        entry.read = Arc::new(OnceCell::new_with(Some(previous)));
                    }
                }
            }
        });
    }
}

/// One read of a Secret, keeping its key names only.
async fn read(client: &Client, ns: &str, name: &str) -> Result<Read, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let keys = api.get_opt(name).await?.map(|s| Arc::new(key_names(s)));
    Ok((Instant::now(), keys))
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
