//! Payloads that cross components over NATS, with the bounds every producer and consumer
//! holds them to.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The event kind (subject suffix) of LLM operations on the bus.
pub const LLM_OPERATION_KIND: &str = "llmop";
/// The envelope type of an LLM operation, with its version.
pub const LLM_OPERATION_TYPE: &str = "llmop.v1";
/// What one operation may report: far above any real call, far below what
/// sums of a tenant's history could overflow.
pub const MAX_TOKENS: i64 = 100_000_000;
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;
/// The highest cost one operation may report or be given, in USD.
pub const MAX_COST_USD: f64 = 1_000_000.0;

/// One LLM operation (a chat or embeddings call).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmOpEvent {
    /// Unique among the tenant's events; re-sending an id is ignored.
    /// Generated when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// When the operation happened (years 0 to 9999); now when absent.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub user_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub agent_id: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub model: String,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub provider: String,
    /// chat, embeddings, …
    #[serde(default = "chat")]
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub operation: String,
    #[serde(default, deserialize_with = "crate::integer::integer")]
    #[schema(minimum = 0, maximum = 100000000)]
    pub tokens_in: i64,
    #[serde(default, deserialize_with = "crate::integer::integer")]
    #[schema(minimum = 0, maximum = 100000000)]
    pub tokens_out: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400000)]
    pub latency_ms: f64,
    /// Computed from the pricing table when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub cost_usd: Option<f64>,
    /// ok or error.
    #[schema(pattern = r"^(ok|error)$")]
    pub status: String,
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub error: Option<String>,
    #[serde(default)]
    pub cached: bool,
    #[serde(default)]
    #[schema(max_length = 128, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub correlation_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 128, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub request_id: Option<String>,
}

fn chat() -> String {
    "chat".into()
}

/// A text field: at most `max` characters, no control characters (line
/// breaks and tabs allowed where `multiline`).
pub fn text(name: &str, v: &str, min: usize, max: usize, multiline: bool) -> Result<(), String> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(format!("{name}: {min} to {max} characters"));
    }
    let bad = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'));
    if v.chars().any(bad) {
        return Err(format!("{name}: control characters are not allowed"));
    }
    Ok(())
}

pub fn optional(name: &str, v: &Option<String>, max: usize, multiline: bool) -> Result<(), String> {
    v.as_deref()
        .map_or(Ok(()), |s| text(name, s, 0, max, multiline))
}

/// Timestamps a client may give: four-digit years (0 to 9999), inside the
/// range of Postgres and of every computation on them.
pub fn valid_time(t: &DateTime<Utc>) -> bool {
    (0..=9999).contains(&t.year())
}

impl LlmOpEvent {
    /// Checks the event against the bounds of the llmops API; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        text("model", &self.model, 1, 200, false)?;
        text("provider", &self.provider, 0, 200, false)?;
        text("operation", &self.operation, 1, 50, false)?;
        if !matches!(self.status.as_str(), "ok" | "error") {
            return Err(format!("status: {:?} is not one of ok, error", self.status));
        }
        for (name, v) in [
            ("tokens_in", self.tokens_in),
            ("tokens_out", self.tokens_out),
        ] {
            if !(0..=MAX_TOKENS).contains(&v) {
                return Err(format!("{name}: must be between 0 and {MAX_TOKENS}"));
            }
        }
        if !(0.0..=MAX_LATENCY_MS).contains(&self.latency_ms) {
            return Err(format!(
                "latency_ms: must be a number between 0 and {MAX_LATENCY_MS}"
            ));
        }
        if self
            .cost_usd
            .is_some_and(|c| !(0.0..=MAX_COST_USD).contains(&c))
        {
            return Err(format!(
                "cost_usd: must be a number between 0 and {MAX_COST_USD}"
            ));
        }
        if self.occurred_at.is_some_and(|t| !valid_time(&t)) {
            return Err("occurred_at: must be in the years 0 to 9999".into());
        }
        optional("user_id", &self.user_id, 256, false)?;
        optional("agent_id", &self.agent_id, 256, false)?;
        optional("error", &self.error, 2000, true)?;
        optional("correlation_id", &self.correlation_id, 128, false)?;
        optional("request_id", &self.request_id, 128, false)?;
        Ok(())
    }
}
