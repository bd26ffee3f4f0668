//! faas-runtime-bench: measures the release binary against the real backing
//! services and prints a Markdown report.
//!
//!   scripts/services.sh up && . "$(scripts/services.sh env)"
//!   cargo build --release -p faas-runtime --bins
//!   target/release/faas-runtime-bench [--seconds N] [--only-gateway] [--pin]
//!       [--runtime PATH]
//!
//! What it measures: process start to `/readyz` 200 and idle RSS; the latency
//! the gateway adds over calling a local OpenAI-compatible server directly at
//! 1, 8 and 32 connections (both measured in the same run), plain, with tenant
//! limits and a budget, streamed (first and last byte), from the response cache
//! and through a fallback; the gateway's own CPU time per call; that every call's
//! LLM-operation event reached JetStream; cache set/get throughput and latency;
//! llmops ingest rate over HTTP and over NATS.
//!
//! `--only-embed [--sentences N] [--rounds N] [--embed-workers N] [--torch PYTHON]`
//! measures only the in-process embedding model, against sentence-transformers on torch
//! in the same run when `--torch` is given (see `embed.rs`); it needs
//! `FAAS_EMBEDDING_MODEL_DIR` and no backing service.
//!
//! `--only-rag [--chunks N] [--queries N]` measures only rag: ingest over HTTP, and
//! vector/keyword/hybrid queries at 100,000 chunks beside the same SQL, with the recall
//! of the filtered HNSW query (see `rag.rs`); it needs the backing services' env and
//! `FAAS_EMBEDDING_MODEL_DIR`.
//!
//! `--pin` runs the runtime on CPU 0 (`taskset -c 0`); run the bench itself under
//! `taskset -c 1` so the load generator and the local provider stay off the
//! gateway's core. `--runtime` measures another build of `faas-runtime`.

mod embed;
mod rag;

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

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn runtime_binary() -> std::path::PathBuf {
    if let Some(path) = arg("--runtime") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("dir").join("faas-runtime")
}

fn spawn(services: &str) -> Runtime {
    spawn_with(services, &[])
}

fn spawn_with(services: &str, extra: &[(&str, &str)]) -> Runtime {
    let port = free_port();
    let nats_prefix = unique("bench");
    let mut cmd = if flag("--pin") {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(runtime_binary());
        c
    } else {
        Command::new(runtime_binary())
    };
    let child = cmd
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
        .envs(extra.iter().copied())
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

/// User plus system CPU time the process has used so far (from `/proc/<pid>/stat`).
fn cpu_time(pid: u32) -> Duration {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let (utime, stime) = (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    );
    Duration::from_secs_f64((utime + stime) as f64 / ticks)
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
    /// Time to the first byte of the body, for calls that report it (streams).
    first: Vec<Duration>,
    /// CPU time of the measured process during the step.
    cpu: Duration,
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
    /// Microseconds of the process's CPU time per call, errors included.
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.count + self.errors).max(1) as f64
    }
    fn sent(&self) -> usize {
        self.count + self.errors
    }
}

/// `conns` connections, each sending requests one after another for `secs`.
async fn load<F>(conns: usize, secs: f64, make: F) -> Load
where
    F: Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    load_calls(conns, secs, None, move |c, i| {
        let rb = make(&c, i);
        async move {
            let r = rb.send().await.map_err(|_| ())?;
            let ok = r.status().is_success();
            let _ = r.bytes().await;
            if ok { Ok(None) } else { Err(()) }
        }
    })
    .await
}

/// `conns` connections, each making calls one after another for `secs`; a call
/// answers whether it succeeded and, if it measures one, its time to first byte.
/// With `pid`, the CPU time that process used during the step is taken too.
async fn load_calls<F, Fut>(conns: usize, secs: f64, pid: Option<u32>, make: F) -> Load
where
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<Duration>, ()>> + Send,
{
    let make = Arc::new(make);
    let cpu0 = pid.map(cpu_time);
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
            let mut first = Vec::new();
            let mut errors = 0;
            let mut i = c * 1_000_000;
            // Bounded by time and by count.
            while Instant::now() < deadline && lat.len() < 2_000_000 {
                let t0 = Instant::now();
                match make(client.clone(), i).await {
                    Ok(ttfb) => {
                        lat.push(t0.elapsed());
                        first.extend(ttfb);
                    }
                    Err(()) => errors += 1,
                }
                i += 1;
            }
            (lat, first, errors)
        }));
    }
    let mut all = Vec::new();
    let mut firsts = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, f, e) = t.await.unwrap();
        all.extend(l);
        firsts.extend(f);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (pid, cpu0) {
        (Some(pid), Some(c0)) => cpu_time(pid).saturating_sub(c0),
        _ => Duration::ZERO,
    };
    all.sort();
    firsts.sort();
    Load {
        count: all.len(),
        errors,
        secs,
        lat: all,
        first: firsts,
        cpu,
    }
}

/// A minimal OpenAI-compatible chat server with fixed answers: JSON, or with
/// `"stream": true` a few SSE chunks and a usage chunk. `/flaky/v1/…` answers 503
/// with Retry-After, as an overloaded provider does.
async fn mock_provider() -> SocketAddr {
    let answer = json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    })
    .to_string();
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
                   "model": "bench-model", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let stream: String = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "o"}), Value::Null),
        chunk(json!({"content": "k"}), Value::Null),
        chunk(json!({}), json!("stop")),
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
                   "model": "bench-model", "choices": [],
                   "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}})
        ),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (a, s) = (answer.clone(), stream.clone());
                async move {
                    // The stream flag is the only thing read from the request.
                    let streamed = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("stream").and_then(Value::as_bool))
                        .unwrap_or(false);
                    if streamed {
                        ([("content-type", "text/event-stream")], s)
                    } else {
                        ([("content-type", "application/json")], a)
                    }
                }
            }),
        )
        .route(
            "/flaky/v1/chat/completions",
            axum::routing::post(|_body: axum::body::Bytes| async {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "1"), ("content-type", "application/json")],
                    r#"{"error":{"message":"overloaded"}}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A streamed call: time to the first body byte, and whether the stream ended with `[DONE]`.
async fn streamed(rb: reqwest::RequestBuilder) -> Result<Option<Duration>, ()> {
    let t0 = Instant::now();
    let mut r = rb.send().await.map_err(|_| ())?;
    if !r.status().is_success() {
        return Err(());
    }
    let mut first = None;
    let mut tail = Vec::new();
    while let Some(c) = r.chunk().await.map_err(|_| ())? {
        first.get_or_insert_with(|| t0.elapsed());
        tail.extend_from_slice(&c);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    let done = String::from_utf8_lossy(&tail).contains("[DONE]");
    if done { Ok(first) } else { Err(()) }
}

async fn post_ok(rb: reqwest::RequestBuilder) -> Result<Option<Duration>, ()> {
    let r = rb.send().await.map_err(|_| ())?;
    let ok = r.status().is_success();
    let _ = r.bytes().await;
    if ok { Ok(None) } else { Err(()) }
}

/// The gateway section: every row measures the direct call and the call through
/// the gateway back to back. Returns the number of gateway calls made, each of which
/// must have published one LLM-operation event.
async fn gateway_rows(client: &reqwest::Client, secs: f64, out: &mut String) -> usize {
    // Each component in a process of its own, as deployed. The breaker is set out of
    // reach so that the fallback rows call the failing provider every time.
    let rt = spawn_with("gateway", &[("FAAS_BREAKER_FAILURES", "1000000000")]);
    assert!(wait_ready(client, &rt.base).await);
    let pid = rt.child.id();
    let provider = mock_provider().await;
    let pool = sqlx::PgPool::connect(&env("DATABASE_URL")).await.unwrap();
    let platform = token("platform", &["platform-admin"]);
    let register = async |tenant: &str, body: Value| {
        let r = client
            .post(format!("{}/v1/gateway/providers", rt.base))
            .bearer_auth(token(tenant, &["admin"]))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    };
    let local = |name: &str, path: &str, priority: i32| {
        json!({"name": name, "kind": "openai", "base_url": format!("http://{provider}{path}/v1"),
               "models": ["bench-model"], "priority": priority, "max_retries": 0})
    };
    // Tenants: one plain; one with limits and a budget (far from reached, so every
    // call is counted and admitted), whose model has a price so every call costs;
    // one whose first provider fails.
    let plain = unique("bench");
    register(&plain, local("local", "", 10)).await;
    let limited = unique("bench");
    register(&limited, local("local", "", 10)).await;
    let r = client
        .put(format!("{}/v1/gateway/limits/{limited}", rt.base))
        .bearer_auth(&platform)
        .json(
            &json!({"requests_per_minute": 2_000_000_000, "tokens_per_minute": 2_000_000_000,
                      "budget_usd": 1_000_000_000.0, "budget_period": "month"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    sqlx::query("INSERT INTO model_pricing (tenant_id, model, input_per_million, output_per_million) VALUES ($1, 'bench-model', 0.15, 0.6) ON CONFLICT DO NOTHING")
        .bind(&limited)
        .execute(&pool)
        .await
        .unwrap();
    let fallback = unique("bench");
    register(&fallback, local("flaky", "/flaky", 1)).await;
    register(&fallback, local("local", "", 10)).await;
    let r = client
        .put(format!("{}/v1/gateway/limits/{fallback}", rt.base))
        .bearer_auth(&platform)
        .json(&json!({"requests_per_minute": 2_000_000_000, "budget_usd": 1_000_000_000.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    let body = |extra: Value| {
        let mut b =
            json!({"model": "bench-model", "messages": [{"role": "user", "content": "Say ok."}]});
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b.to_string()
    };
    let direct_url = format!("http://{provider}/v1/chat/completions");
    let flaky_url = format!("http://{provider}/flaky/v1/chat/completions");
    let gw_url = format!("{}/v1/chat/completions", rt.base);
    let mut sent = 0;

    out.push_str("### Gateway: added latency over calling the provider directly (`serve --service gateway`)\n\n");
    out.push_str(
        "`POST /v1/chat/completions`, JWT on every call. *limits* = the tenant has requests and tokens per minute and a \
         monthly budget (never reached) and its model a price, so every call is counted, costed and checked. \
         *cache hit* = `temperature: 0`, answered from the response cache. *fallback* = the first provider answers \
         503 with `Retry-After` (no retries), the second serves; its direct call is the same two calls. \
         *stream* = `stream: true`; p50/p99 are to the last chunk, *first byte* to the first. \
         CPU = user+system time of the gateway process over the step, per call.\n\n",
    );
    out.push_str("| case | conns | direct p50 | direct p99 | gateway p50 | gateway p99 | added p50 | added p99 | first byte p50 / p99 (added) | gateway req/s | errors | gateway CPU/call |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let cases: [(&str, &str, Value, &[usize]); 5] = [
        ("plain", "json", json!({}), &[1, 8, 32]),
        ("limits", "json", json!({}), &[1, 8, 32]),
        ("limits", "stream", json!({"stream": true}), &[1, 32]),
        ("limits", "cache hit", json!({"temperature": 0}), &[1, 32]),
        ("fallback", "fallback", json!({}), &[1, 32]),
    ];
    for (who, what, extra, conn_steps) in cases {
        let tenant = match who {
            "plain" => &plain,
            "limits" => &limited,
            _ => &fallback,
        };
        let stream = what == "stream";
        let b = body(extra);
        if what == "cache hit" {
            // The first call fills the cache.
            let r = client
                .post(&gw_url)
                .bearer_auth(token(tenant, &[]))
                .header("content-type", "application/json")
                .body(b.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            sent += 1;
        }
        for &conns in conn_steps {
            let (b1, d, f) = (b.clone(), direct_url.clone(), flaky_url.clone());
            let two = what == "fallback";
            let direct = load_calls(conns, secs, None, move |c, _| {
                let rb = c
                    .post(&d)
                    .header("content-type", "application/json")
                    .body(b1.clone());
                let first = two.then(|| {
                    c.post(&f)
                        .header("content-type", "application/json")
                        .body(b1.clone())
                });
                async move {
                    if let Some(first) = first {
                        let _ = first.send().await.map_err(|_| ())?.bytes().await;
                    }
                    if stream {
                        streamed(rb).await
                    } else {
                        post_ok(rb).await
                    }
                }
            })
            .await;
            let (b2, g, tok) = (b.clone(), gw_url.clone(), token(tenant, &[]));
            let gw = load_calls(conns, secs, Some(pid), move |c, _| {
                let rb = c
                    .post(&g)
                    .bearer_auth(&tok)
                    .header("content-type", "application/json")
                    .body(b2.clone());
                async move {
                    if stream {
                        streamed(rb).await
                    } else {
                        post_ok(rb).await
                    }
                }
            })
            .await;
            sent += gw.sent();
            let first = if stream {
                format!(
                    "{:.2} / {:.2} ms ({:+.2} / {:+.2})",
                    pct(&gw.first, 0.5),
                    pct(&gw.first, 0.99),
                    pct(&gw.first, 0.5) - pct(&direct.first, 0.5),
                    pct(&gw.first, 0.99) - pct(&direct.first, 0.99)
                )
            } else {
                "–".to_string()
            };
            out.push_str(&format!(
                "| {} | {conns} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {first} | {:.0} | {} | {:.0} µs |\n",
                if who == "plain" { "json, no limits".to_string() } else if what == "json" { "json, limits".to_string() } else { format!("{what}, limits") },
                direct.p50(),
                direct.p99(),
                gw.p50(),
                gw.p99(),
                gw.p50() - direct.p50(),
                gw.p99() - direct.p99(),
                gw.rps(),
                gw.errors,
                gw.cpu_us(),
            ));
            eprintln!("gateway {who} {what} {conns} done");
        }
    }
    // Every call publishes one event, off the request path; count them in the stream.
    let bus = EventBus::connect(&env("NATS_URL"), &rt.nats_prefix, Arc::new(Metrics::new()))
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut published = 0u64;
    while t0.elapsed() < Duration::from_secs(60) {
        let mut stream = bus
            .jetstream()
            .get_stream(bus.events_stream())
            .await
            .unwrap();
        published = stream.info().await.unwrap().state.messages;
        if published >= sent as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.push_str(&format!(
        "\nLLM-operation events in JetStream after the run: {published} for {sent} gateway calls{}.\n\n",
        if published == sent as u64 { "" } else { " (MISMATCH)" }
    ));
    drop(rt);
    sent
}

/// Process start to ready, and idle memory, of `serve --service all`.
async fn startup(client: &reqwest::Client, out: &mut String) {
    let mut starts = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let rt = spawn("all");
        assert!(wait_ready(client, &rt.base).await, "runtime not ready");
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
}

#[tokio::main]
async fn main() {
    if flag("--only-embed") {
        let num =
            |name: &str, default: usize| arg(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let (count, rounds) = (num("--sentences", 512), num("--rounds", 3));
        embed::run(count, rounds, num("--embed-workers", 1), arg("--torch")).await;
        return;
    }
    if flag("--only-rag") {
        let num =
            |name: &str, default: usize| arg(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let mut out = String::new();
        rag::run(num("--chunks", 100_000), num("--queries", 200), &mut out).await;
        println!("{out}");
        return;
    }
    let secs: f64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(5.0);
    let only_gateway = flag("--only-gateway");
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
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let placement = if flag("--pin") {
        "the runtime pinned to CPU 0 (`taskset -c 0`), load generator and local provider in one process \
         (run under `taskset -c 1`); Postgres, Redis and NATS unpinned"
    } else {
        "load generator and local provider in one process beside the runtime, nothing pinned"
    };
    out.push_str(&format!(
        "Measured {} on {cores} cores ({cpu}), release build, Postgres/Redis/NATS from scripts/services.sh on loopback, \
         {placement}; {secs} s per load step.\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
    ));

    // 1. Start-up and idle memory.
    if !only_gateway {
        startup(&client, &mut out).await;
    }

    // 2. Gateway overhead.
    let sent_events = gateway_rows(&client, secs, &mut out).await;
    eprintln!("gateway done ({sent_events} calls)");
    if only_gateway {
        println!("{out}");
        return;
    }

    // 3. Cache.
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
