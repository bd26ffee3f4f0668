//! Outgoing HTTP: timeouts, retries with exponential backoff and full jitter
//! (honouring Retry-After), a circuit breaker per upstream, and the standard
//! headers of the request being served.
//!
//! [`HttpClient::new`] calls URLs the platform configured. URLs a tenant can influence go
//! through [`HttpClient::guarded`], which enforces the egress policy before each request
//! and on every address a name resolves to, and follows no redirects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Request, Response, StatusCode};

use super::context::RequestContext;
use super::egress::{EgressPolicy, GuardedResolver, Lookup, Refusal, SystemLookup};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {0} is failing; calls are paused for a while (circuit open)")]
    CircuitOpen(String),
    /// Refused by the egress policy before any connection was made.
    #[error("upstream {upstream}: {refusal}")]
    Blocked { upstream: String, refusal: Refusal },
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
        // Only an upstream that failed has an entry.
        let Some(s) = states.get_mut(upstream) else {
            return true;
        };
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
        if success {
            // A closed circuit needs no entry.
            states.remove(upstream);
            return;
        }
        let s = states.entry(upstream.to_string()).or_default();
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

/// Clients for tenant-influenced URLs, one per egress policy in use (in practice one).
type GuardedClients = Arc<Mutex<Vec<(Arc<EgressPolicy>, reqwest::Client)>>>;

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    breakers: Arc<Breakers>,
    metrics: Arc<super::metrics::Metrics>,
    timeout: Duration,
    /// Set on clients for tenant-influenced URLs: checked before every request.
    egress: Option<Arc<EgressPolicy>>,
    guarded: GuardedClients,
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
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
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
        Ok(Self {
            client: builder(timeout).build()?,
            breakers,
            metrics,
            timeout,
            egress: None,
            guarded: GuardedClients::default(),
        })
    }

    /// This client, for URLs a tenant can influence: requests to a URL or an address
    /// `policy` does not allow are refused before any connection, and redirects are not
    /// followed. Connections are pooled per policy, so callers may ask for it per call.
    pub fn guarded(&self, policy: &Arc<EgressPolicy>) -> anyhow::Result<HttpClient> {
        let mut clients = self.guarded.lock().unwrap_or_else(|e| e.into_inner());
        let client = match clients.iter().find(|(p, _)| **p == **policy) {
            Some((_, c)) => c.clone(),
            None => {
                let c = self.guarded_client(policy, Arc::new(SystemLookup))?;
                clients.push((policy.clone(), c.clone()));
                c
            }
        };
        Ok(self.with_client(policy, client))
    }

    /// [`Self::guarded`] with another name resolution; builds a new connection pool.
    pub fn guarded_with_lookup(
        &self,
        policy: &Arc<EgressPolicy>,
        lookup: Arc<dyn Lookup>,
    ) -> anyhow::Result<HttpClient> {
        let client = self.guarded_client(policy, lookup)?;
        Ok(self.with_client(policy, client))
    }

    fn guarded_client(
        &self,
        policy: &Arc<EgressPolicy>,
        lookup: Arc<dyn Lookup>,
    ) -> anyhow::Result<reqwest::Client> {
        // A proxy would resolve the names itself, out of the policy's sight.
        Ok(builder(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone(), lookup)))
            .build()?)
    }

    fn with_client(&self, policy: &Arc<EgressPolicy>, client: reqwest::Client) -> HttpClient {
        HttpClient {
            client,
            egress: Some(policy.clone()),
            ..self.clone()
        }
    }

    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Sends `req` to `upstream` (a bounded name for metrics and the breaker).
    /// Returns the last response even when it is an error status, so the
    /// caller can map it; transport failures, an open circuit and a refusal of the
    /// egress policy are errors.
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
        // The resolver never sees IP-literal hosts: they are judged here.
        if let Some(refusal) = self
            .egress
            .as_ref()
            .and_then(|p| p.check_url(req.url()).err())
        {
            return Err(self.blocked(upstream, metric_label, refusal));
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
            let retry = attempt < policy.max_retries;
            let wait = match self.client.execute(this).await {
                Ok(resp) => {
                    match self.after_response(upstream, metric_label, resp, retry, &policy, attempt)
                    {
                        Ok(resp) => return Ok(resp),
                        Err(wait) => wait,
                    }
                }
                Err(e) => {
                    let err = self.transport_error(upstream, metric_label, &e);
                    let repeatable = e.is_connect() || policy.idempotent;
                    if !retry || !repeatable || matches!(err, UpstreamError::Blocked { .. }) {
                        return Err(err);
                    }
                    tracing::debug!(upstream, attempt, error = %err, "retrying upstream call");
                    policy.backoff(attempt)
                }
            };
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// Records an answer; gives it back, or the pause before trying again.
    fn after_response(
        &self,
        upstream: &str,
        metric_label: &str,
        resp: Response,
        retry: bool,
        policy: &RetryPolicy,
        attempt: u32,
    ) -> Result<Response, Duration> {
        let status = resp.status();
        let server_fault = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        self.breakers.record(upstream, !status.is_server_error());
        self.metrics.upstream(
            metric_label,
            if server_fault { "error_status" } else { "ok" },
        );
        if !retry || !is_retryable_status(status, policy.idempotent) {
            return Ok(resp);
        }
        let wait = retry_after(&resp).unwrap_or_else(|| policy.backoff(attempt));
        if wait > policy.max_delay {
            // The upstream asks for a longer pause than we wait inside a
            // request: hand its answer back.
            return Ok(resp);
        }
        Err(wait)
    }

    /// Records a failed call and names its cause.
    fn transport_error(
        &self,
        upstream: &str,
        metric_label: &str,
        e: &reqwest::Error,
    ) -> UpstreamError {
        if let Some(refusal) = super::egress::refusal_in(e) {
            return self.blocked(upstream, metric_label, refusal);
        }
        self.breakers.record(upstream, false);
        if e.is_timeout() {
            self.metrics.upstream(metric_label, "timeout");
            return UpstreamError::Timeout {
                upstream: upstream.to_string(),
            };
        }
        self.metrics.upstream(metric_label, "transport_error");
        UpstreamError::Connect {
            upstream: upstream.to_string(),
            reason: without_url(e),
        }
    }

    /// A refusal is the caller's configuration, not a failure of the upstream: the breaker
    /// is left alone.
    fn blocked(&self, upstream: &str, metric_label: &str, refusal: Refusal) -> UpstreamError {
        self.metrics.upstream(metric_label, "blocked");
        UpstreamError::Blocked {
            upstream: upstream.to_string(),
            refusal,
        }
    }
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .read_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("faas-runtime/", env!("CARGO_PKG_VERSION")))
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
