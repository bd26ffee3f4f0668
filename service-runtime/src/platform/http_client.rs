//! Outgoing HTTP: timeouts, retries with exponential backoff and full jitter
//! (honouring Retry-After), a circuit breaker per upstream, and the standard
//! headers of the request being served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Request, Response, StatusCode};

use super::context::RequestContext;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {0} is failing; calls are paused for a while (circuit open)")]
    CircuitOpen(String),
    #[error("upstream {upstream} did not answer in time")]
    Timeout { upstream: String },
    #[error("upstream {upstream} could not be reached: {reason}")]
    Connect { upstream: String, reason: String },
    #[error("building the request failed: {0}")]
    Request(String),
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Whether a repeated call is safe when the first one may have arrived
    /// (connection reset after sending, 502/504). Calls that were refused
    /// before being handled (connect errors, 429, 503) are retried anyway.
    pub idempotent: bool,
}

impl RetryPolicy {
    pub fn new(max_retries: u32, idempotent: bool) -> Self {
        Self {
            max_retries,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            idempotent,
        }
    }

    /// Full jitter: a random delay between zero and the exponential bound.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let ms = exp.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    half_open_probe: bool,
}

/// Circuit breakers, one per upstream name.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<String, BreakerState>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call may go out now. After the cooldown one probe is let
    /// through (half-open); its outcome closes or re-opens the circuit.
    pub fn allow(&self, upstream: &str) -> bool {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let s = states.entry(upstream.to_string()).or_default();
        match s.open_until {
            None => true,
            Some(until) if Instant::now() >= until && !s.half_open_probe => {
                s.half_open_probe = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn record(&self, upstream: &str, success: bool) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let s = states.entry(upstream.to_string()).or_default();
        if success {
            *s = BreakerState::default();
            return;
        }
        s.consecutive_failures += 1;
        if s.half_open_probe || s.consecutive_failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.cooldown);
            s.half_open_probe = false;
        }
    }

    pub fn is_open(&self, upstream: &str) -> bool {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .get(upstream)
            .and_then(|s| s.open_until)
            .is_some_and(|u| Instant::now() < u)
    }
}

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    breakers: Arc<Breakers>,
    metrics: Arc<super::metrics::Metrics>,
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn is_retryable_status(status: StatusCode, idempotent: bool) -> bool {
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => true,
        StatusCode::BAD_GATEWAY
        | StatusCode::GATEWAY_TIMEOUT
        | StatusCode::INTERNAL_SERVER_ERROR => idempotent,
        _ => false,
    }
}

impl HttpClient {
    pub fn new(
        timeout: Duration,
        breakers: Arc<Breakers>,
        metrics: Arc<super::metrics::Metrics>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .read_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("faas-runtime/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            breakers,
            metrics,
        })
    }

    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Sends `req` to `upstream` (a bounded name for metrics and the breaker).
    /// Returns the last response even when it is an error status, so the
    /// caller can map it; transport failures and an open circuit are errors.
    pub async fn send(
        &self,
        upstream: &str,
        metric_label: &str,
        mut req: Request,
        ctx: &RequestContext,
        policy: RetryPolicy,
        deadline: Option<Duration>,
    ) -> Result<Response, UpstreamError> {
        for (name, value) in ctx.outgoing_headers() {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&value) {
                req.headers_mut().insert(name, v);
            }
        }
        if let Some(d) = deadline {
            *req.timeout_mut() = Some(d);
        }
        let mut attempt = 0;
        loop {
            if !self.breakers.allow(upstream) {
                self.metrics.upstream(metric_label, "circuit_open");
                return Err(UpstreamError::CircuitOpen(upstream.to_string()));
            }
            let this = req
                .try_clone()
                .ok_or_else(|| UpstreamError::Request("the body cannot be repeated".into()))?;
            let result = self.client.execute(this).await;
            let (wait, err) = match result {
                Ok(resp) => {
                    let status = resp.status();
                    let server_fault =
                        status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    self.breakers.record(upstream, !status.is_server_error());
                    self.metrics.upstream(
                        metric_label,
                        if server_fault { "error_status" } else { "ok" },
                    );
                    if attempt < policy.max_retries
                        && is_retryable_status(status, policy.idempotent)
                    {
                        let wait = retry_after(&resp).unwrap_or_else(|| policy.backoff(attempt));
                        if wait > policy.max_delay {
                            // The upstream asks for a longer pause than we
                            // wait inside a request: hand its answer back.
                            return Ok(resp);
                        }
                        (wait, None)
                    } else {
                        return Ok(resp);
                    }
                }
                Err(e) => {
                    self.breakers.record(upstream, false);
                    let refused = e.is_connect();
                    let err = if e.is_timeout() {
                        self.metrics.upstream(metric_label, "timeout");
                        UpstreamError::Timeout {
                            upstream: upstream.to_string(),
                        }
                    } else {
                        self.metrics.upstream(metric_label, "transport_error");
                        UpstreamError::Connect {
                            upstream: upstream.to_string(),
                            reason: without_url(&e),
                        }
                    };
                    if attempt < policy.max_retries && (refused || policy.idempotent) {
                        (policy.backoff(attempt), Some(err))
                    } else {
                        return Err(err);
                    }
                }
            };
            if let Some(e) = err {
                tracing::debug!(upstream, attempt, error = %e, "retrying upstream call");
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }
}

/// Error text without the URL, which may hold credentials in its query.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.contains("://") {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&text);
        }
        cur = err.source();
    }
    if s.is_empty() {
        "connection failed".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_probes_after_cooldown() {
        let b = Breakers::new(2, Duration::from_millis(0));
        assert!(b.allow("u"));
        b.record("u", false);
        assert!(!b.is_open("u"));
        b.record("u", false);
        // Cooldown of zero: the next call is the half-open probe.
        assert!(b.allow("u"));
        assert!(!b.allow("u"), "only one probe while half-open");
        b.record("u", true);
        assert!(b.allow("u"));
        assert!(b.allow("u"));
    }

    #[test]
    fn breaker_stays_open_during_cooldown() {
        let b = Breakers::new(1, Duration::from_secs(3600));
        b.record("u", false);
        assert!(b.is_open("u"));
        assert!(!b.allow("u"));
        assert!(b.allow("other"), "breakers are per upstream");
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::new(3, true);
        for attempt in 0..20 {
            assert!(p.backoff(attempt) <= p.max_delay);
        }
    }
}
