//! A sentence-transformers BERT model (all-MiniLM-L6-v2) run with candle on the CPU:
//! tokenise, run the encoder ([`faas_encoder`]) over batches of packed token rows, mean-pool,
//! L2-normalise. Reproduces sentence-transformers' vectors.

use std::path::{Path, PathBuf};

use faas_encoder::{Encoder, Shape};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// The files a model folder must hold.
pub const MODEL_FILES: [&str; 4] = [
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "sentence_bert_config.json",
];

/// The name the model answers to.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// About how many tokens go through the encoder at once (a text longer than this goes
/// alone). The encoder packs the texts of a batch without padding, so only the total
/// counts: 2,048 rows keep the matrix products large enough for the CPU kernels and a
/// batch's activations small (2,048 × 1,536 floats, 12 MiB).
const BATCH_TOKENS: usize = 2048;

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

/// Why a model folder cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", dir.display())]
pub struct LoadError {
    pub dir: PathBuf,
    pub reason: String,
}

/// The vectors of one batch of texts, in input order, with each text's token count
/// (special tokens included, after truncation).
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<usize>,
}

/// The loaded model. Inference is synchronous and CPU-bound: run it off the async
/// runtime (see [`super::LocalEmbedder`]).
pub struct SentenceModel {
    encoder: Encoder,
    tokenizer: Tokenizer,
    dims: usize,
    max_tokens: usize,
}

impl std::fmt::Debug for SentenceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceModel")
            .field("dims", &self.dims)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, LoadError> {
    std::fs::read(dir.join(name)).map_err(|e| LoadError {
        dir: dir.to_path_buf(),
        reason: format!("cannot read {name}: {e}"),
    })
}

fn json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T, LoadError> {
    serde_json::from_slice(&read(dir, name)?).map_err(|e| LoadError {
        dir: dir.to_path_buf(),
        reason: format!("{name} is not valid: {e}"),
    })
}

impl SentenceModel {
    /// Loads the model from a sentence-transformers folder (the files in
    /// [`MODEL_FILES`]; `1_Pooling/config.json`, when present, must ask for mean pooling).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let fail = |reason: String| LoadError {
            dir: dir.to_path_buf(),
            reason,
        };
        if !dir.is_dir() {
            return Err(fail("is not a folder".into()));
        }
        let missing: Vec<&str> = MODEL_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!("lacks {}", missing.join(", "))));
        }
        let config: Shape = json(dir, "config.json")?;
        let sbert: SentenceBertConfig = json(dir, "sentence_bert_config.json")?;
        if dir.join("1_Pooling/config.json").is_file() {
            let pooling: PoolingConfig = json(dir, "1_Pooling/config.json")?;
            if !pooling.pooling_mode_mean_tokens
                || pooling.pooling_mode_cls_token
                || pooling.pooling_mode_max_tokens
            {
                return Err(fail(
                    "1_Pooling/config.json asks for a pooling other than the mean of the tokens"
                        .into(),
                ));
            }
        }
        let max_tokens = sbert.max_seq_length.min(config.max_position_embeddings);
        if max_tokens < 2 {
            return Err(fail(format!(
                "max_seq_length {} leaves no room for text",
                sbert.max_seq_length
            )));
        }

        let mut tokenizer = Tokenizer::from_bytes(read(dir, "tokenizer.json")?)
            .map_err(|e| fail(format!("tokenizer.json is not valid: {e}")))?;
        // The shipped tokenizer pads and truncates to 128; sentence-transformers truncates
        // to max_seq_length and pads to the longest text of a batch, which the batching
        // below does.
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);

        let encoder = Encoder::from_safetensors(read(dir, "model.safetensors")?, &config)
            .map_err(|e| fail(format!("model.safetensors does not fit config.json: {e}")))?;
        Ok(Self {
            dims: encoder.dimensions(),
            encoder,
            tokenizer,
            max_tokens,
        })
    }

    pub fn dimensions(&self) -> usize {
        self.dims
    }

    /// The most tokens of a text the model reads; the rest is cut off.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens of `text` the model would read, without the start and end markers and
    /// without the cut at [`SentenceModel::max_tokens`].
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len() + e.get_overflowing().iter().map(|o| o.len()).sum::<usize>())
            .unwrap_or_else(|_| text.len().div_ceil(4))
    }

    /// The vectors of `texts`, in order.
    pub fn embed(&self, texts: &[String]) -> anyhow::Result<Vectors> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let tokens: Vec<usize> = ids.iter().map(|i| i.len()).collect();

        let mut vectors = Vec::with_capacity(texts.len());
        let mut batch: Vec<&[u32]> = Vec::new();
        let mut rows = 0;
        for seq in ids {
            if rows + seq.len() > BATCH_TOKENS && !batch.is_empty() {
                vectors.extend(self.encoder.embed(&batch)?);
                batch.clear();
                rows = 0;
            }
            rows += seq.len();
            batch.push(seq);
        }
        if !batch.is_empty() {
            vectors.extend(self.encoder.embed(&batch)?);
        }
        Ok(Vectors { vectors, tokens })
    }
}
