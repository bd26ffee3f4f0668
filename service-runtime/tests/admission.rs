//! What the platform checks before a handler runs: token claims, body decoding
//! only after authentication and under bounds, the tenant's request rate, CORS.
mod common;

use std::num::NonZeroU32;

use axum::body::Body;
use axum::http::Request;
use common::{SECRET, app, app_with, call, send, test_config, unique, user};
use faas_runtime::Component;
use faas_runtime::platform::config::AuthMode;
use serde_json::{Value, json};

fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(tenant: &str) -> serde_json::Map<String, Value> {
    let mut c = serde_json::Map::new();
    c.insert("sub".into(), json!("u"));
    c.insert("tenant_id".into(), json!(tenant));
    c.insert("exp".into(), json!(chrono::Utc::now().timestamp() + 600));
    c
}

#[tokio::test]
async fn tokens_not_yet_valid_or_without_a_configured_issuer_or_audience_are_refused() {
    let mut config = test_config();
    if let AuthMode::Jwt(jwt) = &mut config.auth {
        jwt.issuer = Some("https://idp.test".into());
        jwt.audience = Some("faas".into());
    }
    let app = app_with(None, &[Component::Cache], config).await;
    let uri = "/v1/cache/items/k";

    let mut good = claims("iss-t");
    good.insert("iss".into(), json!("https://idp.test"));
    good.insert("aud".into(), json!("faas"));
    let r = call(&app.router, "GET", uri, Some(&signed(json!(good))), None).await;
    r.assert_problem(404);

    let mut early = good.clone();
    early.insert("nbf".into(), json!(chrono::Utc::now().timestamp() + 3600));
    let r = call(&app.router, "GET", uri, Some(&signed(json!(early))), None).await;
    r.assert_problem(401);
    assert!(
        r.body["detail"].as_str().unwrap().contains("nbf"),
        "{}",
        r.body
    );

    for missing in ["iss", "aud"] {
        let mut c = good.clone();
        c.remove(missing);
        let r = call(&app.router, "GET", uri, Some(&signed(json!(c))), None).await;
        r.assert_problem(401);
        assert!(
            r.body["detail"].as_str().unwrap().contains(missing),
            "{missing}: {}",
            r.body
        );
    }

    let huge = format!("{}.{}.x", "e".repeat(9000), "e".repeat(10));
    let r = call(&app.router, "GET", uri, Some(&huge), None).await;
    r.assert_problem(401);
    assert!(
        r.body["detail"].as_str().unwrap().contains("8192"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn bodies_are_read_only_after_authentication_and_must_match_their_schema() {
    let app = app(None, &[Component::Cache]).await;
    let t = user(&unique("body"));
    // Without a token the body is never looked at, however deep.
    let mut deep = vec![0x91u8; 100_000];
    deep.push(0xc0);
    let req = Request::put("/v1/cache/items/k")
        .header("content-type", "application/msgpack")
        .body(Body::from(deep.clone()))
        .unwrap();
    send(&app.router, req).await.assert_problem(401);
    // With one, the nesting limit is named.
    let req = Request::put("/v1/cache/items/k")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/msgpack")
        .body(Body::from(deep))
        .unwrap();
    let r = send(&app.router, req).await;
    r.assert_problem(400);
    assert!(
        r.body["detail"].as_str().unwrap().contains("64 levels"),
        "{}",
        r.body
    );

    let r = call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        Some(json!([])),
    )
    .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"].as_str().unwrap().contains("object"),
        "{}",
        r.body
    );

    let body = json!({"value": {"note": "a\u{0}b"}});
    let r = call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        Some(body),
    )
    .await;
    r.assert_problem(400);
    assert!(
        r.body["detail"].as_str().unwrap().contains("/value/note"),
        "{}",
        r.body
    );

    let r = call(&app.router, "GET", "/v1/cache/items/a%00b", Some(&t), None).await;
    r.assert_problem(400);
    assert!(
        r.body["detail"].as_str().unwrap().contains("NUL"),
        "{}",
        r.body
    );

    let req = Request::put("/v1/cache/items/k")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    send(&app.router, req).await.assert_problem(415);
}

#[tokio::test]
async fn each_tenant_is_held_to_its_request_rate() {
    let mut config = test_config();
    config.tenant_rate_limit = NonZeroU32::new(1);
    config.tenant_rate_burst = NonZeroU32::new(3).unwrap();
    let app = app_with(None, &[Component::Cache], config).await;
    let (a, b) = (user(&unique("ra")), user(&unique("rb")));
    for _ in 0..3 {
        let r = call(&app.router, "GET", "/v1/cache/items/k", Some(&a), None).await;
        r.assert_problem(404);
    }
    let r = call(&app.router, "GET", "/v1/cache/items/k", Some(&a), None).await;
    r.assert_problem(429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    // Another tenant is not held back by the first one's flood.
    let r = call(&app.router, "GET", "/v1/cache/items/k", Some(&b), None).await;
    r.assert_problem(404);
    // Health checks are never limited.
    let r = call(&app.router, "GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let mut config = test_config();
    config.cors_allowed_origins = vec!["https://app.example.com".into()];
    let app = app_with(None, &[Component::Cache], config).await;
    let preflight = |origin: &str| {
        Request::options("/v1/cache/items/k")
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&app.router, preflight("https://app.example.com")).await;
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = send(&app.router, preflight("https://evil.example.com")).await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}
