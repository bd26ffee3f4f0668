//! Anthropic's Messages API: OpenAI requests become Messages requests (system turns lifted
//! out, tool calls and results as blocks), and answers and stream events become OpenAI
//! completions and chunks.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::openai::{
    AssistantMessage, Choice, ChunkDelta, Completion, FunctionCall, FunctionDelta, ToolCall,
    ToolCallDelta,
};
use super::{ChatAdapter, count, opt_count};
use crate::gateway::relay::{Flow, Relay, Translate};
use crate::gateway::types::{ChatMessage, ChatRequest, Usage};
use crate::platform::ApiError;

const VERSION: &str = "2023-06-01";

pub struct Anthropic;

#[derive(Serialize)]
pub struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Serialize, Debug, PartialEq)]
struct Message<'a> {
    role: &'static str,
    content: Content<'a>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(untagged)]
enum Content<'a> {
    Text(String),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: String,
    },
    ToolUse {
        id: Option<&'a str>,
        name: Option<&'a str>,
        input: Value,
    },
    ToolResult {
        tool_use_id: Option<&'a str>,
        content: String,
    },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: Option<&'a str>,
    description: Option<&'a str>,
    input_schema: Value,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolChoice<'a> {
    Auto,
    Any,
    Tool { name: &'a str },
}

/// A tool as OpenAI clients declare it.
#[derive(Deserialize)]
struct ClientTool<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    function: Option<ClientFunction<'a>>,
}

#[derive(Deserialize, Default)]
struct ClientFunction<'a> {
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    description: Option<&'a str>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// A `tool_choice` as OpenAI clients give it.
#[derive(Deserialize)]
#[serde(untagged)]
enum ClientToolChoice<'a> {
    Mode(&'a str),
    Function {
        #[serde(default, borrow)]
        function: Option<NamedFunction<'a>>,
    },
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct NamedFunction<'a> {
    #[serde(default, borrow)]
    name: Option<&'a str>,
}

/// A tool call of an assistant turn, as OpenAI clients send it back.
#[derive(Deserialize)]
struct ClientToolCall<'a> {
    #[serde(default, borrow)]
    id: Option<&'a str>,
    #[serde(default, borrow)]
    function: Option<ClientFunctionCall<'a>>,
}

#[derive(Deserialize)]
struct ClientFunctionCall<'a> {
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    arguments: Option<&'a str>,
}

/// A field of the client's request the OpenAI types leave untyped, read as `T`; absent
/// when it is not there or not an array where one is expected.
fn client_field<'a, T: Deserialize<'a>>(
    extra: &'a Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<T>, ApiError> {
    match extra.get(key) {
        None => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(format!("{}: {e}", path()))),
    }
}

fn array_field<'a, T: Deserialize<'a>>(
    extra: &'a Map<String, Value>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Vec<T>, ApiError> {
    match extra.get(key) {
        Some(Value::Array(_)) => Ok(client_field(extra, key, path)?.unwrap_or_default()),
        _ => Ok(Vec::new()),
    }
}

impl ChatAdapter for Anthropic {
    type Request<'a> = MessagesRequest<'a>;
    type Response = MessagesResponse;
    type Completion = Completion;
    type Events = Events;
    const HEADERS: super::Headers = headers;

    fn url(base: &str) -> String {
        if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        }
    }

    fn request<'a>(
        req: &'a ChatRequest,
        model: &'a str,
        stream: bool,
    ) -> Result<MessagesRequest<'a>, ApiError> {
        messages_request(req, model, stream)
    }

    fn answer(resp: MessagesResponse, model: &str) -> Option<(Completion, Usage)> {
        Some(completion(resp, model))
    }

    fn events() -> Events {
        Events::default()
    }
}

fn headers(rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    let rb = match key {
        Some(k) => rb.header("x-api-key", k),
        None => rb,
    };
    rb.header("anthropic-version", VERSION)
}

fn messages_request<'a>(
    req: &'a ChatRequest,
    model: &'a str,
    stream: bool,
) -> Result<MessagesRequest<'a>, ApiError> {
    let system: Vec<String> = req
        .messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(ChatMessage::text)
        .collect();
    let (tools, tool_choice) = tools(&req.extra)?;
    Ok(MessagesRequest {
        model,
        max_tokens: req.max_completion_tokens.or(req.max_tokens).unwrap_or(1024),
        messages: messages(&req.messages)?,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        temperature: req.temperature.map(|t| t.min(1.0)),
        top_p: req.top_p,
        stop_sequences: match &req.stop {
            Some(Value::String(s)) => Some(vec![s.as_str()]),
            Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect()),
            _ => None,
        },
        tools,
        tool_choice,
        stream,
    })
}

/// The client's function tools and its choice among them; none when it chose none.
#[allow(clippy::type_complexity)]
fn tools<'a>(
    extra: &'a Map<String, Value>,
) -> Result<(Option<Vec<Tool<'a>>>, Option<ToolChoice<'a>>), ApiError> {
    let declared: Vec<ClientTool> = array_field(extra, "tools", || "tools".into())?;
    let tools: Vec<Tool> = declared
        .into_iter()
        .filter(|t| t.kind.unwrap_or("function") == "function")
        .map(|t| {
            let f = t.function.unwrap_or_default();
            Tool {
                name: f.name,
                description: f.description,
                input_schema: f
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            }
        })
        .collect();
    let choice = match client_field(extra, "tool_choice", || "tool_choice".into())? {
        Some(ClientToolChoice::Mode("none")) => None,
        Some(ClientToolChoice::Mode("required")) => Some(ToolChoice::Any),
        Some(ClientToolChoice::Function { function }) => function
            .and_then(|f| f.name)
            .map(|name| ToolChoice::Tool { name }),
        _ => Some(ToolChoice::Auto),
    };
    match choice {
        Some(choice) if !tools.is_empty() => Ok((Some(tools), Some(choice))),
        _ => Ok((None, None)),
    }
}

/// The blocks of one OpenAI message, and the Anthropic role they belong to; `None` for
/// system turns.
fn blocks(i: usize, m: &ChatMessage) -> Result<Option<(&'static str, Vec<Block<'_>>)>, ApiError> {
    let turn = match m.role.as_str() {
        "system" | "developer" => return Ok(None),
        "assistant" => {
            let mut blocks = Vec::new();
            let text = m.text();
            if !text.is_empty() {
                blocks.push(Block::Text { text });
            }
            let calls: Vec<ClientToolCall> = array_field(&m.extra, "tool_calls", || {
                format!("messages[{i}].tool_calls")
            })?;
            blocks.extend(calls.into_iter().map(tool_use));
            ("assistant", blocks)
        }
        "tool" => {
            let id = client_field(&m.extra, "tool_call_id", || {
                format!("messages[{i}].tool_call_id")
            })?;
            let content = m.text();
            (
                "user",
                vec![Block::ToolResult {
                    tool_use_id: id,
                    content,
                }],
            )
        }
        _ => ("user", vec![Block::Text { text: m.text() }]),
    };
    Ok(Some(turn))
}

fn tool_use(call: ClientToolCall<'_>) -> Block<'_> {
    let (name, args) = call
        .function
        .map_or((None, None), |f| (f.name, f.arguments));
    let input =
        serde_json::from_str(args.unwrap_or("{}")).unwrap_or_else(|_| Value::Object(Map::new()));
    Block::ToolUse {
        id: call.id,
        name,
        input,
    }
}

/// OpenAI messages as Anthropic ones: tool calls become `tool_use` blocks, tool results
/// `tool_result` blocks in a user turn, and consecutive turns of one role are merged.
fn messages(list: &[ChatMessage]) -> Result<Vec<Message<'_>>, ApiError> {
    let mut turns: Vec<(&'static str, Vec<Block>)> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let Some((role, blocks)) = blocks(i, m)? else {
            continue;
        };
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns.into_iter().map(message).collect())
}

/// A turn's message; a lone text block is sent as a plain string.
fn message<'a>((role, mut blocks): (&'static str, Vec<Block<'a>>)) -> Message<'a> {
    let content = match blocks.as_mut_slice() {
        [Block::Text { text }] => Content::Text(std::mem::take(text)),
        _ => Content::Blocks(blocks),
    };
    Message { role, content }
}

pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        _ => "stop",
    }
}

/// A Messages answer.
#[derive(Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default, deserialize_with = "count")]
    input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    output_tokens: u64,
}

/// A Messages answer as an OpenAI chat completion.
fn completion(resp: MessagesResponse, model: &str) -> (Completion, Usage) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.content {
        match block {
            ContentBlock::Text { text: t } => text.push_str(&t),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function",
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ContentBlock::Other => {}
        }
    }
    let u = resp.usage.unwrap_or_default();
    let usage = Usage::new(u.input_tokens, u.output_tokens);
    let message = AssistantMessage {
        role: "assistant",
        content: (tool_calls.is_empty() || !text.is_empty()).then_some(text),
        refusal: (),
        tool_calls,
    };
    let completion = Completion {
        id: format!("chatcmpl-{}", resp.id.as_deref().unwrap_or("msg")),
        object: "chat.completion",
        created: chrono::Utc::now().timestamp(),
        model: resp.model.unwrap_or_else(|| model.to_string()),
        choices: [Choice {
            index: 0,
            message,
            logprobs: (),
            finish_reason: finish_reason(resp.stop_reason.as_deref()),
        }],
        usage: usage.clone(),
    };
    (completion, usage)
}

/// An event of a streamed Messages answer.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        #[serde(default)]
        message: StartMessage,
    },
    ContentBlockStart {
        #[serde(default, deserialize_with = "count")]
        index: u64,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        #[serde(default, deserialize_with = "count")]
        index: u64,
        #[serde(default)]
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<DeltaUsage>,
    },
    MessageStop,
    Error,
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct StartMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
struct BlockDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
}

#[derive(Deserialize, Default)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct DeltaUsage {
    #[serde(default, deserialize_with = "opt_count")]
    output_tokens: Option<u64>,
}

/// Translates Messages stream events into OpenAI chunks.
#[derive(Default)]
pub struct Events {
    /// Content block index → OpenAI tool call index.
    tool_blocks: HashMap<u64, usize>,
}

impl Translate for Events {
    fn event(&mut self, data: &str, relay: &mut Relay) -> Flow {
        let Ok(event) = serde_json::from_str::<StreamEvent>(data) else {
            return Flow::More;
        };
        match event {
            StreamEvent::MessageStart { message } => {
                if let Some(m) = &message.model {
                    relay.set_model(m);
                }
                relay.set_prompt_tokens(message.usage.map_or(0, |u| u.input_tokens));
                let delta = ChunkDelta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..ChunkDelta::default()
                };
                relay.chunk(delta, None);
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block: ContentBlock::ToolUse { id, name, .. },
            } => self.on_tool_start(index, &id, &name, relay),
            StreamEvent::ContentBlockStart { .. } => {}
            StreamEvent::ContentBlockDelta { index, delta } => self.on_delta(index, delta, relay),
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(n) = usage.and_then(|u| u.output_tokens) {
                    relay.set_completion_tokens(n);
                }
                let finish = finish_reason(delta.stop_reason.as_deref());
                relay.chunk(ChunkDelta::default(), Some(finish));
            }
            StreamEvent::MessageStop => return Flow::Over,
            StreamEvent::Error => return relay.reported_error(),
            StreamEvent::Other => {}
        }
        Flow::More
    }

    fn usage_passed(&self) -> bool {
        false
    }
}

impl Events {
    fn on_tool_start(&mut self, index: u64, id: &str, name: &str, relay: &mut Relay) {
        let k = self.tool_blocks.len();
        self.tool_blocks.insert(index, k);
        let call = ToolCallDelta {
            index: k,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments: "",
            },
        };
        let delta = ChunkDelta {
            tool_calls: Some([call]),
            ..ChunkDelta::default()
        };
        relay.chunk(delta, None);
    }

    fn on_delta(&mut self, index: u64, delta: BlockDelta, relay: &mut Relay) {
        if let Some(part) = &delta.partial_json
            && let Some(&k) = self.tool_blocks.get(&index)
        {
            relay.generated(part);
            let call = ToolCallDelta {
                index: k,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments: part,
                },
            };
            let delta = ChunkDelta {
                tool_calls: Some([call]),
                ..ChunkDelta::default()
            };
            relay.chunk(delta, None);
        }
        if let Some(t) = &delta.text {
            relay.generated(t);
            let delta = ChunkDelta {
                content: Some(t),
                ..ChunkDelta::default()
            };
            relay.chunk(delta, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::relay::{StreamRequest, replay};

    fn body(v: Value) -> Value {
        let req: ChatRequest = serde_json::from_value(v).unwrap();
        serde_json::to_value(Anthropic::request(&req, "claude", false).unwrap()).unwrap()
    }

    #[test]
    fn system_turns_are_lifted_and_sampling_mapped() {
        let sent = body(json!({"model": "c", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": "there"}
        ], "temperature": 1.7, "top_p": 0.5, "max_tokens": 9, "stop": "END"}));
        assert_eq!(
            sent,
            json!({"model": "claude", "max_tokens": 9, "system": "be brief\n\nand kind",
                "temperature": 1.0, "top_p": 0.5, "stop_sequences": ["END"],
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]}]})
        );
        let sent = body(
            json!({"model": "c", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 9, "max_completion_tokens": 5, "stop": ["a", "b"]}),
        );
        assert_eq!(sent["max_tokens"], 5);
        assert_eq!(sent["stop_sequences"], json!(["a", "b"]));
        assert_eq!(sent["messages"], json!([{"role": "user", "content": "x"}]));
        let sent = body(json!({"model": "c", "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(sent["max_tokens"], 1024);
        assert!(sent.get("system").is_none() && sent.get("stream").is_none());
    }

    #[test]
    fn tool_calls_and_results_become_blocks() {
        let sent = body(json!({"model": "c", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Pune\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "w", "arguments": "not json"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "31 C"}
        ]}));
        assert_eq!(
            sent["messages"],
            json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Pune"}},
                    {"type": "tool_use", "id": "t2", "name": "w", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "31 C"}]}
            ])
        );
        let req: ChatRequest = serde_json::from_value(json!({"model": "c", "messages": [
            {"role": "assistant", "tool_calls": [{"id": 5}]}]}))
        .unwrap();
        let err = Anthropic::request(&req, "claude", false).err().unwrap();
        assert!(matches!(err, ApiError::BadRequest(m) if m.starts_with("messages[0].tool_calls")));
    }

    #[test]
    fn function_tools_and_the_choice_among_them_are_mapped() {
        let tools = json!([
            {"type": "function", "function": {"name": "w", "description": "Weather",
                "parameters": {"type": "object", "required": ["city"]}}},
            {"type": "function", "function": {"name": "bare"}},
            {"type": "retrieval"}
        ]);
        let with = |choice: Value| {
            let mut req = json!({"model": "c", "messages": [{"role": "user", "content": "x"}], "tools": tools});
            if !choice.is_null() {
                req["tool_choice"] = choice;
            }
            body(req)
        };
        let sent = with(Value::Null);
        assert_eq!(
            sent["tools"],
            json!([
                {"name": "w", "description": "Weather", "input_schema": {"type": "object", "required": ["city"]}},
                {"name": "bare", "description": null, "input_schema": {"type": "object"}}
            ])
        );
        assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            with(json!("required"))["tool_choice"],
            json!({"type": "any"})
        );
        assert_eq!(with(json!("auto"))["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "w"}}))["tool_choice"],
            json!({"type": "tool", "name": "w"})
        );
        let none = with(json!("none"));
        assert!(none.get("tools").is_none() && none.get("tool_choice").is_none());
    }

    #[test]
    fn the_key_and_the_version_go_in_headers() {
        let rb = reqwest::Client::new().post("http://a.example/v1/messages");
        let r = headers(rb, Some("k-1")).build().unwrap();
        assert_eq!(r.headers()["x-api-key"], "k-1");
        assert_eq!(r.headers()["anthropic-version"], VERSION);
        assert!(r.headers().get("authorization").is_none());
        assert_eq!(
            Anthropic::url("http://a.example"),
            "http://a.example/v1/messages"
        );
        assert_eq!(
            Anthropic::url("http://a.example/v1"),
            "http://a.example/v1/messages"
        );
    }

    fn answer(v: Value) -> Value {
        let resp: MessagesResponse = serde_json::from_value(v).unwrap();
        let (completion, usage) = Anthropic::answer(resp, "asked").unwrap();
        let mut out = serde_json::to_value(completion).unwrap();
        assert_eq!(out["usage"], serde_json::to_value(usage).unwrap());
        out.as_object_mut().unwrap().remove("created");
        out
    }

    #[test]
    fn answers_become_openai_completions() {
        let out = answer(
            json!({"id": "msg_1", "model": "claude-x", "stop_reason": "max_tokens",
            "content": [{"type": "text", "text": "Hel"}, {"type": "thinking"}, {"type": "text", "text": "lo"}],
            "usage": {"input_tokens": 3, "output_tokens": 4}}),
        );
        assert_eq!(
            out,
            json!({"id": "chatcmpl-msg_1", "object": "chat.completion", "model": "claude-x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null},
                    "logprobs": null, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        );
        let out = answer(
            json!({"content": [{"type": "tool_use", "id": "t", "name": "w", "input": {"a": 1}}],
            "stop_reason": "tool_use"}),
        );
        assert_eq!(out["id"], "chatcmpl-msg");
        assert_eq!(out["model"], "asked");
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "t", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}])
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["total_tokens"], 0);
    }

    fn stream(include_usage: bool) -> StreamRequest {
        StreamRequest {
            model: "asked".into(),
            include_usage,
            prompt_estimate: 50,
        }
    }

    const EVENTS: [&str; 9] = [
        r#"{"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 30, "output_tokens": 1}}}"#,
        r#"{"type": "ping"}"#,
        r#"{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}"#,
        r#"{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}"#,
        r#"{"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "w", "input": {}}}"#,
        r#"{"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}"#,
        r#"{"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}"#,
        r#"{"type": "message_stop"}"#,
        r#"{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "after the end"}}"#,
    ];

    fn chunks(sent: &[String]) -> Vec<Value> {
        sent.iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect()
    }

    #[test]
    fn stream_events_become_openai_chunks() {
        let (sent, end) = replay(&mut Events::default(), &EVENTS, &stream(false));
        assert_eq!(sent.last().unwrap(), "[DONE]");
        let chunks = chunks(&sent[..sent.len() - 1]);
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "Hi"}),
                &json!({"tool_calls": [{"index": 0, "id": "t", "type": "function",
                    "function": {"name": "w", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        for c in &chunks {
            assert_eq!(c["model"], "claude-x");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert!(c.get("usage").is_none());
        }
        assert_eq!(end.usage, Usage::new(30, 12));
        assert!(end.error.is_none());
    }

    #[test]
    fn usage_is_sent_at_the_end_when_asked() {
        let (sent, _) = replay(&mut Events::default(), &EVENTS, &stream(true));
        let chunks = chunks(&sent[..sent.len() - 1]);
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c["usage"].is_null())
        );
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42})
        );
    }

    #[test]
    fn an_error_event_ends_the_stream_with_the_gateways_error() {
        let events = [
            EVENTS[0],
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "x"}}"#,
            EVENTS[3],
        ];
        let (sent, end) = replay(&mut Events::default(), &events, &stream(true));
        assert_eq!(sent.len(), 2);
        assert_eq!(chunks(&sent[1..])[0]["error"]["type"], "api_error");
        assert!(end.error.is_some());
        // Without a reported completion count, it is estimated from the text.
        assert_eq!(end.usage, Usage::new(30, 0));
    }
}
