//! faas-runtime-bench: measures the release binary against the real backing
//! services and prints a Markdown report.
//!
//!   scripts/services.sh up && . "$(scripts/services.sh env)"
//!   cargo build --release -p faas-runtime --bins
//!   target/release/faas-runtime-bench [--seconds N]
//!
//! What it measures: process start to `/readyz` 200 and idle RSS; the latency
//! the gateway adds over calling a local OpenAI-compatible server directly at
//! 1, 8 and 32 connections (both measured in the same run); cache set/get
//! throughput and latency; llmops ingest rate over HTTP and over NATS.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faas_runtime::platform::RequestContext;
use faas_runtime::platform::events::{Envelope, EventBus};
use faas_runtime::platform::metrics::Metrics;
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-of-sufficient-length";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set: run scripts/services.sh up and source its env file first");
        std::process::exit(2)
    })
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn token(tenant: &str, roles: &[&str]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "bench", "tenant_id": tenant, "roles": roles, "exp": chrono::Utc::now().timestamp() + 7200}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Runtime {
    child: Child,
    base: String,
    nats_prefix: String,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn runtime_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("dir").join("faas-runtime")
}

fn spawn(services: &str) -> Runtime {
    let port = free_port();
    let nats_prefix = unique("bench");
    let child = Command::new(runtime_binary())
        .args(["serve", "--service", services, "--migrate"])
        .env_clear()
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("NATS_URL", env("NATS_URL"))
        .env("FAAS_JWT_HS256_SECRET", SECRET)
        .env("FAAS_LISTEN", format!("127.0.0.1:{port}"))
        .env("FAAS_REDIS_PREFIX", unique("bench"))
        .env("FAAS_NATS_PREFIX", &nats_prefix)
        .env("FAAS_DB_MAX_CONNECTIONS", "20")
        // The per-tenant rate check runs on every request but never refuses one here.
        .env("FAAS_TENANT_RATE_LIMIT", "1000000")
        // The measured provider is a local server.
        .env("FAAS_EGRESS_ALLOW", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start faas-runtime (build it with --release first)");
    Runtime {
        child,
        base: format!("http://127.0.0.1:{port}"),
        nats_prefix,
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> bool {
    for _ in 0..20_000 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Load {
    count: usize,
    errors: usize,
    secs: f64,
    lat: Vec<Duration>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.count as f64 / self.secs
    }
    fn p50(&self) -> f64 {
        pct(&self.lat, 0.5)
    }
    fn p99(&self) -> f64 {
        pct(&self.lat, 0.99)
    }
}

/// `conns` connections, each sending requests one after another for `secs`.
async fn load<F>(conns: usize, secs: f64, make: F) -> Load
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = c * 1_000_000;
            // Bounded by time and by count.
            while Instant::now() < deadline && lat.len() < 2_000_000 {
                let t0 = Instant::now();
                match make(&client, i).send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.bytes().await;
                        if ok {
                            lat.push(t0.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Load {
        count: all.len(),
        errors,
        secs,
        lat: all,
    }
}

/// A minimal OpenAI-compatible chat server with a fixed answer.
async fn mock_provider() -> SocketAddr {
    let answer = json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    })
    .to_string();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let a = answer.clone();
            async move { ([("content-type", "application/json")], a) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let client = reqwest::Client::new();
    let mut out = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "Measured {} on {} cores ({cpu}), release build, Postgres/Redis/NATS from scripts/services.sh on loopback, \
         load generator and local provider in one process beside the runtime; {secs} s per load step.\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    ));

    // 1. Start-up and idle memory.
    let mut starts = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let rt = spawn("all");
        assert!(wait_ready(&client, &rt.base).await, "runtime not ready");
        starts.push(t0.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_kib(rt.child.id()));
    }
    starts.sort();
    rss.sort();
    out.push_str("### Start-up (`serve --service all`, migrations already applied)\n\n");
    out.push_str("| metric | median | min | max |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| process start → `/readyz` 200 | {:.0} ms | {:.0} ms | {:.0} ms |\n",
        pct(&starts, 0.5),
        pct(&starts, 0.0),
        pct(&starts, 1.0)
    ));
    out.push_str(&format!(
        "| idle RSS 1 s after ready | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n\n",
        rss[rss.len() / 2] as f64 / 1024.0,
        rss[0] as f64 / 1024.0,
        rss[rss.len() - 1] as f64 / 1024.0
    ));
    eprintln!("start-up done");

    // 2. Gateway overhead.
    // Each component in a process of its own, as deployed.
    let rt = spawn("gateway");
    assert!(wait_ready(&client, &rt.base).await);
    let provider = mock_provider().await;
    let tenant = unique("bench");
    let admin = token(&tenant, &["admin"]);
    let r = client
        .post(format!("{}/v1/gateway/providers", rt.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "local", "kind": "openai", "base_url": format!("http://{provider}/v1"), "models": ["bench-model"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let body =
        json!({"model": "bench-model", "messages": [{"role": "user", "content": "Say ok."}]})
            .to_string();
    out.push_str("### Gateway: added latency over calling the provider directly (`serve --service gateway`)\n\n");
    out.push_str("Non-streamed `POST /v1/chat/completions`, sampled (not cached). Each row measures the direct call and the call through the gateway back to back.\n\n");
    out.push_str("| connections | direct p50 | direct p99 | gateway p50 | gateway p99 | added p50 | added p99 | gateway req/s | errors |\n|---|---|---|---|---|---|---|---|---|\n");
    for conns in [1usize, 8, 32] {
        let b = body.clone();
        let direct = load(conns, secs, move |c, _| {
            c.post(format!("http://{provider}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(b.clone())
        })
        .await;
        let (b, base, tok) = (body.clone(), rt.base.clone(), token(&tenant, &[]));
        let gw = load(conns, secs, move |c, _| {
            c.post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&tok)
                .header("content-type", "application/json")
                .body(b.clone())
        })
        .await;
        out.push_str(&format!(
            "| {conns} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {} |\n",
            direct.p50(),
            direct.p99(),
            gw.p50(),
            gw.p99(),
            gw.p50() - direct.p50(),
            gw.p99() - direct.p99(),
            gw.rps(),
            gw.errors
        ));
        eprintln!("gateway {conns} done");
    }
    out.push('\n');

    // 3. Cache.
    drop(rt);
    let rt = spawn("cache");
    assert!(wait_ready(&client, &rt.base).await);
    out.push_str("### Cache\n\n| operation | connections | req/s | p50 | p99 | errors |\n|---|---|---|---|---|---|\n");
    for conns in [8usize, 32] {
        let (base, tok) = (rt.base.clone(), token(&unique("cache"), &[]));
        let set = load(conns, secs, move |c, i| {
            c.put(format!("{base}/v1/cache/items/key-{}", i % 10_000))
                .bearer_auth(&tok)
                .json(&json!({"value": {"n": i, "s": "some cached value"}, "ttl_seconds": 600}))
        })
        .await;
        out.push_str(&format!(
            "| set (PUT) | {conns} | {:.0} | {:.2} ms | {:.2} ms | {} |\n",
            set.rps(),
            set.p50(),
            set.p99(),
            set.errors
        ));
        // Hits: read back the keys just written by the set tenant.
        let (base, tok) = (rt.base.clone(), token(&unique("cache"), &[]));
        for i in 0..200 {
            let _ = client
                .put(format!("{base}/v1/cache/items/hot-{i}"))
                .bearer_auth(&tok)
                .json(&json!({"value": i}))
                .send()
                .await;
        }
        let hits = load(conns, secs, move |c, i| {
            c.get(format!("{base}/v1/cache/items/hot-{}", i % 200))
                .bearer_auth(&tok)
        })
        .await;
        out.push_str(&format!(
            "| get (GET, hits) | {conns} | {:.0} | {:.2} ms | {:.2} ms | {} |\n",
            hits.rps(),
            hits.p50(),
            hits.p99(),
            hits.errors
        ));
        eprintln!("cache {conns} done");
    }
    out.push('\n');

    // 4. llmops ingest.
    drop(rt);
    let rt = spawn("llmops");
    assert!(wait_ready(&client, &rt.base).await);
    let pool = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let tenant = unique("ops");
    let batch: Value = json!({"events": (0..100).map(|i| json!({
        "model": "gpt-4o-mini", "provider": "bench", "tokens_in": 100 + i, "tokens_out": 20,
        "latency_ms": 12.5, "status": "ok"})).collect::<Vec<_>>()});
    let (base, tok, b) = (rt.base.clone(), token(&tenant, &[]), batch.to_string());
    let http = load(4, secs, move |c, _| {
        c.post(format!("{base}/v1/llmops/events"))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body(b.clone())
    })
    .await;
    out.push_str("### llmops ingest\n\n| path | events/s | notes |\n|---|---|---|\n");
    out.push_str(&format!(
        "| HTTP `POST /v1/llmops/events`, batches of 100, 4 connections | {:.0} | batch p50 {:.1} ms, p99 {:.1} ms, {} errors |\n",
        http.rps() * 100.0,
        http.p50(),
        http.p99(),
        http.errors
    ));
    let bus = EventBus::connect(&env("NATS_URL"), &rt.nats_prefix, Arc::new(Metrics::new()))
        .await
        .unwrap();
    let tenant = unique("nats");
    let ctx = RequestContext {
        tenant_id: Some(tenant.clone()),
        ..RequestContext::background()
    };
    let n = 5_000i64;
    let t0 = Instant::now();
    let mut pending = Vec::new();
    for i in 0..n {
        let ev = json!({"model": "gpt-4o-mini", "tokens_in": i, "tokens_out": 1, "latency_ms": 1.0, "status": "ok"});
        let env = Envelope::new_json("llmop.v1", &ctx, &ev).unwrap();
        let bus = bus.clone();
        pending.push(tokio::spawn(
            async move { bus.publish("llmop", &env).await },
        ));
        if pending.len() >= 256 {
            for p in pending.drain(..) {
                p.await.unwrap().unwrap();
            }
        }
    }
    for p in pending.drain(..) {
        p.await.unwrap().unwrap();
    }
    let published = t0.elapsed();
    let mut stored = 0i64;
    while t0.elapsed() < Duration::from_secs(300) {
        stored = sqlx::query_scalar("SELECT count(*) FROM llm_operations WHERE tenant_id = $1")
            .bind(&tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
        if stored >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = t0.elapsed();
    out.push_str(&format!(
        "| NATS JetStream, one durable consumer, one event a message | {:.0} | {stored} of {n} events stored {:.2} s after the first publish (publishing took {:.2} s) |\n",
        stored as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        published.as_secs_f64()
    ));
    drop(rt);
    println!("{out}");
}
