//! Talking to providers: OpenAI-compatible and Anthropic Messages, plain and
//! streamed, translated to and from the OpenAI shape; and the local
//! embedding model.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::providers::{Provider, ProviderKind};
use super::sse::{SseParser, data_event};
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

fn build(
    state: &AppState,
    p: &Provider,
    url: String,
    body: &Value,
) -> Result<reqwest::Request, ApiError> {
    let mut rb = state.http.inner().post(url).json(body);
    match p.kind {
        ProviderKind::Openai => {
            if let Some(k) = p.api_key(state) {
                rb = rb.bearer_auth(k);
            }
        }
        ProviderKind::Anthropic => {
            if let Some(k) = p.api_key(state) {
                rb = rb.header("x-api-key", k);
            }
            rb = rb.header("anthropic-version", ANTHROPIC_VERSION);
        }
        ProviderKind::Local => {}
    }
    rb.build().map_err(ApiError::internal)
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
    match resp.json().await {
        Ok(v) => Attempt::Done(v),
        Err(_) => Attempt::Failed(malformed(p)),
    }
}

/// The error for an answer that is not what the provider's protocol promises.
fn malformed(p: &Provider) -> ApiError {
    ApiError::BadGateway(format!("provider {} sent a malformed answer", p.name))
}

async fn send(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    req: reqwest::Request,
) -> Attempt<reqwest::Response> {
    let tenant = ctx.tenant_id.as_deref().unwrap_or_default();
    let policy = RetryPolicy::new(p.max_retries.max(0) as u32, false);
    let deadline = Some(Duration::from_millis(p.timeout_ms.max(1) as u64));
    match state
        .http
        .send(
            &breaker_key(tenant, p),
            p.kind.as_str(),
            req,
            ctx,
            policy,
            deadline,
        )
        .await
    {
        Ok(resp) if resp.status().is_success() => Attempt::Done(resp),
        Ok(resp) => {
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let msg: String = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .chars()
                .take(500)
                .collect();
            let detail = format!("provider {} answered {}: {msg}", p.name, status.as_u16());
            match status.as_u16() {
                400 | 413 | 422 => Attempt::Fatal(ApiError::BadRequest(detail)),
                429 => Attempt::Failed(ApiError::TooManyRequests {
                    detail,
                    retry_after_secs: retry_after,
                }),
                _ => Attempt::Failed(ApiError::BadGateway(detail)),
            }
        }
        Err(UpstreamError::Timeout { .. }) => Attempt::Failed(ApiError::GatewayTimeout(format!(
            "provider {} did not answer in time",
            p.name
        ))),
        Err(e @ UpstreamError::CircuitOpen(_)) => Attempt::Failed(ApiError::Unavailable(
            e.to_string().replace(&breaker_key(tenant, p), &p.name),
        )),
        Err(e) => Attempt::Failed(ApiError::BadGateway(format!(
            "provider {} failed: {}",
            p.name,
            e.to_string().replace(&breaker_key(tenant, p), &p.name)
        ))),
    }
}

/// The body for an OpenAI-compatible provider.
fn openai_body(req: &ChatRequest, model: &str, stream: bool) -> Value {
    let mut body = serde_json::to_value(req).unwrap_or(Value::Null);
    body["model"] = json!(model);
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

fn finish_reason(anthropic_stop: Option<&str>) -> &'static str {
    match anthropic_stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

fn usage_from_openai(v: &Value) -> Usage {
    let p = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let c = v
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
    }
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
        ProviderKind::Anthropic => {
            let text: String = v
                .get("content")
                .and_then(Value::as_array)
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("")
                })
                .unwrap_or_default();
            let tool_calls: Vec<Value> = v
                .get("content")
                .and_then(Value::as_array)
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                        .map(|b| {
                            json!({
                                "id": b["id"], "type": "function",
                                "function": {"name": b["name"], "arguments": b["input"].to_string()},
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let pt = v
                .pointer("/usage/input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let ct = v
                .pointer("/usage/output_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let usage = Usage {
                prompt_tokens: pt,
                completion_tokens: ct,
                total_tokens: pt + ct,
            };
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
            Attempt::Done((out, usage))
        }
        _ => {
            if v.get("choices").and_then(Value::as_array).is_none() {
                return Attempt::Failed(malformed(p));
            }
            let usage = usage_from_openai(&v);
            Attempt::Done((v, usage))
        }
    }
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

/// How a stream ended.
pub struct StreamEnd {
    pub usage: Usage,
    pub error: Option<String>,
}

/// Relays a streamed answer to the client as OpenAI chunks through `tx`.
pub async fn relay_stream(
    kind: ProviderKind,
    resp: reqwest::Response,
    model: &str,
    include_usage: bool,
    tx: futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
    prompt_estimate: u64,
) -> StreamEnd {
    let mut tx = tx;
    let mut parser = SseParser::default();
    let mut body = resp.bytes_stream();
    let mut usage = Usage::default();
    let mut saw_usage = false;
    let mut completion_chars = 0u64;
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = chrono::Utc::now().timestamp();
    let mut anthropic_model = model.to_string();
    let mut error = None;
    let mut finished = false;
    // Anthropic content block index → OpenAI tool call index.
    let mut tool_blocks: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();

    macro_rules! send {
        ($bytes:expr) => {
            if futures::SinkExt::send(&mut tx, Ok($bytes)).await.is_err() {
                return StreamEnd {
                    usage,
                    error: Some("client disconnected".into()),
                };
            }
        };
    }
    let chunk = |model: &str, delta: Value, finish: Option<&str>, include_usage: bool| -> Value {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };

    'outer: loop {
        let next = body.next().await;
        let events = match next {
            Some(Ok(bytes)) => parser.push(&bytes),
            Some(Err(_)) => {
                error = Some("the provider's stream broke off".into());
                break;
            }
            None => {
                let mut v = Vec::new();
                if let Some(e) = parser.finish() {
                    v.push(e);
                }
                finished = true;
                v
            }
        };
        for ev in events {
            match kind {
                ProviderKind::Anthropic => {
                    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                        continue;
                    };
                    match v.get("type").and_then(Value::as_str).unwrap_or_default() {
                        "message_start" => {
                            if let Some(m) = v.pointer("/message/model").and_then(Value::as_str) {
                                anthropic_model = m.to_string();
                            }
                            usage.prompt_tokens = v
                                .pointer("/message/usage/input_tokens")
                                .and_then(Value::as_u64)
                                .unwrap_or(0);
                            let c = chunk(
                                &anthropic_model,
                                json!({"role": "assistant", "content": ""}),
                                None,
                                include_usage,
                            );
                            send!(data_event(&c.to_string()));
                        }
                        "content_block_start" => {
                            let block = &v["content_block"];
                            if block["type"] == "tool_use" {
                                let k = tool_blocks.len();
                                tool_blocks.insert(v["index"].as_u64().unwrap_or(0), k);
                                let delta = json!({"tool_calls": [{
                                    "index": k, "id": block["id"], "type": "function",
                                    "function": {"name": block["name"], "arguments": ""},
                                }]});
                                let c = chunk(&anthropic_model, delta, None, include_usage);
                                send!(data_event(&c.to_string()));
                            }
                        }
                        "content_block_delta" => {
                            if let Some(part) =
                                v.pointer("/delta/partial_json").and_then(Value::as_str)
                                && let Some(k) = tool_blocks.get(&v["index"].as_u64().unwrap_or(0))
                            {
                                completion_chars += part.len() as u64;
                                let delta = json!({"tool_calls": [{"index": k, "function": {"arguments": part}}]});
                                let c = chunk(&anthropic_model, delta, None, include_usage);
                                send!(data_event(&c.to_string()));
                            }
                            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                                completion_chars += t.len() as u64;
                                let c = chunk(
                                    &anthropic_model,
                                    json!({"content": t}),
                                    None,
                                    include_usage,
                                );
                                send!(data_event(&c.to_string()));
                            }
                        }
                        "message_delta" => {
                            if let Some(o) =
                                v.pointer("/usage/output_tokens").and_then(Value::as_u64)
                            {
                                usage.completion_tokens = o;
                                saw_usage = true;
                            }
                            let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                            let c = chunk(
                                &anthropic_model,
                                json!({}),
                                Some(finish_reason(stop)),
                                include_usage,
                            );
                            send!(data_event(&c.to_string()));
                        }
                        "message_stop" => {
                            finished = true;
                            break 'outer;
                        }
                        "error" => {
                            error = Some(
                                v.pointer("/error/message")
                                    .and_then(Value::as_str)
                                    .unwrap_or("provider error")
                                    .into(),
                            );
                            break 'outer;
                        }
                        _ => {}
                    }
                }
                _ => {
                    if ev.data == "[DONE]" {
                        finished = true;
                        break 'outer;
                    }
                    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                        continue;
                    };
                    if v.get("error").is_some() {
                        error = Some(
                            v.pointer("/error/message")
                                .and_then(Value::as_str)
                                .unwrap_or("provider error")
                                .into(),
                        );
                        break 'outer;
                    }
                    let is_usage_chunk = v
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(|c| c.is_empty())
                        && v.get("usage").is_some_and(|u| !u.is_null());
                    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                        usage = usage_from_openai(&json!({"usage": u}));
                        saw_usage = true;
                    }
                    if let Some(t) = v
                        .pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                    {
                        completion_chars += t.len() as u64;
                    }
                    if is_usage_chunk && !include_usage {
                        continue;
                    }
                    let mut v = v;
                    if !include_usage && let Some(o) = v.as_object_mut() {
                        o.remove("usage");
                    }
                    send!(data_event(&v.to_string()));
                }
            }
        }
        if finished {
            break;
        }
    }
    if !saw_usage {
        // Providers that do not report usage on streams are estimated.
        if usage.prompt_tokens == 0 {
            usage.prompt_tokens = prompt_estimate;
        }
        usage.completion_tokens = completion_chars.div_ceil(4);
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    if let Some(e) = &error {
        let body = json!({"error": {"message": e, "type": "api_error", "param": null, "code": "upstream_error"}});
        send!(data_event(&body.to_string()));
    } else {
        if !finished {
            error = Some("the provider's stream ended early".into());
        }
        if include_usage && (kind == ProviderKind::Anthropic || !saw_usage) {
            let u = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": anthropic_model,
                "system_fingerprint": null, "choices": [], "usage": usage,
            });
            send!(data_event(&u.to_string()));
        }
        send!(data_event("[DONE]"));
    }
    StreamEnd { usage, error }
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
        ProviderKind::Local => {
            let EmbeddingInput::Texts(texts) = input else {
                return Attempt::Fatal(ApiError::Validation(
                    "input: the local embedding model takes text, not token arrays".into(),
                ));
            };
            let dims = req.dimensions.unwrap_or(384) as usize;
            let tokens: u64 = texts
                .iter()
                .map(|t| t.split_whitespace().count().max(1) as u64)
                .sum();
            let vectors = texts.iter().map(|t| local_embedding(t, dims)).collect();
            Attempt::Done((
                vectors,
                Usage {
                    prompt_tokens: tokens,
                    completion_tokens: 0,
                    total_tokens: tokens,
                },
            ))
        }
        ProviderKind::Anthropic => Attempt::Failed(ApiError::BadGateway(format!(
            "provider {} has no embeddings API",
            p.name
        ))),
        ProviderKind::Openai => {
            let mut body = json!({"model": model, "input": req.input, "encoding_format": "float"});
            if let Some(d) = req.dimensions {
                body["dimensions"] = json!(d);
            }
            if let Some(u) = &req.user {
                body["user"] = json!(u);
            }
            let url = format!("{}/embeddings", p.base_url);
            let v = match call_json(state, ctx, p, url, &body).await {
                Attempt::Done(v) => v,
                Attempt::Failed(e) => return Attempt::Failed(e),
                Attempt::Fatal(e) => return Attempt::Fatal(e),
            };
            let Some(data) = v.get("data").and_then(Value::as_array) else {
                return Attempt::Failed(malformed(p));
            };
            let mut vectors = vec![Vec::new(); data.len()];
            for (i, item) in data.iter().enumerate() {
                let idx = item
                    .get("index")
                    .and_then(Value::as_u64)
                    .map(|x| x as usize)
                    .unwrap_or(i);
                let emb = match item.get("embedding") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_f64)
                        .map(|x| x as f32)
                        .collect(),
                    Some(Value::String(s)) => decode_base64_f32(s).unwrap_or_default(),
                    _ => Vec::new(),
                };
                if idx < vectors.len() {
                    vectors[idx] = emb;
                }
            }
            let pt = v
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            Attempt::Done((
                vectors,
                Usage {
                    prompt_tokens: pt,
                    completion_tokens: 0,
                    total_tokens: pt,
                },
            ))
        }
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
