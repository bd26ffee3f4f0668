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

/// The event kind (subject suffix) of a document indexed from an uploaded file.
pub const DOCUMENT_INGESTED_KIND: &str = "document.ingested";
/// The envelope type of a document indexed from an uploaded file, with its version.
pub const DOCUMENT_INGESTED_TYPE: &str = "document.ingested.v1";
/// Documents are cut into at most this many chunks (far above the text limit of a file).
pub const MAX_DOCUMENT_CHUNKS: i32 = 10_000_000;

/// An uploaded file was parsed, chunked, embedded and stored as a document of a RAG
/// collection. Published once its job is indexed; the envelope's id is the job's, so a
/// repeated publish within the deduplication window is dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIngested {
    /// The ingestion job.
    pub job_id: Uuid,
    /// The collection the document belongs to.
    #[schema(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    pub collection: String,
    /// The stored document.
    pub document_id: Uuid,
    /// Whether the collection already held the same content (nothing new was stored).
    pub existing: bool,
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub filename: Option<String>,
    #[serde(default)]
    #[schema(max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub title: Option<String>,
    /// The format the file was found to be, as a media type.
    #[schema(min_length = 1, max_length = 128)]
    pub content_type: String,
    /// SHA-256 of the file, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub checksum: String,
    #[schema(minimum = 1)]
    pub size_bytes: i64,
    #[schema(minimum = 0, maximum = 10000000)]
    pub chunks: i32,
    pub indexed_at: DateTime<Utc>,
}

impl DocumentIngested {
    /// Checks the event against its bounds; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = (1..=63).contains(&self.collection.len())
            && self.collection.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
            });
        if !name_ok {
            return Err("collection: 1 to 63 of a-z, 0-9, '.', '_' and '-'".into());
        }
        optional("filename", &self.filename, 255, false)?;
        optional("title", &self.title, 512, false)?;
        text("content_type", &self.content_type, 1, 128, false)?;
        if self.checksum.len() != 64
            || !self
                .checksum
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("checksum: 64 lower-case hex digits".into());
        }
        if self.size_bytes < 1 {
            return Err("size_bytes: must be at least 1".into());
        }
        if !(0..=MAX_DOCUMENT_CHUNKS).contains(&self.chunks) {
            return Err(format!(
                "chunks: must be between 0 and {MAX_DOCUMENT_CHUNKS}"
            ));
        }
        if !valid_time(&self.indexed_at) {
            return Err("indexed_at: must be in the years 0 to 9999".into());
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ingested() -> DocumentIngested {
        DocumentIngested {
            job_id: Uuid::nil(),
            collection: "docs".into(),
            document_id: Uuid::nil(),
            existing: false,
            filename: Some("a.pdf".into()),
            title: None,
            content_type: "application/pdf".into(),
            checksum: "ab".repeat(32),
            size_bytes: 10,
            chunks: 3,
            indexed_at: Utc::now(),
        }
    }

    #[test]
    fn a_document_ingested_event_is_bounded() {
        let ok = ingested();
        ok.check().unwrap();
        let back: DocumentIngested =
            serde_json::from_value(serde_json::to_value(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
        let bad = [
            DocumentIngested {
                collection: "Docs".into(),
                ..ingested()
            },
            DocumentIngested {
                collection: "-x".into(),
                ..ingested()
            },
            DocumentIngested {
                checksum: "AB".repeat(32),
                ..ingested()
            },
            DocumentIngested {
                filename: Some("a\nb".into()),
                ..ingested()
            },
            DocumentIngested {
                chunks: -1,
                ..ingested()
            },
            DocumentIngested {
                size_bytes: 0,
                ..ingested()
            },
        ];
        for e in bad {
            assert!(e.check().is_err(), "{e:?}");
        }
    }
}
