//! The typed gateway client against a real gateway served over TCP (with the real Postgres,
//! Redis and NATS), which calls a local server speaking the OpenAI protocol.

mod common;

use std::time::Duration;

use common::mock::MockServer;
use common::*;
use faas_runtime::Component;
use faas_runtime::platform::{ApiError, RequestContext};
use faas_runtime::shared::gateway_client::{
    ChatRequest, EmbeddingsRequest, GatewayClient, Message, OnBehalfOf,
};
use serde_json::json;

/// The gateway listening on a loopback port, with a provider for `tenant`.
async fn served_gateway(pool: sqlx::PgPool, tenant: &str) -> (TestApp, String, MockServer) {
    let mock = common::mock::start().await;
    let app = app(Some(pool), &[Component::Gateway]).await;
    add_provider(
        &app,
        tenant,
        json!({"name": "main", "kind": "openai", "base_url": mock.openai_url(),
               "models": ["gpt-4o-mini", "text-embedding-3-small"]}),
    )
    .await;
    let url = serve_tcp(&app.router).await;
    (app, url, mock)
}

fn client(app: &TestApp, url: &str) -> GatewayClient {
    GatewayClient::new(url, app.state.http.clone(), Duration::from_secs(10)).unwrap()
}

fn ctx(tenant: &str) -> RequestContext {
    RequestContext {
        tenant_id: Some(tenant.into()),
        ..RequestContext::background()
    }
}

#[sqlx::test]
async fn chat_embeddings_and_models_go_through_the_gateway_for_the_caller(pool: sqlx::PgPool) {
    let tenant = unique("gc");
    let (app, url, _mock) = served_gateway(pool, &tenant).await;
    let gw = client(&app, &url);
    let who = OnBehalfOf::bearer(&user(&tenant));

    let answer = gw
        .chat(
            &who,
            &ctx(&tenant),
            &ChatRequest {
                model: "gpt-4o-mini".into(),
                messages: vec![Message::new("user", "hi")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let message = answer.message().unwrap();
    assert_eq!(message.role, "assistant");
    assert!(message.content.as_deref().is_some_and(|c| !c.is_empty()));
    assert!(answer.usage.total_tokens > 0);

    let vectors = gw
        .embeddings(
            &who,
            &ctx(&tenant),
            &EmbeddingsRequest {
                model: "text-embedding-3-small".into(),
                input: vec!["a".into(), "b c".into()],
                dimensions: None,
            },
        )
        .await
        .unwrap()
        .vectors();
    assert_eq!(vectors.len(), 2);
    assert!(!vectors[0].is_empty());

    let models = gw.models(&who, &ctx(&tenant)).await.unwrap();
    let ids: Vec<_> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["gpt-4o-mini", "text-embedding-3-small"]);
}

#[sqlx::test]
async fn the_gateway_decides_the_tenant_and_its_refusals_keep_their_status(pool: sqlx::PgPool) {
    let tenant = unique("gc");
    let (app, url, _mock) = served_gateway(pool, &tenant).await;
    let gw = client(&app, &url);
    let req = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::new("user", "hi")],
        ..Default::default()
    };

    // Another tenant's token: the context's tenant header changes nothing; that tenant
    // has no provider serving the model.
    let other = OnBehalfOf::bearer(&user(&unique("other")));
    let e = gw.chat(&other, &ctx(&tenant), &req).await.unwrap_err();
    assert!(
        matches!(&e, ApiError::NotFound(m) if m.contains("gpt-4o-mini")),
        "{e:?}"
    );

    // No token: refused by the gateway's authentication.
    let e = gw
        .chat(&OnBehalfOf::headers_only(), &ctx(&tenant), &req)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Unauthorized(_)), "{e:?}");

    // A request the gateway finds invalid.
    let bad = ChatRequest {
        messages: vec![],
        ..req.clone()
    };
    let e = gw
        .chat(&OnBehalfOf::bearer(&user(&tenant)), &ctx(&tenant), &bad)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Validation(_)), "{e:?}");
}

#[sqlx::test]
async fn an_unreachable_gateway_is_unavailable_not_an_internal_error(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Gateway]).await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = client(&app, &format!("http://127.0.0.1:{port}"));
    let e = gw
        .models(&OnBehalfOf::bearer(&user("t")), &ctx("t"))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Unavailable(_)), "{e:?}");
}

#[test]
fn the_url_setting_is_required_and_checked() {
    let metrics = std::sync::Arc::new(faas_runtime::platform::metrics::Metrics::new());
    let breakers = std::sync::Arc::new(faas_runtime::platform::http_client::Breakers::new(
        5,
        Duration::from_secs(1),
    ));
    let http = faas_runtime::platform::http_client::HttpClient::new(
        Duration::from_secs(1),
        breakers,
        metrics,
    )
    .unwrap();
    let source = |pairs: &[(&str, &str)]| {
        faas_runtime::platform::config::Source::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    };
    let t = Duration::from_secs(1);
    let e = GatewayClient::from_source(&source(&[]), http.clone(), t).unwrap_err();
    assert!(e.to_string().contains("FAAS_GATEWAY_URL"), "{e}");
    for bad in ["gateway:8080", "ftp://gateway", "http://"] {
        let e = GatewayClient::from_source(&source(&[("FAAS_GATEWAY_URL", bad)]), http.clone(), t)
            .unwrap_err();
        assert!(e.to_string().contains("FAAS_GATEWAY_URL"), "{bad}: {e}");
    }
    assert!(
        GatewayClient::from_source(
            &source(&[("FAAS_GATEWAY_URL", "http://gw.team-a.svc:8080/base")]),
            http,
            t
        )
        .is_ok()
    );
}
