//! Request and response bodies of the OpenAI-compatible API.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::platform::ApiError;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// system, developer, user, assistant or tool.
    pub role: String,
    /// A string, or an array of content parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
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
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
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

impl ChatRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.model.trim().is_empty() {
            return Err(ApiError::Validation("model: must not be empty".into()));
        }
        if self.messages.is_empty() {
            return Err(ApiError::Validation(
                "messages: at least one message is required".into(),
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::Validation(format!(
                    "messages[{i}].role: {:?} is not one of {}",
                    m.role,
                    ROLES.join(", ")
                )));
            }
            match &m.content {
                None | Some(Value::String(_)) | Some(Value::Null) | Some(Value::Array(_)) => {}
                Some(_) => {
                    return Err(ApiError::Validation(format!(
                        "messages[{i}].content: must be a string or an array of content parts"
                    )));
                }
            }
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
            return Err(ApiError::Validation(
                "max_tokens: must be at least 1".into(),
            ));
        }
        if self.stream_options.is_some() && !self.stream {
            return Err(ApiError::Validation(
                "stream_options: only allowed when stream is true".into(),
            ));
        }
        Ok(())
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    /// A string, an array of strings, or token arrays.
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

pub enum EmbeddingInput {
    Texts(Vec<String>),
    Tokens(Value),
}

impl EmbeddingsRequest {
    pub fn validate(&self) -> Result<(EmbeddingInput, bool), ApiError> {
        if self.model.trim().is_empty() {
            return Err(ApiError::Validation("model: must not be empty".into()));
        }
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::Validation(format!(
                    "encoding_format: {other:?} is not one of float, base64"
                )));
            }
        };
        if self.dimensions == Some(0) || self.dimensions.is_some_and(|d| d > 8192) {
            return Err(ApiError::Validation(
                "dimensions: must be between 1 and 8192".into(),
            ));
        }
        let input = match &self.input {
            Value::String(s) if !s.is_empty() => EmbeddingInput::Texts(vec![s.clone()]),
            Value::Array(a) if !a.is_empty() && a.len() <= 2048 => {
                if a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
                    EmbeddingInput::Texts(
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect(),
                    )
                } else if a.iter().all(|v| v.is_u64())
                    || a.iter().all(|v| {
                        v.as_array()
                            .is_some_and(|t| !t.is_empty() && t.iter().all(Value::is_u64))
                    })
                {
                    EmbeddingInput::Tokens(self.input.clone())
                } else {
                    return Err(ApiError::Validation(
                        "input: must be a non-empty string, an array of non-empty strings, or token arrays".into(),
                    ));
                }
            }
            _ => {
                return Err(ApiError::Validation(
                    "input: must be a non-empty string or an array of 1 to 2048 items".into(),
                ));
            }
        };
        Ok((input, base64))
    }
}
