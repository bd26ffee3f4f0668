//! The per-request middleware: standard headers (generated when missing,
//! echoed on responses), authentication, MessagePack negotiation, time limit,
//! tracing span and HTTP metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::auth::AuthOutcome;
use super::error::ApiError;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const MSGPACK: &str = "application/msgpack";

/// Identifiers of the request being served, passed on to outgoing calls and
/// events.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    pub correlation_id: String,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl RequestContext {
    /// A context for work that does not start from a request (consumers).
    pub fn background() -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        Self {
            request_id: id.clone(),
            correlation_id: id,
            ..Default::default()
        }
    }

    /// The standard headers to put on an outgoing call.
    /// This context as a third party may see it: the request, correlation and trace ids,
    /// but not who the tenant and the user are.
    pub fn anonymous(&self) -> Self {
        Self {
            tenant_id: None,
            user_id: None,
            ..self.clone()
        }
    }

    pub fn outgoing_headers(&self) -> Vec<(HeaderName, String)> {
        let mut h = vec![
            (X_REQUEST_ID, self.request_id.clone()),
            (X_CORRELATION_ID, self.correlation_id.clone()),
        ];
        if let Some(t) = &self.tenant_id {
            h.push((X_TENANT_ID, t.clone()));
        }
        if let Some(u) = &self.user_id {
            h.push((X_USER_ID, u.clone()));
        }
        if let Some(tp) =
            super::telemetry::current_traceparent().or_else(|| self.traceparent.clone())
        {
            h.push((TRACEPARENT, tp));
            if let Some(ts) = &self.tracestate {
                h.push((TRACESTATE, ts.clone()));
            }
        }
        h
    }
}

fn id_header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic()))
        .map(String::from)
}

fn wants_msgpack(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim();
        let q = it
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let is_msgpack = is_msgpack_media(media);
        let is_json = matches!(
            media,
            "application/json" | "application/*" | "*/*" | "application/problem+json"
        );
        if (is_msgpack || is_json) && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, is_msgpack));
        }
    }
    best.is_some_and(|(q, m)| m && q > 0.0)
}

/// The body limit of the serving configuration, for the extractors that read bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Whether a media type (lower case, without parameters) names MessagePack.
pub fn is_msgpack_media(media: &str) -> bool {
    matches!(
        media,
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack"
    )
}

/// A percent-encoded NUL in the path or query: no text stored or compared in
/// Postgres may hold one, so it is refused before anything reads it.
fn has_encoded_nul(uri: &axum::http::Uri) -> bool {
    uri.path_and_query()
        .map(|pq| pq.as_str().as_bytes())
        .is_some_and(|b| {
            b.windows(3)
                .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
        })
}

/// Headers every response carries: the API serves data, never pages to frame or sniff.
fn add_security_headers(h: &mut HeaderMap) {
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
}

/// Paths served without authentication.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = parts.method.clone();

    let auth = (!is_public(parts.uri.path())).then(|| state.auth.authenticate(&parts.headers));
    let principal = auth.as_ref().and_then(|a| a.as_ref().ok()).cloned();
    let ctx = RequestContext::from_headers(&parts.headers, principal.as_ref());
    if let Some(a) = auth {
        parts.extensions.insert(AuthOutcome(a));
    }
    parts.extensions.insert(ctx.clone());
    parts
        .extensions
        .insert(BodyLimit(state.config.max_body_bytes));
    let span = request_span(&method, &route, &ctx, &parts.headers);

    let msgpack_out = wants_msgpack(&parts.headers);
    let timeout = state.config.request_timeout;
    let openai_errors = state.openai_routes.contains(route.as_str());
    let render = move |e: ApiError| {
        if openai_errors {
            e.into_openai_response()
        } else {
            e.into_response()
        }
    };
    let admission = admit(&state, &parts, principal.as_ref());
    let fut = async move {
        if let Err(e) = admission {
            return render(e);
        }
        let req = Request::from_parts(parts, body);
        let resp = match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => render(ApiError::Unavailable(format!(
                "the request did not finish within the limit of {} s",
                timeout.as_secs_f64()
            ))),
        };
        if msgpack_out {
            json_to_msgpack(resp).await
        } else {
            resp
        }
    };
    let mut resp = fut.instrument(span.clone()).await;
    let status = resp.status();
    span.record("status", status.as_u16());
    echo_headers(resp.headers_mut(), &ctx);
    state
        .metrics
        .observe_request(method.as_str(), &route, status.as_u16(), start.elapsed());
    if status.is_server_error() {
        tracing::warn!(parent: &span, status = status.as_u16(), "request failed");
    }
    resp
}

impl RequestContext {
    /// The context of a request: its ids (generated when missing or unusable), its trace
    /// context, and the caller once authenticated.
    fn from_headers(headers: &HeaderMap, principal: Option<&super::Principal>) -> Self {
        let request_id =
            id_header(headers, &X_REQUEST_ID).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let correlation_id =
            id_header(headers, &X_CORRELATION_ID).unwrap_or_else(|| request_id.clone());
        RequestContext {
            request_id,
            correlation_id,
            tenant_id: principal.map(|p| p.tenant_id.clone()),
            user_id: principal.map(|p| p.user_id.clone()),
            traceparent: id_header(headers, &TRACEPARENT),
            tracestate: headers
                .get(&TRACESTATE)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        }
    }
}

/// The span of one request, a child of the caller's trace when it sent one.
fn request_span(
    method: &axum::http::Method,
    route: &str,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %ctx.request_id,
        correlation_id = %ctx.correlation_id,
        tenant_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    if let Some(t) = &ctx.tenant_id {
        span.record("tenant_id", t.as_str());
    }
    super::telemetry::set_parent_from_headers(&span, headers);
    span
}

/// The security headers, and the request's ids and caller, on every response.
fn echo_headers(h: &mut HeaderMap, ctx: &RequestContext) {
    add_security_headers(h);
    let ids = [
        (X_REQUEST_ID, Some(&ctx.request_id)),
        (X_CORRELATION_ID, Some(&ctx.correlation_id)),
        (X_TENANT_ID, ctx.tenant_id.as_ref()),
        (X_USER_ID, ctx.user_id.as_ref()),
    ];
    for (name, value) in ids {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
}

/// Checks that need no body: the URI's text, then the tenant's request rate.
fn admit(
    state: &AppState,
    parts: &axum::http::request::Parts,
    principal: Option<&super::Principal>,
) -> Result<(), ApiError> {
    if has_encoded_nul(&parts.uri) {
        return Err(ApiError::BadRequest(
            "the path and query may not contain the NUL character (%00)".into(),
        ));
    }
    if let (Some(limiter), Some(p)) = (&state.tenant_limiter, principal) {
        limiter.check(&p.tenant_id)?;
    }
    Ok(())
}

async fn json_to_msgpack(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.starts_with("application/json") || c.starts_with("application/problem+json")
        });
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal(anyhow::anyhow!("reading response body")).into_response();
    };
    let packed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(anyhow::Error::from)
        .and_then(|v| rmp_serde::to_vec_named(&v).map_err(anyhow::Error::from));
    match packed {
        Ok(out) => {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(MSGPACK));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(out))
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation_prefers_the_higher_quality() {
        assert!(wants_msgpack(&accept("application/msgpack")));
        assert!(!wants_msgpack(&accept("application/json")));
        assert!(!wants_msgpack(&accept(
            "application/json, application/msgpack;q=0.5"
        )));
        assert!(wants_msgpack(&accept(
            "application/json;q=0.4, application/msgpack"
        )));
        assert!(!wants_msgpack(&HeaderMap::new()));
    }
}
