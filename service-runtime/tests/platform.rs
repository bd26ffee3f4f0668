//! The platform layer: headers, auth, errors, codecs, health, metrics,
//! OpenAPI, outgoing HTTP, events, and the binary's start-up and shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use faas_runtime::Component;
use faas_runtime::platform::RequestContext;
use faas_runtime::platform::events::{Envelope, Handler, HandlerError};
use faas_runtime::platform::http_client::RetryPolicy;
use futures::StreamExt;
use prost::Message;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn health_metrics_and_openapi_need_no_token() {
    let app = app(None, &[Component::Cache]).await;
    let r = call(&app.router, "GET", "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app.router, "GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["checks"]["redis"], "ok");
    let r = call(&app.router, "GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        r.body["openapi"]
    );
    assert!(r.body["paths"]["/v1/cache/batch-get"].is_object());
    assert!(
        r.body["paths"].get("/v1/chat/completions").is_none(),
        "only the served components"
    );
    // A request, then the metrics show it by route template, not raw path.
    call(
        &app.router,
        "GET",
        "/v1/cache/items/some-key",
        Some(&user("t1")),
        None,
    )
    .await;
    let r = call(&app.router, "GET", "/metrics", None, None).await;
    let text = String::from_utf8(r.raw.to_vec()).unwrap();
    assert!(text.contains("faas_http_requests_total{"), "{text}");
    assert!(text.contains("route=\"/v1/cache/items/{*key}\""), "{text}");
    assert!(!text.contains("some-key"));
    assert!(text.contains("faas_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn readiness_fails_during_shutdown() {
    let app = app(None, &[Component::Cache]).await;
    app.state.shutdown.cancel();
    let r = call(&app.router, "GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn standard_headers_are_generated_echoed_and_taken_from_the_token() {
    let app = app(None, &[Component::Cache]).await;
    let req = Request::get("/v1/cache/items/k")
        .header("authorization", format!("Bearer {}", user("tenant-a")))
        .header("x-request-id", "req-123")
        .header("x-correlation-id", "corr-9")
        .header("x-tenant-id", "tenant-b")
        .body(Body::empty())
        .unwrap();
    let r = send(&app.router, req).await;
    assert_eq!(r.headers["x-request-id"], "req-123");
    assert_eq!(r.headers["x-correlation-id"], "corr-9");
    // The tenant comes from the token; the header the caller set is ignored.
    assert_eq!(r.headers["x-tenant-id"], "tenant-a");
    assert_eq!(r.headers["x-user-id"], "bob");

    let r = call(&app.router, "GET", "/healthz", None, None).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "generated: {id}");
    assert_eq!(r.headers["x-correlation-id"].to_str().unwrap(), id);
}

#[tokio::test]
async fn authentication_failures_are_401_problems() {
    let app = app(None, &[Component::Cache]).await;
    let r = call(&app.router, "GET", "/v1/cache/items/k", None, None).await;
    r.assert_problem(401);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );

    let r = call(
        &app.router,
        "GET",
        "/v1/cache/items/k",
        Some("not.a.jwt"),
        None,
    )
    .await;
    r.assert_problem(401);

    let wrong = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "x", "tenant_id": "t", "exp": chrono::Utc::now().timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-some-length"),
    )
    .unwrap();
    let r = call(&app.router, "GET", "/v1/cache/items/k", Some(&wrong), None).await;
    r.assert_problem(401);
    assert!(r.body["detail"].as_str().unwrap().contains("signature"));

    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "x", "tenant_id": "t", "exp": chrono::Utc::now().timestamp() - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = call(
        &app.router,
        "GET",
        "/v1/cache/items/k",
        Some(&expired),
        None,
    )
    .await;
    r.assert_problem(401);
    assert!(r.body["detail"].as_str().unwrap().contains("expired"));

    let no_tenant = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "x", "exp": chrono::Utc::now().timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let r = call(
        &app.router,
        "GET",
        "/v1/cache/items/k",
        Some(&no_tenant),
        None,
    )
    .await;
    r.assert_problem(401);
    assert!(r.body["detail"].as_str().unwrap().contains("tenant_id"));

    let bad_tenant = token("../etc", "x", &[]);
    let r = call(
        &app.router,
        "GET",
        "/v1/cache/items/k",
        Some(&bad_tenant),
        None,
    )
    .await;
    r.assert_problem(401);
}

fn rs256_token(kid: Option<&str>, tenant: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(fixture("jwt-test-private.pem")).unwrap(),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(
        &header,
        &json!({"sub": "carol", "tenant_id": tenant, "roles": "admin reader",
                "iss": "https://issuer.test", "exp": chrono::Utc::now().timestamp() + 60}),
        &key,
    )
    .unwrap()
}

#[tokio::test]
async fn rs256_tokens_verify_with_a_pem_key_or_a_jwks_file() {
    for (var, file) in [
        ("FAAS_JWT_RS256_PUBLIC_KEY_FILE", "jwt-test-public.pem"),
        ("FAAS_JWT_JWKS_FILE", "jwks.json"),
    ] {
        let mut env = std::collections::HashMap::new();
        env.insert(var.to_string(), fixture(file));
        env.insert(
            "FAAS_JWT_ISSUER".to_string(),
            "https://issuer.test".to_string(),
        );
        let config = faas_runtime::platform::config::Config::from_source(
            &faas_runtime::platform::config::Source::new(env).unwrap(),
        )
        .unwrap();
        let mut config = config;
        config.redis_prefix = unique("t");
        let app = app_with(None, &[Component::Cache], config).await;
        let r = call(
            &app.router,
            "GET",
            "/v1/cache/items/k",
            Some(&rs256_token(Some("test-key-1"), "rsa-tenant")),
            None,
        )
        .await;
        r.assert_problem(404);
        assert_eq!(r.headers["x-tenant-id"], "rsa-tenant", "{var}");
        // HS256 is not accepted when no secret is configured.
        let r = call(
            &app.router,
            "GET",
            "/v1/cache/items/k",
            Some(&user("t")),
            None,
        )
        .await;
        r.assert_problem(401);
    }
}

#[tokio::test]
async fn client_mistakes_are_4xx_problems_never_500() {
    let app = app(None, &[Component::Cache]).await;
    let t = user("t-errors");
    let r = raw_call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        "application/json",
        b"{\"value\": ",
    )
    .await;
    r.assert_problem(400);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );
    let r = raw_call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        "application/json",
        b"{\"value\": 1, \"ttl_seconds\": \"x\"}",
    )
    .await;
    r.assert_problem(422);
    let r = raw_call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        "application/json",
        b"{}",
    )
    .await;
    r.assert_problem(422);
    assert!(r.body["detail"].as_str().unwrap().contains("value"));
    let r = raw_call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        "",
        b"{\"value\": 1}",
    )
    .await;
    r.assert_problem(415);
    let r = raw_call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        "text/plain",
        b"{\"value\": 1}",
    )
    .await;
    r.assert_problem(415);
    let r = call(&app.router, "GET", "/nope", Some(&t), None).await;
    r.assert_problem(404);
    let r = call(&app.router, "PATCH", "/v1/cache/batch-get", Some(&t), None).await;
    r.assert_problem(405);
    let r = raw_call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        "application/msgpack",
        b"\xc1\xc1",
    )
    .await;
    r.assert_problem(400);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let mut config = test_config();
    config.max_body_bytes = 1024;
    let app = app_with(None, &[Component::Cache], config).await;
    let big = json!({"value": "x".repeat(4096)});
    let r = call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&user("t")),
        Some(big),
    )
    .await;
    r.assert_problem(413);
}

#[tokio::test]
async fn messagepack_in_and_out() {
    let app = app(None, &[Component::Cache]).await;
    let t = user(&unique("mp"));
    let body = rmp_serde::to_vec_named(&json!({"value": {"n": 42, "s": "hi"}})).unwrap();
    let req = Request::put("/v1/cache/items/packed")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/msgpack")
        .header("accept", "application/msgpack")
        .body(Body::from(body))
        .unwrap();
    let r = send(&app.router, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/msgpack");
    let v: Value = rmp_serde::from_slice(&r.raw).unwrap();
    assert_eq!(v["value"]["n"], 42);
    // JSON by default.
    let r = call(&app.router, "GET", "/v1/cache/items/packed", Some(&t), None).await;
    assert_eq!(r.body["value"]["s"], "hi");
    // Errors are negotiated too.
    let req = Request::get("/v1/cache/items/missing")
        .header("authorization", format!("Bearer {t}"))
        .header("accept", "application/msgpack")
        .body(Body::empty())
        .unwrap();
    let r = send(&app.router, req).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let v: Value = rmp_serde::from_slice(&r.raw).unwrap();
    assert_eq!(v["status"], 404);
}

/// A local upstream for the HTTP client: counts calls, fails as told, and
/// echoes the standard headers it received.
async fn upstream(
    fail_first: u32,
    status: u16,
    retry_after: Option<&'static str>,
) -> (String, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/x",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let echo = json!({
                    "correlation": headers.get("x-correlation-id").and_then(|v| v.to_str().ok()),
                    "tenant": headers.get("x-tenant-id").and_then(|v| v.to_str().ok()),
                    "request": headers.get("x-request-id").and_then(|v| v.to_str().ok()),
                    "traceparent": headers.get("traceparent").and_then(|v| v.to_str().ok()),
                });
                if n <= fail_first {
                    let mut resp =
                        (StatusCode::from_u16(status).unwrap(), axum::Json(echo)).into_response();
                    if let Some(ra) = retry_after {
                        resp.headers_mut()
                            .insert("retry-after", ra.parse().unwrap());
                    }
                    resp
                } else {
                    axum::Json(echo).into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/x"), count)
}

use axum::response::IntoResponse;

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "r1".into(),
        correlation_id: "corr-out".into(),
        tenant_id: Some("tenant-out".into()),
        user_id: Some("u".into()),
        traceparent: Some(TRACEPARENT.into()),
        ..Default::default()
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn http_client_retries_honour_retry_after_and_inject_headers() {
    let app = app(None, &[Component::Cache]).await;
    let (url, count) = upstream(2, 503, Some("0")).await;
    let req = app.state.http.inner().get(&url).build().unwrap();
    let resp = app
        .state
        .http
        .send(
            "up-a",
            "test",
            req,
            &ctx(),
            RetryPolicy::new(3, false),
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["correlation"], "corr-out");
    assert_eq!(body["tenant"], "tenant-out");
    assert_eq!(body["request"], "r1");
    assert_eq!(
        body["traceparent"], TRACEPARENT,
        "W3C trace context passed on"
    );

    // A 500 is not retried for a non-idempotent call, but is for an idempotent one.
    let (url, count) = upstream(1, 500, None).await;
    let req = app.state.http.inner().get(&url).build().unwrap();
    let resp = app
        .state
        .http
        .send(
            "up-b",
            "test",
            req,
            &ctx(),
            RetryPolicy::new(3, false),
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let req = app.state.http.inner().get(&url).build().unwrap();
    let resp = app
        .state
        .http
        .send("up-c", "test", req, &ctx(), RetryPolicy::new(3, true), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn circuit_opens_after_repeated_failures() {
    let mut config = test_config();
    config.breaker_failures = 2;
    config.breaker_cooldown = Duration::from_secs(3600);
    let app = app_with(None, &[Component::Cache], config).await;
    let (url, count) = upstream(100, 500, None).await;
    for _ in 0..2 {
        let req = app.state.http.inner().get(&url).build().unwrap();
        let r = app
            .state
            .http
            .send(
                "flaky",
                "test",
                req,
                &ctx(),
                RetryPolicy::new(0, true),
                None,
            )
            .await;
        assert_eq!(r.unwrap().status(), 500);
    }
    let req = app.state.http.inner().get(&url).build().unwrap();
    let r = app
        .state
        .http
        .send(
            "flaky",
            "test",
            req,
            &ctx(),
            RetryPolicy::new(0, true),
            None,
        )
        .await;
    assert!(matches!(
        r,
        Err(faas_runtime::platform::http_client::UpstreamError::CircuitOpen(_))
    ));
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "no call while the circuit is open"
    );

    // Unreachable upstream: a transport error, not a panic.
    let req = app
        .state
        .http
        .inner()
        .get("http://127.0.0.1:1/x")
        .build()
        .unwrap();
    let r = app
        .state
        .http
        .send(
            "closed-port",
            "test",
            req,
            &ctx(),
            RetryPolicy::new(1, false),
            None,
        )
        .await;
    assert!(matches!(
        r,
        Err(faas_runtime::platform::http_client::UpstreamError::Connect { .. })
    ));
}

#[tokio::test]
async fn events_are_consumed_redelivered_and_dead_lettered() {
    let metrics = Arc::new(faas_runtime::platform::metrics::Metrics::new());
    let bus = faas_runtime::platform::events::EventBus::connect(
        &require_env("NATS_URL"),
        &unique("ev"),
        metrics,
    )
    .await
    .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (a, s) = (attempts.clone(), seen.clone());
    let handler: Handler = Arc::new(move |env: Envelope| {
        let (a, s) = (a.clone(), s.clone());
        Box::pin(async move {
            let v: Value = env.json()?;
            match v["kind"].as_str() {
                Some("good") => {
                    s.lock().unwrap().push(env.correlation_id.clone());
                    Ok(())
                }
                Some("flaky") => {
                    if a.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(HandlerError::Retry("first attempt fails".into()))
                    } else {
                        s.lock().unwrap().push("flaky-ok".into());
                        Ok(())
                    }
                }
                Some("always") => Err(HandlerError::Retry("never works".into())),
                _ => Err(HandlerError::Permanent("unknown kind".into())),
            }
        })
    });
    let task = bus
        .consume("test", "test-consumer", 3, handler, shutdown.clone())
        .await
        .unwrap();
    let c = RequestContext {
        correlation_id: "c-good".into(),
        tenant_id: Some("t".into()),
        ..ctx()
    };
    for kind in ["good", "flaky", "always", "poison"] {
        let env = Envelope::new_json("test.v1", &c, &json!({"kind": kind})).unwrap();
        bus.publish("test", &env).await.unwrap();
    }
    // Read the dead-letter stream: "always" after 3 attempts, "poison" at once.
    let dlq = bus.jetstream().get_stream(bus.dlq_stream()).await.unwrap();
    let consumer = dlq
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: bus.dlq_subject("test"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut dead = Vec::new();
    while dead.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .expect("dead letters")
            .unwrap()
            .unwrap();
        let env = Envelope::decode(m.payload.as_ref()).unwrap();
        let v: Value = env.json().unwrap();
        let reason = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Faas-Dead-Letter-Reason"))
            .map(|v| v.to_string());
        dead.push((v["kind"].as_str().unwrap().to_string(), reason));
        m.ack().await.unwrap();
    }
    dead.sort();
    assert_eq!(dead[0].0, "always");
    assert_eq!(dead[0].1.as_deref(), Some("never works"));
    assert_eq!(dead[1].0, "poison");
    let got = seen.lock().unwrap().clone();
    assert!(got.contains(&"c-good".to_string()), "{got:?}");
    assert!(
        got.contains(&"flaky-ok".to_string()),
        "redelivered after a failure: {got:?}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_faas-runtime"))
}

#[test]
fn missing_or_invalid_settings_stop_start_up_naming_them() {
    let out = bin()
        .args(["serve", "--service", "cache"])
        .env_clear()
        .env("FAAS_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAAS_JWT_HS256_SECRET"), "{err}");

    let out = bin()
        .args(["serve", "--service", "cache"])
        .env_clear()
        .env("FAAS_AUTH", "disabled")
        .env("FAAS_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_URL"));

    let out = bin()
        .args(["serve", "--service", "cache,teleport"])
        .env_clear()
        .env("FAAS_AUTH", "disabled")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("teleport"));

    // A component's own setting is read when the component is built, before serving.
    for (name, value) in [
        ("FAAS_CACHE_DEFAULT_TTL_SECS", "0"),
        ("FAAS_CACHE_DEFAULT_TTL_SECS", "an hour"),
    ] {
        let out = bin()
            .args(["serve", "--service", "cache"])
            .env_clear()
            .env("FAAS_AUTH", "disabled")
            .env("FAAS_LISTEN", "127.0.0.1:0")
            .env("REDIS_URL", require_env("REDIS_URL"))
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(name) && err.contains("cache component"),
            "{err}"
        );
    }
}

#[test]
fn the_binary_serves_until_sigterm_and_drains() {
    let redis = require_env("REDIS_URL");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args(["serve", "--service", "cache"])
        .env_clear()
        .env("FAAS_JWT_HS256_SECRET", SECRET)
        .env("REDIS_URL", redis)
        .env("FAAS_REDIS_PREFIX", unique("bin"))
        .env("FAAS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = rt.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                && r.status() == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    assert!(ready, "the runtime did not become ready");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit: {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stdout);
    // JSON logs, one object a line.
    let first = logs.lines().next().expect("some log lines");
    let v: Value = serde_json::from_str(first).expect("JSON log line");
    assert!(v["level"].is_string());
    assert!(logs.contains("shutdown requested"), "{logs}");
}

#[test]
fn migrate_applies_the_migrations() {
    let url = require_env("DATABASE_URL");
    let out = bin()
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", url)
        .env("FAAS_AUTH", "disabled")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[sqlx::test]
async fn migrations_create_the_tables_and_pgvector_is_available(pool: sqlx::PgPool) {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM model_pricing WHERE tenant_id = ''")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(n > 0);
    let v: String =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_one(&pool)
            .await
            .expect("the vector extension in every test database");
    assert_eq!(v, "0.8.0");
}

#[sqlx::test(migrations = false)]
async fn serve_applies_migrations_on_start(pool: sqlx::PgPool) {
    let db = pool.connect_options().get_database().unwrap().to_string();
    let mut url = reqwest::Url::parse(&require_env("DATABASE_URL")).unwrap();
    url.set_path(&format!("/{db}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faas-runtime"))
        .args(["serve", "--service", "prompt"])
        .env_clear()
        .env("FAAS_JWT_HS256_SECRET", SECRET)
        .env("DATABASE_URL", url.as_str())
        .env("FAAS_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        let _ = child.kill();
        panic!("the runtime did not become ready");
    }
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/prompts"))
        .bearer_auth(user("mig"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(n, faas_runtime::platform::MIGRATOR.iter().count() as i64);
}
