//! A typed client of the gateway's OpenAI-compatible API, for the components that call
//! models (rag for embeddings, agent and prompt-generator for chat). It calls the gateway
//! over HTTP at the URL the operator injects (`FAAS_GATEWAY_URL`), on behalf of the caller:
//! the caller's bearer token (or, with authentication disabled, the tenant headers of the
//! request context) goes with every call, so the gateway applies that tenant's providers,
//! limits and budget and meters the call to it. Nothing here picks a tenant.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::config::{ConfigError, ExposeSecret, SecretString, Source};
use crate::platform::http_client::{HttpClient, RetryPolicy, UpstreamError};
use crate::platform::{ApiError, RequestContext};

/// The setting (and environment variable) that holds the gateway's URL.
pub const URL_SETTING: &str = "FAAS_GATEWAY_URL";
/// The most of an answer read from the gateway.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A chat message, as the OpenAI API writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    /// Text, or `null` on an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: Some(content.into()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

/// A chat completion request; `stream` is never set (answers are read whole).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Tool definitions in the OpenAI shape (`{"type": "function", "function": {...}}`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPiece {
    Text(String),
    /// A piece of a tool call the model is writing: the first piece of each call has its
    /// id and name, the following ones more of its arguments.
    ToolCall(ToolCallPiece),
    Usage(Usage),
}

/// A piece of a streamed tool call; `index` tells the calls of one answer apart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ToolCallPiece {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: FunctionPiece,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FunctionPiece {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

impl StreamPiece {
    /// The piece one event's data holds, if any; data that is not a chunk is an error.
    fn parse(data: &str) -> Result<Option<Self>, ApiError> {
        #[derive(Deserialize)]
        struct Chunk {
            #[serde(default)]
            choices: Vec<ChunkChoice>,
            #[serde(default)]
            usage: Option<Usage>,
        }
        #[derive(Deserialize)]
        struct ChunkChoice {
            #[serde(default)]
            delta: Delta,
        }
        #[derive(Default, Deserialize)]
        struct Delta {
            #[serde(default)]
            content: Option<String>,
            #[serde(default)]
            tool_calls: Vec<ToolCallPiece>,
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|_| {
            ApiError::BadGateway("the gateway's answer is not a chat completion stream".into())
        })?;
        if let Some(mut delta) = chunk.choices.into_iter().next().map(|c| c.delta) {
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                return Ok(Some(StreamPiece::Text(text)));
            }
            // The gateway writes one call per chunk.
            if !delta.tool_calls.is_empty() {
                return Ok(Some(StreamPiece::ToolCall(delta.tool_calls.remove(0))));
            }
        }
        Ok(chunk.usage.map(StreamPiece::Usage))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

impl ChatCompletion {
    /// The first choice's message.
    pub fn message(&self) -> Option<&Message> {
        self.choices.first().map(|c| &c.message)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Embeddings {
    pub model: String,
    pub data: Vec<Embedding>,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Embedding {
    pub index: usize,
    pub embedding: Vec<f32>,
}

impl Embeddings {
    /// The vectors in input order.
    pub fn vectors(mut self) -> Vec<Vec<f32>> {
        self.data.sort_by_key(|e| e.index);
        self.data.into_iter().map(|e| e.embedding).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub id: String,
    pub owned_by: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ModelList {
    data: Vec<Model>,
}

/// The header that names the agent a model call is made for; the gateway reports it in
/// the call's LLM-operation event, so cost can be told by agent.
pub const AGENT_HEADER: &str = "x-agent-id";

/// The caller a call is made for: its bearer token as it came in, if any, and the agent
/// acting for it, if any.
#[derive(Clone, Default)]
pub struct OnBehalfOf {
    bearer: Option<SecretString>,
    agent: Option<String>,
}

impl OnBehalfOf {
    pub fn bearer(token: &str) -> Self {
        Self {
            bearer: Some(SecretString::from(token)),
            agent: None,
        }
    }

    /// The same caller, with `agent` acting for it.
    pub fn for_agent(&self, agent: &str) -> Self {
        Self {
            bearer: self.bearer.clone(),
            agent: Some(agent.to_string()),
        }
    }

    /// `req` as made for this caller: with its bearer token and the agent's header. For
    /// calls to the platform's own components only.
    pub fn authorize(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token.expose_secret());
        }
        if let Some(agent) = &self.agent {
            req = req.header(AGENT_HEADER, agent);
        }
        req
    }

    /// No token: with authentication disabled, the gateway takes the tenant from the
    /// context's `X-Tenant-ID`.
    pub fn headers_only() -> Self {
        Self::default()
    }
}

/// The caller of the request being handled: its bearer token, which the platform has
/// already verified, is passed on unchanged.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for OnBehalfOf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Self::bearer(t.trim()))
            .unwrap_or_default())
    }
}

impl std::fmt::Debug for OnBehalfOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.bearer.is_some() {
            "OnBehalfOf(<bearer>)"
        } else {
            "OnBehalfOf(headers)"
        })
    }
}

/// The gateway, as a client sees it.
#[derive(Clone)]
pub struct GatewayClient {
    base: url::Url,
    http: HttpClient,
    timeout: Duration,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GatewayClient {
    /// The client for the gateway at `FAAS_GATEWAY_URL`; an error names the setting.
    pub fn from_source(
        src: &Source,
        http: HttpClient,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let raw = src.get(URL_SETTING).ok_or(ConfigError::Missing {
            name: URL_SETTING,
            reason: "this component calls models through the gateway; list the gateway \
                     FaasService in spec.dependsOn"
                .into(),
        })?;
        Self::new(&raw, http, timeout).map_err(|reason| ConfigError::Invalid {
            name: URL_SETTING,
            reason,
        })
    }

    /// The client for the gateway at `base` (`http://gateway.team-a.svc:8080`).
    pub fn new(base: &str, http: HttpClient, timeout: Duration) -> Result<Self, String> {
        let mut base = url::Url::parse(base).map_err(|e| format!("{base:?} is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(format!("{base} is not an http(s) URL"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self {
            base,
            http,
            timeout,
        })
    }

    pub async fn chat(
        &self,
        who: &OnBehalfOf,
        ctx: &RequestContext,
        req: &ChatRequest,
    ) -> Result<ChatCompletion, ApiError> {
        self.post("v1/chat/completions", who, ctx, req).await
    }

    /// The answer to `req` as it is written: the pieces of text of the first choice, then
    /// the usage when the gateway reports it. A refusal before the first piece is the
    /// error of the call; a break afterwards is an error item of the stream.
    pub async fn chat_stream(
        &self,
        who: &OnBehalfOf,
        ctx: &RequestContext,
        req: &ChatRequest,
    ) -> Result<impl futures::Stream<Item = Result<StreamPiece, ApiError>> + Send + use<>, ApiError>
    {
        #[derive(Serialize)]
        struct Streaming<'a> {
            #[serde(flatten)]
            req: &'a ChatRequest,
            stream: bool,
            stream_options: Value,
        }
        let body = Streaming {
            req,
            stream: true,
            stream_options: serde_json::json!({"include_usage": true}),
        };
        let req = self
            .request(reqwest::Method::POST, "v1/chat/completions", who)?
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body)
            .build()
            .map_err(ApiError::internal)?;
        let resp = self
            .http
            .send(
                "gateway",
                "gateway",
                req,
                ctx,
                RetryPolicy::new(0, false),
                Some(self.timeout),
            )
            .await
            .map_err(unreachable_gateway)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let bytes = read_capped(resp).await?;
            return Err(refusal(status, &bytes, retry_after));
        }
        let events = crate::platform::sse::events(resp.bytes_stream(), MAX_ANSWER_BYTES);
        Ok(events
            .take_while(|e| std::future::ready(!matches!(e, Ok(d) if d.trim() == "[DONE]")))
            .filter_map(|event| {
                std::future::ready(match event {
                    Ok(data) => StreamPiece::parse(&data).transpose(),
                    Err(_) => Some(Err(ApiError::BadGateway(
                        "the gateway's answer broke off".into(),
                    ))),
                })
            }))
    }

    pub async fn embeddings(
        &self,
        who: &OnBehalfOf,
        ctx: &RequestContext,
        req: &EmbeddingsRequest,
    ) -> Result<Embeddings, ApiError> {
        self.post("v1/embeddings", who, ctx, req).await
    }

    /// The models the caller's tenant can use.
    pub async fn models(
        &self,
        who: &OnBehalfOf,
        ctx: &RequestContext,
    ) -> Result<Vec<Model>, ApiError> {
        let req = self.request(reqwest::Method::GET, "v1/models", who)?;
        let list: ModelList = self.send(req, ctx, true).await?;
        Ok(list.data)
    }

    async fn post<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        who: &OnBehalfOf,
        ctx: &RequestContext,
        body: &B,
    ) -> Result<T, ApiError> {
        let req = self.request(reqwest::Method::POST, path, who)?.json(body);
        // A model call is not repeated: it may have been served and billed.
        self.send(req, ctx, false).await
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        who: &OnBehalfOf,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let url = self.base.join(path).map_err(ApiError::internal)?;
        let req = self
            .http
            .inner()
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        Ok(who.authorize(req))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        ctx: &RequestContext,
        idempotent: bool,
    ) -> Result<T, ApiError> {
        let req = req.build().map_err(ApiError::internal)?;
        let policy = RetryPolicy::new(if idempotent { 2 } else { 0 }, idempotent);
        let resp = self
            .http
            .send("gateway", "gateway", req, ctx, policy, Some(self.timeout))
            .await
            .map_err(unreachable_gateway)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = read_capped(resp).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::BadGateway(format!("the gateway's answer could not be read: {e}"))
            });
        }
        Err(refusal(status, &bytes, retry_after))
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| ApiError::BadGateway("the gateway's answer was cut off".into()))?
    {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ApiError::BadGateway(format!(
                "the gateway's answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn unreachable_gateway(e: UpstreamError) -> ApiError {
    match e {
        UpstreamError::Timeout { .. } => {
            ApiError::GatewayTimeout("the gateway did not answer in time".into())
        }
        other => {
            tracing::warn!(error = %other, "calling the gateway");
            ApiError::Unavailable("the gateway is unavailable".into())
        }
    }
}

/// What the gateway refused, as this component's error. The gateway is ours and its
/// messages name no secret (it never echoes a provider's body), so its reason is kept.
fn refusal(status: reqwest::StatusCode, body: &[u8], retry_after: Option<u64>) -> ApiError {
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(500).collect::<String>())
        })
        .unwrap_or_else(|| format!("the gateway answered {status}"));
    let reason = format!("gateway: {reason}");
    match status.as_u16() {
        400 | 422 => ApiError::Validation(reason),
        401 => ApiError::Unauthorized(reason),
        403 => ApiError::Forbidden(reason),
        404 => ApiError::NotFound(reason),
        429 => ApiError::TooManyRequests {
            detail: reason,
            retry_after_secs: retry_after,
        },
        503 => ApiError::Unavailable(reason),
        504 => ApiError::GatewayTimeout(reason),
        _ => ApiError::BadGateway(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_gateways_reason_and_status() {
        let e = refusal(
            reqwest::StatusCode::NOT_FOUND,
            br#"{"error":{"message":"the model `m` does not exist","type":"not_found"}}"#,
            None,
        );
        assert!(
            matches!(&e, ApiError::NotFound(m) if m.contains("model `m`")),
            "{e:?}"
        );
        let e = refusal(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            br#"{"detail":"budget used up"}"#,
            Some(7),
        );
        assert!(matches!(
            e,
            ApiError::TooManyRequests {
                retry_after_secs: Some(7),
                ..
            }
        ));
        let e = refusal(reqwest::StatusCode::INTERNAL_SERVER_ERROR, b"<html>", None);
        assert!(
            matches!(&e, ApiError::BadGateway(m) if m.contains("500")),
            "{e:?}"
        );
    }
}
