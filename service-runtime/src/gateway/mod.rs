//! The LLM gateway: an OpenAI-compatible API in front of a per-tenant
//! registry of providers, with routing and fallbacks, limits and budgets, a
//! response cache for deterministic requests, and an LLM-operation event for
//! every call.

pub mod limits;
pub mod providers;
pub mod sse;
pub mod types;
pub mod upstream;

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

use crate::llmops::LlmOpEvent;
use crate::platform::events::Envelope;
use crate::platform::{ApiError, AppState, Principal, RequestContext};
use types::{ChatRequest, EmbeddingsRequest, Usage};
use upstream::Attempt;

pub fn limit_cache() -> &'static limits::LimitCache {
    static CACHE: OnceLock<limits::LimitCache> = OnceLock::new();
    CACHE.get_or_init(limits::LimitCache::default)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route(
            "/v1/gateway/providers",
            post(providers::create).get(providers::list),
        )
        .route(
            "/v1/gateway/providers/{id}",
            get(providers::get_one)
                .put(providers::update)
                .delete(providers::delete),
        )
        .route("/v1/gateway/limits", get(limits::get_own))
        .route(
            "/v1/gateway/limits/{tenant_id}",
            axum::routing::put(limits::put),
        )
}

#[derive(OpenApi)]
#[openapi(
    paths(
        chat_completions, embeddings, models,
        providers::create, providers::list, providers::get_one, providers::update, providers::delete,
        limits::get_own, limits::put
    ),
    components(schemas(
        ChatRequest, types::ChatMessage, types::StreamOptions, EmbeddingsRequest, Usage,
        providers::ProviderInput, providers::Provider, providers::ProviderKind,
        limits::Limits, limits::LimitsView, crate::platform::error::Problem
    )),
    tags((name = "gateway", description = "OpenAI-compatible LLM gateway"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// What is known about a call when it ends, for its LLM-operation event.
struct CallRecord {
    model: String,
    provider: String,
    operation: &'static str,
    usage: Usage,
    started: Instant,
    error: Option<String>,
    cached: bool,
}

/// The providers that serve `model` for the caller's tenant, once the tenant's limits admit
/// the call. A refused call is still metered, so it shows in error rates.
async fn route_and_admit(
    state: &AppState,
    ctx: &RequestContext,
    p: &Principal,
    agent: &Option<String>,
    model: &str,
    operation: &'static str,
    started: Instant,
) -> Result<providers::Chain, ApiError> {
    let chain = providers::route(state, &p.tenant_id, model).await?;
    if chain.is_empty() {
        return Err(ApiError::NotFound(format!(
            "the model `{model}` does not exist or is not served here"
        )));
    }
    if let Err(e) = limits::admit(state, limit_cache(), &p.tenant_id).await {
        if matches!(e, ApiError::TooManyRequests { .. }) {
            let rec = CallRecord {
                model: chain[0].1.clone(),
                provider: String::new(),
                operation,
                usage: Usage::default(),
                started,
                error: Some(e.public_detail()),
                cached: false,
            };
            emit(state, ctx, p, agent.clone(), rec);
        }
        return Err(e);
    }
    Ok(chain)
}

/// Meters the call and publishes its event, off the request path.
fn emit(
    state: &AppState,
    ctx: &RequestContext,
    p: &Principal,
    agent: Option<String>,
    rec: CallRecord,
) {
    let state = state.clone();
    let ctx = ctx.clone();
    let p = p.clone();
    let latency_ms = rec.started.elapsed().as_secs_f64() * 1000.0;
    tokio::spawn(async move {
        let cost = if rec.cached {
            0.0
        } else {
            crate::llmops::cost_for(
                &state,
                &p.tenant_id,
                &rec.model,
                rec.usage.prompt_tokens,
                rec.usage.completion_tokens,
            )
            .await
            .unwrap_or(0.0)
        };
        if !rec.cached {
            limits::record_usage(
                &state,
                limit_cache(),
                &p.tenant_id,
                rec.usage.total_tokens,
                cost,
            )
            .await;
        }
        let event = LlmOpEvent {
            id: Some(uuid::Uuid::now_v7()),
            occurred_at: Some(chrono::Utc::now()),
            user_id: Some(p.user_id.clone()),
            agent_id: agent,
            model: rec.model,
            provider: rec.provider,
            operation: rec.operation.to_string(),
            tokens_in: rec.usage.prompt_tokens as i64,
            tokens_out: rec.usage.completion_tokens as i64,
            latency_ms,
            cost_usd: Some(cost),
            status: if rec.error.is_some() {
                "error".into()
            } else {
                "ok".into()
            },
            error: rec.error,
            cached: rec.cached,
            correlation_id: Some(ctx.correlation_id.clone()),
            request_id: Some(ctx.request_id.clone()),
        };
        let publish = async {
            let env = Envelope::new_json(crate::llmops::EVENT_TYPE, &ctx, &event)?;
            state
                .events()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .publish(crate::llmops::EVENT_KIND, &env)
                .await
        };
        if let Err(e) = publish.await {
            tracing::warn!(error = %e, "publishing LLM-operation event");
        }
    });
}

fn agent_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-agent-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .map(String::from)
}

fn cache_key(state: &AppState, tenant: &str, req: &ChatRequest) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(req).unwrap_or_default());
    state.redis_key(&["gw", "cache", tenant, &hex::encode(h.finalize())])
}

fn json_response(status: StatusCode, body: Vec<u8>, cache: Option<&'static str>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(c) = cache {
        resp.headers_mut()
            .insert("x-faas-cache", HeaderValue::from_static(c));
    }
    resp
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway", request_body = ChatRequest,
    responses(
        (status = 200, description = "An OpenAI chat completion, or with `stream: true` a text/event-stream of chunks"),
        (status = 400, description = "Malformed request (OpenAI error shape)"),
        (status = 404, description = "No provider serves the model"),
        (status = 429, description = "A limit or the budget is used up"),
        (status = 502, description = "Every provider in the chain failed")))]
async fn chat_completions(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Result<axum::Json<ChatRequest>, JsonRejection>,
) -> Response {
    match chat_inner(state, ctx, principal, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_openai_response(),
    }
}

async fn chat_inner(
    state: AppState,
    ctx: RequestContext,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Result<axum::Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let p = principal?;
    let axum::Json(req) = body.map_err(ApiError::from)?;
    req.validate()?;
    let started = Instant::now();
    let agent = agent_header(&headers);
    let chain = route_and_admit(&state, &ctx, &p, &agent, &req.model, "chat", started).await?;

    let cache_key = req
        .is_deterministic()
        .then(|| cache_key(&state, &p.tenant_id, &req));
    if let Some(key) = &cache_key {
        let mut conn = state.redis()?;
        let hit: Option<Vec<u8>> = conn.get(key).await.unwrap_or(None);
        if let Some(bytes) = hit {
            let usage = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .map(|v| Usage {
                    prompt_tokens: v
                        .pointer("/usage/prompt_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    completion_tokens: v
                        .pointer("/usage/completion_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    total_tokens: v
                        .pointer("/usage/total_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                })
                .unwrap_or_default();
            let rec = CallRecord {
                model: chain[0].1.clone(),
                provider: "cache".into(),
                operation: "chat",
                usage,
                started,
                error: None,
                cached: true,
            };
            emit(&state, &ctx, &p, agent, rec);
            return Ok(json_response(StatusCode::OK, bytes, Some("hit")));
        }
    }

    let mut last_err = None;
    for (provider, model) in &chain {
        if req.stream {
            match upstream::chat_stream_open(&state, &ctx, provider, model, &req).await {
                Attempt::Done(resp) => {
                    let (tx, rx) =
                        futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(32);
                    let kind = provider.kind;
                    let model = model.clone();
                    let provider_name = provider.name.clone();
                    let include_usage = req.include_usage();
                    let estimate = req.estimated_prompt_tokens();
                    let (state2, ctx2, p2) = (state.clone(), ctx.clone(), p.clone());
                    tokio::spawn(async move {
                        let end =
                            upstream::relay_stream(kind, resp, &model, include_usage, tx, estimate)
                                .await;
                        let rec = CallRecord {
                            model,
                            provider: provider_name,
                            operation: "chat",
                            usage: end.usage,
                            started,
                            error: end.error,
                            cached: false,
                        };
                        emit(&state2, &ctx2, &p2, agent, rec);
                    });
                    let mut resp = Response::new(Body::from_stream(rx));
                    let h = resp.headers_mut();
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/event-stream"),
                    );
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
                    return Ok(resp);
                }
                Attempt::Failed(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "provider failed; trying the next");
                    last_err = Some(e);
                }
                Attempt::Fatal(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        } else {
            match upstream::chat(&state, &ctx, provider, model, &req).await {
                Attempt::Done((value, usage)) => {
                    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
                    if let Some(key) = &cache_key {
                        let mut conn = state.redis()?;
                        let ttl = state.config.gateway_cache_ttl.as_secs().max(1);
                        let r: redis::RedisResult<()> = conn.set_ex(key, &bytes, ttl).await;
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "storing cached response");
                        }
                    }
                    let rec = CallRecord {
                        model: model.clone(),
                        provider: provider.name.clone(),
                        operation: "chat",
                        usage,
                        started,
                        error: None,
                        cached: false,
                    };
                    emit(&state, &ctx, &p, agent, rec);
                    let cache = cache_key.as_ref().map(|_| "miss");
                    return Ok(json_response(StatusCode::OK, bytes, cache));
                }
                Attempt::Failed(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "provider failed; trying the next");
                    last_err = Some(e);
                }
                Attempt::Fatal(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
    }
    let err = last_err
        .unwrap_or_else(|| ApiError::BadGateway("no provider could serve the request".into()));
    let rec = CallRecord {
        model: chain[0].1.clone(),
        provider: chain.last().map(|c| c.0.name.clone()).unwrap_or_default(),
        operation: "chat",
        usage: Usage::default(),
        started,
        error: Some(err.public_detail()),
        cached: false,
    };
    emit(&state, &ctx, &p, agent, rec);
    Err(err)
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway", request_body = EmbeddingsRequest,
    responses((status = 200, description = "An OpenAI embeddings list; vectors as floats or base64"),
              (status = 400, description = "Malformed request (OpenAI error shape)")))]
async fn embeddings(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Result<axum::Json<EmbeddingsRequest>, JsonRejection>,
) -> Response {
    match embeddings_inner(state, ctx, principal, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_openai_response(),
    }
}

async fn embeddings_inner(
    state: AppState,
    ctx: RequestContext,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Result<axum::Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let p = principal?;
    let axum::Json(req) = body.map_err(ApiError::from)?;
    let (input, base64) = req.validate()?;
    let started = Instant::now();
    let agent = agent_header(&headers);
    let chain =
        route_and_admit(&state, &ctx, &p, &agent, &req.model, "embeddings", started).await?;
    let mut last_err = None;
    for (provider, model) in &chain {
        match upstream::embeddings(&state, &ctx, provider, model, &req, &input).await {
            Attempt::Done((vectors, usage)) => {
                let data: Vec<Value> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let emb = if base64 {
                            json!(upstream::encode_base64_f32(v))
                        } else {
                            json!(v)
                        };
                        json!({"object": "embedding", "index": i, "embedding": emb})
                    })
                    .collect();
                let body = json!({
                    "object": "list",
                    "data": data,
                    "model": model,
                    "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
                });
                let rec = CallRecord {
                    model: model.clone(),
                    provider: provider.name.clone(),
                    operation: "embeddings",
                    usage,
                    started,
                    error: None,
                    cached: false,
                };
                emit(&state, &ctx, &p, agent, rec);
                return Ok(json_response(
                    StatusCode::OK,
                    serde_json::to_vec(&body).map_err(ApiError::internal)?,
                    None,
                ));
            }
            Attempt::Failed(e) => {
                tracing::warn!(provider = %provider.name, error = %e, "provider failed; trying the next");
                last_err = Some(e);
            }
            Attempt::Fatal(e) => {
                last_err = Some(e);
                break;
            }
        }
    }
    let err = last_err
        .unwrap_or_else(|| ApiError::BadGateway("no provider could serve the request".into()));
    let rec = CallRecord {
        model: chain[0].1.clone(),
        provider: chain.last().map(|c| c.0.name.clone()).unwrap_or_default(),
        operation: "embeddings",
        usage: Usage::default(),
        started,
        error: Some(err.public_detail()),
        cached: false,
    };
    emit(&state, &ctx, &p, agent, rec);
    Err(err)
}

#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    responses((status = 200, description = "OpenAI model list of the models the tenant's providers serve")))]
async fn models(State(state): State<AppState>, principal: Result<Principal, ApiError>) -> Response {
    let result = async {
        let p = principal?;
        let providers = providers::all_enabled(&state, &p.tenant_id).await?;
        let mut seen = std::collections::BTreeMap::new();
        for prov in &providers {
            for m in &prov.models {
                seen.entry(m.clone()).or_insert_with(|| (prov.name.clone(), prov.created_at.timestamp()));
            }
        }
        let data: Vec<Value> = seen
            .into_iter()
            .map(|(id, (owner, created))| json!({"id": id, "object": "model", "created": created, "owned_by": owner}))
            .collect();
        Ok::<_, ApiError>(axum::Json(json!({"object": "list", "data": data})).into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::into_openai_response)
}
