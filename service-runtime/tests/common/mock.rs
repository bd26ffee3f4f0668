//! A local server that speaks the OpenAI and Anthropic protocols (plain and
//! streamed), standing in for hosted providers. Paths:
//!   /openai/v1/chat/completions, /openai/v1/embeddings
//!   /anthropic/v1/messages
//!   /broken/... answers 500, /slow/... answers after 3 s, /limited/... answers 429 (Retry-After: 0) once
//!   per model, then like /openai.
//!   /echo/... answers the status a model `echo-<status>` names (and /anthropic the same for such
//!   models) with the credentials it received in its body and headers, as a hostile or careless
//!   upstream might; `echo-200` and `echo-stream` put them in a successful answer.
//!   /redirect/... answers 307 to the same path under /openai; /huge-retry/... answers 503 with a
//!   Retry-After of 1e300 seconds. The model `overflow-usage` reports u64::MAX tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Mock {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    limited: Arc<Mutex<HashMap<String, u32>>>,
}

pub struct MockServer {
    pub base: String,
    pub mock: Mock,
}

impl MockServer {
    pub fn openai_url(&self) -> String {
        format!("{}/openai/v1", self.base)
    }
    pub fn anthropic_url(&self) -> String {
        format!("{}/anthropic", self.base)
    }
    pub fn broken_url(&self) -> String {
        format!("{}/broken/v1", self.base)
    }
    pub fn slow_url(&self) -> String {
        format!("{}/slow/v1", self.base)
    }
    pub fn limited_url(&self) -> String {
        format!("{}/limited/v1", self.base)
    }
    pub fn echo_url(&self) -> String {
        format!("{}/echo/v1", self.base)
    }
    pub fn redirect_url(&self) -> String {
        format!("{}/redirect/v1", self.base)
    }
    pub fn huge_retry_url(&self) -> String {
        format!("{}/huge-retry/v1", self.base)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.mock.seen.lock().unwrap().clone()
    }
    pub fn calls_to(&self, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .count()
    }
}

pub async fn start() -> MockServer {
    let mock = Mock::default();
    let app = Router::new()
        .route("/{flavor}/v1/chat/completions", post(chat))
        .route("/{flavor}/v1/embeddings", post(embeddings))
        .route("/anthropic/v1/messages", post(messages))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    MockServer {
        base: format!("http://{addr}"),
        mock,
    }
}

fn record(mock: &Mock, path: String, headers: &HeaderMap, body: &Value) {
    mock.seen.lock().unwrap().push(Seen {
        path,
        headers: headers.clone(),
        body: body.clone(),
    });
}

fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn sse(events: Vec<String>) -> Response {
    let body: String = events.concat();
    ([("content-type", "text/event-stream")], body).into_response()
}

/// What the upstream was sent that it should never be able to hand back.
fn credentials_seen(headers: &HeaderMap) -> String {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    format!("{} {}", h("authorization"), h("x-api-key"))
}

/// An answer with status `echo-<status>` naming, carrying the credentials it received.
fn echo(headers: &HeaderMap, model: &str) -> Option<Response> {
    let status: u16 = model.strip_prefix("echo-")?.parse().ok()?;
    if status < 300 {
        return None;
    }
    let seen = credentials_seen(headers);
    let body = json!({"error": {"message": format!("your credentials: {seen}"), "type": "echo"},
                      "type": "error"});
    let mut resp = (StatusCode::from_u16(status).ok()?, axum::Json(body)).into_response();
    for name in ["x-echo-credentials", "www-authenticate"] {
        resp.headers_mut()
            .insert(name, seen.trim().parse().unwrap());
    }
    Some(resp)
}

/// Common failure modes, by flavor.
async fn failure(mock: &Mock, flavor: &str, model: &str, headers: &HeaderMap) -> Option<Response> {
    match flavor {
        "echo" => echo(headers, model),
        "redirect" => Some(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", "/openai/v1/chat/completions")],
            )
                .into_response(),
        ),
        "huge-retry" => {
            Some((StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1e300")]).into_response())
        }
        "slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            None
        }
        "broken" => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": {"message": "boom", "type": "server_error"}})),
            )
                .into_response(),
        ),
        "limited" => {
            let mut l = mock.limited.lock().unwrap();
            let n = l.entry(model.to_string()).or_default();
            *n += 1;
            if *n == 1 {
                Some(
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "0")],
                        axum::Json(
                            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
                        ),
                    )
                        .into_response(),
                )
            } else {
                None
            }
        }
        _ => None,
    }
}

async fn chat(
    State(mock): State<Mock>,
    Path(flavor): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    record(
        &mock,
        format!("/{flavor}/v1/chat/completions"),
        &headers,
        &body,
    );
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if let Some(f) = failure(&mock, &flavor, &model, &headers).await {
        return f;
    }
    if flavor == "echo" {
        return echo_answer(&headers, &model, body["stream"] == true);
    }
    if model == "bad-request" {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "unsupported parameter", "type": "invalid_request_error"}}))).into_response();
    }
    let text = format!("echo: {}", last_user_text(&body));
    let created = 1_700_000_000;
    if body["stream"] == true {
        let id = "chatcmpl-mock";
        let include_usage = body["stream_options"]["include_usage"] == true;
        let chunk = |delta: Value, finish: Value| {
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": null,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
            if include_usage {
                c["usage"] = Value::Null;
            }
            format!("data: {c}\n\n")
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for piece in ["Hello", " from", " mock"] {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        if include_usage {
            let u = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": null, "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}});
            events.push(format!("data: {u}\n\n"));
        }
        events.push("data: [DONE]\n\n".into());
        return sse(events);
    }
    let usage = if model == "overflow-usage" {
        json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX, "total_tokens": u64::MAX})
    } else {
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    };
    axum::Json(json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage
    }))
    .into_response()
}

/// A successful answer that carries the credentials it received.
fn echo_answer(headers: &HeaderMap, model: &str, stream: bool) -> Response {
    let seen = credentials_seen(headers);
    if stream {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {"content": seen}, "finish_reason": null}]});
        let error = json!({"error": {"message": format!("stream failed for {seen}")}});
        return sse(vec![
            format!("data: {chunk}\n\n"),
            format!("data: {error}\n\n"),
        ]);
    }
    let mut resp = axum::Json(json!({
        "id": "chatcmpl-echo", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": seen}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
    .into_response();
    resp.headers_mut()
        .insert("x-echo-credentials", seen.trim().parse().unwrap());
    resp
}

async fn embeddings(
    State(mock): State<Mock>,
    Path(flavor): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    record(&mock, format!("/{flavor}/v1/embeddings"), &headers, &body);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if let Some(f) = failure(&mock, &flavor, &model, &headers).await {
        return f;
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.to_string()).collect(),
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": [s.len() as f32, 0.5, -0.25]}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": inputs.len() * 2, "total_tokens": inputs.len() * 2}}))
    .into_response()
}

async fn messages(
    State(mock): State<Mock>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    record(&mock, "/anthropic/v1/messages".into(), &headers, &body);
    if let Some(e) = echo(&headers, body["model"].as_str().unwrap_or_default()) {
        return e;
    }
    if headers.get("anthropic-version").is_none() || headers.get("x-api-key").is_none() {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "missing headers"}}))).into_response();
    }
    if body.get("max_tokens").is_none() {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: required"}}))).into_response();
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let text = format!("claude says: {}", last_user_text(&body));
    let wants_tool = body.get("tools").is_some();
    if wants_tool && body["stream"] == true {
        let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
        return sse(vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_tool", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": 30, "output_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Pune\"}"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ]);
    }
    if wants_tool {
        return axum::Json(json!({
            "id": "msg_tool", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Pune"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 12}
        }))
        .into_response();
    }
    if body["stream"] == true {
        let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
        let events = vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 21, "output_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev("ping", json!({"type": "ping"})),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ];
        return sse(events);
    }
    let _ = Body::empty();
    axum::Json(json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 6}
    }))
    .into_response()
}
