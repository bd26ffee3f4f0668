//! Leader election on a Lease, with kube-lease-manager doing the locking.
//!
//! A manager keeps the Lease it read until that copy expires, so a standby using one manager
//! would notice a Lease released on shutdown only when the old holder's term ends. Here a
//! standby reads the Lease afresh every `retry` (as client-go's elector does), so a released
//! Lease is taken over within `retry`; the leader keeps the library's renewal timing.
//!
//! A leader that fails to renew steps down at once: it cannot know whether its term still
//! runs, and a leader cut off from the API server must stop before another can take the Lease.
//! It then campaigns again like a standby, and leads again as soon as it holds the Lease.

use std::future::Future;
use std::time::Duration;

use kube_lease_manager::{LeaseManager, Result as LeaseResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Runs the election until every receiver of the returned channel is dropped, then releases
/// the Lease if held. The channel says whether this replica leads. `connect` builds a manager
/// with a fresh view of the Lease.
pub fn elect<F, Fut>(connect: F, retry: Duration) -> (watch::Receiver<bool>, JoinHandle<()>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = LeaseResult<LeaseManager>> + Send,
{
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut manager: Option<LeaseManager> = None;
        let mut leading = false;
        let mut failures: u32 = 0;
        loop {
            if !leading || manager.is_none() {
                let fresh = tokio::select! {
                    biased;
                    _ = tx.closed() => break,
                    fresh = connect() => fresh,
                };
                match fresh {
                    Ok(m) => manager = Some(m),
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let delay = retry.saturating_mul(failures.min(5));
                        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot read the leader Lease");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            let current = manager.as_ref().expect("set above");
            let step = async {
                if leading {
                    // Returns only when the Lease is lost; renews it meanwhile.
                    current.changed().await.map(Some)
                } else {
                    match tokio::time::timeout(retry, current.changed()).await {
                        Ok(result) => result.map(Some),
                        Err(_) => Ok(None),
                    }
                }
            };
            tokio::select! {
                biased;
                _ = tx.closed() => break,
                result = step => match result {
                    Ok(Some(now)) => {
                        failures = 0;
                        leading = now;
                        if tx.send(now).is_err() {
                            break;
                        }
                    }
                    Ok(None) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if leading {
                            warn!(error = %e, "cannot renew the leader Lease: stepping down until it is held again");
                            leading = false;
                            manager = None;
                            if tx.send(false).is_err() {
                                break;
                            }
                            continue;
                        }
                        let delay = retry.saturating_mul(failures.min(5));
                        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "leader election request failed");
                        tokio::time::sleep(delay).await;
                    }
                },
            }
        }
        if let Some(m) = manager {
            match m.release().await {
                Ok(()) => info!("released the leader Lease"),
                Err(e) => error!(error = %e, "cannot release the leader Lease"),
            }
        }
    });
    (rx, task)
}
