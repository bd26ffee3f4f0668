//! `--only-embed`: sentences per second of the in-process embedding model, and of
//! sentence-transformers on torch (CPU) over the same sentences in the same run when
//! `--torch PYTHON` names a Python that has it (`benches/st_throughput.py` is run with
//! it). Needs `FAAS_EMBEDDING_MODEL_DIR` (`. "$(scripts/models.sh env)"`), no backing
//! service.
//!
//! Cases: calls of 32 texts one after another; the same from two callers at once; one
//! call of every text. `--embed-workers N` sets the model's threads (default 1, whose
//! matrix products already use every core; with `RAYON_NUM_THREADS=1` each thread uses
//! one core).

use std::time::Instant;

use faas_runtime::platform::config::Source;
use faas_runtime::shared::embed::{Limits, LocalEmbedder, LocalSettings, MODEL_DIR_SETTING};
use serde_json::Value;

const WORDS: &[&str] = &[
    "the",
    "operator",
    "reconciles",
    "service",
    "deployment",
    "tenant",
    "gateway",
    "model",
    "embedding",
    "vector",
    "search",
    "document",
    "chunk",
    "prompt",
    "template",
    "latency",
    "budget",
    "request",
    "cluster",
    "replica",
    "autoscaler",
    "status",
    "condition",
    "event",
    "stream",
    "cache",
    "policy",
    "network",
    "database",
    "index",
    "query",
    "answer",
    "context",
    "retrieval",
    "ranking",
    "fusion",
    "metrics",
    "trace",
    "error",
    "retry",
    "timeout",
    "quota",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "by",
    "from",
    "each",
];

/// `n` sentences of 30 to 75 words (about 35 to 85 tokens, 60 on average), the same
/// on every run.
pub fn sentences(n: usize) -> Vec<String> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 30 + (next() % 46) as usize;
            let mut s: Vec<&str> = (0..len)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect();
            s[0] = "Each";
            format!("{}.", s.join(" "))
        })
        .collect()
}

fn rate(texts: usize, started: Instant) -> f64 {
    texts as f64 / started.elapsed().as_secs_f64()
}

/// Sentences per second for each case, best of `rounds`.
async fn ours(model: &LocalEmbedder, texts: &[String], rounds: usize) -> Vec<(String, f64)> {
    let mut rows = Vec::new();
    let mut best = |name: &str, value: f64| match rows.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = f64::max(*v, value),
        None => rows.push((name.to_string(), value)),
    };
    for _ in 0..rounds {
        let started = Instant::now();
        for chunk in texts.chunks(32) {
            model.embed_texts(chunk.to_vec()).await.expect("embedding");
        }
        best("calls of 32, one caller", rate(texts.len(), started));

        let started = Instant::now();
        let halves: Vec<&[String]> = texts.chunks(texts.len().div_ceil(2)).collect();
        let callers = halves.into_iter().map(|half| async move {
            for chunk in half.chunks(32) {
                model.embed_texts(chunk.to_vec()).await.expect("embedding");
            }
        });
        futures::future::join_all(callers).await;
        best("calls of 32, two callers", rate(texts.len(), started));

        let started = Instant::now();
        model.embed_texts(texts.to_vec()).await.expect("embedding");
        best("one call of all", rate(texts.len(), started));
    }
    rows
}

/// The torch figures from `st_throughput.py`, keyed like ours.
fn torch(python: &str, texts: &[String], rounds: usize, model_dir: &str) -> Value {
    let file = std::env::temp_dir().join(format!("embed-bench-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(texts).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/st_throughput.py");
    let out = std::process::Command::new(python)
        .args([
            script,
            model_dir,
            file.to_str().unwrap(),
            &rounds.to_string(),
        ])
        .output()
        .expect("running the torch bench");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the torch bench prints JSON")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub async fn run(count: usize, rounds: usize, workers: usize, python: Option<String>) {
    let model_dir = std::env::var(MODEL_DIR_SETTING).unwrap_or_else(|_| {
        eprintln!("{MODEL_DIR_SETTING} is not set: run `. \"$(scripts/models.sh env)\"` first");
        std::process::exit(2)
    });
    let src = Source::new([(MODEL_DIR_SETTING.to_string(), model_dir.clone())].into()).unwrap();
    let settings = LocalSettings {
        workers,
        limits: Limits {
            max_texts: count,
            max_total_bytes: usize::MAX,
            ..Limits::default()
        },
        ..LocalSettings::from_source(&src).unwrap()
    };
    let model = LocalEmbedder::start(&settings).expect("the model loads");
    let texts = sentences(count);
    let tokens = model.embed_texts(texts.clone()).await.unwrap().tokens;
    let load_before = load_average();
    let mut rows = ours(&model, &texts, rounds).await;
    let theirs = python.map(|p| torch(&p, &texts, rounds, &model_dir));
    // Ours again after torch, so a change in the machine's load shows as a spread.
    let again = ours(&model, &texts, rounds).await;
    for (row, (_, v)) in rows.iter_mut().zip(again) {
        row.1 = row.1.max(v);
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    println!(
        "{count} sentences, {:.0} tokens each on average (special tokens included); best of \
         {rounds} rounds before and {rounds} after torch; faas-runtime: {workers} worker \
         thread(s), candle matmul threads: {threads}{}; load average before {load_before}, \
         after {}.\n",
        tokens as f64 / count as f64,
        theirs.as_ref().map_or(String::new(), |t| format!(
            "; torch {} with {} threads, sentence-transformers {}",
            t["torch"].as_str().unwrap_or("?"),
            t["threads"],
            t["sentence_transformers"].as_str().unwrap_or("?")
        )),
        load_average()
    );
    println!("| case | faas-runtime (candle) sentences/s | torch sentences/s | ratio |");
    println!("|---|---|---|---|");
    for (name, ours) in rows {
        let t = theirs
            .as_ref()
            .and_then(|t| t["rates"][name.as_str()].as_f64());
        match t {
            Some(t) => println!("| {name} | {ours:.1} | {t:.1} | {:.2}× |", ours / t),
            None => println!("| {name} | {ours:.1} | — | — |"),
        }
    }
}
