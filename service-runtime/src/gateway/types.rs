//! Request and response bodies of the OpenAI-compatible API.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

use super::body::{integral, opt_integer};
use crate::platform::ApiError;

fn of_type(t: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(t)
}

fn array_of(item: impl Into<Schema>, min: usize, max: Option<usize>) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(utoipa::openapi::RefOr::T(item.into()))
        .min_items(Some(min))
        .max_items(max)
}

fn role_schema() -> Schema {
    of_type(Type::String).enum_values(Some(ROLES)).into()
}

fn content_schema() -> Schema {
    OneOfBuilder::new()
        .item(of_type(Type::String))
        .item(array_of(of_type(Type::Object), 0, None))
        .item(of_type(Type::Null))
        .description(Some("A string, or an array of content parts (objects)."))
        .into()
}

fn stop_schema() -> Schema {
    OneOfBuilder::new()
        .item(of_type(Type::String))
        .item(array_of(of_type(Type::String), 0, None))
        .item(of_type(Type::Null))
        .description(Some("A stop sequence, or a list of them."))
        .into()
}

fn vector_schema() -> Schema {
    OneOfBuilder::new()
        .item(array_of(of_type(Type::Number), 0, None))
        .item(of_type(Type::String))
        .description(Some(
            "Floats, or with `encoding_format: base64` a base64 string of little-endian f32.",
        ))
        .into()
}

fn input_schema() -> Schema {
    let text = || of_type(Type::String).min_length(Some(1));
    let token = || {
        of_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_TOKEN_ID))
    };
    OneOfBuilder::new()
        .item(text())
        .item(array_of(text(), 1, Some(MAX_INPUTS)))
        .item(array_of(token(), 1, Some(MAX_INPUTS)))
        .item(array_of(array_of(token(), 1, None), 1, Some(MAX_INPUTS)))
        .description(Some(
            "A non-empty string, or 1 to 2048 non-empty strings, token ids or token id arrays.",
        ))
        .into()
}

/// Token ids are 32-bit.
const MAX_TOKEN_ID: u32 = u32::MAX;
fn token(v: &Value) -> Option<u32> {
    v.as_number()
        .and_then(integral::<i64>)
        .and_then(|t| u32::try_from(t).ok())
}

/// Token ids as integers, however the client wrote them.
fn tokens(a: &[Value]) -> Option<Vec<u32>> {
    a.iter().map(token).collect()
}

/// The most inputs one embeddings request may hold.
pub const MAX_INPUTS: usize = 2048;
/// The longest model name: a provider name, '/', and a model.
pub const MAX_MODEL_CHARS: usize = 264;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    #[schema(schema_with = role_schema)]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = content_schema)]
    pub content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Other fields (tool_calls, tool_call_id, …) are passed through.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// The text of the message (text parts joined).
    pub fn text(&self) -> String {
        match &self.content {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// A model name, or `provider/model` to pin a provider.
    #[schema(
        min_length = 1,
        max_length = 264,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Read only with `stream: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub max_tokens: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub max_completion_tokens: Option<u32>,
    /// Only 1 is supported.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = stop_schema)]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Other OpenAI fields (tools, response_format, seed, …) are passed through
    /// to OpenAI-compatible providers.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

fn invalid(reason: impl Into<String>) -> ApiError {
    ApiError::Validation(reason.into())
}

/// A model name as clients give it: 1 to 264 characters, none of them a control character
/// (no provider could serve such a name).
fn validate_model(model: &str) -> Result<(), ApiError> {
    let n = model.chars().count();
    if n == 0 || n > MAX_MODEL_CHARS || model.chars().any(char::is_control) {
        return Err(invalid(
            "model: must be 1 to 264 characters, without control characters",
        ));
    }
    Ok(())
}

fn validate_message(i: usize, m: &ChatMessage) -> Result<(), ApiError> {
    if !ROLES.contains(&m.role.as_str()) {
        return Err(invalid(format!(
            "messages[{i}].role: {:?} is not one of {}",
            m.role,
            ROLES.join(", ")
        )));
    }
    match &m.content {
        None | Some(Value::String(_)) | Some(Value::Null) => Ok(()),
        Some(Value::Array(parts)) if parts.iter().all(Value::is_object) => Ok(()),
        Some(_) => Err(invalid(format!(
            "messages[{i}].content: must be a string or an array of content parts (objects)"
        ))),
    }
}

impl ChatRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_model(&self.model)?;
        if self.messages.is_empty() {
            return Err(invalid("messages: at least one message is required"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            validate_message(i, m)?;
        }
        match &self.stop {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
            Some(_) => return Err(invalid("stop: must be a string or a list of strings")),
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::Validation(
                "temperature: must be between 0 and 2".into(),
            ));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ApiError::Validation(
                "top_p: must be between 0 and 1".into(),
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::Validation("n: only 1 is supported".into()));
        }
        if self.max_tokens == Some(0) || self.max_completion_tokens == Some(0) {
            return Err(invalid("max_tokens: must be at least 1"));
        }
        Ok(())
    }

    pub fn include_usage(&self) -> bool {
        self.stream
            && self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage)
    }

    /// A request whose answer may be served from the cache.
    pub fn is_deterministic(&self) -> bool {
        !self.stream && self.temperature == Some(0.0) && self.n.unwrap_or(1) == 1
    }

    /// A rough token count of the prompt (four characters a token).
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let chars: usize = self.messages.iter().map(|m| m.text().len() + 4).sum();
        (chars as u64).div_ceil(4)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    /// Counts as a provider reports them, which may be anything: the total saturates.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    /// Little-endian f32, base64-encoded.
    Base64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    #[schema(
        min_length = 1,
        max_length = 264,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub model: String,
    #[schema(schema_with = input_schema)]
    pub input: Value,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    #[schema(minimum = 1, maximum = 8192)]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

pub enum EmbeddingInput {
    Texts(Vec<String>),
    /// Token ids (one list, or one list per input), as integers.
    Tokens(Value),
}

/// An array input: non-empty strings, token ids, or non-empty lists of token ids.
fn array_input(a: &[Value]) -> Result<EmbeddingInput, ApiError> {
    let texts: Option<Vec<String>> = a
        .iter()
        .map(|v| v.as_str().filter(|s| !s.is_empty()).map(String::from))
        .collect();
    if let Some(texts) = texts {
        return Ok(EmbeddingInput::Texts(texts));
    }
    if let Some(ids) = tokens(a) {
        return Ok(EmbeddingInput::Tokens(serde_json::json!(ids)));
    }
    let lists: Option<Vec<Vec<u32>>> = a
        .iter()
        .map(|v| {
            v.as_array()
                .filter(|t| !t.is_empty())
                .and_then(|t| tokens(t))
        })
        .collect();
    match lists {
        Some(lists) => Ok(EmbeddingInput::Tokens(serde_json::json!(lists))),
        None => Err(invalid(
            "input: must be a non-empty string, an array of non-empty strings, or token arrays",
        )),
    }
}

impl EmbeddingsRequest {
    pub fn validate(&self) -> Result<(EmbeddingInput, bool), ApiError> {
        validate_model(&self.model)?;
        let base64 = self.encoding_format == Some(EncodingFormat::Base64);
        if self.dimensions == Some(0) || self.dimensions.is_some_and(|d| d > 8192) {
            return Err(ApiError::Validation(
                "dimensions: must be between 1 and 8192".into(),
            ));
        }
        let input = match &self.input {
            Value::String(s) if !s.is_empty() => EmbeddingInput::Texts(vec![s.clone()]),
            Value::Array(a) if !a.is_empty() && a.len() <= MAX_INPUTS => array_input(a)?,
            _ => {
                return Err(invalid(
                    "input: must be a non-empty string or an array of 1 to 2048 items",
                ));
            }
        };
        Ok((input, base64))
    }
}

/// An OpenAI chat completion (non-streamed). Answers of OpenAI-compatible providers are
/// passed on as they are, so fields beyond these may appear.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    #[schema(value_type = Vec<Object>)]
    pub choices: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

/// One event of a streamed chat completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletionEvent {
    /// A `chat.completion.chunk` as JSON, an `{"error": …}` object if the stream failed, or
    /// `[DONE]` at the end.
    pub data: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    pub created: i64,
    /// The provider that serves it first.
    pub owned_by: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Model>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: &'static str,
    pub index: usize,
    #[schema(schema_with = vector_schema)]
    pub embedding: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// The error body of the OpenAI-compatible routes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiError {
    pub error: OpenAiErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// e.g. `invalid_request_error`, `authentication_error`, `rate_limit_error`, `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}
