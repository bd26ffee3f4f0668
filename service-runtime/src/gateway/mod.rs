//! The LLM gateway: an OpenAI-compatible API in front of a per-tenant
//! registry of providers, with routing and fallbacks, limits and budgets, a
//! response cache for deterministic requests, and an LLM-operation event for
//! every call.

pub mod adapter;
pub mod body;
pub mod limits;
mod openapi;
pub mod providers;
pub mod relay;
pub mod settings;
pub mod state;
pub mod types;

use std::future::Future;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use redis::AsyncCommands;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::platform::events::Envelope;
use crate::platform::{
    ApiError, ApiResult, AppState, Built, ComponentSpec, Principal, RequestContext,
};
use adapter::{Attempt, Failure};
use faas_model::Component;
use faas_model::events::{LLM_OPERATION_KIND, LLM_OPERATION_TYPE, LlmOpEvent};
use providers::{Chain, Provider};
use types::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};

pub use openapi::openapi;
pub use state::GatewayState;

/// The gateway as the platform serves it.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::Gateway,
    openapi,
    openai_routes: &["/v1/chat/completions", "/v1/embeddings", "/v1/models"],
    build,
};

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let settings = settings::Settings::from_source(&platform.config.source)?;
    let state = state::Gateway::state(platform.clone(), settings);
    Ok(Built::routes(router().with_state(state)))
}

fn router() -> Router<GatewayState> {
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
        .route("/v1/gateway/credentials", get(providers::credentials))
        .route("/v1/gateway/limits", get(limits::get_own))
        .route(
            "/v1/gateway/limits/{tenant_id}",
            axum::routing::put(limits::put),
        )
}

/// One call of the OpenAI-compatible API being served.
#[derive(Clone)]
struct Call {
    state: GatewayState,
    ctx: RequestContext,
    principal: Principal,
    agent: Option<String>,
    operation: &'static str,
    started: Instant,
}

/// What is known about a call when it ends, for its LLM-operation event.
struct Outcome {
    model: String,
    provider: String,
    usage: Usage,
    error: Option<String>,
    cached: bool,
}

impl Outcome {
    fn failed(model: &str, provider: &str, e: &ApiError) -> Self {
        Self {
            model: model.to_string(),
            provider: provider.to_string(),
            usage: Usage::default(),
            error: Some(e.public_detail()),
            cached: false,
        }
    }

    fn served(model: &str, provider: &str, usage: Usage) -> Self {
        Self {
            model: model.to_string(),
            provider: provider.to_string(),
            usage,
            error: None,
            cached: false,
        }
    }
}

impl Call {
    /// The providers that serve `model` for the caller's tenant, once the tenant's limits
    /// admit the call. A refused call is still metered, so it shows in error rates.
    async fn route_and_admit(&self, model: &str) -> ApiResult<Chain> {
        let tenant = &self.principal.tenant_id;
        let mut chain = providers::route(&self.state, tenant, model).await?;
        chain.retain(|r| r.0.kind.serves(self.operation));
        if chain.is_empty() {
            return Err(ApiError::NotFound(format!(
                "the model `{model}` does not exist or is not served here for {}",
                self.operation
            )));
        }
        if let Err(e) = limits::admit(&self.state, &self.state.component().limits, tenant).await {
            if matches!(e, ApiError::TooManyRequests { .. }) {
                self.emit(Outcome::failed(&chain[0].1, "", &e));
            }
            return Err(e);
        }
        Ok(chain)
    }

    /// Tries the providers of `chain` in order until one serves the call. A provider that
    /// fails hands the call to the next; a request no provider can accept ends the walk.
    /// When none served it, the last error is the answer, metered.
    async fn failover<'c, T, F, Fut>(&self, chain: &'c Chain, mut attempt: F) -> ApiResult<T>
    where
        F: FnMut(&'c Provider, &'c str) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut last = None;
        for route in chain {
            let (provider, model) = &**route;
            match attempt(provider, model).await {
                Ok(served) => return Ok(served),
                Err(Failure::Next(e)) => {
                    tracing::warn!(provider = %provider.name, error = %e, "provider failed; trying the next");
                    last = Some(e);
                }
                Err(Failure::Fatal(e)) => {
                    last = Some(e);
                    break;
                }
            }
        }
        Err(self.all_failed(chain, last))
    }

    /// The error when every provider failed, metered.
    fn all_failed(&self, chain: &Chain, last: Option<ApiError>) -> ApiError {
        let err = last
            .unwrap_or_else(|| ApiError::BadGateway("no provider could serve the request".into()));
        let provider = chain.last().map(|c| c.0.name.as_str()).unwrap_or_default();
        self.emit(Outcome::failed(&chain[0].1, provider, &err));
        err
    }

    /// Meters the call and publishes its event, off the request path.
    fn emit(&self, out: Outcome) {
        let state = self.state.clone();
        let ctx = self.ctx.clone();
        let p = self.principal.clone();
        let agent = self.agent.clone();
        let operation = self.operation;
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        tokio::spawn(async move {
            let cost = if out.cached {
                0.0
            } else {
                let u = &out.usage;
                match state.db() {
                    Ok(db) => state
                        .component()
                        .prices
                        .cost(
                            db,
                            &p.tenant_id,
                            &out.model,
                            u.prompt_tokens,
                            u.completion_tokens,
                        )
                        .await
                        .unwrap_or(0.0),
                    Err(_) => 0.0,
                }
            };
            if !out.cached {
                limits::record_usage(
                    &state,
                    &state.component().limits,
                    &p.tenant_id,
                    out.usage.total_tokens,
                    cost,
                )
                .await;
            }
            let event = llmop_event(&p, agent, operation, out, latency_ms, cost, &ctx);
            let publish = async {
                let env = Envelope::new_json(LLM_OPERATION_TYPE, &ctx, &event)?;
                state
                    .events()
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .publish(LLM_OPERATION_KIND, &env)
                    .await
            };
            if let Err(e) = publish.await {
                tracing::warn!(error = %e, "publishing LLM-operation event");
            }
        });
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn llmop_event(
    p: &Principal,
    agent: Option<String>,
    operation: &'static str,
    out: Outcome,
    latency_ms: f64,
    cost: f64,
    ctx: &RequestContext,
) -> LlmOpEvent {
    LlmOpEvent {
        id: Some(uuid::Uuid::now_v7()),
        occurred_at: Some(chrono::Utc::now()),
        user_id: Some(p.user_id.clone()),
        agent_id: agent,
        model: out.model,
        provider: out.provider,
        operation: operation.to_string(),
        tokens_in: clamp_i64(out.usage.prompt_tokens),
        tokens_out: clamp_i64(out.usage.completion_tokens),
        latency_ms,
        cost_usd: Some(cost),
        status: if out.error.is_some() { "error" } else { "ok" }.into(),
        error: out.error,
        cached: out.cached,
        correlation_id: Some(ctx.correlation_id.clone()),
        request_id: Some(ctx.request_id.clone()),
    }
}

/// The agent a call is made for (`X-Agent-ID`): as long as llmops keeps one (256), which
/// holds every agent name (at most 253).
fn agent_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-agent-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
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

/// Read by the platform's rules: only after authentication, within the nesting
/// bound, no NUL in any text, an object.
type Body_<T> = Result<body::OpenAiBody<T>, ApiError>;

fn read_body<T>(body: Body_<T>) -> ApiResult<T> {
    body.map(|b| b.0)
}

/// Starts serving an OpenAI-compatible call.
fn start(
    state: GatewayState,
    ctx: RequestContext,
    principal: Result<Principal, ApiError>,
    headers: &HeaderMap,
    operation: &'static str,
) -> ApiResult<Call> {
    Ok(Call {
        state,
        ctx,
        principal: principal?,
        agent: agent_header(headers),
        operation,
        started: Instant::now(),
    })
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway", request_body = ChatRequest,
    responses(
        (status = 200, description = "An OpenAI chat completion, or with `stream: true` a text/event-stream of chunks",
         content((types::ChatCompletion = "application/json"), (types::ChatCompletionEvent = "text/event-stream"))),
        (status = 400, description = "Malformed request, or a provider did not accept it"),
        (status = 404, description = "No provider of the tenant serves the model for this operation"),
        (status = 422, description = "A field is invalid"),
        (status = 429, description = "A limit or the budget is used up, or the provider is rate limiting"),
        (status = 502, description = "Every provider in the chain failed or is not allowed"),
        (status = 503, description = "The providers are paused after failures, or a backing service is unavailable"),
        (status = 504, description = "The provider did not answer in time")))]
async fn chat_completions(
    State(state): State<GatewayState>,
    Extension(ctx): Extension<RequestContext>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Body_<ChatRequest>,
) -> Response {
    let served = async {
        let call = start(state, ctx, principal, &headers, "chat")?;
        let req: ChatRequest = read_body(body)?;
        req.validate()?;
        chat(call, req).await
    };
    served.await.unwrap_or_else(ApiError::into_openai_response)
}

async fn chat(call: Call, req: ChatRequest) -> ApiResult<Response> {
    let chain = call.route_and_admit(&req.model).await?;
    let key = req
        .is_deterministic()
        .then(|| cache_key(&call.state, &call.principal.tenant_id, &req));
    if let Some(key) = &key
        && let Some(resp) = cached(&call, &chain, key).await?
    {
        return Ok(resp);
    }
    if req.stream {
        call.failover(&chain, |p, model| stream_from(&call, p, model, &req))
            .await
    } else {
        call.failover(&chain, |p, model| {
            answer_from(&call, p, model, &req, key.as_deref())
        })
        .await
    }
}

/// The cached answer to a deterministic request, if there is one.
async fn cached(call: &Call, chain: &Chain, key: &str) -> ApiResult<Option<Response>> {
    let mut conn = call.state.redis()?;
    let hit: Option<Vec<u8>> = conn.get(key).await.unwrap_or(None);
    let Some(bytes) = hit else { return Ok(None) };
    let usage = serde_json::from_slice::<adapter::openai::UsageView>(&bytes)
        .ok()
        .and_then(|v| v.usage)
        .map(Usage::from)
        .unwrap_or_default();
    call.emit(Outcome {
        cached: true,
        ..Outcome::served(&chain[0].1, "cache", usage)
    });
    Ok(Some(json_response(StatusCode::OK, bytes, Some("hit"))))
}

async fn answer_from(
    call: &Call,
    provider: &Provider,
    model: &str,
    req: &ChatRequest,
    cache_key: Option<&str>,
) -> Attempt<Response> {
    let (bytes, usage) = adapter::chat(&call.state, &call.ctx, provider, model, req).await?;
    if let Some(key) = cache_key {
        store(&call.state, key, &bytes).await;
    }
    call.emit(Outcome::served(model, &provider.name, usage));
    Ok(json_response(
        StatusCode::OK,
        bytes,
        cache_key.map(|_| "miss"),
    ))
}

async fn store(state: &GatewayState, key: &str, bytes: &[u8]) {
    let Ok(mut conn) = state.redis() else { return };
    let ttl = state.component().settings.cache_ttl.as_secs().max(1);
    let r: redis::RedisResult<()> = conn.set_ex(key, bytes, ttl).await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "storing cached response");
    }
}

/// Opens the provider's stream and relays it; the call is metered when the stream ends.
async fn stream_from(
    call: &Call,
    provider: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<Response> {
    let open = adapter::open_stream(&call.state, &call.ctx, provider, model, req).await?;
    let (tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(32);
    let stream = relay::StreamRequest {
        model: model.to_string(),
        include_usage: req.include_usage(),
        prompt_estimate: req.estimated_prompt_tokens(),
    };
    let provider = provider.clone();
    let call = call.clone();
    let model = model.to_string();
    tokio::spawn(async move {
        let end = relay::relay_stream(&provider, open, stream, tx).await;
        call.emit(Outcome {
            error: end.error,
            ..Outcome::served(&model, &provider.name, end.usage)
        });
    });
    let mut resp = Response::new(Body::from_stream(rx));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway", request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "An OpenAI embeddings list; vectors as floats or base64", body = types::EmbeddingList),
        (status = 400, description = "Malformed request, or a provider did not accept it"),
        (status = 404, description = "No provider of the tenant serves the model for this operation"),
        (status = 422, description = "A field is invalid"),
        (status = 429, description = "A limit or the budget is used up, or the provider is rate limiting"),
        (status = 502, description = "Every provider in the chain failed or is not allowed"),
        (status = 503, description = "The providers are paused after failures, or a backing service is unavailable"),
        (status = 504, description = "The provider did not answer in time")))]
async fn embeddings(
    State(state): State<GatewayState>,
    Extension(ctx): Extension<RequestContext>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Body_<EmbeddingsRequest>,
) -> Response {
    let served = async {
        let call = start(state, ctx, principal, &headers, "embeddings")?;
        let req: EmbeddingsRequest = read_body(body)?;
        embed(call, req).await
    };
    served.await.unwrap_or_else(ApiError::into_openai_response)
}

async fn embed(call: Call, req: EmbeddingsRequest) -> ApiResult<Response> {
    let (input, base64) = req.validate()?;
    let chain = call.route_and_admit(&req.model).await?;
    call.failover(&chain, |p, model| {
        embed_from(&call, p, model, &req, &input, base64)
    })
    .await
}

async fn embed_from(
    call: &Call,
    provider: &Provider,
    model: &str,
    req: &EmbeddingsRequest,
    input: &EmbeddingInput,
    base64: bool,
) -> Attempt<Response> {
    let (vectors, usage) =
        adapter::embeddings(&call.state, &call.ctx, provider, model, req, input).await?;
    let list = embedding_list(vectors, base64, model, &usage);
    let bytes = serde_json::to_vec(&list).map_err(|e| Failure::Fatal(ApiError::internal(e)))?;
    call.emit(Outcome::served(model, &provider.name, usage));
    Ok(json_response(StatusCode::OK, bytes, None))
}

fn embedding_list(
    vectors: Vec<Vec<f32>>,
    base64: bool,
    model: &str,
    usage: &Usage,
) -> types::EmbeddingList {
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| types::Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                json!(adapter::encode_base64_f32(v))
            } else {
                json!(v)
            },
        })
        .collect();
    types::EmbeddingList {
        object: "list",
        data,
        model: model.to_string(),
        usage: types::EmbeddingUsage {
            prompt_tokens: usage.prompt_tokens,
            total_tokens: usage.total_tokens,
        },
    }
}

#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    responses((status = 200, description = "The models the tenant's usable providers serve", body = types::ModelList)))]
async fn models(State(state): State<AppState>, principal: Result<Principal, ApiError>) -> Response {
    let listed = async {
        let p = principal?;
        let providers = providers::all_usable(&state, &p.tenant_id).await?;
        let mut seen = std::collections::BTreeMap::new();
        for prov in &providers {
            for m in &prov.models {
                seen.entry(m.clone())
                    .or_insert_with(|| (prov.name.clone(), prov.created_at.timestamp()));
            }
        }
        let data = seen
            .into_iter()
            .map(|(id, (owned_by, created))| types::Model {
                id,
                object: "model",
                created,
                owned_by,
            })
            .collect();
        Ok::<_, ApiError>(
            axum::Json(types::ModelList {
                object: "list",
                data,
            })
            .into_response(),
        )
    };
    listed.await.unwrap_or_else(ApiError::into_openai_response)
}
