//! The gateway against a local server speaking the OpenAI and Anthropic
//! protocols, with the real Postgres, Redis and NATS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::mock::MockServer;
use common::*;
use faas_runtime::Component;
use faas_runtime::platform::config::Config;
use faas_runtime::platform::egress::{CredentialSet, EgressPolicy, EgressSettings};
use faas_runtime::platform::events::Envelope;
use futures::StreamExt;
use prost::Message;
use serde_json::{Value, json};

const KEY: &str = "sk-mock-secret-123";
const TEAM_KEY: &str = "sk-team-only-key-456";

/// Credentials as the platform would set them: one shared by every tenant for each mock
/// API, and one for the tenant `team-a` only.
fn credentials(mock: &MockServer) -> String {
    json!([
        {"name": "mock-openai", "tenants": "*", "base_url": mock.openai_url(), "key_env": "LLM_API_KEY_MOCK"},
        {"name": "mock-anthropic", "tenants": "*", "base_url": mock.anthropic_url(), "key_env": "LLM_API_KEY_MOCK"},
        {"name": "echo", "tenants": "*", "base_url": mock.echo_url(), "key_env": "LLM_API_KEY_MOCK"},
        {"name": "team-only", "tenants": ["team-a"], "base_url": mock.openai_url(), "key_env": "LLM_API_KEY_TEAM"}
    ])
    .to_string()
}

/// A gateway configuration whose egress policy allows only loopback (the mock), or with
/// `allow` empty, the default rules with nothing allowed beyond them.
fn gateway_config(allow: &str, creds: &str) -> Config {
    let mut config = test_config();
    let keys = &mut config.provider_keys.0;
    keys.insert("LLM_API_KEY_MOCK".into(), KEY.into());
    keys.insert("LLM_API_KEY_TEAM".into(), TEAM_KEY.into());
    // Tests never leave the machine: nothing public is allowed either.
    let policy = EgressPolicy::parse(allow).unwrap().with_public(false);
    let credentials = CredentialSet::parse(creds, keys, &policy).unwrap();
    config.egress = EgressSettings {
        policy: Arc::new(policy),
        credentials: Arc::new(credentials),
    };
    config.platform_admin_role = "platform-admin".into();
    config
}

async fn gateway(pool: sqlx::PgPool) -> (TestApp, MockServer) {
    let mock = common::mock::start().await;
    let config = gateway_config("127.0.0.1", &credentials(&mock));
    let app = app_with(Some(pool), &[Component::Gateway], config).await;
    (app, mock)
}

fn openai_provider(_mock: &MockServer, name: &str, models: &[&str], priority: i32) -> Value {
    json!({"name": name, "kind": "openai", "credential": "mock-openai", "models": models, "priority": priority})
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
}

/// Reads `n` LLM-operation events of this test's stream.
async fn llmop_events(app: &TestApp, n: usize) -> Vec<(Envelope, Value)> {
    let bus = app.state.events.clone().unwrap();
    let stream = bus
        .jetstream()
        .get_stream(bus.events_stream())
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: bus.subject("llmop"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .expect("an LLM-operation event")
            .unwrap()
            .unwrap();
        let env = Envelope::decode(m.payload.as_ref()).unwrap();
        let v: Value = env.json().unwrap();
        out.push((env, v));
    }
    out
}

fn sse_data(raw: &[u8]) -> Vec<String> {
    String::from_utf8(raw.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(String::from))
        .collect()
}

#[sqlx::test]
async fn chat_completion_has_the_openai_shape_and_emits_an_event(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["gpt-4o"], 10),
    )
    .await;
    let mut body = chat("gpt-4o", "hello");
    body["user"] = json!("end-user-1");
    body["response_format"] = json!({"type": "text"});
    let req = axum::http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", user(&tenant)))
        .header("content-type", "application/json")
        .header("x-correlation-id", "corr-chat-1")
        .header("x-agent-id", "agent-7")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let r = send(&app.router, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(r.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r.body["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    );
    assert_eq!(r.headers["x-correlation-id"], "corr-chat-1");

    // What the provider received: the key from the Secret, the standard
    // headers, and the fields it does not interpret passed through.
    let seen = mock.seen();
    let s = &seen[0];
    assert_eq!(s.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(s.headers["x-correlation-id"], "corr-chat-1");
    assert_eq!(s.headers["x-tenant-id"], tenant.as_str());
    assert_eq!(
        s.headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(s.body["response_format"], json!({"type": "text"}));
    assert_eq!(s.body["user"], "end-user-1");

    let events = llmop_events(&app, 1).await;
    let (env, ev) = &events[0];
    assert_eq!(env.tenant_id, tenant);
    assert_eq!(env.correlation_id, "corr-chat-1");
    assert_eq!(ev["model"], "gpt-4o");
    assert_eq!(ev["provider"], "main");
    assert_eq!(ev["agent_id"], "agent-7");
    assert_eq!(ev["user_id"], "bob");
    assert_eq!(ev["tokens_in"], 10);
    assert_eq!(ev["tokens_out"], 5);
    assert_eq!(ev["status"], "ok");
    // 10 * 2.50 + 5 * 10.00 per million tokens (default price of gpt-4o).
    let cost = ev["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.000075).abs() < 1e-12, "{cost}");
    assert!(ev["latency_ms"].as_f64().unwrap() > 0.0);
}

#[sqlx::test]
async fn streaming_relays_chunks_and_the_final_usage_chunk(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["gpt-4o-mini"], 10),
    )
    .await;
    let t = user(&tenant);

    let mut body = chat("gpt-4o-mini", "hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/event-stream");
    let data = sse_data(&r.raw);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from mock");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 14);
    assert!(
        chunks[0].get("usage").is_some_and(Value::is_null),
        "usage: null on ordinary chunks"
    );
    // The provider was asked for usage regardless.
    assert_eq!(mock.seen()[0].body["stream_options"]["include_usage"], true);

    // Without include_usage the usage chunk is not passed on, but the call is
    // still metered.
    let mut body = chat("gpt-4o-mini", "hi");
    body["stream"] = json!(true);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(body),
    )
    .await;
    let data = sse_data(&r.raw);
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        assert!(c.get("usage").is_none(), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    let events = llmop_events(&app, 2).await;
    for (_, ev) in events {
        assert_eq!(ev["tokens_in"], 11);
        assert_eq!(ev["tokens_out"], 3);
        assert_eq!(ev["status"], "ok");
    }
}

#[sqlx::test]
async fn anthropic_is_translated_plain_and_streamed(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    add_provider(
        &app,
        &tenant,
        json!({"name": "claude", "kind": "anthropic", "credential": "mock-anthropic",
               "models": ["claude-sonnet-4-0"]}),
    )
    .await;
    let t = user(&tenant);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("claude-sonnet-4-0", "ping")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "claude says: ping"
    );
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26})
    );
    let seen = mock.seen();
    assert_eq!(seen[0].headers["x-api-key"], KEY);
    assert_eq!(seen[0].headers["anthropic-version"], "2023-06-01");
    assert_eq!(seen[0].body["system"], "be brief");
    assert_eq!(
        seen[0].body["messages"],
        json!([{"role": "user", "content": "ping"}])
    );
    assert_eq!(seen[0].body["max_tokens"], 1024);

    let mut body = chat("claude-sonnet-4-0", "ping");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.raw);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hi there");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28})
    );
}

#[sqlx::test]
async fn fallbacks_and_retries_that_honour_retry_after(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        json!({"name": "broken", "kind": "openai", "base_url": mock.broken_url(), "models": ["m1"], "priority": 1, "max_retries": 0}),
    )
    .await;
    add_provider(&app, &tenant, openai_provider(&mock, "backup", &["m1"], 2)).await;
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("m1", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(mock.calls_to("/broken/"), 1);
    assert_eq!(mock.calls_to("/openai/"), 1);
    let events = llmop_events(&app, 1).await;
    assert_eq!(events[0].1["provider"], "backup");

    // Pinning a provider skips the chain.
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("broken/m1", "x")),
    )
    .await;
    r.assert_openai_error(502);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broken")
    );

    // 429 with Retry-After: 0 is retried on the same provider.
    add_provider(
        &app,
        &tenant,
        json!({"name": "limited", "kind": "openai", "base_url": mock.limited_url(), "models": ["m2"], "max_retries": 2}),
    )
    .await;
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("m2", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(mock.calls_to("/limited/"), 2);

    // Every provider failing: 502 in the OpenAI error shape, and an error event.
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("broken/m1", "x")),
    )
    .await;
    r.assert_openai_error(502);
    let events = llmop_events(&app, 4).await;
    assert!(
        events
            .iter()
            .any(|(_, e)| e["status"] == "error" && e["error"].as_str().is_some())
    );
}

#[sqlx::test]
async fn embeddings_as_floats_and_base64_and_from_the_local_model(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["text-embedding-3-small"], 1),
    )
    .await;
    let r = call(
        &app.router,
        "POST",
        "/v1/embeddings",
        Some(&t),
        Some(json!({"model": "text-embedding-3-small", "input": ["abc", "de"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "list");
    assert_eq!(r.body["data"][0]["object"], "embedding");
    assert_eq!(r.body["data"][1]["index"], 1);
    assert_eq!(r.body["data"][0]["embedding"], json!([5.0, 0.5, -0.25]));
    assert_eq!(r.body["usage"]["prompt_tokens"], 4);
    assert_eq!(mock.seen()[0].body["encoding_format"], "float");

    // The official SDKs ask for base64 by default.
    let r = call(
        &app.router,
        "POST",
        "/v1/embeddings",
        Some(&t),
        Some(
            json!({"model": "text-embedding-3-small", "input": "abc", "encoding_format": "base64"}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b64 = r.body["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, vec![3.0, 0.5, -0.25]);

    add_provider(
        &app,
        &tenant,
        json!({"name": "local", "kind": "local", "models": ["all-MiniLM-L6-v2"]}),
    )
    .await;
    // The in-process model answers what sentence-transformers computes for the same text.
    let reference: Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let item = reference["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["text"]
                .as_str()
                .is_some_and(|t| t.split_whitespace().count() > 3)
        })
        .unwrap();
    let r = call(
        &app.router,
        "POST",
        "/v1/embeddings",
        Some(&t),
        Some(json!({"model": "all-MiniLM-L6-v2", "input": [item["text"], "quarterly revenue"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let got = floats(&r.body["data"][0]["embedding"]);
    let want = floats(&item["vector"]);
    assert_eq!(got.len(), 384);
    let cosine: f64 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
    assert!(cosine > 0.9999, "cosine {cosine} with the reference");
    // Usage counts the tokens the model read, markers included, of both texts.
    let tokens = r.body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens >= item["tokens"].as_u64().unwrap() + 4, "{}", r.body);
    for (body, says) in [
        (
            json!({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 64}),
            "dimensions",
        ),
        (
            json!({"model": "all-MiniLM-L6-v2", "input": [1, 2, 3]}),
            "token ids",
        ),
    ] {
        let r = call(&app.router, "POST", "/v1/embeddings", Some(&t), Some(body)).await;
        r.assert_openai_error(422);
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(says),
            "{}",
            r.body
        );
    }
    let other = json!({"name": "local2", "kind": "local", "models": ["hash-embed"]});
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&admin(&tenant)),
        Some(other),
    )
    .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("all-MiniLM-L6-v2"),
        "{}",
        r.body
    );

    let r = call(&app.router, "GET", "/v1/models", Some(&t), None).await;
    assert_eq!(r.status, 200);
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["all-MiniLM-L6-v2", "text-embedding-3-small"]);
    assert_eq!(r.body["data"][0]["object"], "model");
}

#[sqlx::test]
async fn bad_input_gets_openai_shaped_4xx(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["gpt-4o", "bad-request"], 1),
    )
    .await;
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        None,
        Some(chat("gpt-4o", "x")),
    )
    .await;
    r.assert_openai_error(401);
    assert_eq!(r.body["error"]["type"], "authentication_error");
    let r = raw_call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        "application/json",
        b"{\"model\": ",
    )
    .await;
    r.assert_openai_error(400);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(json!({"model": "gpt-4o"})),
    )
    .await;
    r.assert_openai_error(422);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages")
    );
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(json!({"model": "gpt-4o", "messages": []})),
    )
    .await;
    r.assert_openai_error(422);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(json!({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]})),
    )
    .await;
    r.assert_openai_error(422);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("role")
    );
    let mut b = chat("gpt-4o", "x");
    b["temperature"] = json!(3);
    call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(b),
    )
    .await
    .assert_openai_error(422);
    let mut b = chat("gpt-4o", "x");
    b["messages"] = json!("not a list");
    call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(b),
    )
    .await
    .assert_openai_error(422);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("no-such-model", "x")),
    )
    .await;
    r.assert_openai_error(404);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-model")
    );
    let r = call(
        &app.router,
        "POST",
        "/v1/embeddings",
        Some(&t),
        Some(json!({"model": "gpt-4o", "input": "x", "encoding_format": "hex"})),
    )
    .await;
    r.assert_openai_error(422);
    call(
        &app.router,
        "POST",
        "/v1/embeddings",
        Some(&t),
        Some(json!({"model": "gpt-4o", "input": ""})),
    )
    .await
    .assert_openai_error(422);
    // A request the provider rejects as malformed is a 400 with the gateway's reason, never
    // the provider's body, and no other provider is tried.
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("bad-request", "x")),
    )
    .await;
    r.assert_openai_error(400);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("answered 400"), "{message}");
    assert!(!message.contains("unsupported parameter"), "{message}");
}

#[sqlx::test]
async fn rate_limits_and_budgets_answer_429_with_a_reason(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["gpt-4o"], 1),
    )
    .await;
    let limits = json!({"requests_per_minute": 2});
    let uri = format!("/v1/gateway/limits/{tenant}");
    // A tenant's own admin may not lift its limits.
    call(
        &app.router,
        "PUT",
        &uri,
        Some(&admin(&tenant)),
        Some(limits.clone()),
    )
    .await
    .assert_problem(403);
    let platform = token("platform", "ops", &["platform-admin"]);
    let r = call(&app.router, "PUT", &uri, Some(&platform), Some(limits)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    call(
        &app.router,
        "PUT",
        &uri,
        Some(&platform),
        Some(json!({"budget_period": "year"})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "PUT",
        &uri,
        Some(&platform),
        Some(json!({"requests_per_minute": -1})),
    )
    .await
    .assert_problem(422);

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let r = call(
            &app.router,
            "POST",
            "/v1/chat/completions",
            Some(&t),
            Some(chat("gpt-4o", "x")),
        )
        .await;
        statuses.push(r.status.as_u16());
        last = Some(r);
    }
    // The per-minute window may roll over between calls; never more than 2 in one.
    let last = last.unwrap();
    if statuses == [200, 200, 429] {
        last.assert_openai_error(429);
        assert!(
            last.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("requests per minute")
        );
        assert!(last.headers.contains_key("retry-after"));
        // The refused call is recorded too.
        let events = llmop_events(&app, 3).await;
        assert!(events.iter().any(|(_, e)| {
            e["status"] == "error"
                && e["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("requests per minute"))
        }));
    } else {
        assert!(
            statuses.iter().filter(|s| **s == 200).count() >= 2,
            "{statuses:?}"
        );
    }

    // Budget: a tiny budget is used up by one call.
    let other = unique("gw");
    let t2 = user(&other);
    add_provider(&app, &other, openai_provider(&mock, "main", &["gpt-4o"], 1)).await;
    let r = call(
        &app.router,
        "PUT",
        &format!("/v1/gateway/limits/{other}"),
        Some(&platform),
        Some(json!({"budget_usd": 0.00001, "budget_period": "day"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t2),
        Some(chat("gpt-4o", "x")),
    )
    .await;
    assert_eq!(r.status, 200);
    // Spend is recorded off the request path; wait until it shows.
    let mut spent = 0.0;
    for _ in 0..100 {
        let r = call(&app.router, "GET", "/v1/gateway/limits", Some(&t2), None).await;
        spent = r.body["spent_usd_this_period"].as_f64().unwrap();
        if spent > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spent > 0.00001, "{spent}");
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t2),
        Some(chat("gpt-4o", "x")),
    )
    .await;
    r.assert_openai_error(429);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget")
    );
    // The first tenant's budget is untouched by the second's spending.
    let r = call(&app.router, "GET", "/v1/gateway/limits", Some(&t), None).await;
    assert!(r.body["budget_usd"].is_null());
}

#[sqlx::test]
async fn deterministic_requests_are_served_from_the_cache(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["gpt-4o"], 1),
    )
    .await;
    let mut b = chat("gpt-4o", "same question");
    b["temperature"] = json!(0);
    let r1 = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(b.clone()),
    )
    .await;
    assert_eq!(r1.headers["x-faas-cache"], "miss");
    let r2 = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(b.clone()),
    )
    .await;
    assert_eq!(r2.headers["x-faas-cache"], "hit");
    assert_eq!(r1.body, r2.body);
    assert_eq!(mock.calls_to("/openai/"), 1);
    // Another tenant with the same request does not see the cached answer.
    let other = unique("gw");
    add_provider(&app, &other, openai_provider(&mock, "main", &["gpt-4o"], 1)).await;
    let r3 = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&user(&other)),
        Some(b),
    )
    .await;
    assert_eq!(r3.headers["x-faas-cache"], "miss");
    // Sampled requests are never cached.
    let r4 = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("gpt-4o", "same question")),
    )
    .await;
    assert!(!r4.headers.contains_key("x-faas-cache"));
    assert_eq!(mock.calls_to("/openai/"), 3);
}

#[sqlx::test]
async fn provider_registry_validates_hides_keys_and_isolates_tenants(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let a = unique("ta");
    let b = unique("tb");
    let created = add_provider(&app, &a, openai_provider(&mock, "main", &["gpt-4o"], 1)).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["credential"], "mock-openai");
    assert_eq!(created["credential_available"], true);
    assert_eq!(created["base_url"], mock.openai_url());
    assert!(!created.to_string().contains(KEY));

    let uri = format!("/v1/gateway/providers/{id}");
    let r = call(&app.router, "GET", &uri, Some(&user(&a)), None).await;
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.raw).contains(KEY));
    let mut upd = openai_provider(&mock, "main", &["gpt-4o", "gpt-4.1"], 5);
    upd["enabled"] = json!(true);
    let r = call(
        &app.router,
        "PUT",
        &uri,
        Some(&admin(&a)),
        Some(upd.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["priority"], 5);

    // Validation.
    let bad = |patch: Value| {
        let mut p = openai_provider(&mock, "other", &["x"], 1);
        for (k, v) in patch.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    for (patch, word) in [
        (json!({"api_key_env": "DATABASE_URL"}), "api_key_env"),
        (
            json!({"credential": null, "base_url": "http://user:pw@example.test/v1"}),
            "base_url",
        ),
        (
            json!({"credential": null, "base_url": "not a url"}),
            "base_url",
        ),
        (json!({"name": "Bad Name"}), "name"),
        (json!({"models": []}), "models"),
        (json!({"timeout_ms": 0}), "timeout_ms"),
    ] {
        let r = call(
            &app.router,
            "POST",
            "/v1/gateway/providers",
            Some(&admin(&a)),
            Some(bad(patch)),
        )
        .await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(word),
            "{}",
            r.body
        );
    }
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&admin(&a)),
        Some(bad(json!({"kind": "magic"}))),
    )
    .await;
    r.assert_problem(422);
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&admin(&a)),
        Some(openai_provider(&mock, "main", &["y"], 1)),
    )
    .await;
    r.assert_problem(409);
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&user(&a)),
        Some(bad(json!({}))),
    )
    .await;
    r.assert_problem(403);
    call(
        &app.router,
        "GET",
        "/v1/gateway/providers/not-a-uuid",
        Some(&user(&a)),
        None,
    )
    .await
    .assert_problem(404);

    // Tenant B sees nothing of A's and can change nothing.
    let r = call(
        &app.router,
        "GET",
        "/v1/gateway/providers",
        Some(&user(&b)),
        None,
    )
    .await;
    assert_eq!(r.body, json!([]));
    call(&app.router, "GET", &uri, Some(&user(&b)), None)
        .await
        .assert_problem(404);
    call(&app.router, "PUT", &uri, Some(&admin(&b)), Some(upd))
        .await
        .assert_problem(404);
    call(&app.router, "DELETE", &uri, Some(&admin(&b)), None)
        .await
        .assert_problem(404);
    call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&user(&b)),
        Some(chat("gpt-4o", "x")),
    )
    .await
    .assert_openai_error(404);
    let r = call(&app.router, "GET", "/v1/models", Some(&user(&b)), None).await;
    assert_eq!(r.body["data"], json!([]));

    let r = call(&app.router, "DELETE", &uri, Some(&admin(&a)), None).await;
    assert_eq!(r.status, 204);
    call(&app.router, "GET", &uri, Some(&user(&a)), None)
        .await
        .assert_problem(404);
}

#[sqlx::test]
async fn slow_providers_time_out_and_the_next_one_answers(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        json!({"name": "slow", "kind": "openai", "base_url": mock.slow_url(), "models": ["m"],
               "priority": 1, "timeout_ms": 200, "max_retries": 0}),
    )
    .await;
    add_provider(&app, &tenant, openai_provider(&mock, "fast", &["m"], 2)).await;
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("m", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("slow/m", "x")),
    )
    .await;
    r.assert_openai_error(504);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in time")
    );
}

#[sqlx::test]
async fn anthropic_tool_calls_are_translated_both_ways(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    add_provider(
        &app,
        &tenant,
        json!({"name": "claude", "kind": "anthropic", "credential": "mock-anthropic",
               "models": ["claude-sonnet-4-0"]}),
    )
    .await;
    let t = user(&tenant);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let mut body = chat("claude-sonnet-4-0", "weather in Pune?");
    body["tools"] = tools.clone();
    body["tool_choice"] = json!("required");
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let choice = &r.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me check.");
    let call0 = &choice["message"]["tool_calls"][0];
    assert_eq!(call0["id"], "toolu_1");
    assert_eq!(call0["type"], "function");
    assert_eq!(call0["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call0["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Pune"}));
    let sent = &mock.seen()[0].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));

    // The tool's result goes back as a tool_result block.
    let follow = json!({"model": "claude-sonnet-4-0", "messages": [
        {"role": "user", "content": "weather in Pune?"},
        {"role": "assistant", "content": null, "tool_calls": [call0]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "31 C, sunny"}
    ]});
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(follow),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = &mock.seen()[1].body;
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(
        sent["messages"][1]["content"][0]["input"],
        json!({"city": "Pune"})
    );
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "31 C, sunny"})
    );

    // Streamed: tool call deltas in the OpenAI chunk shape.
    let mut body = chat("claude-sonnet-4-0", "weather in Pune?");
    body["tools"] = tools;
    body["stream"] = json!(true);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(body),
    )
    .await;
    let data = sse_data(&r.raw);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls[0][0]["id"], "toolu_1");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Pune"})
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
}

fn message(r: &Resp) -> String {
    r.body["error"]["message"]
        .as_str()
        .or_else(|| r.body["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn register(app: &TestApp, tenant: &str, body: Value) -> Resp {
    call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&admin(tenant)),
        Some(body),
    )
    .await
}

#[sqlx::test]
async fn credentials_serve_only_their_tenants_and_only_their_base_url(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool.clone()).await;
    let other = unique("gw");
    let own =
        json!({"name": "team", "kind": "openai", "credential": "team-only", "models": ["gpt-4o"]});
    let team = register(&app, "team-a", own.clone()).await;
    assert_eq!(team.status, 201, "{}", team.body);
    assert_eq!(team.body["base_url"], mock.openai_url());

    // Another tenant cannot tell a credential bound to others from one that does not exist.
    let taken = register(&app, &other, own.clone()).await;
    taken.assert_problem(404);
    let mut missing = own.clone();
    missing["credential"] = json!("no-such");
    let missing = register(&app, &other, missing).await;
    missing.assert_problem(404);
    assert_eq!(
        message(&taken).replace("team-only", "X"),
        message(&missing).replace("no-such", "X")
    );
    let listed = call(
        &app.router,
        "GET",
        "/v1/gateway/credentials",
        Some(&user(&other)),
        None,
    )
    .await;
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mock-openai", "mock-anthropic", "echo"]);
    let listed = call(
        &app.router,
        "GET",
        "/v1/gateway/credentials",
        Some(&user("team-a")),
        None,
    )
    .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 4);
    assert!(
        !listed
            .raw
            .windows(TEAM_KEY.len())
            .any(|w| w == TEAM_KEY.as_bytes())
    );

    // The key goes to the credential's base URL only: another base URL is refused.
    for base_url in [
        mock.broken_url(),
        format!("{}/../broken/v1", mock.openai_url()),
        "not a url".into(),
    ] {
        let mut moved = own.clone();
        moved["name"] = json!("moved");
        moved["base_url"] = json!(base_url);
        let r = register(&app, "team-a", moved).await;
        r.assert_problem(403);
        assert!(message(&r).contains("base_url"), "{}", r.body);
    }
    let mut same = own.clone();
    same["name"] = json!("same");
    same["base_url"] = json!(format!("{}/", mock.openai_url()));
    assert_eq!(register(&app, "team-a", same).await.status, 201);
    let local = json!({"name": "local", "kind": "local", "credential": "mock-openai", "models": ["all-MiniLM-L6-v2"]});
    register(&app, "team-a", local).await.assert_problem(422);

    // Calls carry the tenant's key to its credential's URL, and no key elsewhere.
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&user("team-a")),
        Some(chat("team/gpt-4o", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let plain = json!({"name": "plain", "kind": "openai", "base_url": mock.limited_url(), "models": ["m9"]});
    assert_eq!(register(&app, &other, plain).await.status, 201);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&user(&other)),
        Some(chat("m9", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = mock.seen();
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {TEAM_KEY}")
    );
    assert!(
        seen.iter()
            .filter(|s| s.path.starts_with("/limited/"))
            .all(|s| !s.headers.contains_key("authorization"))
    );

    // When the platform unbinds the credential, the provider stays but is not used.
    let unbound = gateway_config("127.0.0.1", &json!([]).to_string());
    let app2 = app_with(Some(pool), &[Component::Gateway], unbound).await;
    let r = call(
        &app2.router,
        "GET",
        &format!(
            "/v1/gateway/providers/{}",
            team.body["id"].as_str().unwrap()
        ),
        Some(&user("team-a")),
        None,
    )
    .await;
    assert_eq!(r.body["credential_available"], false, "{}", r.body);
    let r = call(
        &app2.router,
        "GET",
        "/v1/models",
        Some(&user("team-a")),
        None,
    )
    .await;
    assert_eq!(r.body["data"], json!([]));
    let before = mock.seen().len();
    call(
        &app2.router,
        "POST",
        "/v1/chat/completions",
        Some(&user("team-a")),
        Some(chat("gpt-4o", "x")),
    )
    .await
    .assert_openai_error(404);
    assert_eq!(mock.seen().len(), before);
}

#[sqlx::test]
async fn upstream_error_bodies_and_headers_never_reach_the_client(pool: sqlx::PgPool) {
    let (app, _mock) = gateway(pool).await;
    let tenant = unique("gw");
    let models = [
        "echo-400",
        "echo-401",
        "echo-403",
        "echo-404",
        "echo-429",
        "echo-500",
        "echo-503",
        "echo-200",
        "echo-stream",
    ];
    add_provider(&app, &tenant, json!({"name": "echo", "kind": "openai", "credential": "echo", "models": models, "max_retries": 0})).await;
    add_provider(&app, &tenant, json!({"name": "claude", "kind": "anthropic", "credential": "mock-anthropic", "models": ["echo-401", "echo-500"], "priority": 200})).await;
    let t = user(&tenant);
    for (model, status) in [
        ("echo-400", 400),
        ("echo-401", 502),
        ("echo-403", 502),
        ("echo-404", 502),
        ("echo-429", 429),
        ("echo-500", 502),
        ("echo-503", 502),
        ("claude/echo-401", 502),
        ("claude/echo-500", 502),
    ] {
        let r = call(
            &app.router,
            "POST",
            "/v1/chat/completions",
            Some(&t),
            Some(chat(model, "x")),
        )
        .await;
        r.assert_openai_error(status);
        let upstream_status = &model[model.len() - 3..];
        assert!(
            message(&r).contains(&format!("answered {upstream_status}")),
            "{model}: {}",
            r.body
        );
        assert!(!message(&r).contains("credentials"), "{model}: {}", r.body);
        assert_no_secret(&r);
    }
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("echo-200", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let content = r.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.trim(), "Bearer [redacted]");
    assert_no_secret(&r);
    let mut stream = chat("echo-stream", "x");
    stream["stream"] = json!(true);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(stream),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.raw);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["message"],
        "provider echo reported an error in its stream"
    );
    assert_no_secret(&r);
}

fn assert_no_secret(r: &Resp) {
    let mut text = String::from_utf8_lossy(&r.raw).into_owned();
    for (name, value) in &r.headers {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or_default()));
    }
    for secret in [KEY, TEAM_KEY] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[sqlx::test]
async fn registration_refuses_addresses_the_egress_policy_does_not_allow(pool: sqlx::PgPool) {
    let mock = common::mock::start().await;
    let app = app_with(Some(pool), &[Component::Gateway], gateway_config("", "[]")).await;
    let tenant = unique("gw");
    let port = mock.base.rsplit(':').next().unwrap();
    let mut details = std::collections::BTreeSet::new();
    for base_url in [
        mock.openai_url(),
        format!("http://localhost:{port}/openai/v1"),
        format!("http://[::1]:{port}/v1"),
        format!("http://[::ffff:127.0.0.1]:{port}/v1"),
        "http://2130706433/v1".to_string(),
        "http://169.254.169.254/latest/meta-data".into(),
        "http://10.0.0.1/v1".into(),
        "http://192.168.1.10/v1".into(),
        "http://100.64.0.1/v1".into(),
        "http://[fd00::1]/v1".into(),
        "http://0.0.0.0/v1".into(),
        "http://kubernetes.default/api".into(),
        "http://vllm.ml.svc.cluster.local/v1".into(),
        "http://redis:6379".into(),
        // Public, but this policy allows nothing beyond its list.
        "https://api.openai.com/v1".into(),
    ] {
        let body = json!({"name": "p", "kind": "openai", "base_url": base_url, "models": ["m"]});
        let r = register(&app, &tenant, body).await;
        r.assert_problem(403);
        details.insert(message(&r));
    }
    assert_eq!(
        details.len(),
        1,
        "one reason whatever the address: {details:?}"
    );
    let r = register(
        &app,
        &tenant,
        json!({"name": "p", "kind": "openai", "base_url": "ftp://a.example.com/", "models": ["m"]}),
    )
    .await;
    r.assert_problem(422);
    assert!(message(&r).contains("http"), "{}", r.body);
    assert!(mock.seen().is_empty());
}

/// A provider stored under an earlier policy (or written by hand) is refused when called.
async fn insert_provider(
    pool: &sqlx::PgPool,
    tenant: &str,
    name: &str,
    base_url: &str,
    model: &str,
) {
    sqlx::query(
        "INSERT INTO gateway_providers (id, tenant_id, name, kind, base_url, models, max_retries) \
         VALUES ($1, $2, $3, 'openai', $4, $5, 0)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant)
    .bind(name)
    .bind(base_url)
    .bind(vec![model.to_string()])
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test]
async fn calls_to_addresses_the_policy_does_not_allow_are_refused_before_connecting(
    pool: sqlx::PgPool,
) {
    let mock = common::mock::start().await;
    let app = app_with(
        Some(pool.clone()),
        &[Component::Gateway],
        gateway_config("", "[]"),
    )
    .await;
    let tenant = unique("gw");
    let port = mock.base.rsplit(':').next().unwrap();
    insert_provider(&pool, &tenant, "ip", &mock.openai_url(), "m1").await;
    insert_provider(
        &pool,
        &tenant,
        "name",
        &format!("http://localhost:{port}/openai/v1"),
        "m2",
    )
    .await;
    insert_provider(
        &pool,
        &tenant,
        "mapped",
        &format!("http://[::ffff:127.0.0.1]:{port}/openai/v1"),
        "m3",
    )
    .await;
    insert_provider(
        &pool,
        &tenant,
        "v6",
        &format!("http://[::1]:{port}/openai/v1"),
        "m4",
    )
    .await;
    let mut details = std::collections::BTreeSet::new();
    for model in ["m1", "m2", "m3", "m4"] {
        let r = call(
            &app.router,
            "POST",
            "/v1/chat/completions",
            Some(&user(&tenant)),
            Some(chat(model, "x")),
        )
        .await;
        r.assert_openai_error(502);
        details.insert(message(&r).split_once(": ").unwrap().1.to_string());
        let r = call(
            &app.router,
            "POST",
            "/v1/embeddings",
            Some(&user(&tenant)),
            Some(json!({"model": model, "input": "x"})),
        )
        .await;
        r.assert_openai_error(502);
    }
    assert_eq!(details.len(), 1, "{details:?}");
    assert!(mock.seen().is_empty(), "nothing reached the mock");

    // With loopback allowed the same rows are served.
    let allowed = app_with(
        Some(pool),
        &[Component::Gateway],
        gateway_config("127.0.0.1", "[]"),
    )
    .await;
    let r = call(
        &allowed.router,
        "POST",
        "/v1/chat/completions",
        Some(&user(&tenant)),
        Some(chat("m1", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[sqlx::test]
async fn redirects_are_not_followed(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    add_provider(&app, &tenant, json!({"name": "moved", "kind": "openai", "base_url": mock.redirect_url(), "models": ["m"]})).await;
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&user(&tenant)),
        Some(chat("m", "x")),
    )
    .await;
    r.assert_openai_error(502);
    assert!(message(&r).contains("answered 307"), "{}", r.body);
    assert_eq!(mock.calls_to("/redirect/"), 1);
    assert_eq!(mock.calls_to("/openai/"), 0);
}

#[sqlx::test]
async fn provider_numbers_at_their_extremes_are_client_errors(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let a = admin(&tenant);
    let base =
        || json!({"name": "p", "kind": "openai", "base_url": mock.openai_url(), "models": ["m"]});
    for (field, value) in [
        ("priority", json!(i32::MAX)),
        ("priority", json!(i32::MIN)),
        ("priority", json!(i64::MAX)),
        ("priority", json!(-1)),
        ("timeout_ms", json!(i32::MAX)),
        ("timeout_ms", json!(i64::MIN)),
        ("timeout_ms", json!(1.5)),
        ("timeout_ms", json!("100")),
        ("max_retries", json!(i32::MAX)),
        ("max_retries", json!(-1)),
        ("max_retries", json!(u64::MAX)),
        ("models", json!(["x".repeat(201)])),
        (
            "base_url",
            json!(format!("{}/{}", mock.openai_url(), "a".repeat(2100))),
        ),
    ] {
        let mut body = base();
        body[field] = value.clone();
        let r = call(
            &app.router,
            "POST",
            "/v1/gateway/providers",
            Some(&a),
            Some(body),
        )
        .await;
        r.assert_problem(422);
        assert!(
            message(&r).contains(field) || message(&r).contains("invalid"),
            "{field}={value}: {}",
            r.body
        );
    }
    // A NUL is refused before the body reaches the gateway, naming where it is.
    let mut body = base();
    body["models"] = json!(["a\u{0}b"]);
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&a),
        Some(body),
    )
    .await;
    r.assert_problem(400);
    assert!(message(&r).contains("/models/0"), "{}", r.body);
    for body in [json!([]), json!([1, 2]), json!("x"), json!(null)] {
        call(
            &app.router,
            "POST",
            "/v1/gateway/providers",
            Some(&a),
            Some(body),
        )
        .await
        .assert_problem(422);
    }
}

#[sqlx::test]
async fn limits_at_their_extremes_are_client_errors(pool: sqlx::PgPool) {
    let (app, _mock) = gateway(pool).await;
    let tenant = unique("gw");
    let platform = token("platform", "ops", &["platform-admin"]);
    let uri = format!("/v1/gateway/limits/{tenant}");
    for body in [
        json!([]),
        json!([5]),
        json!({"requests_per_minute": i64::MAX}),
        json!({"requests_per_minute": -1}),
        json!({"tokens_per_minute": i32::MIN}),
        json!({"budget_usd": -0.5}),
        json!({"budget_usd": "1"}),
        json!({"budget_period": "week"}),
        json!({"extra": 1}),
    ] {
        let r = call(
            &app.router,
            "PUT",
            &uri,
            Some(&platform),
            Some(body.clone()),
        )
        .await;
        r.assert_problem(422);
    }
    for raw in [
        &b"{\"budget_usd\": 1e400}"[..],
        b"{\"budget_usd\": NaN}",
        b"{\"budget_usd\": Infinity}",
    ] {
        let r = raw_call(
            &app.router,
            "PUT",
            &uri,
            Some(&platform),
            "application/json",
            raw,
        )
        .await;
        assert!(
            r.status.is_client_error(),
            "{}: {}",
            String::from_utf8_lossy(raw),
            r.body
        );
    }
    let r = call(
        &app.router,
        "PUT",
        &uri,
        Some(&platform),
        Some(json!({"budget_usd": 1e308, "requests_per_minute": i32::MAX})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[sqlx::test]
async fn call_numbers_at_their_extremes_are_client_errors(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["gpt-4o", "overflow-usage"], 1),
    )
    .await;
    let t = user(&tenant);
    for (field, value) in [
        ("max_tokens", json!(u64::from(u32::MAX) + 1)),
        ("max_tokens", json!(-1)),
        ("max_tokens", json!(0)),
        ("max_completion_tokens", json!(i64::MIN)),
        ("n", json!(2)),
        ("n", json!(u64::MAX)),
        ("temperature", json!(-0.1)),
        ("temperature", json!(f64::MAX)),
        ("top_p", json!(1.01)),
        ("stop", json!({"a": 1})),
        ("stop", json!([1])),
        ("model", json!("m".repeat(300))),
        ("model", json!("")),
        ("messages", json!([{"role": "user", "content": [1, 2]}])),
        ("messages", json!([{"role": "user", "content": 5}])),
    ] {
        let mut body = chat("gpt-4o", "x");
        body[field] = value.clone();
        let r = call(
            &app.router,
            "POST",
            "/v1/chat/completions",
            Some(&t),
            Some(body),
        )
        .await;
        r.assert_openai_error(422);
        assert!(
            message(&r).contains(field) || message(&r).contains("invalid"),
            "{field}={value}: {}",
            r.body
        );
    }
    for body in [json!([]), json!(["gpt-4o", []]), json!(1)] {
        call(
            &app.router,
            "POST",
            "/v1/chat/completions",
            Some(&t),
            Some(body),
        )
        .await
        .assert_openai_error(422);
    }
    for patch in [
        json!({"dimensions": 0}),
        json!({"dimensions": 8193}),
        json!({"dimensions": u64::MAX}),
        json!({"input": [-1]}),
        json!({"input": [u64::from(u32::MAX) + 1]}),
        json!({"input": [[]]}),
        json!({"input": vec!["a"; 2049]}),
        json!({"input": {"text": "x"}}),
        json!({"encoding_format": "hex"}),
    ] {
        let mut body = json!({"model": "gpt-4o", "input": "x"});
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = call(&app.router, "POST", "/v1/embeddings", Some(&t), Some(body)).await;
        r.assert_openai_error(422);
    }
    call(
        &app.router,
        "POST",
        "/v1/embeddings",
        Some(&t),
        Some(json!(["gpt-4o", "x"])),
    )
    .await
    .assert_openai_error(422);
}

#[sqlx::test]
async fn absurd_figures_from_a_provider_saturate(pool: sqlx::PgPool) {
    let (app, mock) = gateway(pool).await;
    let tenant = unique("gw");
    let t = user(&tenant);
    add_provider(
        &app,
        &tenant,
        openai_provider(&mock, "main", &["overflow-usage"], 1),
    )
    .await;
    // A provider reporting more tokens than any counter holds is served.
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("overflow-usage", "x")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = llmop_events(&app, 1).await;
    assert_eq!(events[0].1["tokens_in"], i64::MAX);
    // So does a Retry-After no duration can hold.
    add_provider(&app, &tenant, json!({"name": "busy", "kind": "openai", "base_url": mock.huge_retry_url(), "models": ["b"], "max_retries": 3})).await;
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(chat("b", "x")),
    )
    .await;
    r.assert_openai_error(502);
}

/// Starts the real binary serving the gateway, its stdout and stderr going to files.
struct Runtime {
    child: std::process::Child,
    base: String,
    logs: std::path::PathBuf,
}

impl Runtime {
    fn start(envs: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let logs = std::env::temp_dir().join(unique("faas-gw-logs-"));
        std::fs::create_dir_all(&logs).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faas-runtime"));
        cmd.args(["serve", "--service", "gateway"])
            .env_clear()
            .env("DATABASE_URL", require_env("DATABASE_URL"))
            .env("REDIS_URL", require_env("REDIS_URL"))
            .env("NATS_URL", require_env("NATS_URL"))
            .env("FAAS_LISTEN", format!("127.0.0.1:{port}"))
            .env("FAAS_REDIS_PREFIX", unique("t"))
            .env("FAAS_NATS_PREFIX", unique("t"))
            .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.join("stderr")).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            logs,
        }
    }

    async fn ready(&mut self, client: &reqwest::Client) {
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the runtime exited ({status}): {}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the runtime did not become ready: {}", self.output());
    }

    /// Stops the process (SIGTERM) and returns everything it wrote.
    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let out = self.output();
        let _ = std::fs::remove_dir_all(&self.logs);
        out
    }

    fn output(&self) -> String {
        ["stdout", "stderr"]
            .iter()
            .map(|f| std::fs::read_to_string(self.logs.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Sends a request and renders the whole answer (status, headers, body) as text.
async fn exchange(rb: reqwest::RequestBuilder) -> (u16, String) {
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let mut text = format!("{status}\n");
    for (k, v) in resp.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or_default()));
    }
    text.push_str(&resp.text().await.unwrap_or_default());
    (status, text)
}

#[tokio::test]
async fn no_configured_secret_reaches_a_response_or_a_log_line() {
    let mock = common::mock::start().await;
    let db_password = reqwest::Url::parse(&require_env("DATABASE_URL"))
        .unwrap()
        .password()
        .expect("a password in DATABASE_URL")
        .to_string();
    let creds = json!([
        {"name": "echo", "tenants": "*", "base_url": mock.echo_url(), "key_env": "LLM_API_KEY_ECHO"},
        {"name": "claude", "tenants": "*", "base_url": mock.anthropic_url(), "key_env": "LLM_API_KEY_ECHO"}
    ]);
    let mut rt = Runtime::start(&[
        ("FAAS_JWT_HS256_SECRET", SECRET.into()),
        ("LLM_API_KEY_ECHO", KEY.into()),
        ("FAAS_GATEWAY_CREDENTIALS", creds.to_string()),
        ("FAAS_EGRESS_ALLOW", "127.0.0.1".into()),
        ("FAAS_EGRESS_PUBLIC", "false".into()),
        ("RUST_LOG", "debug".into()),
    ]);
    let client = reqwest::Client::new();
    rt.ready(&client).await;
    let tenant = unique("gw");
    let (a, t) = (admin(&tenant), user(&tenant));
    let url = |p: &str| format!("{}{p}", rt.base);
    let mut answers = Vec::new();
    let models = [
        "echo-400",
        "echo-401",
        "echo-429",
        "echo-500",
        "echo-503",
        "echo-200",
        "echo-stream",
    ];
    for body in [
        json!({"name": "echo", "kind": "openai", "credential": "echo", "models": models, "max_retries": 1}),
        json!({"name": "claude", "kind": "anthropic", "credential": "claude", "models": ["echo-401", "echo-500"], "priority": 200}),
    ] {
        let (status, text) = exchange(
            client
                .post(url("/v1/gateway/providers"))
                .bearer_auth(&a)
                .json(&body),
        )
        .await;
        assert_eq!(status, 201, "{text}");
        answers.push(text);
    }
    for model in models
        .iter()
        .copied()
        .chain(["claude/echo-401", "claude/echo-500"])
    {
        let mut body = chat(model, "x");
        body["stream"] = json!(model == "echo-stream");
        let rb = client
            .post(url("/v1/chat/completions"))
            .bearer_auth(&t)
            .json(&body);
        answers.push(
            exchange(rb.header("x-correlation-id", "sk-live-0123456789abcdef"))
                .await
                .1,
        );
        let rb = client.post(url("/v1/embeddings")).bearer_auth(&t);
        answers.push(
            exchange(rb.json(&json!({"model": model, "input": "x"})))
                .await
                .1,
        );
    }
    for path in [
        "/v1/gateway/providers",
        "/v1/gateway/credentials",
        "/v1/models",
        "/v1/gateway/limits",
    ] {
        answers.push(exchange(client.get(url(path)).bearer_auth(&t)).await.1);
    }
    // The key offered as a token, and the signing key as one, are refused without an echo.
    answers.push(
        exchange(client.get(url("/v1/models")).bearer_auth(KEY))
            .await
            .1,
    );
    answers.push(
        exchange(client.get(url("/v1/models")).bearer_auth(SECRET))
            .await
            .1,
    );
    let logs = rt.stop();

    assert!(logs.contains("serving"), "{logs}");
    assert!(
        answers.iter().any(|a| a.contains("answered 401")),
        "{answers:?}"
    );
    for secret in [KEY, SECRET, db_password.as_str()] {
        for a in &answers {
            assert!(!a.contains(secret), "{secret} in an answer: {a}");
        }
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
    // Credential-shaped text is redacted too, whoever supplied it.
    assert!(!logs.contains("sk-live-0123456789abcdef"), "{logs}");
    assert!(logs.contains("[redacted]"), "{logs}");
}
