//! The `local` provider kind: the in-process embedding model (all-MiniLM-L6-v2 on
//! candle), shared with every component of the process. It serves embeddings of text
//! only, with the model's own 384 dimensions.

use super::{Attempt, Failure};
use crate::gateway::types::{EmbeddingInput, EmbeddingsRequest, Usage};
use crate::platform::{ApiError, AppState};
use crate::shared::embed::{LocalEmbedder, MODEL_NAME};

/// The only model a local provider serves.
pub const MODEL: &str = MODEL_NAME;
/// The length of its vectors.
pub const DIMENSIONS: u32 = 384;

/// The vectors of the request's texts, by the process's model (loaded on first use).
pub async fn embed(
    state: &AppState,
    req: &EmbeddingsRequest,
    input: &EmbeddingInput,
) -> Attempt<(Vec<Vec<f32>>, Usage)> {
    let texts = match input {
        EmbeddingInput::Texts(texts) => texts.clone(),
        EmbeddingInput::Tokens(_) => {
            return Err(Failure::Fatal(ApiError::Validation(format!(
                "input: {MODEL} takes text; token ids are read by the tokenizer of another model"
            ))));
        }
    };
    if let Some(d) = req.dimensions.filter(|&d| d != DIMENSIONS) {
        return Err(Failure::Fatal(ApiError::Validation(format!(
            "dimensions: {MODEL} answers {DIMENSIONS} dimensions, not {d}"
        ))));
    }
    let model = model(state).await.map_err(Failure::Fatal)?;
    let done = model
        .embed_texts(texts)
        .await
        .map_err(|e| Failure::Fatal(e.into()))?;
    Ok((done.vectors, Usage::new(done.tokens, 0)))
}

/// The process's model; loading it the first time reads its files on a blocking thread.
async fn model(state: &AppState) -> Result<LocalEmbedder, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || LocalEmbedder::of_process(&state))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "the local embedding model cannot be loaded");
            ApiError::Unavailable(format!("the local embedding model is not available: {e}"))
        })
}
