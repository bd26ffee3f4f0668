//! The llmops component against the real Postgres and NATS.

mod common;

use std::time::Duration;

use common::*;
use faas_runtime::Component;
use faas_runtime::platform::RequestContext;
use faas_runtime::platform::events::Envelope;
use serde_json::{Value, json};

fn event(model: &str, latency: f64, status: &str, minutes_ago: i64) -> Value {
    json!({
        "id": uuid::Uuid::new_v4(),
        "occurred_at": (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339(),
        "model": model, "provider": "p1", "agent_id": "agent-1", "user_id": "u1",
        "tokens_in": 100, "tokens_out": 50, "latency_ms": latency, "status": status,
    })
}

#[sqlx::test]
async fn http_ingest_is_idempotent_and_prices_events(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let t = user(&unique("o"));
    let mut e1 = event("gpt-4o", 100.0, "ok", 1);
    let e2 = event("unknown-model", 100.0, "ok", 1);
    e1["cost_usd"] = Value::Null;
    let batch = json!({"events": [e1.clone(), e2]});
    let r = call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&t),
        Some(batch.clone()),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, json!({"received": 2, "stored": 2}));
    let r = call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&t),
        Some(batch),
    )
    .await;
    assert_eq!(r.body["stored"], 0, "the same ids are not stored twice");

    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/events?model=gpt-4o",
        Some(&t),
        None,
    )
    .await;
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    // 100 * 2.50 + 50 * 10.00 per million.
    assert!((items[0]["cost_usd"].as_f64().unwrap() - 0.00075).abs() < 1e-12);
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/events?model=unknown-model",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body["items"][0]["cost_usd"], 0.0);
}

#[sqlx::test]
async fn queries_filter_and_paginate_with_cursors(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let t = user(&unique("o"));
    let mut events = Vec::new();
    for i in 0..25 {
        let status = if i % 5 == 0 { "error" } else { "ok" };
        let model = if i % 2 == 0 { "m-even" } else { "m-odd" };
        events.push(event(model, i as f64, status, i));
    }
    call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&t),
        Some(json!({"events": events})),
    )
    .await;
    let mut seen = Vec::new();
    let mut uri = "/v1/llmops/events?limit=10".to_string();
    loop {
        let r = call(&app.router, "GET", &uri, Some(&t), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for it in r.body["items"].as_array().unwrap() {
            seen.push((
                it["occurred_at"].as_str().unwrap().to_string(),
                it["id"].as_str().unwrap().to_string(),
            ));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/llmops/events?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");

    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/events?status=error",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 5);
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/events?model=m-odd&status=ok",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 10);
    let from = (chrono::Utc::now() - chrono::Duration::seconds(9 * 60 + 30)).to_rfc3339();
    let r = call(
        &app.router,
        "GET",
        &format!("/v1/llmops/events?from={}", urlencode(&from)),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 10, "{}", r.body);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[sqlx::test]
async fn metrics_give_percentiles_error_rates_tokens_and_costs(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let t = user(&unique("o"));
    let mut events = Vec::new();
    for i in 1..=100 {
        let mut e = event(
            "gpt-4o-mini",
            i as f64,
            if i <= 10 { "error" } else { "ok" },
            0,
        );
        e["cost_usd"] = json!(0.01);
        events.push(e);
    }
    let mut other = event("claude-opus-4-0", 500.0, "ok", 0);
    other["agent_id"] = json!("agent-2");
    events.push(other);
    call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&t),
        Some(json!({"events": events})),
    )
    .await;

    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=model",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let groups = r.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let mini = groups.iter().find(|g| g["key"] == "gpt-4o-mini").unwrap();
    assert_eq!(mini["requests"], 100);
    assert_eq!(mini["errors"], 10);
    assert!((mini["error_rate"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    assert_eq!(mini["tokens_in"], 10_000);
    assert_eq!(mini["tokens_out"], 5_000);
    assert!((mini["cost_usd"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!((mini["latency_p50_ms"].as_f64().unwrap() - 50.5).abs() < 1e-9);
    assert!((mini["latency_p95_ms"].as_f64().unwrap() - 95.05).abs() < 1e-9);
    assert!((mini["latency_p99_ms"].as_f64().unwrap() - 99.01).abs() < 1e-9);
    // The opus event was priced from the default table: 100*15 + 50*75 per million.
    let opus = groups
        .iter()
        .find(|g| g["key"] == "claude-opus-4-0")
        .unwrap();
    assert!((opus["cost_usd"].as_f64().unwrap() - 0.00525).abs() < 1e-12);

    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=agent",
        Some(&t),
        None,
    )
    .await;
    let keys: Vec<&str> = r.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["agent-1", "agent-2"]);
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=day",
        Some(&t),
        None,
    )
    .await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        r.body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"] == today.as_str())
    );
    let r = call(&app.router, "GET", "/v1/llmops/metrics", Some(&t), None).await;
    assert_eq!(r.body["groups"][0]["requests"], 101);
    assert!((r.body["total_cost_usd"].as_f64().unwrap() - 1.00525).abs() < 1e-9);
}

#[sqlx::test]
async fn pricing_defaults_and_tenant_overrides(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let a = unique("oa");
    let b = unique("ob");
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/pricing",
        Some(&user(&a)),
        None,
    )
    .await;
    let gpt = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(gpt["source"], "default");

    let put = json!({"input_per_million": 1.0, "output_per_million": 2.0});
    call(
        &app.router,
        "PUT",
        "/v1/llmops/pricing/gpt-4o",
        Some(&user(&a)),
        Some(put.clone()),
    )
    .await
    .assert_problem(403);
    let r = call(
        &app.router,
        "PUT",
        "/v1/llmops/pricing/gpt-4o",
        Some(&admin(&a)),
        Some(put),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    call(
        &app.router,
        "PUT",
        "/v1/llmops/pricing/gpt-4o",
        Some(&admin(&a)),
        Some(json!({"input_per_million": -1.0, "output_per_million": 2.0})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "PUT",
        "/v1/llmops/pricing/gpt-4o",
        Some(&admin(&a)),
        Some(json!({"input_per_million": 1.0})),
    )
    .await
    .assert_problem(422);

    let ev = json!({"events": [event("gpt-4o", 1.0, "ok", 0)]});
    call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&user(&a)),
        Some(ev.clone()),
    )
    .await;
    let mut ev_b = ev.clone();
    ev_b["events"][0]["id"] = json!(uuid::Uuid::new_v4());
    call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&user(&b)),
        Some(ev_b),
    )
    .await;
    let cost = |tenant: String| {
        let router = app.router.clone();
        async move {
            let r = call(
                &router,
                "GET",
                "/v1/llmops/events",
                Some(&user(&tenant)),
                None,
            )
            .await;
            r.body["items"][0]["cost_usd"].as_f64().unwrap()
        }
    };
    // A: 100*1 + 50*2 per million; B still pays the default.
    assert!((cost(a.clone()).await - 0.0002).abs() < 1e-12);
    assert!((cost(b.clone()).await - 0.00075).abs() < 1e-12);
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/pricing",
        Some(&user(&b)),
        None,
    )
    .await;
    let gpt_b = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(gpt_b["source"], "default");

    call(
        &app.router,
        "DELETE",
        "/v1/llmops/pricing/gpt-4o",
        Some(&admin(&b)),
        None,
    )
    .await
    .assert_problem(404);
    let r = call(
        &app.router,
        "DELETE",
        "/v1/llmops/pricing/gpt-4o",
        Some(&admin(&a)),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
}

#[sqlx::test]
async fn bad_input_is_rejected_with_a_reason(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let t = user(&unique("o"));
    let post = |body| {
        call(
            &app.router,
            "POST",
            "/v1/llmops/events",
            Some(&t),
            Some(body),
        )
    };
    post(json!({"events": []})).await.assert_problem(422);
    let many: Vec<Value> = (0..1001).map(|_| event("m", 1.0, "ok", 0)).collect();
    post(json!({"events": many})).await.assert_problem(422);
    let mut e = event("m", 1.0, "maybe", 0);
    let r = post(json!({"events": [event("m", 1.0, "ok", 0), e.clone()]})).await;
    r.assert_problem(422);
    assert!(
        r.body["detail"].as_str().unwrap().contains("events[1]"),
        "{}",
        r.body
    );
    e["status"] = json!("ok");
    e["tokens_in"] = json!(-5);
    post(json!({"events": [e.clone()]}))
        .await
        .assert_problem(422);
    e["tokens_in"] = json!("many");
    post(json!({"events": [e]})).await.assert_problem(422);
    post(json!({"events": [{"model": "m"}]}))
        .await
        .assert_problem(422);
    post(json!({"events": [event("m", 1.0, "ok", 0)], "tenant_id": "other"}))
        .await
        .assert_problem(422);

    for q in [
        "limit=0",
        "limit=100000",
        "status=meh",
        "cursor=garbage",
        "from=yesterday",
        "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
        "tenant_id=other",
    ] {
        let r = call(
            &app.router,
            "GET",
            &format!("/v1/llmops/events?{q}"),
            Some(&t),
            None,
        )
        .await;
        r.assert_problem(400);
    }
    call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=tenant",
        Some(&t),
        None,
    )
    .await
    .assert_problem(403);
    call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=model;drop",
        Some(&t),
        None,
    )
    .await
    .assert_problem(400);
}

#[sqlx::test]
async fn tenants_see_only_their_own_operations(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let a = user(&unique("oa"));
    let b = user(&unique("ob"));
    let mut ev = event("m", 1.0, "ok", 0);
    // A tenant named in the body is not a way into another tenant.
    ev["user_id"] = json!("someone");
    call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&a),
        Some(json!({"events": [ev]})),
    )
    .await;
    let r = call(&app.router, "GET", "/v1/llmops/events", Some(&b), None).await;
    assert_eq!(r.body["items"], json!([]));
    let r = call(&app.router, "GET", "/v1/llmops/metrics", Some(&b), None).await;
    assert_eq!(r.body["groups"], json!([]));
    let r = call(&app.router, "GET", "/v1/llmops/events", Some(&a), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // A tenant's own admin cannot look across tenants; the platform's can.
    let a_admin = token(&unique("oa"), "x", &["admin"]);
    call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=tenant",
        Some(&a_admin),
        None,
    )
    .await
    .assert_problem(403);
    call(
        &app.router,
        "POST",
        "/v1/llmops/events",
        Some(&b),
        Some(json!({"events": [event("m", 1.0, "ok", 0)]})),
    )
    .await;
    let platform = token("ops", "ops", &["platform-admin"]);
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=tenant",
        Some(&platform),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let keys: Vec<&str> = r.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert!(keys.len() >= 2, "{keys:?}");
}

async fn wait_for_events(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let r = call(&app.router, "GET", "/v1/llmops/events", Some(token), None).await;
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} events arrived");
}

#[sqlx::test]
async fn events_from_nats_are_stored_and_bad_ones_dead_lettered(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let tasks = app.start_background().await;
    let tenant = unique("on");
    let bus = app.state.events.clone().unwrap();
    let ctx = RequestContext {
        request_id: "r".into(),
        correlation_id: "corr-nats".into(),
        tenant_id: Some(tenant.clone()),
        ..Default::default()
    };
    let ev: Value = event("gpt-4o", 12.5, "ok", 0);
    let env = Envelope::new_json("llmop.v1", &ctx, &ev).unwrap();
    bus.publish("llmop", &env).await.unwrap();
    // Same envelope again: deduplicated by JetStream, and by id on insert.
    bus.publish("llmop", &env).await.unwrap();
    // Malformed payload, and an envelope without tenant.
    let mut bad = Envelope::new_json("llmop.v1", &ctx, &json!({"model": 5})).unwrap();
    bad.id = uuid::Uuid::new_v4().to_string();
    bus.publish("llmop", &bad).await.unwrap();
    let no_tenant = Envelope::new_json("llmop.v1", &RequestContext::background(), &ev).unwrap();
    bus.publish("llmop", &no_tenant).await.unwrap();

    let items = wait_for_events(&app, &user(&tenant), 1).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["correlation_id"], "corr-nats");
    assert_eq!(items[0]["latency_ms"], 12.5);

    let info = bus
        .jetstream()
        .get_stream(bus.dlq_stream())
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    let mut dead = info;
    for _ in 0..200 {
        if dead >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        dead = bus
            .jetstream()
            .get_stream(bus.dlq_stream())
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages;
    }
    assert_eq!(dead, 2);
    app.state.shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
    }
}

#[sqlx::test]
async fn gateway_calls_end_up_in_the_history(pool: sqlx::PgPool) {
    let mock = common::mock::start().await;
    let app = app(Some(pool), &[Component::Gateway, Component::Llmops]).await;
    let tasks = app.start_background().await;
    let tenant = unique("e2e");
    let r = call(
        &app.router,
        "POST",
        "/v1/gateway/providers",
        Some(&admin(&tenant)),
        Some(json!({"name": "main", "kind": "openai", "base_url": mock.openai_url(), "models": ["gpt-4o-mini"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let t = user(&tenant);
    let r = call(
        &app.router,
        "POST",
        "/v1/chat/completions",
        Some(&t),
        Some(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true})),
    )
    .await;
    assert_eq!(r.status, 200);
    let items = wait_for_events(&app, &t, 1).await;
    assert_eq!(items[0]["model"], "gpt-4o-mini");
    assert_eq!(items[0]["provider"], "main");
    assert_eq!(items[0]["tokens_in"], 11);
    assert_eq!(items[0]["user_id"], "bob");
    assert!(items[0]["cost_usd"].as_f64().unwrap() > 0.0);
    app.state.shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
    }
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[sqlx::test]
async fn times_at_the_edges_of_their_range_are_refused(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let t = user(&unique("o"));
    for (param, value) in [
        ("to", "-262143-01-01T00:00:00Z"),
        ("from", "-262143-01-01T00:00:00Z"),
        ("to", "+262142-12-31T23:59:59Z"),
        ("from", "-0001-12-31T23:59:59Z"),
        ("to", "10000-01-01T00:00:00Z"),
    ] {
        for route in ["events", "metrics"] {
            let r = call(
                &app.router,
                "GET",
                &format!("/v1/llmops/{route}?{param}={}", enc(value)),
                Some(&t),
                None,
            )
            .await;
            r.assert_problem(400);
            assert!(
                r.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{param}:")),
                "{}",
                r.body
            );
        }
    }
    // The first and last four-digit years work, default window included.
    for q in [
        "to=0000-01-01T00:00:00Z",
        "from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
        "from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:59Z",
    ] {
        let r = call(
            &app.router,
            "GET",
            &format!("/v1/llmops/events?{}", enc(q)),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        let r = call(
            &app.router,
            "GET",
            &format!("/v1/llmops/metrics?{}", enc(q)),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{q}: {}", r.body);
    }
    use base64::Engine;
    let far = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "-262143-01-01T00:00:00+00:00|{}",
        uuid::Uuid::nil()
    ));
    call(
        &app.router,
        "GET",
        &format!("/v1/llmops/events?cursor={far}"),
        Some(&t),
        None,
    )
    .await
    .assert_problem(400);
}

#[sqlx::test]
async fn ingested_numbers_times_and_texts_are_bounded(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let t = user(&unique("o"));
    let post = |e: Value| {
        call(
            &app.router,
            "POST",
            "/v1/llmops/events",
            Some(&t),
            Some(json!({"events": [e]})),
        )
    };
    let base = event("m", 1.0, "ok", 0);
    for (field, value, why) in [
        ("tokens_in", json!(i64::MAX), "tokens_in"),
        ("tokens_out", json!(100_000_001), "tokens_out"),
        ("latency_ms", json!(1e300), "latency_ms"),
        ("latency_ms", json!(-0.5), "latency_ms"),
        ("cost_usd", json!(1e300), "cost_usd"),
        ("occurred_at", json!("10000-01-01T00:00:00Z"), "occurred_at"),
        ("occurred_at", json!("-0001-01-01T00:00:00Z"), "occurred_at"),
        ("model", json!("m".repeat(201)), "model"),
        ("model", json!(""), "model"),
        ("agent_id", json!("a".repeat(257)), "agent_id"),
        ("provider", json!("p\u{1b}"), "provider"),
        ("error", json!("e".repeat(2001)), "error"),
    ] {
        let mut e = base.clone();
        e[field] = value;
        let r = post(e).await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(why),
            "{}",
            r.body
        );
    }
    let mut e = base.clone();
    e["model"] = json!("m\u{0}x");
    assert!(post(e).await.status.is_client_error());
    // Limits count characters, not bytes; the largest values are stored.
    let mut e = base.clone();
    e["model"] = json!("é".repeat(200));
    e["tokens_in"] = json!(100_000_000);
    e["latency_ms"] = json!(86_400_000.0);
    e["error"] = json!("line one\nline two");
    let r = post(e).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

/// Sums over rows at the bounds of their columns neither overflow nor fail.
#[sqlx::test]
async fn metrics_survive_huge_stored_numbers(pool: sqlx::PgPool) {
    let app = app(Some(pool.clone()), &[Component::Llmops]).await;
    let tenant = unique("o");
    for _ in 0..2 {
        sqlx::query(
            "INSERT INTO llm_operations (id, tenant_id, occurred_at, model, tokens_in, tokens_out, latency_ms, cost_usd, status) \
             VALUES ($1, $2, now(), 'm', 9223372036854775807, 9223372036854775807, 1e300, 1e308, 'ok')",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(&tenant)
        .execute(&pool)
        .await
        .unwrap();
    }
    for q in ["", "?group_by=model", "?group_by=day"] {
        let r = call(
            &app.router,
            "GET",
            &format!("/v1/llmops/metrics{q}"),
            Some(&user(&tenant)),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["groups"][0]["tokens_in"], i64::MAX);
        assert_eq!(r.body["groups"][0]["requests"], 2);
        assert!(r.body["total_cost_usd"].as_f64().unwrap() > 1e307);
    }
    let platform = token("ops", "ops", &["platform-admin"]);
    let r = call(
        &app.router,
        "GET",
        "/v1/llmops/metrics?group_by=tenant",
        Some(&platform),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Event ids are the client's: they are unique per tenant.
#[sqlx::test]
async fn tenants_may_use_the_same_event_ids(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let a = user(&unique("oa"));
    let b = user(&unique("ob"));
    let id = uuid::Uuid::new_v4();
    let mut ea = event("model-a", 1.0, "ok", 1);
    ea["id"] = json!(id);
    let mut eb = event("model-b", 2.0, "error", 0);
    eb["id"] = json!(id);
    let ingest = |t: &str, e: &Value| {
        let (router, t, body) = (app.router.clone(), t.to_string(), json!({"events": [e]}));
        async move { call(&router, "POST", "/v1/llmops/events", Some(&t), Some(body)).await }
    };
    let r = ingest(&a, &ea).await;
    assert_eq!(r.body["stored"], 1, "{}", r.body);
    // B cannot tell that A used the id, and does not hide A's event.
    let r = ingest(&b, &eb).await;
    assert_eq!(r.body["stored"], 1, "{}", r.body);
    assert_eq!(ingest(&a, &ea).await.body["stored"], 0);
    assert_eq!(ingest(&b, &eb).await.body["stored"], 0);
    for (t, model) in [(&a, "model-a"), (&b, "model-b")] {
        let r = call(&app.router, "GET", "/v1/llmops/events", Some(t), None).await;
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{}", r.body);
        assert_eq!(items[0]["id"], json!(id));
        assert_eq!(items[0]["model"], model);
    }
}

/// The OpenAPI document states what the routes answer and the limits they enforce.
#[sqlx::test]
async fn the_openapi_document_states_answers_and_limits(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Llmops]).await;
    let doc = call(&app.router, "GET", "/openapi.json", None, None)
        .await
        .body;
    let ingest = &doc["paths"]["/v1/llmops/events"]["post"]["responses"];
    for status in ["202", "400", "401", "413", "415", "422", "429", "503"] {
        assert!(ingest[status].is_object(), "POST events lacks {status}");
        if status != "202" {
            assert!(ingest[status]["content"]["application/problem+json"].is_object());
        }
    }
    assert!(doc["paths"]["/v1/llmops/metrics"]["get"]["responses"]["403"].is_object());
    assert!(doc["paths"]["/v1/llmops/pricing/{model}"]["delete"]["responses"]["404"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["IngestBatch"]["properties"]["events"]["maxItems"],
        1000
    );
    let event = &schemas["LlmOpEvent"]["properties"];
    assert_eq!(event["tokens_in"]["maximum"], 100_000_000);
    assert_eq!(event["model"]["maxLength"], 200);
    let params = doc["paths"]["/v1/llmops/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(limit["schema"]["maximum"], 500);
}
