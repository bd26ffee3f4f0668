//! Talking to providers: OpenAI-compatible and Anthropic Messages, plain and
//! streamed, translated to and from the OpenAI shape; and the local
//! embedding model.

use secrecy::ExposeSecret;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::providers::{Provider, ProviderKind};
use super::types::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};
use crate::platform::http_client::{RetryPolicy, UpstreamError};
use crate::platform::{ApiError, AppState, RequestContext};

/// The result of trying one provider.
pub enum Attempt<T> {
    Done(T),
    /// This provider failed; the next one in the chain may be tried.
    Failed(ApiError),
    /// The request itself is wrong; trying elsewhere will not help.
    Fatal(ApiError),
}

const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The largest answer read from a provider (a non-streamed body, or one stream event).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

fn breaker_key(tenant: &str, p: &Provider) -> String {
    format!("{tenant}/{}", p.id)
}

fn anthropic_url(base: &str) -> String {
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// Whether `url` lies under `base` (a base URL without trailing '/').
fn is_under(url: &str, base: &str) -> bool {
    url.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn build(
    state: &AppState,
    p: &Provider,
    url: String,
    body: &Value,
) -> Result<reqwest::Request, ApiError> {
    let mut rb = state.http.inner().post(&url).json(body);
    // A provider's key is its credential's, and goes only under the URL it is bound to.
    let key = p.key.as_ref().filter(|_| is_under(&url, &p.base_url));
    match p.kind {
        ProviderKind::Openai => {
            if let Some(k) = key {
                rb = rb.bearer_auth(k.expose_secret());
            }
        }
        ProviderKind::Anthropic => {
            if let Some(k) = key {
                rb = rb.header("x-api-key", k.expose_secret());
            }
            rb = rb.header("anthropic-version", ANTHROPIC_VERSION);
        }
        ProviderKind::Local => {}
    }
    rb.build().map_err(ApiError::internal)
}

/// `text` without the provider's key, should the provider echo it.
pub fn scrub<'a>(text: &'a str, p: &Provider) -> std::borrow::Cow<'a, str> {
    match &p.key {
        Some(k) if !k.expose_secret().is_empty() && text.contains(k.expose_secret()) => {
            text.replace(k.expose_secret(), "[redacted]").into()
        }
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

/// Posts `body` to the provider and parses its JSON answer.
async fn call_json(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    url: String,
    body: &Value,
) -> Attempt<Value> {
    let request = match build(state, p, url, body) {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(e),
    };
    let resp = match send(state, ctx, p, request).await {
        Attempt::Done(r) => r,
        Attempt::Failed(e) => return Attempt::Failed(e),
        Attempt::Fatal(e) => return Attempt::Fatal(e),
    };
    let Some(bytes) = read_capped(resp).await else {
        return Attempt::Failed(malformed(p));
    };
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| serde_json::from_str(&scrub(text, p)).ok());
    match parsed {
        Some(v) => Attempt::Done(v),
        None => Attempt::Failed(malformed(p)),
    }
}

/// The error for an answer that is not what the provider's protocol promises.
fn malformed(p: &Provider) -> ApiError {
    ApiError::BadGateway(format!("provider {} sent a malformed answer", p.name))
}

/// The gateway's own error for a provider's error status. The provider's body is never
/// read: it may echo what was sent to it, key included, and a tenant's own provider could
/// put anything there.
fn status_error(p: &Provider, resp: &reqwest::Response) -> Attempt<reqwest::Response> {
    let status = resp.status().as_u16();
    let detail = format!("provider {} answered {status}", p.name);
    match status {
        400 | 413 | 422 => Attempt::Fatal(ApiError::BadRequest(format!(
            "{detail}: it did not accept the request"
        ))),
        429 => Attempt::Failed(ApiError::TooManyRequests {
            detail: format!("{detail}: it is rate limiting"),
            retry_after_secs: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s.min(86_400)),
        }),
        _ => Attempt::Failed(ApiError::BadGateway(detail)),
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

async fn send(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    req: reqwest::Request,
) -> Attempt<reqwest::Response> {
    let tenant = ctx.tenant_id.as_deref().unwrap_or_default();
    let http = match state.http.guarded(&state.config.egress.policy) {
        Ok(h) => h,
        Err(e) => return Attempt::Failed(ApiError::internal(e)),
    };
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
        Ok(resp) if resp.status().is_success() => Attempt::Done(resp),
        Ok(resp) => status_error(p, &resp),
        Err(e) => Attempt::Failed(transport_error(p, e)),
    }
}

/// The body for an OpenAI-compatible provider.
fn openai_body(req: &ChatRequest, model: &str, stream: bool) -> Value {
    let mut body = serde_json::to_value(req).unwrap_or(Value::Null);
    body["model"] = json!(model);
    if let Some(o) = body.as_object_mut() {
        o.remove("stream_options");
    }
    if stream {
        // Always ask for usage so streamed calls are metered; the usage chunk
        // is passed on only when the client asked for it.
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn anthropic_body(req: &ChatRequest, model: &str, stream: bool) -> Value {
    let system: Vec<String> = req
        .messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(|m| m.text())
        .collect();
    let messages = anthropic_messages(req);
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_completion_tokens.or(req.max_tokens).unwrap_or(1024),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t.min(1.0));
    }
    if let Some(t) = req.top_p {
        body["top_p"] = json!(t);
    }
    match &req.stop {
        Some(Value::String(s)) => body["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) => body["stop_sequences"] = json!(a),
        _ => {}
    }
    if let Some(Value::Array(tools)) = req.extra.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str).unwrap_or("function") == "function")
            .map(|t| {
                let f = &t["function"];
                json!({
                    "name": f["name"],
                    "description": f.get("description").cloned().unwrap_or(Value::Null),
                    "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
                })
            })
            .collect();
        let choice = match req.extra.get("tool_choice") {
            Some(Value::String(c)) if c == "none" => None,
            Some(Value::String(c)) if c == "required" => Some(json!({"type": "any"})),
            Some(Value::Object(o)) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"type": "tool", "name": n})),
            _ => Some(json!({"type": "auto"})),
        };
        if let Some(choice) = choice
            && !tools.is_empty()
        {
            body["tools"] = json!(tools);
            body["tool_choice"] = choice;
        }
    }
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// OpenAI messages as Anthropic ones: tool calls become `tool_use` blocks,
/// tool results `tool_result` blocks in a user turn, and consecutive turns
/// of one role are merged.
fn anthropic_messages(req: &ChatRequest) -> Vec<Value> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => continue,
            "assistant" => {
                let mut blocks = Vec::new();
                let text = m.text();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                if let Some(Value::Array(calls)) = m.extra.get("tool_calls") {
                    for c in calls {
                        let args = c
                            .pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}");
                        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                        blocks.push(json!({
                            "type": "tool_use", "id": c["id"], "name": c.pointer("/function/name"), "input": input,
                        }));
                    }
                }
                ("assistant", blocks)
            }
            "tool" => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.extra.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": m.text(),
                })],
            ),
            _ => ("user", vec![json!({"type": "text", "text": m.text()})]),
        };
        match out.last_mut() {
            Some((r, b)) if r == role => b.extend(blocks),
            _ => out.push((role.to_string(), blocks)),
        }
    }
    out.into_iter()
        .map(|(role, blocks)| {
            // A lone text block is sent as a plain string.
            if blocks.len() == 1 && blocks[0]["type"] == "text" {
                json!({"role": role, "content": blocks[0]["text"]})
            } else {
                json!({"role": role, "content": blocks})
            }
        })
        .collect()
}

pub(super) fn finish_reason(anthropic_stop: Option<&str>) -> &'static str {
    match anthropic_stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

pub(super) fn usage_from_openai(v: &Value) -> Usage {
    let p = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let c = v
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Usage::new(p, c)
}

/// One non-streamed chat call; the answer is in the OpenAI shape.
pub async fn chat(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<(Value, Usage)> {
    let (url, body) = match p.kind {
        ProviderKind::Openai => (
            format!("{}/chat/completions", p.base_url),
            openai_body(req, model, false),
        ),
        ProviderKind::Anthropic => (
            anthropic_url(&p.base_url),
            anthropic_body(req, model, false),
        ),
        ProviderKind::Local => {
            return Attempt::Failed(ApiError::BadGateway(format!(
                "provider {} serves embeddings only",
                p.name
            )));
        }
    };
    let v = match call_json(state, ctx, p, url, &body).await {
        Attempt::Done(v) => v,
        Attempt::Failed(e) => return Attempt::Failed(e),
        Attempt::Fatal(e) => return Attempt::Fatal(e),
    };
    match p.kind {
        ProviderKind::Anthropic => Attempt::Done(from_anthropic(&v, model)),
        _ if v.get("choices").and_then(Value::as_array).is_none() => Attempt::Failed(malformed(p)),
        _ => {
            let usage = usage_from_openai(&v);
            Attempt::Done((v, usage))
        }
    }
}

/// The blocks of an Anthropic answer of one type.
fn blocks<'a>(v: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v.get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |b| b.get("type").and_then(Value::as_str) == Some(kind))
}

/// An Anthropic Messages answer as an OpenAI chat completion.
fn from_anthropic(v: &Value, model: &str) -> (Value, Usage) {
    let text: String = blocks(v, "text")
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let tool_calls: Vec<Value> = blocks(v, "tool_use")
        .map(|b| {
            json!({
                "id": b["id"], "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })
        })
        .collect();
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let usage = Usage::new(n("/usage/input_tokens"), n("/usage/output_tokens"));
    let id = v.get("id").and_then(Value::as_str).unwrap_or("msg");
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !tool_calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = json!(tool_calls);
    }
    let out = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": v.get("model").and_then(Value::as_str).unwrap_or(model),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(v.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage,
    });
    (out, usage)
}

/// Opens a streamed chat call; the head is checked before anything is sent
/// to the client, so a failing provider can still be replaced.
pub async fn chat_stream_open(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<reqwest::Response> {
    let (url, body) = match p.kind {
        ProviderKind::Openai => (
            format!("{}/chat/completions", p.base_url),
            openai_body(req, model, true),
        ),
        ProviderKind::Anthropic => (anthropic_url(&p.base_url), anthropic_body(req, model, true)),
        ProviderKind::Local => {
            return Attempt::Failed(ApiError::BadGateway(format!(
                "provider {} serves embeddings only",
                p.name
            )));
        }
    };
    match build(state, p, url, &body) {
        Ok(r) => send(state, ctx, p, r).await,
        Err(e) => Attempt::Failed(e),
    }
}

/// Embeddings from one provider, as float vectors plus usage.
pub async fn embeddings(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &EmbeddingsRequest,
    input: &EmbeddingInput,
) -> Attempt<(Vec<Vec<f32>>, Usage)> {
    match p.kind {
        ProviderKind::Local => Attempt::Done(embed_locally(req, input)),
        ProviderKind::Anthropic => Attempt::Failed(ApiError::BadGateway(format!(
            "provider {} has no embeddings API",
            p.name
        ))),
        ProviderKind::Openai => {
            let input = match input {
                EmbeddingInput::Tokens(ids) => ids,
                EmbeddingInput::Texts(_) => &req.input,
            };
            let mut body = json!({"model": model, "input": input, "encoding_format": "float"});
            if let Some(d) = req.dimensions {
                body["dimensions"] = json!(d);
            }
            if let Some(u) = &req.user {
                body["user"] = json!(u);
            }
            let url = format!("{}/embeddings", p.base_url);
            match call_json(state, ctx, p, url, &body).await {
                Attempt::Done(v) => {
                    vectors_from(&v).map_or_else(|| Attempt::Failed(malformed(p)), Attempt::Done)
                }
                Attempt::Failed(e) => Attempt::Failed(e),
                Attempt::Fatal(e) => Attempt::Fatal(e),
            }
        }
    }
}

/// The local model's vectors; token ids are embedded as words, so the same ids give the
/// same vector.
fn embed_locally(req: &EmbeddingsRequest, input: &EmbeddingInput) -> (Vec<Vec<f32>>, Usage) {
    let texts = match input {
        EmbeddingInput::Texts(texts) => texts.clone(),
        EmbeddingInput::Tokens(ids) => token_texts(ids),
    };
    let dims = req.dimensions.unwrap_or(384) as usize;
    let tokens: u64 = texts
        .iter()
        .map(|t| t.split_whitespace().count().max(1) as u64)
        .sum();
    let vectors = texts.iter().map(|t| local_embedding(t, dims)).collect();
    (vectors, Usage::new(tokens, 0))
}

/// The vectors of an OpenAI embeddings answer, in input order, and its usage.
fn vectors_from(v: &Value) -> Option<(Vec<Vec<f32>>, Usage)> {
    let data = v.get("data").and_then(Value::as_array)?;
    let mut vectors = vec![Vec::new(); data.len()];
    for (i, item) in data.iter().enumerate() {
        let idx = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(i, |x| x as usize);
        let emb = match item.get("embedding") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect(),
            Some(Value::String(s)) => decode_base64_f32(s).unwrap_or_default(),
            _ => Vec::new(),
        };
        if let Some(slot) = vectors.get_mut(idx) {
            *slot = emb;
        }
    }
    let pt = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some((vectors, Usage::new(pt, 0)))
}

/// One text per token list: the ids separated by spaces.
fn token_texts(ids: &Value) -> Vec<String> {
    let join = |list: &[Value]| {
        list.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match ids.as_array() {
        Some(lists) if lists.iter().all(Value::is_array) => lists
            .iter()
            .map(|l| join(l.as_array().map(Vec::as_slice).unwrap_or_default()))
            .collect(),
        Some(list) => vec![join(list)],
        None => Vec::new(),
    }
}

/// The local embedding model: signed feature hashing of lower-cased words and
/// character trigrams, L2-normalised. Deterministic and dependency-free;
/// similar texts get similar vectors.
pub fn local_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    let lower = text.to_lowercase();
    let mut add = |feature: &str, weight: f32| {
        let h = Sha256::digest(feature.as_bytes());
        let idx = u64::from_le_bytes(h[0..8].try_into().unwrap_or([0; 8])) as usize % dims;
        let sign = if h[8] & 1 == 0 { 1.0 } else { -1.0 };
        v[idx] += sign * weight;
    };
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add(&format!("w:{word}"), 1.0);
        let chars: Vec<char> = format!(" {word} ").chars().collect();
        for tri in chars.windows(3) {
            add(&format!("t:{}", tri.iter().collect::<String>()), 0.5);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

pub fn encode_base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_base64_f32(s: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(decode_base64_f32(&encode_base64_f32(&v)).unwrap(), v);
    }

    #[test]
    fn local_embeddings_are_normalised_and_similar_for_similar_text() {
        let a = local_embedding("the cat sat on the mat", 256);
        let b = local_embedding("the cat sat on a mat", 256);
        let c = local_embedding("quarterly revenue projections", 256);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-4);
        assert!(dot(&a, &b) > dot(&a, &c));
    }
}
