//! A sentence-transformers BERT model (all-MiniLM-L6-v2) run with candle on the CPU:
//! tokenise, run the encoder over length-bucketed batches, mean-pool over the attention
//! mask, L2-normalise. Reproduces sentence-transformers' vectors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
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

/// How many texts go through the encoder at once. Texts are sorted by length first, so a
/// batch is padded only to the longest of similar lengths; 32 keeps the matrices large
/// enough for the CPU kernels and a batch's activations small (32 × 256 × 1536 floats).
const BATCH: usize = 32;

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
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dims: usize,
    max_tokens: usize,
    pad_id: u32,
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
        let config: Config = json(dir, "config.json")?;
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
        let pad_id = tokenizer
            .get_padding()
            .map_or(config.pad_token_id as u32, |p| p.pad_id);
        tokenizer.with_padding(None);

        let device = Device::Cpu;
        let weights = read(dir, "model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let bert = BertModel::load(vb, &config)
            .map_err(|e| fail(format!("model.safetensors does not fit config.json: {e}")))?;
        Ok(Self {
            bert,
            tokenizer,
            device,
            dims: config.hidden_size,
            max_tokens,
            pad_id,
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

        // Longest first, so the first batch finds out early whether memory suffices and
        // each batch holds texts of about the same length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i]));
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let pooled = self.forward(batch.iter().map(|&i| ids[i]))?;
            for (&i, v) in batch.iter().zip(pooled) {
                vectors[i] = v;
            }
        }
        Ok(Vectors { vectors, tokens })
    }

    /// One padded batch through the encoder, mean-pooled and normalised.
    fn forward<'a>(
        &self,
        batch: impl ExactSizeIterator<Item = &'a [u32]> + Clone,
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let rows = batch.len();
        let width = batch.clone().map(<[u32]>::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(self.pad_id, width - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, width - seq.len()));
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens: padding is masked out of the sum and the count.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}
