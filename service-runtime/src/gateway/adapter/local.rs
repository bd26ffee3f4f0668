//! The built-in local embedding model: embeddings only, computed in-process.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::gateway::types::{EmbeddingInput, EmbeddingsRequest, Usage};

/// The local model's vectors; token ids are embedded as words, so the same ids give the
/// same vector.
pub fn embed(req: &EmbeddingsRequest, input: &EmbeddingInput) -> (Vec<Vec<f32>>, Usage) {
    let texts = match input {
        EmbeddingInput::Texts(texts) => texts.clone(),
        EmbeddingInput::Tokens(ids) => token_texts(ids),
    };
    let dims = req.dimensions.unwrap_or(384) as usize;
    let tokens: u64 = texts
        .iter()
        .map(|t| t.split_whitespace().count().max(1) as u64)
        .sum();
    let vectors = texts.iter().map(|t| local_embedding(t, dims)).collect();
    (vectors, Usage::new(tokens, 0))
}

/// One text per token list: the ids separated by spaces.
fn token_texts(ids: &Value) -> Vec<String> {
    let join = |list: &[Value]| {
        list.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match ids.as_array() {
        Some(lists) if lists.iter().all(Value::is_array) => lists
            .iter()
            .map(|l| join(l.as_array().map(Vec::as_slice).unwrap_or_default()))
            .collect(),
        Some(list) => vec![join(list)],
        None => Vec::new(),
    }
}

/// Signed feature hashing of lower-cased words and character trigrams, L2-normalised.
/// Deterministic and dependency-free; similar texts get similar vectors.
pub fn local_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    let lower = text.to_lowercase();
    let mut add = |feature: &str, weight: f32| {
        let h = Sha256::digest(feature.as_bytes());
        let idx = u64::from_le_bytes(h[0..8].try_into().unwrap_or([0; 8])) as usize % dims;
        let sign = if h[8] & 1 == 0 { 1.0 } else { -1.0 };
        v[idx] += sign * weight;
    };
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add(&format!("w:{word}"), 1.0);
        let chars: Vec<char> = format!(" {word} ").chars().collect();
        for tri in chars.windows(3) {
            add(&format!("t:{}", tri.iter().collect::<String>()), 0.5);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_embeddings_are_normalised_and_similar_for_similar_text() {
        let a = local_embedding("the cat sat on the mat", 256);
        let b = local_embedding("the cat sat on a mat", 256);
        let c = local_embedding("quarterly revenue projections", 256);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-4);
        assert!(dot(&a, &b) > dot(&a, &c));
    }

    #[test]
    fn token_ids_are_embedded_as_words_one_vector_per_list() {
        let req: EmbeddingsRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "input": [[1, 2], [3]], "dimensions": 8}),
        )
        .unwrap();
        let (input, _) = req.validate().unwrap();
        let (vectors, usage) = embed(&req, &input);
        assert_eq!(vectors.len(), 2);
        assert_eq!(vectors[0], local_embedding("1 2", 8));
        assert_eq!(usage, Usage::new(3, 0));
    }
}
