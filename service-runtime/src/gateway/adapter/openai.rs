//! The OpenAI-compatible protocol (OpenAI, vLLM, Ollama…). It is also the shape the gateway
//! answers in, so its chunk and completion types serve the other adapters' translations.
//! Requests and answers of these providers are passed on as they are (OpenAI fields the
//! gateway does not know included): what the gateway reads of them goes through typed views.

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::http::call_json;
use super::{Attempt, ChatAdapter, count, decode_base64_f32, opt_count};
use crate::gateway::providers::Provider;
use crate::gateway::relay::{Flow, Relay, Translate};
use crate::gateway::types::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};
use crate::platform::{ApiError, AppState, RequestContext};

pub struct OpenAi;

/// A chat request: the client's, for another model, asking for usage when streamed.
#[derive(Serialize)]
pub struct ChatBody<'a> {
    #[serde(flatten)]
    req: ChatRequestOut<'a>,
    model: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// The client's request less what the gateway sets itself.
#[derive(Serialize)]
struct ChatRequestOut<'a> {
    messages: &'a [crate::gateway::types::ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Usage as OpenAI reports it; the total is recomputed.
#[derive(Deserialize, Default)]
pub struct WireUsage {
    #[serde(default, deserialize_with = "count")]
    prompt_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage::new(u.prompt_tokens, u.completion_tokens)
    }
}

/// What the gateway reads of a completion: it has choices, and its usage.
#[derive(Deserialize)]
pub struct CompletionView {
    #[serde(rename = "choices")]
    _choices: Vec<IgnoredAny>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// The usage of a completion, whatever else it holds.
#[derive(Deserialize)]
pub struct UsageView {
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

impl ChatAdapter for OpenAi {
    type Request<'a> = ChatBody<'a>;
    type Response = Value;
    type Completion = Value;
    type Events = Events;
    const HEADERS: super::Headers = headers;

    fn url(base_url: &str) -> String {
        format!("{base_url}/chat/completions")
    }

    fn request<'a>(
        req: &'a ChatRequest,
        model: &'a str,
        stream: bool,
    ) -> Result<ChatBody<'a>, ApiError> {
        Ok(chat_body(req, model, stream))
    }

    fn answer(resp: Value, _model: &str) -> Option<(Value, Usage)> {
        let view = CompletionView::deserialize(&resp).ok()?;
        let usage = view.usage.map(Usage::from).unwrap_or_default();
        Some((resp, usage))
    }

    fn events() -> Events {
        Events::default()
    }
}

fn headers(rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

fn chat_body<'a>(req: &'a ChatRequest, model: &'a str, stream: bool) -> ChatBody<'a> {
    ChatBody {
        req: ChatRequestOut {
            messages: &req.messages,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
            max_completion_tokens: req.max_completion_tokens,
            n: req.n,
            stop: req.stop.as_ref(),
            user: req.user.as_deref(),
            extra: &req.extra,
        },
        model,
        stream,
        // Always ask for usage so streamed calls are metered; the usage chunk is passed on
        // only when the client asked for it.
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    }
}

/// A chunk of a streamed completion, as the gateway writes it.
#[derive(Serialize)]
pub struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: (),
    choices: Vec<ChunkChoice<'a>>,
    /// Absent, `null` (on every chunk when the client asked for usage), or the usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: ChunkDelta<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
pub struct ChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

impl<'a> Chunk<'a> {
    pub fn of_delta(
        id: &'a str,
        created: i64,
        model: &'a str,
        delta: ChunkDelta<'a>,
        finish_reason: Option<&'a str>,
    ) -> Self {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason,
        };
        Self {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            system_fingerprint: (),
            choices: vec![choice],
            usage: None,
        }
    }

    /// The chunk that ends a stream with its usage, and no choices.
    pub fn of_usage(id: &'a str, created: i64, model: &'a str, usage: &'a Usage) -> Self {
        Self {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            system_fingerprint: (),
            choices: Vec::new(),
            usage: Some(Some(usage)),
        }
    }

    pub fn with_usage(self, usage: Option<Option<&'a Usage>>) -> Self {
        Self { usage, ..self }
    }
}

/// A non-streamed completion, as the gateway writes it.
#[derive(Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: [Choice; 1],
    pub usage: Usage,
}

#[derive(Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: (),
    pub finish_reason: &'static str,
}

#[derive(Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: (),
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// What the gateway reads of a streamed chunk.
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, deserialize_with = "present")]
    error: bool,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<&'a str>,
}

/// Whether a field is there at all, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// Passes chunks on; drops usage the client did not ask for.
#[derive(Default)]
pub struct Events {
    usage_passed: bool,
}

impl Translate for Events {
    fn event(&mut self, data: &str, relay: &mut Relay) -> Flow {
        if data == "[DONE]" {
            return Flow::Over;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
            return Flow::More;
        };
        let Ok(view) = ChunkView::deserialize(&chunk) else {
            return Flow::More;
        };
        if view.error {
            return relay.reported_error();
        }
        let choices = view.choices.as_deref();
        let text = choices
            .and_then(|c| c.first())
            .and_then(|c| c.delta.as_ref())
            .and_then(|d| d.content);
        if let Some(t) = text {
            relay.generated(t);
        }
        let usage_only = choices.is_some_and(<[_]>::is_empty) && view.usage.is_some();
        if let Some(u) = view.usage {
            relay.set_usage(u.into());
            self.usage_passed = relay.include_usage();
        }
        if !relay.include_usage() {
            if usage_only {
                return Flow::More;
            }
            if let Some(o) = chunk.as_object_mut() {
                o.remove("usage");
            }
        }
        relay.pass(&chunk);
        Flow::More
    }

    fn usage_passed(&self) -> bool {
        self.usage_passed
    }
}

#[derive(Serialize)]
struct EmbeddingsBody<'a> {
    model: &'a str,
    input: &'a Value,
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default, deserialize_with = "opt_count")]
    index: Option<u64>,
    #[serde(default)]
    embedding: Vector,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
    Other(IgnoredAny),
}

impl Default for Vector {
    fn default() -> Self {
        Self::Other(IgnoredAny)
    }
}

/// Embeddings from an OpenAI-compatible provider, as float vectors plus usage.
pub async fn embeddings(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &EmbeddingsRequest,
    input: &EmbeddingInput,
) -> Attempt<(Vec<Vec<f32>>, Usage)> {
    let body = embeddings_body(model, req, input);
    let url = format!("{}/embeddings", p.base_url);
    let answer: EmbeddingsAnswer = call_json(state, ctx, p, url, headers, &body).await?;
    Ok(vectors(answer))
}

/// The request for `model`: token ids as integers, floats whatever the client asked for
/// (the gateway encodes them itself).
fn embeddings_body<'a>(
    model: &'a str,
    req: &'a EmbeddingsRequest,
    input: &'a EmbeddingInput,
) -> EmbeddingsBody<'a> {
    let input = match input {
        EmbeddingInput::Tokens(ids) => ids,
        EmbeddingInput::Texts(_) => &req.input,
    };
    EmbeddingsBody {
        model,
        input,
        encoding_format: "float",
        dimensions: req.dimensions,
        user: req.user.as_deref(),
    }
}

/// The vectors of an embeddings answer, in input order, and its usage.
fn vectors(answer: EmbeddingsAnswer) -> (Vec<Vec<f32>>, Usage) {
    let mut vectors = vec![Vec::new(); answer.data.len()];
    for (i, item) in answer.data.into_iter().enumerate() {
        let idx = item.index.map_or(i, |x| x as usize);
        let v = match item.embedding {
            Vector::Floats(v) => v,
            Vector::Base64(s) => decode_base64_f32(&s).unwrap_or_default(),
            Vector::Other(_) => Vec::new(),
        };
        if let Some(slot) = vectors.get_mut(idx) {
            *slot = v;
        }
    }
    let prompt = answer.usage.map_or(0, |u| u.prompt_tokens);
    (vectors, Usage::new(prompt, 0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::relay::{StreamRequest, replay};

    fn request(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_request_is_the_clients_for_the_routed_model() {
        let req = request(json!({
            "model": "main/gpt", "messages": [{"role": "user", "content": "hi", "name": "u"}],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "max_completion_tokens": 8, "n": 1,
            "stop": ["x"], "user": "me", "seed": 3, "tools": [{"type": "function"}],
            "stream_options": {"include_usage": false}
        }));
        let body = serde_json::to_value(OpenAi::request(&req, "gpt", false).unwrap()).unwrap();
        let mut expected = serde_json::to_value(&req).unwrap();
        expected["model"] = json!("gpt");
        expected.as_object_mut().unwrap().remove("stream_options");
        assert_eq!(body, expected);

        let streamed = serde_json::to_value(OpenAi::request(&req, "gpt", true).unwrap()).unwrap();
        expected["stream"] = json!(true);
        expected["stream_options"] = json!({"include_usage": true});
        assert_eq!(streamed, expected);
    }

    #[test]
    fn the_key_goes_as_a_bearer_token() {
        let rb = reqwest::Client::new().post("http://p.example/v1");
        let r = headers(rb, Some("sk-1")).build().unwrap();
        assert_eq!(r.headers()["authorization"], "Bearer sk-1");
        let r = headers(reqwest::Client::new().post("http://p.example/v1"), None)
            .build()
            .unwrap();
        assert!(r.headers().is_empty());
        assert_eq!(
            OpenAi::url("http://p.example/v1"),
            "http://p.example/v1/chat/completions"
        );
    }

    #[test]
    fn answers_pass_as_they_are_with_their_usage() {
        let answer = json!({"id": "c", "choices": [{"message": {"content": "x"}}], "extra": [1],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 99, "details": {}}});
        let (out, usage) = OpenAi::answer(answer.clone(), "m").unwrap();
        assert_eq!(out, answer);
        assert_eq!(usage, Usage::new(4, 2));
        let (_, usage) =
            OpenAi::answer(json!({"choices": [], "usage": {"prompt_tokens": -1}}), "m").unwrap();
        assert_eq!(usage, Usage::default());
        assert!(OpenAi::answer(json!({"choices": {}}), "m").is_none());
        assert!(OpenAi::answer(json!({"usage": {}}), "m").is_none());
    }

    fn stream(include_usage: bool) -> StreamRequest {
        StreamRequest {
            model: "m".into(),
            include_usage,
            prompt_estimate: 9,
        }
    }

    const CHUNK: &str =
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"Hello"}}],"usage":null}"#;
    const USAGE: &str =
        r#"{"id":"x","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3}}"#;

    #[test]
    fn chunks_pass_and_usage_goes_only_to_who_asked() {
        let (sent, end) = replay(
            &mut Events::default(),
            &[CHUNK, USAGE, "[DONE]"],
            &stream(false),
        );
        assert_eq!(sent.len(), 2);
        let first: Value = serde_json::from_str(&sent[0]).unwrap();
        assert_eq!(
            first,
            json!({"id": "x", "choices": [{"index": 0, "delta": {"content": "Hello"}}]})
        );
        assert_eq!(sent[1], "[DONE]");
        assert_eq!(end.usage, Usage::new(11, 3));
        assert!(end.error.is_none());

        let (sent, _) = replay(
            &mut Events::default(),
            &[CHUNK, USAGE, "[DONE]"],
            &stream(true),
        );
        assert_eq!(sent.len(), 3);
        let first: Value = serde_json::from_str(&sent[0]).unwrap();
        assert_eq!(first["usage"], Value::Null);
        let usage: Value = serde_json::from_str(&sent[1]).unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 11);
    }

    #[test]
    fn without_reported_usage_it_is_estimated_and_sent_when_asked() {
        let (sent, end) = replay(
            &mut Events::default(),
            &[CHUNK, "not json", "[DONE]"],
            &stream(true),
        );
        assert_eq!(end.usage, Usage::new(9, 2));
        let last: Value = serde_json::from_str(&sent[sent.len() - 2]).unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})
        );
        assert_eq!(sent.last().unwrap(), "[DONE]");
    }

    #[test]
    fn an_error_in_the_stream_ends_it_with_the_gateways_own() {
        let (sent, end) = replay(
            &mut Events::default(),
            &[CHUNK, r#"{"error": {"message": "secret detail"}}"#, CHUNK],
            &stream(false),
        );
        assert_eq!(sent.len(), 2);
        assert!(!sent[1].contains("secret detail"));
        let error: Value = serde_json::from_str(&sent[1]).unwrap();
        assert_eq!(error["error"]["code"], "upstream_error");
        assert_eq!(
            end.error.as_deref(),
            Some("provider p reported an error in its stream")
        );
    }

    #[test]
    fn embeddings_are_put_in_input_order_from_floats_or_base64() {
        let answer: EmbeddingsAnswer = serde_json::from_value(json!({
            "data": [
                {"index": 1, "embedding": super::super::encode_base64_f32(&[0.5, 1.0])},
                {"index": 0, "embedding": [1, 2.5]},
                {"index": 7, "embedding": [3]}
            ],
            "usage": {"prompt_tokens": 6, "total_tokens": 6}
        }))
        .unwrap();
        let (vectors, usage) = vectors(answer);
        assert_eq!(vectors, vec![vec![1.0, 2.5], vec![0.5, 1.0], vec![]]);
        assert_eq!(usage, Usage::new(6, 0));
    }

    #[test]
    fn the_embeddings_request_asks_for_floats() {
        let req: EmbeddingsRequest = serde_json::from_value(
            json!({"model": "e", "input": "hi", "dimensions": 4, "encoding_format": "base64"}),
        )
        .unwrap();
        let (input, _) = req.validate().unwrap();
        assert_eq!(
            serde_json::to_value(embeddings_body("emb", &req, &input)).unwrap(),
            json!({"model": "emb", "input": "hi", "encoding_format": "float", "dimensions": 4})
        );
        let req: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "e", "input": [1.0, 2], "user": "u"})).unwrap();
        let (input, _) = req.validate().unwrap();
        assert_eq!(
            serde_json::to_value(embeddings_body("emb", &req, &input)).unwrap(),
            json!({"model": "emb", "input": [1, 2], "encoding_format": "float", "user": "u"})
        );
    }
}
