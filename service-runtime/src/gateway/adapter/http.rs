//! Sending a call to a provider and turning what it answers into the gateway's own errors.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Attempt, Failure, Headers};
use crate::gateway::providers::Provider;
use crate::platform::config::ExposeSecret;
use crate::platform::http_client::{RetryPolicy, UpstreamError};
use crate::platform::{ApiError, AppState, RequestContext};

/// The largest answer read from a provider (a non-streamed body, or one stream event).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

fn breaker_key(tenant: &str, p: &Provider) -> String {
    format!("{tenant}/{}", p.id)
}

/// Whether `url` lies under `base` (a base URL without trailing '/').
fn is_under(url: &str, base: &str) -> bool {
    url.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A POST of `body` to `url`, with the headers of the provider's protocol.
pub fn build<B: Serialize>(
    state: &AppState,
    p: &Provider,
    url: String,
    headers: Headers,
    body: &B,
) -> Result<reqwest::Request, ApiError> {
    let rb = state.http.inner().post(&url).json(body);
    // A provider's key is its credential's, and goes only under the URL it is bound to.
    let key = p
        .key
        .as_ref()
        .map(|k| k.expose_secret())
        .filter(|_| is_under(&url, &p.base_url));
    headers(rb, key).build().map_err(ApiError::internal)
}

/// `text` without the provider's key, should the provider echo it.
pub fn scrub<'a>(text: &'a str, p: &Provider) -> std::borrow::Cow<'a, str> {
    match p.key.as_ref().map(|k| k.expose_secret()) {
        Some(k) if !k.is_empty() && text.contains(k) => text.replace(k, "[redacted]").into(),
        _ => text.into(),
    }
}

/// Reads a body of at most [`MAX_ANSWER_BYTES`].
async fn read_capped(resp: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.ok()?;
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

/// Posts `body` to the provider and reads its JSON answer as `R`.
pub async fn call_json<B: Serialize, R: DeserializeOwned>(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    url: String,
    headers: Headers,
    body: &B,
) -> Attempt<R> {
    let request = build(state, p, url, headers, body).map_err(Failure::Next)?;
    let resp = send(state, ctx, p, request).await?;
    let bytes = read_capped(resp).await.ok_or_else(|| malformed(p))?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| serde_json::from_str(&scrub(text, p)).ok())
        .ok_or_else(|| malformed(p))
}

/// The error for an answer that is not what the provider's protocol promises.
pub fn malformed(p: &Provider) -> Failure {
    Failure::Next(ApiError::BadGateway(format!(
        "provider {} sent a malformed answer",
        p.name
    )))
}

/// The gateway's own error for a provider's error status. The provider's body is never
/// read: it may echo what was sent to it, key included, and a tenant's own provider could
/// put anything there.
fn status_error(p: &Provider, resp: &reqwest::Response) -> Failure {
    let status = resp.status().as_u16();
    let detail = format!("provider {} answered {status}", p.name);
    match status {
        400 | 413 | 422 => Failure::Fatal(ApiError::BadRequest(format!(
            "{detail}: it did not accept the request"
        ))),
        429 => Failure::Next(ApiError::TooManyRequests {
            detail: format!("{detail}: it is rate limiting"),
            retry_after_secs: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.min(86_400)),
        }),
        _ => Failure::Next(ApiError::BadGateway(detail)),
    }
}

/// The gateway's own error for a call that got no answer.
fn transport_error(p: &Provider, e: UpstreamError) -> ApiError {
    match e {
        UpstreamError::Timeout { .. } => {
            ApiError::GatewayTimeout(format!("provider {} did not answer in time", p.name))
        }
        UpstreamError::CircuitOpen(_) => ApiError::Unavailable(format!(
            "provider {} is failing; calls to it are paused for a while",
            p.name
        )),
        UpstreamError::Blocked { refusal, .. } => {
            ApiError::BadGateway(format!("provider {}: {refusal}", p.name))
        }
        UpstreamError::Connect { reason, .. } => {
            tracing::warn!(provider = %p.name, %reason, "provider unreachable");
            ApiError::BadGateway(format!("provider {} could not be reached", p.name))
        }
        UpstreamError::Request(reason) => ApiError::internal(anyhow::anyhow!(reason)),
    }
}

/// Sends a call through the egress policy, the provider's retries and its circuit breaker;
/// only a success status is an answer.
pub async fn send(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    req: reqwest::Request,
) -> Attempt<reqwest::Response> {
    let tenant = ctx.tenant_id.as_deref().unwrap_or_default();
    let http = state
        .http
        .guarded(&state.config.egress.policy)
        .map_err(|e| Failure::Next(ApiError::internal(e)))?;
    let policy = RetryPolicy::new(p.max_retries.clamp(0, 10) as u32, false);
    let deadline = Some(Duration::from_millis(p.timeout_ms.max(1) as u64));
    let sent = http
        .send(
            &breaker_key(tenant, p),
            p.kind.as_str(),
            req,
            ctx,
            policy,
            deadline,
        )
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Ok(resp),
        Ok(resp) => Err(status_error(p, &resp)),
        Err(e) => Err(Failure::Next(transport_error(p, e))),
    }
}
