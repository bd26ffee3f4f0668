//! Relaying a provider's streamed answer to the client as OpenAI chunks: OpenAI-compatible
//! chunks pass through, Anthropic events are translated. Errors the provider reports in the
//! stream are replaced by the gateway's own; its key is scrubbed from every event.

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::providers::{Provider, ProviderKind};
use super::sse::{SseParser, data_event};
use super::types::Usage;
use super::upstream::{MAX_ANSWER_BYTES, finish_reason, scrub, usage_from_openai};

/// How a stream ended.
pub struct StreamEnd {
    pub usage: Usage,
    pub error: Option<String>,
}

pub type Tx = futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// What the client asked for, and what the relay knows before the first event.
pub struct StreamRequest {
    pub model: String,
    pub include_usage: bool,
    pub prompt_estimate: u64,
}

struct Relay<'a> {
    provider: &'a Provider,
    include_usage: bool,
    id: String,
    created: i64,
    model: String,
    usage: Usage,
    saw_usage: bool,
    completion_chars: u64,
    error: Option<String>,
    /// Anthropic content block index → OpenAI tool call index.
    tool_blocks: HashMap<u64, usize>,
}

/// Whether the stream goes on after an event.
#[derive(PartialEq)]
enum Flow {
    More,
    Over,
}

impl Relay<'_> {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        data_event(&c.to_string())
    }

    fn reported_error(&mut self) -> Flow {
        self.error = Some(format!(
            "provider {} reported an error in its stream",
            self.provider.name
        ));
        Flow::Over
    }

    fn on_event(&mut self, data: &str, out: &mut Vec<Bytes>) -> Flow {
        let data = scrub(data, self.provider);
        match self.provider.kind {
            ProviderKind::Anthropic => match serde_json::from_str::<Value>(&data) {
                Ok(v) => self.on_anthropic(&v, out),
                Err(_) => Flow::More,
            },
            _ => self.on_openai(&data, out),
        }
    }

    fn on_anthropic(&mut self, v: &Value, out: &mut Vec<Bytes>) -> Flow {
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                if let Some(m) = v.pointer("/message/model").and_then(Value::as_str) {
                    self.model = m.to_string();
                }
                self.usage.prompt_tokens = v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => self.on_block_start(v, out),
            "content_block_delta" => self.on_block_delta(v, out),
            "message_delta" => {
                if let Some(o) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.completion_tokens = o;
                    self.saw_usage = true;
                }
                let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                out.push(self.chunk(json!({}), Some(finish_reason(stop))));
            }
            "message_stop" => return Flow::Over,
            "error" => return self.reported_error(),
            _ => {}
        }
        Flow::More
    }

    fn on_block_start(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        let block = &v["content_block"];
        if block["type"] != "tool_use" {
            return;
        }
        let k = self.tool_blocks.len();
        self.tool_blocks.insert(v["index"].as_u64().unwrap_or(0), k);
        let delta = json!({"tool_calls": [{
            "index": k, "id": block["id"], "type": "function",
            "function": {"name": block["name"], "arguments": ""},
        }]});
        out.push(self.chunk(delta, None));
    }

    fn on_block_delta(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        if let Some(part) = v.pointer("/delta/partial_json").and_then(Value::as_str)
            && let Some(k) = self.tool_blocks.get(&v["index"].as_u64().unwrap_or(0))
        {
            self.completion_chars += part.len() as u64;
            let delta = json!({"tool_calls": [{"index": k, "function": {"arguments": part}}]});
            out.push(self.chunk(delta, None));
        }
        if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
            self.completion_chars += t.len() as u64;
            out.push(self.chunk(json!({"content": t}), None));
        }
    }

    fn on_openai(&mut self, data: &str, out: &mut Vec<Bytes>) -> Flow {
        if data == "[DONE]" {
            return Flow::Over;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return Flow::More;
        };
        if v.get("error").is_some() {
            return self.reported_error();
        }
        let is_usage_chunk = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| c.is_empty())
            && v.get("usage").is_some_and(|u| !u.is_null());
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage_from_openai(&json!({"usage": u}));
            self.saw_usage = true;
        }
        if let Some(t) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            self.completion_chars += t.len() as u64;
        }
        if is_usage_chunk && !self.include_usage {
            return Flow::More;
        }
        if !self.include_usage
            && let Some(o) = v.as_object_mut()
        {
            o.remove("usage");
        }
        out.push(data_event(&v.to_string()));
        Flow::More
    }

    /// The last events: an error, or the usage chunk when asked for and `[DONE]`.
    fn tail(&mut self, prompt_estimate: u64) -> Vec<Bytes> {
        if !self.saw_usage {
            // Providers that do not report usage on streams are estimated.
            if self.usage.prompt_tokens == 0 {
                self.usage.prompt_tokens = prompt_estimate;
            }
            self.usage.completion_tokens = self.completion_chars.div_ceil(4);
        }
        self.usage = Usage::new(self.usage.prompt_tokens, self.usage.completion_tokens);
        if let Some(e) = &self.error {
            let body = json!({"error": {"message": e, "type": "api_error", "param": null, "code": "upstream_error"}});
            return vec![data_event(&body.to_string())];
        }
        let mut out = Vec::new();
        if self.include_usage && (self.provider.kind == ProviderKind::Anthropic || !self.saw_usage)
        {
            let u = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": null, "choices": [], "usage": self.usage,
            });
            out.push(data_event(&u.to_string()));
        }
        out.push(data_event("[DONE]"));
        out
    }
}

async fn forward(tx: &mut Tx, chunks: Vec<Bytes>) -> Result<(), ()> {
    for c in chunks {
        futures::SinkExt::send(tx, Ok(c)).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Relays a streamed answer to the client through `tx`.
pub async fn relay_stream(
    provider: &Provider,
    resp: reqwest::Response,
    req: StreamRequest,
    mut tx: Tx,
) -> StreamEnd {
    let mut relay = Relay {
        provider,
        include_usage: req.include_usage,
        id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        created: chrono::Utc::now().timestamp(),
        model: req.model,
        usage: Usage::default(),
        saw_usage: false,
        completion_chars: 0,
        error: None,
        tool_blocks: HashMap::new(),
    };
    let mut parser = SseParser::default();
    let mut body = resp.bytes_stream();
    let disconnected = |usage| StreamEnd {
        usage,
        error: Some("client disconnected".into()),
    };
    loop {
        let (events, at_end) = match body.next().await {
            Some(Ok(bytes)) => (parser.push(&bytes), false),
            Some(Err(_)) => {
                relay.error = Some("the provider's stream broke off".into());
                break;
            }
            None => (parser.finish().into_iter().collect(), true),
        };
        if parser.buffered() > MAX_ANSWER_BYTES {
            relay.error = Some(format!(
                "provider {} sent a malformed stream",
                provider.name
            ));
            break;
        }
        let mut out = Vec::new();
        let flow = events
            .iter()
            .map(|ev| relay.on_event(&ev.data, &mut out))
            .find(|f| *f == Flow::Over);
        if forward(&mut tx, out).await.is_err() {
            return disconnected(relay.usage);
        }
        if at_end || flow.is_some() {
            break;
        }
    }
    let tail = relay.tail(req.prompt_estimate);
    if forward(&mut tx, tail).await.is_err() {
        return disconnected(relay.usage);
    }
    StreamEnd {
        usage: relay.usage,
        error: relay.error,
    }
}
