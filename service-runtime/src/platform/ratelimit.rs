//! Per-tenant request rate limit of this replica (GCRA, one cell per tenant), so
//! one tenant's flood cannot starve the others. Idle tenants are forgotten, which
//! keeps memory bounded whatever tenant ids arrive.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

pub struct TenantLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    per_second: NonZeroU32,
}

impl TenantLimiter {
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            per_second,
        }
    }

    /// Admits one request of the tenant, or says when to come back.
    pub fn check(&self, tenant: &str) -> Result<(), ApiError> {
        match self.limiter.check_key(&tenant.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::TooManyRequests {
                    detail: format!(
                        "the tenant's request rate limit of {} per second on this replica is reached",
                        self.per_second
                    ),
                    retry_after_secs: Some(wait.as_secs().max(1)),
                })
            }
        }
    }

    /// Drops tenants whose cell is back to full; run now and then.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// Forgets idle tenants every minute until the token is cancelled.
pub fn spawn_sweeper(
    limiter: std::sync::Arc<TenantLimiter>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => limiter.forget_idle(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_own_allowance() {
        let l = TenantLimiter::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        let err = l.check("a").unwrap_err();
        assert_eq!(err.status(), 429);
        assert!(err.to_string().contains("1 per second"), "{err}");
        l.check("b").unwrap();
        assert_eq!(l.tracked(), 2);
    }
}
