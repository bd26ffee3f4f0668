//! Sentence embeddings behind one interface, [`Embedder`], with two implementations:
//!
//! - [`LocalEmbedder`]: all-MiniLM-L6-v2 run in this process (candle, CPU) on a bounded
//!   pool of dedicated threads, from the model folder named by `FAAS_EMBEDDING_MODEL_DIR`
//!   (nothing is downloaded);
//! - [`GatewayEmbedder`]: any embedding model the gateway serves, called over HTTP on
//!   behalf of the caller, so the caller's tenant is metered and limited.
//!
//! Both refuse the same oversized inputs ([`Limits`]) before doing any work.

mod model;
mod pool;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub use model::{LoadError, MODEL_FILES, MODEL_NAME, SentenceModel, Vectors};

use crate::platform::config::{ConfigError, Source};
use crate::platform::{ApiError, AppState, RequestContext};
use crate::shared::gateway_client::{EmbeddingsRequest, GatewayClient, OnBehalfOf};

/// The folder holding the local model's files ([`MODEL_FILES`]).
pub const MODEL_DIR_SETTING: &str = "FAAS_EMBEDDING_MODEL_DIR";
/// Threads running the local model.
pub const WORKERS_SETTING: &str = "FAAS_EMBEDDING_WORKERS";
/// Calls that may wait for a thread; past them a call is refused with 503 and `Retry-After`.
pub const QUEUE_SETTING: &str = "FAAS_EMBEDDING_QUEUE";
/// Texts one call may embed.
pub const MAX_TEXTS_SETTING: &str = "FAAS_EMBEDDING_MAX_TEXTS";

/// Vectors in input order and the tokens the model read for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read for all texts together (the usage a call is metered by).
    pub tokens: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("input: give at least one text")]
    NoTexts,
    #[error("input: {given} texts are more than the limit of {max} a call")]
    TooManyTexts { given: usize, max: usize },
    #[error("input[{index}]: {chars} characters are more than the limit of {max} a text")]
    TextTooLong {
        index: usize,
        chars: usize,
        max: usize,
    },
    #[error("input: {bytes} bytes of text are more than the limit of {max} a call")]
    TooLarge { bytes: usize, max: usize },
    #[error("the embedding model is at capacity; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error("the embedding model is not running")]
    Stopped,
    #[error("embedding failed")]
    Model(#[source] anyhow::Error),
    /// The gateway's answer (or its refusal), as the gateway client maps it.
    #[error(transparent)]
    Gateway(ApiError),
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::NoTexts
            | EmbedError::TooManyTexts { .. }
            | EmbedError::TextTooLong { .. }
            | EmbedError::TooLarge { .. } => ApiError::Validation(e.to_string()),
            EmbedError::Busy { retry_after_secs } => ApiError::Overloaded {
                detail: e.to_string(),
                retry_after_secs,
            },
            EmbedError::Stopped => ApiError::Unavailable(e.to_string()),
            EmbedError::Model(cause) => ApiError::Internal(cause.context("embedding failed")),
            EmbedError::Gateway(api) => api,
        }
    }
}

/// What one call may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_texts: usize,
    /// Characters of one text. The model reads at most its first 256 tokens (about
    /// 1,000 characters of English) anyway; this bounds the tokenizer's work.
    pub max_text_chars: usize,
    /// UTF-8 bytes of all texts together.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_texts: 256,
            max_text_chars: 32_768,
            max_total_bytes: 1024 * 1024,
        }
    }
}

impl Limits {
    /// The defaults, with `FAAS_EMBEDDING_MAX_TEXTS` applied.
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let d = Self::default();
        let max_texts = src.parse(MAX_TEXTS_SETTING, d.max_texts)?;
        if !(1..=100_000).contains(&max_texts) {
            return Err(ConfigError::Invalid {
                name: MAX_TEXTS_SETTING,
                reason: "must be from 1 to 100000".into(),
            });
        }
        Ok(Self { max_texts, ..d })
    }

    /// Refuses `texts` when they break a limit, naming it.
    pub fn check(&self, texts: &[String]) -> Result<(), EmbedError> {
        if texts.is_empty() {
            return Err(EmbedError::NoTexts);
        }
        if texts.len() > self.max_texts {
            return Err(EmbedError::TooManyTexts {
                given: texts.len(),
                max: self.max_texts,
            });
        }
        let mut bytes = 0usize;
        for (index, t) in texts.iter().enumerate() {
            // Bytes bound characters from above, so most texts are never counted.
            if t.len() > self.max_text_chars {
                let chars = t.chars().count();
                if chars > self.max_text_chars {
                    return Err(EmbedError::TextTooLong {
                        index,
                        chars,
                        max: self.max_text_chars,
                    });
                }
            }
            bytes += t.len();
        }
        if bytes > self.max_total_bytes {
            return Err(EmbedError::TooLarge {
                bytes,
                max: self.max_total_bytes,
            });
        }
        Ok(())
    }
}

/// Turns texts into vectors. `who` and `ctx` identify the caller: implementations that
/// call out (the gateway) act on its behalf; the local model needs neither.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model's name, as callers pass it to the gateway.
    fn model(&self) -> &str;
    /// The length of every vector.
    fn dimensions(&self) -> usize;
    /// The vectors of `texts`, in order, each of [`Embedder::dimensions`] values.
    async fn embed(
        &self,
        who: &OnBehalfOf,
        ctx: &RequestContext,
        texts: Vec<String>,
    ) -> Result<Embedded, EmbedError>;
}

/// The local model on its worker threads. Cheap to clone; the threads stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct LocalEmbedder {
    model: Arc<SentenceModel>,
    pool: Arc<pool::Pool>,
    dims: usize,
    max_tokens: usize,
    limits: Limits,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model", &MODEL_NAME)
            .field("dims", &self.dims)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The slot of [`LocalEmbedder::of_process`].
#[derive(Default)]
struct ProcessModel(std::sync::Mutex<Option<LocalEmbedder>>);

/// How the local model runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    pub model_dir: PathBuf,
    /// Threads running the model. One already uses every core: the encoder's matrix
    /// products and kernels run on the process's rayon pool.
    pub workers: usize,
    /// Calls that may wait.
    pub queue: usize,
    pub limits: Limits,
}

impl LocalSettings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let model_dir = src.get(MODEL_DIR_SETTING).ok_or(ConfigError::Missing {
            name: MODEL_DIR_SETTING,
            reason: format!(
                "the folder of the local embedding model ({MODEL_NAME}: {})",
                MODEL_FILES.join(", ")
            ),
        })?;
        let workers = src.parse(WORKERS_SETTING, 1usize)?;
        if !(1..=64).contains(&workers) {
            return Err(ConfigError::Invalid {
                name: WORKERS_SETTING,
                reason: "must be from 1 to 64".into(),
            });
        }
        let queue = src.parse(QUEUE_SETTING, 32usize)?;
        if !(1..=100_000).contains(&queue) {
            return Err(ConfigError::Invalid {
                name: QUEUE_SETTING,
                reason: "must be from 1 to 100000".into(),
            });
        }
        Ok(Self {
            model_dir: PathBuf::from(model_dir),
            workers,
            queue,
            limits: Limits::from_source(src)?,
        })
    }
}

impl LocalEmbedder {
    /// Reads the settings and loads the model: a missing or incomplete folder is an error
    /// naming `FAAS_EMBEDDING_MODEL_DIR`. Loading reads about 90 MB; call it at start-up.
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        Self::start(&LocalSettings::from_source(src)?)
    }

    pub fn start(settings: &LocalSettings) -> Result<Self, ConfigError> {
        let model = SentenceModel::load(&settings.model_dir).map_err(|e| ConfigError::Invalid {
            name: MODEL_DIR_SETTING,
            reason: e.to_string(),
        })?;
        let (dims, max_tokens) = (model.dimensions(), model.max_tokens());
        let model = Arc::new(model);
        let pool = pool::Pool::start(model.clone(), settings.workers, settings.queue);
        Ok(Self {
            model,
            pool: Arc::new(pool),
            dims,
            max_tokens,
            limits: settings.limits,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The most tokens of one text the model reads; the rest is cut off.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens of `text` the model would read (no markers, no cut). Runs on the caller's
    /// thread: call it from blocking work for long texts.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model.count_tokens(text)
    }

    /// The model of this process, loaded on first use from the settings of `state` and
    /// kept: every component of the process shares its weights and its threads.
    pub fn of_process(state: &AppState) -> Result<Self, ConfigError> {
        let slot = state.shared::<ProcessModel>();
        let mut held = slot.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(model) = held.as_ref() {
            return Ok(model.clone());
        }
        let model = Self::from_source(&state.config.source)?;
        *held = Some(model.clone());
        Ok(model)
    }

    /// The vectors of `texts` in input order, computed on the worker threads. A full
    /// queue is [`EmbedError::Busy`] at once.
    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<Embedded, EmbedError> {
        self.limits.check(&texts)?;
        let answer = self.pool.submit(texts).map_err(|r| match r {
            pool::Refused::Full { retry_after_secs } => EmbedError::Busy { retry_after_secs },
            pool::Refused::Closed => EmbedError::Stopped,
        })?;
        let out = answer
            .await
            .map_err(|_| EmbedError::Stopped)?
            .map_err(EmbedError::Model)?;
        Ok(Embedded {
            tokens: out.tokens.iter().map(|&t| t as u64).sum(),
            vectors: out.vectors,
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    async fn embed(
        &self,
        _who: &OnBehalfOf,
        _ctx: &RequestContext,
        texts: Vec<String>,
    ) -> Result<Embedded, EmbedError> {
        self.embed_texts(texts).await
    }
}

/// An embedding model the gateway serves, called on behalf of each caller.
#[derive(Debug, Clone)]
pub struct GatewayEmbedder {
    client: GatewayClient,
    model: String,
    dims: usize,
    send_dimensions: bool,
    limits: Limits,
}

impl GatewayEmbedder {
    /// `model` as the gateway lists it, whose vectors have `dims` values.
    pub fn new(client: GatewayClient, model: impl Into<String>, dims: usize) -> Self {
        Self {
            client,
            model: model.into(),
            dims,
            send_dimensions: false,
            limits: Limits::default(),
        }
    }

    /// Asks the model for `dims` values (`dimensions` in the request), for models that
    /// shorten their vectors on request.
    pub fn requesting_dimensions(mut self) -> Self {
        self.send_dimensions = true;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

#[async_trait]
impl Embedder for GatewayEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    async fn embed(
        &self,
        who: &OnBehalfOf,
        ctx: &RequestContext,
        texts: Vec<String>,
    ) -> Result<Embedded, EmbedError> {
        self.limits.check(&texts)?;
        let count = texts.len();
        let req = EmbeddingsRequest {
            model: self.model.clone(),
            input: texts,
            dimensions: self.send_dimensions.then_some(self.dims as u32),
        };
        let answer = self
            .client
            .embeddings(who, ctx, &req)
            .await
            .map_err(EmbedError::Gateway)?;
        let tokens = answer.usage.prompt_tokens;
        let vectors = answer.vectors();
        if vectors.len() != count {
            return Err(EmbedError::Gateway(ApiError::BadGateway(format!(
                "gateway: model {} answered {} vectors for {count} texts",
                self.model,
                vectors.len()
            ))));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dims) {
            return Err(EmbedError::Gateway(ApiError::BadGateway(format!(
                "gateway: model {} answered a vector of {} values, not {}",
                self.model,
                v.len(),
                self.dims
            ))));
        }
        Ok(Embedded { vectors, tokens })
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn limits_name_what_they_refuse() {
        let limits = Limits {
            max_texts: 2,
            max_text_chars: 3,
            max_total_bytes: 9,
        };
        let ok = |t: &[&str]| limits.check(&t.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["abc", "ééé"]).is_ok());
        assert!(matches!(ok(&[]), Err(EmbedError::NoTexts)));
        assert!(matches!(
            ok(&["a", "b", "c"]),
            Err(EmbedError::TooManyTexts { given: 3, max: 2 })
        ));
        assert!(matches!(
            ok(&["a", "éééé"]),
            Err(EmbedError::TextTooLong {
                index: 1,
                chars: 4,
                max: 3
            })
        ));
        assert!(matches!(
            ok(&["ééé", "éé"]),
            Err(EmbedError::TooLarge { bytes: 10, max: 9 })
        ));
        let src = Source::new([(MAX_TEXTS_SETTING.to_string(), "0".to_string())].into()).unwrap();
        let e = Limits::from_source(&src).unwrap_err().to_string();
        assert!(e.contains(MAX_TEXTS_SETTING), "{e}");
    }

    #[test]
    fn a_busy_model_is_a_503_with_retry_after_in_both_error_shapes() {
        let busy = || {
            ApiError::from(EmbedError::Busy {
                retry_after_secs: 3,
            })
        };
        for resp in [busy().into_response(), busy().into_openai_response()] {
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers()["retry-after"], "3");
        }
        assert_eq!(busy().code(), "overloaded");
        let refused = ApiError::from(EmbedError::TooManyTexts { given: 3, max: 2 });
        assert_eq!(refused.status(), 422);
        assert!(refused.to_string().contains("limit of 2"), "{refused}");
    }
}
