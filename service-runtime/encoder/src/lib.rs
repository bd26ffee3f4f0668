//! The BERT encoder of a sentence-transformers model, run on the CPU over packed
//! sequences: the tokens of every text of a batch are rows of one matrix, so the dense
//! layers (candle matrix products over all tokens at once) do no work on padding, and
//! attention runs per text over that text's rows only. The element-wise steps between
//! the products (bias, GELU, residual, layer norm, softmax) are fused into one pass each,
//! spread over the cores and compiled for the CPU's vector instructions.
//!
//! The result equals a padded BERT forward pass with an attention mask: a masked position
//! contributes nothing to a real token's attention, and mean pooling reads real tokens
//! only.

use candle_core::{DType, Device, Storage, Tensor};
use candle_nn::VarBuilder;
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Width of the lanes the hand-written reductions keep apart, so that the compiler can
/// put each lane in a vector register.
const LANES: usize = 8;

/// The shape of the model, from its `config.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Shape {
    pub vocab_size: usize,
    pub type_vocab_size: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn gelu() -> String {
    "gelu".into()
}

fn absolute() -> String {
    "absolute".into()
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

/// A weight matrix stored as `in × out`, row-major, so that `x · w` is a product of two
/// contiguous matrices.
struct Dense {
    weight: Tensor,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value in one product: `hidden × 3·hidden`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

pub struct Encoder {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Every text is one segment: the first token-type row is added to each token.
    segment: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    device: Device,
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

fn norm(vb: &VarBuilder, size: usize, eps: f64) -> candle_core::Result<Norm> {
    Ok(Norm {
        weight: values(&vb.get(size, "weight")?)?,
        bias: values(&vb.get(size, "bias")?)?,
        eps: eps as f32,
    })
}

fn dense(vb: &VarBuilder, input: usize, output: usize) -> candle_core::Result<Dense> {
    // Stored as `out × in` (PyTorch's Linear); transposed once here.
    let weight = vb.get((output, input), "weight")?.t()?.contiguous()?;
    Ok(Dense {
        weight,
        bias: values(&vb.get(output, "bias")?)?,
    })
}

impl Encoder {
    /// Reads the weights of a BERT model from a safetensors file's bytes (names without
    /// the `bert.` prefix, as sentence-transformers stores them).
    pub fn from_safetensors(bytes: Vec<u8>, shape: &Shape) -> anyhow::Result<Self> {
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)?;
        Self::load(vb, shape)
    }

    /// Width of the vectors.
    pub fn dimensions(&self) -> usize {
        self.hidden
    }

    /// Most tokens of one sequence.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Reads the weights of a BERT model (names without the `bert.` prefix).
    pub fn load(vb: VarBuilder, shape: &Shape) -> anyhow::Result<Self> {
        anyhow::ensure!(
            shape.hidden_act == "gelu",
            "hidden_act {:?} is not supported (only gelu)",
            shape.hidden_act
        );
        anyhow::ensure!(
            shape.position_embedding_type == "absolute",
            "position_embedding_type {:?} is not supported (only absolute)",
            shape.position_embedding_type
        );
        let h = shape.hidden_size;
        anyhow::ensure!(
            shape.num_attention_heads > 0 && h.is_multiple_of(shape.num_attention_heads),
            "hidden_size {h} is not a multiple of num_attention_heads {}",
            shape.num_attention_heads
        );
        let head = h / shape.num_attention_heads;
        anyhow::ensure!(
            head.is_multiple_of(LANES) && head <= 64,
            "a head of {head} dimensions is not supported (a multiple of {LANES}, at most 64)"
        );
        let device = vb.device().clone();
        let emb = vb.pp("embeddings");
        let vocab = shape.vocab_size;
        let word = values(&emb.get((vocab, h), "word_embeddings.weight")?)?;
        let position = values(&emb.get(
            (shape.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let segment = values(
            &emb.get((shape.type_vocab_size, h), "token_type_embeddings.weight")?
                .get(0)?,
        )?;
        let embedding_norm = norm(&emb.pp("LayerNorm"), h, shape.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for n in 0..shape.num_hidden_layers {
            let vb = vb.pp(format!("encoder.layer.{n}"));
            let att = vb.pp("attention.self");
            let parts = ["query", "key", "value"].map(|p| dense(&att.pp(p), h, h));
            let [q, k, v] = parts;
            let (q, k, v) = (q?, k?, v?);
            let qkv = Dense {
                weight: Tensor::cat(&[&q.weight, &k.weight, &v.weight], 1)?.contiguous()?,
                bias: [q.bias, k.bias, v.bias].concat(),
            };
            layers.push(Layer {
                qkv,
                attention_out: dense(&vb.pp("attention.output.dense"), h, h)?,
                attention_norm: norm(
                    &vb.pp("attention.output.LayerNorm"),
                    h,
                    shape.layer_norm_eps,
                )?,
                intermediate: dense(&vb.pp("intermediate.dense"), h, shape.intermediate_size)?,
                output: dense(&vb.pp("output.dense"), shape.intermediate_size, h)?,
                output_norm: norm(&vb.pp("output.LayerNorm"), h, shape.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word,
            position,
            segment,
            embedding_norm,
            layers,
            hidden: h,
            heads: shape.num_attention_heads,
            vocab,
            max_positions: shape.max_position_embeddings,
            device,
        })
    }

    /// The mean-pooled, L2-normalised vector of each token sequence. Every sequence must
    /// be shorter than the model's positions and hold only ids of its vocabulary.
    pub fn embed(&self, sequences: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        let h = self.hidden;
        let mut starts = Vec::with_capacity(sequences.len() + 1);
        let mut total = 0usize;
        for s in sequences {
            anyhow::ensure!(!s.is_empty(), "an empty token sequence");
            anyhow::ensure!(
                s.len() <= self.max_positions,
                "a sequence of {} tokens is longer than the model's {} positions",
                s.len(),
                self.max_positions
            );
            if let Some(&id) = s.iter().find(|&&id| id as usize >= self.vocab) {
                anyhow::bail!("token id {id} is outside the vocabulary of {}", self.vocab);
            }
            starts.push(total);
            total += s.len();
        }
        starts.push(total);
        if total == 0 {
            return Ok(Vec::new());
        }

        let mut hidden = vec![0f32; total * h];
        hidden.par_chunks_mut(h).enumerate().for_each(|(row, out)| {
            let seq = starts.partition_point(|&s| s <= row) - 1;
            let pos = row - starts[seq];
            let id = sequences[seq][pos] as usize;
            let word = &self.word[id * h..(id + 1) * h];
            let position = &self.position[pos * h..(pos + 1) * h];
            Arch::new().dispatch(Embed {
                out,
                word,
                position,
                segment: &self.segment,
                norm: &self.embedding_norm,
            });
        });

        for layer in &self.layers {
            hidden = self.layer(layer, hidden, total, &starts)?;
        }

        Ok(starts
            .windows(2)
            .map(|w| pool(&hidden[w[0] * h..w[1] * h], h))
            .collect())
    }

    fn layer(
        &self,
        layer: &Layer,
        hidden: Vec<f32>,
        rows: usize,
        starts: &[usize],
    ) -> anyhow::Result<Vec<f32>> {
        let h = self.hidden;
        let x = Tensor::from_vec(hidden, (rows, h), &self.device)?;

        let qkv = x.matmul(&layer.qkv.weight)?;
        let mut context = vec![0f32; rows * h];
        with_values(&qkv, |qkv| {
            attention(qkv, &layer.qkv.bias, &mut context, starts, h, self.heads)
        })?;
        drop(qkv);

        let attended = Tensor::from_vec(context, (rows, h), &self.device)?
            .matmul(&layer.attention_out.weight)?;
        let mut residual = with_values(&x, <[f32]>::to_vec)?;
        drop(x);
        with_values(&attended, |a| {
            add_norm(
                &mut residual,
                a,
                &layer.attention_out.bias,
                &layer.attention_norm,
                h,
            )
        })?;
        drop(attended);

        let x = Tensor::from_vec(residual, (rows, h), &self.device)?;
        let inner = x.matmul(&layer.intermediate.weight)?;
        let width = layer.intermediate.bias.len();
        let mut activated = vec![0f32; rows * width];
        with_values(&inner, |i| {
            bias_gelu(i, &layer.intermediate.bias, &mut activated)
        })?;
        drop(inner);

        let out = Tensor::from_vec(activated, (rows, width), &self.device)?
            .matmul(&layer.output.weight)?;
        let mut residual = with_values(&x, <[f32]>::to_vec)?;
        with_values(&out, |o| {
            add_norm(&mut residual, o, &layer.output.bias, &layer.output_norm, h)
        })?;
        Ok(residual)
    }
}

/// Runs `f` over the values of a contiguous f32 CPU tensor without copying them.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> anyhow::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        anyhow::bail!("the encoder runs on the CPU only");
    };
    let all = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        anyhow::bail!("a tensor of the encoder is not contiguous");
    };
    Ok(f(&all[start..end]))
}

// Each kernel below is a struct run through `Arch::dispatch`, which compiles its
// `with_simd` (and everything inlined into it) for the widest vector instructions the CPU
// has (AVX2 and FMA here) and picks that version at run time. Closures would not do: the
// compiler keeps them out of line, compiled for the baseline instruction set.

struct Embed<'a> {
    out: &'a mut [f32],
    word: &'a [f32],
    position: &'a [f32],
    segment: &'a [f32],
    norm: &'a Norm,
}

impl WithSimd for Embed<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for (((o, w), p), s) in self
            .out
            .iter_mut()
            .zip(self.word)
            .zip(self.position)
            .zip(self.segment)
        {
            *o = w + p + s;
        }
        layer_norm(self.out, self.norm);
    }
}

struct AddNorm<'a> {
    residual: &'a mut [f32],
    x: &'a [f32],
    bias: &'a [f32],
    norm: &'a Norm,
}

impl WithSimd for AddNorm<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for ((r, x), b) in self.residual.iter_mut().zip(self.x).zip(self.bias) {
            *r += x + b;
        }
        layer_norm(self.residual, self.norm);
    }
}

struct BiasGelu<'a> {
    out: &'a mut [f32],
    x: &'a [f32],
    bias: &'a [f32],
}

impl WithSimd for BiasGelu<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        for ((o, x), b) in self.out.iter_mut().zip(self.x).zip(self.bias) {
            let v = x + b;
            *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    acc.iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Layer normalisation of one row in place.
#[inline(always)]
fn layer_norm(row: &mut [f32], n: &Norm) {
    let len = row.len() as f32;
    let mean = sum(row) / len;
    for x in row.iter_mut() {
        *x -= mean;
    }
    let mut acc = [0f32; LANES];
    for c in row.chunks_exact(LANES) {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    let rest: f32 = row
        .chunks_exact(LANES)
        .remainder()
        .iter()
        .map(|x| x * x)
        .sum();
    let var = (acc.iter().sum::<f32>() + rest) / len;
    let scale = 1.0 / (var + n.eps).sqrt();
    for ((x, w), b) in row.iter_mut().zip(&n.weight).zip(&n.bias) {
        *x = *x * scale * w + b;
    }
}

/// `residual = norm(residual + x + bias)`, row by row.
fn add_norm(residual: &mut [f32], x: &[f32], bias: &[f32], n: &Norm, width: usize) {
    residual
        .par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .with_min_len(16)
        .for_each(|(residual, x)| {
            Arch::new().dispatch(AddNorm {
                residual,
                x,
                bias,
                norm: n,
            })
        });
}

/// `out = gelu(x + bias)` with the exact (error-function) GELU, row by row.
fn bias_gelu(x: &[f32], bias: &[f32], out: &mut [f32]) {
    let width = bias.len();
    out.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .with_min_len(16)
        .for_each(|(out, x)| Arch::new().dispatch(BiasGelu { out, x, bias }));
}

/// `e^x` for f32, to about one unit in the last place, in a form the compiler turns into
/// vector instructions (range reduction by powers of two, then a polynomial).
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The error function, within 1.5e-7 (Abramowitz and Stegun 7.1.26).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Scaled dot-product attention of every text over its own rows. `qkv` holds each
/// token's query, key and value (without their bias); `context` receives each token's
/// attended values, head after head.
fn attention(
    qkv: &[f32],
    bias: &[f32],
    context: &mut [f32],
    starts: &[usize],
    hidden: usize,
    heads: usize,
) {
    // Each text's rows are one chunk of `context`, so texts run in parallel.
    let mut chunks = Vec::with_capacity(starts.len() - 1);
    let mut rest = context;
    for w in starts.windows(2) {
        let (this, tail) = rest.split_at_mut((w[1] - w[0]) * hidden);
        chunks.push((w[0], this));
        rest = tail;
    }
    chunks.into_par_iter().for_each(|(start, out)| {
        let len = out.len() / hidden;
        Arch::new().dispatch(Attend {
            rows: &qkv[start * 3 * hidden..(start + len) * 3 * hidden],
            bias,
            out,
            len,
            hidden,
            heads,
        })
    });
}

/// Attention of one text: `rows` are its tokens' query, key and value, `out` its rows of
/// the context.
struct Attend<'a> {
    rows: &'a [f32],
    bias: &'a [f32],
    out: &'a mut [f32],
    len: usize,
    hidden: usize,
    heads: usize,
}

/// Queries handled together: each key (and value) vector loaded is used for this many.
const BLOCK: usize = 4;

impl WithSimd for Attend<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Self {
            rows,
            bias,
            out,
            len,
            hidden,
            heads,
        } = self;
        let d = hidden / heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Keys transposed (`d × padded`), values as rows (`len × d`), both with their bias;
        // the padding columns of the keys are zero and their scores never read.
        let padded = len.next_multiple_of(LANES);
        let mut keys = vec![0f32; d * padded];
        let mut vals = vec![0f32; len * d];
        let mut queries = [[0f32; 64]; BLOCK];
        let mut probs = vec![0f32; BLOCK * padded];
        for head in 0..heads {
            let (q0, k0, v0) = (head * d, hidden + head * d, 2 * hidden + head * d);
            let (kb, vb, qb) = (&bias[k0..k0 + d], &bias[v0..v0 + d], &bias[q0..q0 + d]);
            for (j, row) in rows.chunks_exact(3 * hidden).enumerate() {
                for (c, (x, b)) in row[k0..k0 + d].iter().zip(kb).enumerate() {
                    keys[c * padded + j] = x + b;
                }
                for ((v, x), b) in vals[j * d..(j + 1) * d]
                    .iter_mut()
                    .zip(&row[v0..v0 + d])
                    .zip(vb)
                {
                    *v = x + b;
                }
            }
            for i0 in (0..len).step_by(BLOCK) {
                let block = BLOCK.min(len - i0);
                for (r, q) in queries.iter_mut().enumerate() {
                    if r < block {
                        let row = &rows[(i0 + r) * 3 * hidden..(i0 + r + 1) * 3 * hidden];
                        for ((q, x), b) in q.iter_mut().zip(&row[q0..q0 + d]).zip(qb) {
                            *q = (x + b) * scale;
                        }
                    } else {
                        q.fill(0.0);
                    }
                }
                // Scores: each block of LANES keys against the BLOCK queries, the sums kept
                // in registers over the head's dimensions.
                for j0 in (0..padded).step_by(LANES) {
                    let mut acc = [[0f32; LANES]; BLOCK];
                    for c in 0..d {
                        let k: &[f32; LANES] = keys[c * padded + j0..c * padded + j0 + LANES]
                            .try_into()
                            .expect("LANES keys");
                        for (a, q) in acc.iter_mut().zip(&queries) {
                            let q = q[c];
                            for (a, k) in a.iter_mut().zip(k) {
                                *a = q.mul_add(*k, *a);
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        probs[r * padded + j0..r * padded + j0 + LANES].copy_from_slice(a);
                    }
                }
                for r in 0..block {
                    let p = &mut probs[r * padded..r * padded + len];
                    let top = max(p);
                    for s in p.iter_mut() {
                        *s = exp(*s - top);
                    }
                    let inv = 1.0 / sum(p);
                    for s in p.iter_mut() {
                        *s *= inv;
                    }
                }
                // Context: LANES dimensions at a time for the BLOCK queries, over all values.
                for c0 in (0..d).step_by(LANES) {
                    let mut acc = [[0f32; LANES]; BLOCK];
                    for j in 0..len {
                        let v: &[f32; LANES] = vals[j * d + c0..j * d + c0 + LANES]
                            .try_into()
                            .expect("LANES values");
                        for (r, a) in acc.iter_mut().enumerate() {
                            let p = probs[r * padded + j];
                            for (a, v) in a.iter_mut().zip(v) {
                                *a = p.mul_add(*v, *a);
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate().take(block) {
                        let at = (i0 + r) * hidden + q0 + c0;
                        out[at..at + LANES].copy_from_slice(a);
                    }
                }
            }
        }
    }
}

/// The mean of a text's rows, L2-normalised.
fn pool(rows: &[f32], width: usize) -> Vec<f32> {
    let count = (rows.len() / width) as f32;
    let mut mean = vec![0f32; width];
    for row in rows.chunks_exact(width) {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    for m in mean.iter_mut() {
        *m /= count;
    }
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for m in mean.iter_mut() {
        *m /= norm;
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::bert::{BertModel, Config};

    const CONFIG: &str = r#"{
        "vocab_size": 50, "type_vocab_size": 2, "hidden_size": 32, "num_attention_heads": 4,
        "num_hidden_layers": 2, "intermediate_size": 64, "max_position_embeddings": 40,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "pad_token_id": 0, "model_type": "bert", "position_embedding_type": "absolute",
        "initializer_range": 0.02
    }"#;

    /// A small BERT with random weights, and candle's own BERT over the same weights.
    fn models() -> (Encoder, BertModel) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let config: Config = serde_json::from_str(CONFIG).unwrap();
        // Creating candle's model creates the variables (random); ours reads them.
        let reference = BertModel::load(vb.clone(), &config).unwrap();
        let shape: Shape = serde_json::from_str(CONFIG).unwrap();
        (Encoder::load(vb, &shape).unwrap(), reference)
    }

    /// What candle's BERT gives for the same sequences, padded to the longest with an
    /// attention mask, mean-pooled over the mask and normalised.
    fn padded(reference: &BertModel, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        let width = seqs.iter().map(|s| s.len()).max().unwrap();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(0u32, width - s.len()));
            mask.extend(std::iter::repeat_n(1u32, s.len()));
            mask.extend(std::iter::repeat_n(0u32, width - s.len()));
        }
        let ids = Tensor::from_vec(ids, (seqs.len(), width), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (seqs.len(), width), &Device::Cpu).unwrap();
        let hidden = reference
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap();
        let mask = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
        let mean = hidden
            .broadcast_mul(&mask)
            .unwrap()
            .sum(1)
            .unwrap()
            .broadcast_div(&mask.sum(1).unwrap())
            .unwrap();
        let norm = mean.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
        mean.broadcast_div(&norm).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn packed_rows_give_what_a_padded_masked_batch_gives() {
        let (encoder, reference) = models();
        // Lengths from one token to the most positions, so texts of one batch differ
        // widely and the padded reference masks a lot.
        let seqs: Vec<Vec<u32>> = [1usize, 2, 7, 8, 9, 17, 33, 40]
            .iter()
            .enumerate()
            .map(|(n, &len)| (0..len).map(|i| ((i * 7 + n * 3) % 50) as u32).collect())
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let ours = encoder.embed(&refs).unwrap();
        let theirs = padded(&reference, &refs);
        assert_eq!(ours.len(), seqs.len());
        // The random weights make different texts different vectors (else the comparison
        // below would hold for any encoder).
        let alike: f32 = ours[0].iter().zip(&ours[7]).map(|(x, y)| x * y).sum();
        assert!(alike < 0.95, "two different texts have cosine {alike}");
        for (n, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a.len(), 32);
            let cosine: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                cosine > 0.99999 && worst < 1e-4,
                "text {n}: cosine {cosine}, largest difference {worst}"
            );
        }
        // A text's vector does not depend on the batch it is in.
        let alone = encoder.embed(&refs[3..4]).unwrap();
        let apart: f32 = alone[0]
            .iter()
            .zip(&ours[3])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(apart < 1e-5, "batch changed a vector by {apart}");
    }

    #[test]
    fn sequences_the_model_cannot_read_are_refused() {
        let (encoder, _) = models();
        let long = vec![1u32; 41];
        let err = encoder.embed(&[&long]).unwrap_err().to_string();
        assert!(
            err.contains("longer than the model's 40 positions"),
            "{err}"
        );
        let err = encoder.embed(&[&[1, 50]]).unwrap_err().to_string();
        assert!(
            err.contains("token id 50 is outside the vocabulary of 50"),
            "{err}"
        );
        let err = encoder.embed(&[&[]]).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        assert!(encoder.embed(&[]).unwrap().is_empty());
    }

    #[test]
    fn the_fast_exp_and_erf_stay_within_float_precision() {
        for i in -8_000..=8_000 {
            let x = i as f32 / 100.0;
            let (ours, std) = (exp(x), x.exp());
            assert!(
                ((ours - std) / std).abs() < 4e-7,
                "exp({x}) = {ours}, not {std}"
            );
        }
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let std = libm_erf(x as f64) as f32;
            assert!(
                (erf(x) - std).abs() < 3e-7,
                "erf({x}) = {}, not {std}",
                erf(x)
            );
        }
    }

    /// The error function by its series and continued fraction in f64, as a reference.
    fn libm_erf(x: f64) -> f64 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)), exact enough for |x| <= 6
        // in f64 with enough terms; beyond 4 erf is 1 within f32 precision.
        if x.abs() > 4.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0f64);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
