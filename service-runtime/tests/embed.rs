//! The in-process embedding model against vectors sentence-transformers computed for the
//! same texts (`tests/fixtures/minilm_reference.json`, made by the script beside it), its
//! limits and its queue; and the gateway-backed embedder against a real gateway.
//!
//! Needs the model folder: `. "$(scripts/models.sh env)"` sets `FAAS_EMBEDDING_MODEL_DIR`.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::response::IntoResponse;
use common::*;
use faas_runtime::Component;
use faas_runtime::platform::config::Source;
use faas_runtime::platform::{ApiError, RequestContext};
use faas_runtime::shared::embed::{
    EmbedError, Embedder, GatewayEmbedder, Limits, LocalEmbedder, LocalSettings, MODEL_DIR_SETTING,
};
use faas_runtime::shared::gateway_client::{GatewayClient, OnBehalfOf};
use serde::Deserialize;
use serde_json::json;

/// The model folder; a test that needs it fails (never skips) when it is not set.
fn model_dir() -> String {
    match std::env::var(MODEL_DIR_SETTING) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{MODEL_DIR_SETTING} is not set: this test needs the model files. Run \
             `. \"$(scripts/models.sh env)\"` before `cargo test -p faas-runtime`"
        ),
    }
}

fn source(vars: &[(&str, &str)]) -> Source {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Source::new(env).unwrap()
}

/// One model for the tests of this file (loading it reads 90 MB).
fn local() -> &'static LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        LocalEmbedder::from_source(&source(&[(MODEL_DIR_SETTING, &model_dir())]))
            .expect("the model folder loads")
    })
}

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens: u64,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn texts(r: &Reference) -> Vec<String> {
    r.items.iter().map(|i| i.text.clone()).collect()
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let r = reference();
    let model = local();
    assert_eq!(model.dimensions(), 384);
    assert_eq!(model.model(), "all-MiniLM-L6-v2");
    assert_eq!(model.max_tokens(), r.max_seq_length);
    let out = model.embed_texts(texts(&r)).await.unwrap();
    assert_eq!(out.vectors.len(), r.items.len());
    let mut lowest = 1f64;
    for (item, v) in r.items.iter().zip(&out.vectors) {
        assert_eq!(v.len(), 384, "{:?}", item.text);
        let norm = dot(v, v).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{:?}: norm {norm}", item.text);
        let c = cosine(v, &item.vector);
        assert!(c >= 0.9999, "{:?}: cosine {c:.7}", item.text);
        lowest = lowest.min(c);
    }
    eprintln!("lowest cosine to sentence-transformers: {lowest:.7}");
    // Texts longer than the model reads are cut at max_seq_length tokens, as
    // sentence-transformers cuts them, not at the tokenizer file's 128.
    let tokens: u64 = r.items.iter().map(|i| i.tokens).sum();
    assert_eq!(out.tokens, tokens);
    assert!(r.items.iter().any(|i| i.tokens == r.max_seq_length as u64));
}

#[tokio::test]
async fn a_text_gets_the_same_vector_alone_and_in_a_batch() {
    let r = reference();
    let model = local();
    let batch = model.embed_texts(texts(&r)).await.unwrap();
    for (item, in_batch) in r.items.iter().zip(&batch.vectors) {
        let alone = model.embed_texts(vec![item.text.clone()]).await.unwrap();
        let worst = alone.vectors[0]
            .iter()
            .zip(in_batch)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{:?}: differs by {worst}", item.text);
        assert_eq!(alone.tokens, item.tokens, "{:?}", item.text);
    }
    // Order is the input's, whatever order the batches ran in.
    let mut reversed = texts(&r);
    reversed.reverse();
    let back = model.embed_texts(reversed).await.unwrap();
    for (a, b) in back.vectors.iter().rev().zip(&batch.vectors) {
        assert!(cosine(a, b) > 0.99999);
    }
}

#[tokio::test]
async fn similar_texts_are_closer_than_unrelated_ones() {
    let out = local()
        .embed_texts(vec![
            "How do I reset my password?".into(),
            "I forgot my password and need to change it.".into(),
            "The quarterly revenue grew by twelve percent.".into(),
        ])
        .await
        .unwrap();
    let v = &out.vectors;
    assert!(cosine(&v[0], &v[1]) > 0.6, "{}", cosine(&v[0], &v[1]));
    assert!(cosine(&v[0], &v[2]) < 0.2, "{}", cosine(&v[0], &v[2]));
}

fn status_and_retry(e: EmbedError) -> (u16, Option<String>, String) {
    let detail = e.to_string();
    let resp = ApiError::from(e).into_response();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), retry, detail)
}

#[tokio::test]
async fn oversized_input_is_refused_with_the_limit_it_breaks() {
    let model = local();
    let limits = model.limits();
    assert_eq!(limits, Limits::default());

    let many = vec!["a".to_string(); limits.max_texts + 1];
    let e = model.embed_texts(many).await.unwrap_err();
    assert!(
        matches!(
            e,
            EmbedError::TooManyTexts {
                given: 257,
                max: 256
            }
        ),
        "{e:?}"
    );
    let (status, _, detail) = status_and_retry(e);
    assert_eq!(status, 422);
    assert!(
        detail.contains("257 texts") && detail.contains("256"),
        "{detail}"
    );

    let long = "é".repeat(limits.max_text_chars + 1);
    let e = model
        .embed_texts(vec!["fine".into(), long])
        .await
        .unwrap_err();
    let (status, _, detail) = status_and_retry(e);
    assert_eq!(status, 422);
    assert!(detail.starts_with("input[1]: 32769 characters"), "{detail}");
    // Characters, not bytes: the longest allowed text of two-byte characters passes.
    let at_limit = "é".repeat(limits.max_text_chars);
    assert!(model.embed_texts(vec![at_limit]).await.is_ok());

    let big = vec!["x".repeat(limits.max_text_chars); 33];
    let e = model.embed_texts(big).await.unwrap_err();
    let (status, _, detail) = status_and_retry(e);
    assert_eq!(status, 422);
    assert!(
        detail.contains("1081344 bytes") && detail.contains("1048576"),
        "{detail}"
    );

    let e = model.embed_texts(Vec::new()).await.unwrap_err();
    assert_eq!(status_and_retry(e).0, 422);
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once_with_retry_after() {
    let settings = LocalSettings {
        workers: 1,
        queue: 1,
        ..LocalSettings::from_source(&source(&[(MODEL_DIR_SETTING, &model_dir())])).unwrap()
    };
    let model = LocalEmbedder::start(&settings).unwrap();
    let batch: Vec<String> = (0..64)
        .map(|i| format!("sentence number {i} of a batch that keeps the worker busy for a while"))
        .collect();
    // Submitted together: one runs, one waits, the others find the queue full.
    let calls = (0..6).map(|_| model.embed_texts(batch.clone()));
    let results = futures::future::join_all(calls).await;
    let done = results.iter().filter(|r| r.is_ok()).count();
    let busy: Vec<_> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|e| {
            assert!(matches!(e, EmbedError::Busy { .. }), "{e:?}");
            status_and_retry(e)
        })
        .collect();
    assert!(
        done >= 1 && !busy.is_empty(),
        "{done} done, {} busy",
        busy.len()
    );
    for (status, retry, detail) in busy {
        assert_eq!(status, 503);
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!(secs >= 1, "{secs}");
        assert!(detail.contains("at capacity"), "{detail}");
    }
    // Once the queue drains, calls are served again.
    assert!(model.embed_texts(vec!["again".into()]).await.is_ok());
}

#[test]
fn start_up_stops_without_a_usable_model_folder_naming_the_setting() {
    let e = LocalEmbedder::from_source(&source(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(MODEL_DIR_SETTING) && e.contains("required"),
        "{e}"
    );

    let empty = std::env::temp_dir().join(unique("embed-empty-"));
    std::fs::create_dir_all(&empty).unwrap();
    let e = LocalEmbedder::from_source(&source(&[(MODEL_DIR_SETTING, empty.to_str().unwrap())]))
        .unwrap_err()
        .to_string();
    assert!(e.contains(MODEL_DIR_SETTING), "{e}");
    assert!(e.contains("lacks model.safetensors, tokenizer.json"), "{e}");

    // Every file but the weights.
    for f in ["tokenizer.json", "config.json", "sentence_bert_config.json"] {
        std::fs::copy(std::path::Path::new(&model_dir()).join(f), empty.join(f)).unwrap();
    }
    let e = LocalEmbedder::from_source(&source(&[(MODEL_DIR_SETTING, empty.to_str().unwrap())]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lacks model.safetensors") && !e.contains("tokenizer"),
        "{e}"
    );
    std::fs::write(empty.join("model.safetensors"), b"not weights").unwrap();
    let e = LocalEmbedder::from_source(&source(&[(MODEL_DIR_SETTING, empty.to_str().unwrap())]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(MODEL_DIR_SETTING) && e.contains("model.safetensors"),
        "{e}"
    );
    std::fs::remove_dir_all(&empty).unwrap();

    let e = LocalEmbedder::from_source(&source(&[
        (MODEL_DIR_SETTING, &model_dir()),
        ("FAAS_EMBEDDING_WORKERS", "0"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("FAAS_EMBEDDING_WORKERS"), "{e}");
}

#[sqlx::test]
async fn the_gateway_embedder_calls_the_gateway_for_the_caller(pool: sqlx::PgPool) {
    let tenant = unique("emb");
    let mock = common::mock::start().await;
    let app = app(Some(pool), &[Component::Gateway]).await;
    add_provider(
        &app,
        &tenant,
        json!({"name": "main", "kind": "openai", "base_url": mock.openai_url(),
               "models": ["text-embedding-3-small"]}),
    )
    .await;
    let url = serve_tcp(&app.router).await;
    let client = GatewayClient::new(&url, app.state.http.clone(), Duration::from_secs(10)).unwrap();
    let who = OnBehalfOf::bearer(&user(&tenant));
    let ctx = RequestContext {
        tenant_id: Some(tenant.clone()),
        ..RequestContext::background()
    };

    // The local server answers vectors of three values, the first the length of the text
    // as a JSON string (quotes included), and two tokens a text.
    let gw = GatewayEmbedder::new(client.clone(), "text-embedding-3-small", 3);
    let out = gw
        .embed(&who, &ctx, vec!["a".into(), "bcd".into()])
        .await
        .unwrap();
    assert_eq!(
        out.vectors,
        vec![vec![3.0, 0.5, -0.25], vec![5.0, 0.5, -0.25]]
    );
    assert_eq!(out.tokens, 4);
    assert_eq!((gw.model(), gw.dimensions()), ("text-embedding-3-small", 3));

    // Vectors of another length than the embedder promises are the gateway's fault.
    let wrong = GatewayEmbedder::new(client.clone(), "text-embedding-3-small", 384);
    let e = wrong.embed(&who, &ctx, vec!["a".into()]).await.unwrap_err();
    let (status, _, detail) = status_and_retry(e);
    assert_eq!(status, 502);
    assert!(detail.contains("3 values, not 384"), "{detail}");

    // Limits hold before anything is sent; the gateway's refusals keep their reason.
    let e = gw
        .embed(&who, &ctx, vec!["a".to_string(); 257])
        .await
        .unwrap_err();
    assert!(matches!(e, EmbedError::TooManyTexts { .. }), "{e:?}");
    let other = OnBehalfOf::bearer(&user(&unique("emb")));
    let e = gw.embed(&other, &ctx, vec!["a".into()]).await.unwrap_err();
    let (status, _, detail) = status_and_retry(e);
    assert_eq!(status, 404, "{detail}");
    assert!(detail.starts_with("gateway: "), "{detail}");
}
