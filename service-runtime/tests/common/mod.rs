//! Test support: state wired to the real Postgres/Redis/NATS started by
//! `scripts/services.sh up`, tokens, request helpers, and a local server
//! speaking the OpenAI and Anthropic protocols.
#![allow(dead_code)]

pub mod binary;
pub mod mock;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use faas_runtime::Component;
use faas_runtime::platform::config::{Config, SecretString};
use faas_runtime::platform::egress::EgressPolicy;
use faas_runtime::platform::events::EventBus;
use faas_runtime::platform::metrics::Metrics;
use faas_runtime::platform::{AppState, StateParts};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const SECRET: &str = "a-test-secret-of-enough-length";

/// The value of a variable the backing services provide; a test that needs
/// them fails (never skips) when they are not there.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs the real backing services. Run \
             `scripts/services.sh install && scripts/services.sh up` and then \
             `. \"$(scripts/services.sh env)\"` before `cargo test -p faas-runtime`"
        ),
    }
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    /// The components' background work, for the tests that start it.
    background: std::sync::Mutex<Vec<faas_runtime::platform::component::Background>>,
}

impl TestApp {
    /// Starts the components' background work (event consumers); once.
    pub async fn start_background(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let work = std::mem::take(&mut *self.background.lock().unwrap());
        faas_runtime::platform::component::start(work)
            .await
            .expect("background work starts")
    }
}

pub fn test_config() -> Config {
    let mut config = Config::for_tests(SECRET);
    config.redis_prefix = unique("t");
    config.nats_prefix = unique("t");
    config.nats_max_deliver = 3;
    // Outgoing calls tenants influence may reach the local mock upstreams, and nothing
    // beyond this machine.
    let loopback = EgressPolicy::parse("127.0.0.1").expect("an allowlist");
    config.egress.policy = Arc::new(loopback.with_public(false));
    with_settings(config, &[])
}

/// `config` whose component settings are `pairs`, plus the local embedding model's
/// folder when the environment names it.
pub fn with_settings(mut config: Config, pairs: &[(&str, &str)]) -> Config {
    let mut env: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(dir) = std::env::var("FAAS_EMBEDDING_MODEL_DIR") {
        env.entry("FAAS_EMBEDDING_MODEL_DIR".into()).or_insert(dir);
    }
    config.source = Arc::new(faas_runtime::platform::config::Source::new(env).expect("settings"));
    config
}

pub async fn build_state(
    pool: Option<sqlx::PgPool>,
    components: &[Component],
    mut config: Config,
) -> AppState {
    let specs = faas_runtime::app::specs(components).expect("served components");
    let need = faas_runtime::platform::needs(&specs);
    let metrics = Arc::new(Metrics::new());
    let redis = if need.redis {
        config.redis_url = Some(SecretString::from(require_env("REDIS_URL")));
        Some(
            faas_runtime::platform::connect_redis(&config)
                .await
                .expect("redis"),
        )
    } else {
        None
    };
    let events = if need.nats {
        let url = require_env("NATS_URL");
        config.nats_url = Some(SecretString::from(url.clone()));
        Some(
            EventBus::connect(&url, &config.nats_prefix, metrics.clone())
                .await
                .expect("nats"),
        )
    } else {
        None
    };
    if need.db && pool.is_none() {
        require_env("DATABASE_URL");
    }
    AppState::new(StateParts {
        config,
        components: specs,
        db: pool,
        redis,
        events,
        metrics,
    })
    .expect("state")
}

pub async fn app(pool: Option<sqlx::PgPool>, components: &[Component]) -> TestApp {
    app_with(pool, components, test_config()).await
}

pub async fn app_with(
    pool: Option<sqlx::PgPool>,
    components: &[Component],
    config: Config,
) -> TestApp {
    let state = build_state(pool, components, config).await;
    let app = faas_runtime::app::app(state.clone()).expect("the components build");
    TestApp {
        state,
        router: app.router,
        background: std::sync::Mutex::new(app.background),
    }
}

/// Registers a gateway provider for `tenant` as its admin; the stored provider.
pub async fn add_provider(app: &TestApp, tenant: &str, body: Value) -> Value {
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&admin(tenant)),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// A real gateway whose provider `up` (for each of `tenants`) is the OpenAI-protocol server
/// `upstream`, serving `models`; the gateway and its base URL, both for the rest of the test.
pub async fn gateway_over(
    pool: &sqlx::PgPool,
    components: &[Component],
    tenants: &[&str],
    upstream: Router,
    models: &[&str],
) -> (TestApp, String) {
    let upstream_base = serve_tcp(&upstream).await;
    let gateway = app(Some(pool.clone()), components).await;
    for t in tenants {
        add_provider(
            &gateway,
            t,
            json!({"name": "up", "kind": "openai", "base_url": format!("{upstream_base}/v1"), "models": models}),
        )
        .await;
    }
    let url = serve_tcp(&gateway.router).await;
    (gateway, url)
}

/// Serves `router` on a loopback port for the rest of the test; its base URL.
pub async fn serve_tcp(router: &Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

pub fn token(tenant: &str, user: &str, roles: &[&str]) -> String {
    let claims = json!({
        "sub": user,
        "tenant_id": tenant,
        "roles": roles,
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn admin(tenant: &str) -> String {
    token(tenant, "alice", &["admin"])
}

pub fn user(tenant: &str) -> String {
    token(tenant, "bob", &[])
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: bytes::Bytes,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with the status and a non-empty reason.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            self.body
        );
    }

    /// Asserts an OpenAI-shaped error with the status.
    pub fn assert_openai_error(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let e = &self.body["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        assert!(e["type"].is_string(), "{}", self.body);
    }
}

pub async fn send(router: &Router, req: Request<Body>) -> Resp {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        raw,
    }
}

pub async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut b = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&v).unwrap()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    send(router, req).await
}

pub async fn raw_call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    ctype: &str,
    body: &'static [u8],
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if !ctype.is_empty() {
        b = b.header("content-type", ctype);
    }
    send(router, b.body(Body::from(body)).unwrap()).await
}
