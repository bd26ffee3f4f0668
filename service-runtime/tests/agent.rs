//! The agent component against the real Postgres and NATS, its models served by the real
//! gateway whose provider is a local server speaking the OpenAI chat-completions protocol,
//! scripted by model name:
//!   `answer`      answers `echo: <the last user message>`;
//!   `use-tool`    calls the first tool offered with the last user message as its
//!                 arguments, then answers `final: <what the tool gave>`;
//!   `loop`        calls the first tool offered with `{}`, for ever;
//!   `hang`        never answers.
//! Streamed requests are answered as streams, tool calls in pieces.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::*;
use faas_runtime::Component;
use serde_json::{Value, json};

const MODELS: [&str; 4] = ["answer", "use-tool", "loop", "hang"];
const SECRET_VALUE: &str = "Bearer s3cr3t-agent-credential-7f1c";

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

impl Seen {
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// What the scripted model does: answer with text, or call a tool.
enum Turn {
    Text(String),
    Call { name: String, arguments: String },
}

fn script(body: &Value) -> Option<Turn> {
    let model = body["model"].as_str().unwrap_or_default();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let first_tool = body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("none")
        .to_string();
    Some(match model {
        m if m.ends_with("hang") => return None,
        m if m.ends_with("use-tool") => {
            if last["role"] == "tool" {
                Turn::Text(format!("final: {}", last["content"].as_str().unwrap_or("")))
            } else {
                Turn::Call {
                    name: first_tool,
                    arguments: last_user(body),
                }
            }
        }
        m if m.ends_with("loop") => Turn::Call {
            name: first_tool,
            arguments: "{}".into(),
        },
        _ => Turn::Text(format!("echo: {}", last_user(body))),
    })
}

async fn chat(State(seen): State<Seen>, axum::Json(body): axum::Json<Value>) -> Response {
    seen.0.lock().unwrap().push(body.clone());
    let Some(turn) = script(&body) else {
        tokio::time::sleep(Duration::from_secs(600)).await;
        return ().into_response();
    };
    let usage = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
    if body["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            let c = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {c}\n\n")
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        let finish = match turn {
            Turn::Text(t) => {
                let (a, b) = t.split_at(t.len() / 2);
                events.push(chunk(json!({"content": a}), Value::Null));
                events.push(chunk(json!({"content": b}), Value::Null));
                "stop"
            }
            Turn::Call { name, arguments } => {
                let (a, b) = arguments.split_at(arguments.len() / 2);
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_s1", "type": "function",
                                            "function": {"name": name, "arguments": a}}]}),
                    Value::Null,
                ));
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
                    Value::Null,
                ));
                "tool_calls"
            }
        };
        events.push(chunk(json!({}), json!(finish)));
        let u = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
            "model": body["model"], "choices": [], "usage": usage});
        events.push(format!("data: {u}\n\n"));
        events.push("data: [DONE]\n\n".into());
        return ([("content-type", "text/event-stream")], events.concat()).into_response();
    }
    let (message, finish) = match turn {
        Turn::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Turn::Call { name, arguments } => (
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": format!("call_{}", uuid::Uuid::new_v4().simple()), "type": "function",
                 "function": {"name": name, "arguments": arguments}}]}),
            "tool_calls",
        ),
    };
    axum::Json(json!({
        "id": "chatcmpl-a", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }))
    .into_response()
}

/// A tool endpoint that records what it is sent and answers with it, the authorization
/// header included, as a careless API might.
async fn order(
    State(seen): State<Seen>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    seen.0
        .lock()
        .unwrap()
        .push(json!({"id": id, "authorization": auth, "body": body,
        "tenant": header("x-tenant-id"), "user": header("x-user-id"),
        "requestId": header("x-request-id")}));
    axum::Json(json!({"order": id, "state": "open", "seenAuthorization": auth})).into_response()
}

async fn failing(headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("upstream stack trace, token {auth}"),
    )
        .into_response()
}

struct Env {
    app: TestApp,
    gateway: TestApp,
    model: Seen,
    tool: Seen,
    tool_base: String,
    secrets: std::path::PathBuf,
}

/// The agent component beside a real gateway (and llmops, which stores the gateway's
/// events) whose provider `up` for `tenants` is the scripted model.
async fn env(pool: sqlx::PgPool, tenants: &[&str], extra: &[(&str, &str)]) -> Env {
    let model = Seen::default();
    let upstream = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(model.clone());
    let tool = Seen::default();
    let tool_server = Router::new()
        .route("/orders/{id}", post(order).get(order))
        .route("/failing", get(failing).post(failing))
        .with_state(tool.clone());
    let tool_base = serve_tcp(&tool_server).await;
    let (gateway, gateway_url) = gateway_over(
        &pool,
        &[Component::Gateway, Component::Llmops],
        tenants,
        upstream,
        &MODELS,
    )
    .await;
    let secrets = std::env::temp_dir().join(unique("agent-secrets-"));
    let secrets_dir = secrets.to_string_lossy().to_string();
    let mut settings = vec![
        ("FAAS_GATEWAY_URL", gateway_url.as_str()),
        ("FAAS_AGENT_SECRETS_DIR", secrets_dir.as_str()),
    ];
    settings.extend_from_slice(extra);
    let app = app_with(
        Some(pool),
        &[Component::Agent],
        with_settings(test_config(), &settings),
    )
    .await;
    Env {
        app,
        gateway,
        model,
        tool,
        tool_base,
        secrets,
    }
}

fn definition(model: &str, tools: Value) -> Value {
    json!({
        "model": {"provider": "up", "name": model},
        "systemPrompt": "You are a test agent.",
        "tools": tools,
        "maxIterations": 5,
        "timeoutSeconds": 30,
    })
}

impl Env {
    /// A request to the agent component as `token`.
    async fn call(&self, method: &str, uri: &str, token: &str, body: Option<Value>) -> Resp {
        call(&self.app.router, method, uri, Some(token), body).await
    }

    async fn create(&self, tenant: &str, name: &str, definition: Value) -> Value {
        let r = call(
            &self.app.router,
            "POST",
            "/v1/agents",
            Some(&admin(tenant)),
            Some(json!({"name": name, "definition": definition})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    async fn invoke(&self, token: &str, name: &str, body: Value) -> Resp {
        call(
            &self.app.router,
            "POST",
            &format!("/v1/agents/{name}/invoke"),
            Some(token),
            Some(body),
        )
        .await
    }

    async fn ok(&self, tenant: &str, name: &str, body: Value) -> Value {
        let r = self.invoke(&user(tenant), name, body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    fn secret(&self, tenant: &str, name: &str, key: &str, value: &str) {
        let dir = self.secrets.join(tenant).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(key), format!("{value}\n")).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.secrets);
    }
}

/// Writes a resource-managed agent the way the operator does.
async fn resource_agent(pool: &sqlx::PgPool, tenant: &str, name: &str, definition: Value) {
    let d: faas_model::agent::Definition = serde_json::from_value(definition).unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO agents (tenant_id, name, definition, source, content_hash) \
         VALUES ($1, $2, $3, 'resource', $4)",
    )
    .bind(tenant)
    .bind(name)
    .bind(serde_json::to_value(&d).unwrap())
    .bind(d.content_hash())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test]
async fn agents_are_managed_per_tenant_and_resources_are_read_only(pool: sqlx::PgPool) {
    let (a, b) = (unique("aa"), unique("ab"));
    let env = env(pool.clone(), &[&a], &[]).await;
    let created = env
        .create(&a, "assistant", definition("answer", json!([])))
        .await;
    assert_eq!(created["source"], "api");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["createdBy"], "alice");
    assert_eq!(created["definition"]["maxIterations"], 5);
    let d: faas_model::agent::Definition =
        serde_json::from_value(created["definition"].clone()).unwrap();
    assert_eq!(created["contentHash"], d.content_hash());

    // Same name again; a user may not create.
    let body = json!({"name": "assistant", "definition": definition("answer", json!([]))});
    env.call("POST", "/v1/agents", &admin(&a), Some(body.clone()))
        .await
        .assert_problem(409);
    env.call("POST", "/v1/agents", &user(&a), Some(body))
        .await
        .assert_problem(403);

    // Replacing with the same content keeps the revision; a change adds one.
    let put = |d: Value| {
        let router = env.app.router.clone();
        let token = admin(&a);
        async move {
            call(
                &router,
                "PUT",
                "/v1/agents/assistant",
                Some(&token),
                Some(json!({"definition": d})),
            )
            .await
        }
    };
    let r = put(definition("answer", json!([]))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revision"], 1);
    let mut changed = definition("answer", json!([]));
    changed["maxIterations"] = json!(7);
    let r = put(changed).await;
    assert_eq!(r.body["revision"], 2, "{}", r.body);
    assert_ne!(r.body["contentHash"], created["contentHash"]);

    // Another tenant sees none of it.
    for (method, uri) in [
        ("GET", "/v1/agents/assistant"),
        ("DELETE", "/v1/agents/assistant"),
        ("POST", "/v1/agents/assistant/sessions"),
    ] {
        env.call(method, uri, &admin(&b), None)
            .await
            .assert_problem(404);
    }
    env.invoke(&user(&b), "assistant", json!({"input": "hi"}))
        .await
        .assert_problem(404);
    let r = env.call("GET", "/v1/agents", &user(&b), None).await;
    assert_eq!(r.body["items"], json!([]));

    // Pages by name.
    for n in ["p1", "p2", "p3"] {
        env.create(&a, n, definition("answer", json!([]))).await;
    }
    let r = env.call("GET", "/v1/agents?limit=2", &user(&a), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let next = r.body["nextCursor"].as_str().unwrap().to_string();
    let r = env
        .call(
            "GET",
            &format!("/v1/agents?limit=2&cursor={next}"),
            &user(&a),
            None,
        )
        .await;
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p2", "p3"]);
    assert!(r.body["nextCursor"].is_null());

    // A resource-managed agent is read here, never written.
    resource_agent(&pool, &a, "from-crd", definition("answer", json!([]))).await;
    let r = env
        .call("GET", "/v1/agents/from-crd", &user(&a), None)
        .await;
    assert_eq!(r.body["source"], "resource");
    let r = env
        .call(
            "PUT",
            "/v1/agents/from-crd",
            &admin(&a),
            Some(json!({"definition": definition("answer", json!([]))})),
        )
        .await;
    r.assert_problem(409);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("Agent resource"),
        "{}",
        r.body
    );
    env.call("DELETE", "/v1/agents/from-crd", &admin(&a), None)
        .await
        .assert_problem(409);
    // It runs like any other.
    let out = env.ok(&a, "from-crd", json!({"input": "hello"})).await;
    assert_eq!(out["output"], "echo: hello");

    let r = env
        .call("DELETE", "/v1/agents/assistant", &admin(&a), None)
        .await;
    assert_eq!(r.status, 204);
    env.call("GET", "/v1/agents/assistant", &user(&a), None)
        .await
        .assert_problem(404);
}

#[sqlx::test]
async fn bad_definitions_and_inputs_are_refused_with_a_reason(pool: sqlx::PgPool) {
    let t = unique("ad");
    let env = env(pool, &[&t], &[]).await;
    env.create(&t, "ok", definition("answer", json!([]))).await;
    let post = |body: Value| {
        let router = env.app.router.clone();
        let token = admin(&t);
        async move { call(&router, "POST", "/v1/agents", Some(&token), Some(body)).await }
    };
    let mut absurd = definition("answer", json!([]));
    absurd["maxIterations"] = json!(1_000_000);
    let mut unknown = definition("answer", json!([]));
    unknown["surprise"] = json!(true);
    let mut both = definition("answer", json!([]));
    both["promptTemplateRef"] = json!({"name": "x"});
    for (body, status, says) in [
        (
            json!({"name": "x", "definition": absurd}),
            422,
            "maxIterations",
        ),
        (json!({"name": "x", "definition": unknown}), 422, "surprise"),
        (json!({"name": "x", "definition": both}), 422, "exactly one"),
        (
            json!({"name": "Bad Name", "definition": definition("answer", json!([]))}),
            422,
            "name",
        ),
        (
            json!({"name": "x", "definition": definition("answer", json!([])), "extra": 1}),
            422,
            "extra",
        ),
        (
            json!({"name": "x", "definition": definition("answer", json!([
                {"name": "t", "type": "builtin", "builtin": {"name": "calculator"}, "parameters": {"type": 5}}
            ]))}),
            422,
            "parameters",
        ),
        (
            json!({"name": "x", "definition": definition("answer", json!([
                {"name": "meta", "type": "http", "http": {"url": "http://169.254.169.254/latest/meta-data"}}
            ]))}),
            422,
            "egress",
        ),
        (
            json!({"name": "x", "definition": definition("answer", json!([
                {"name": "local", "type": "http", "http": {"url": "http://localhost:6379/"}}
            ]))}),
            422,
            "egress",
        ),
        (
            json!({"name": "x", "definition": definition("answer", json!([
                {"name": "host", "type": "http", "http": {"url": "https://{tenant}.example.com/"}}
            ]))}),
            422,
            "placeholders",
        ),
    ] {
        let r = post(body.clone()).await;
        r.assert_problem(status);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    // Inputs.
    let long = "x".repeat(32 * 1024 + 1);
    for (body, says) in [
        (json!({"input": long}), "input"),
        (json!({"input": "   "}), "input"),
        (json!({"input": "hi", "surprise": 1}), "surprise"),
        (json!({"input": 5}), "input"),
        (json!({}), "input"),
        (
            json!({"input": "hi", "sessionId": "not-a-uuid"}),
            "sessionId",
        ),
        (
            json!({"input": "hi", "sessionId": uuid::Uuid::new_v4()}),
            "session",
        ),
    ] {
        let r = env.invoke(&user(&t), "ok", body.clone()).await;
        assert!(r.status.is_client_error(), "{body}: {}", r.status);
        r.assert_problem(r.status.as_u16());
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    let r = raw_call(
        &env.app.router,
        "POST",
        "/v1/agents/ok/invoke",
        Some(&user(&t)),
        "application/json",
        b"{\"input\": ",
    )
    .await;
    r.assert_problem(400);
    let r = env
        .call("GET", "/v1/agents?limit=1000", &user(&t), None)
        .await;
    r.assert_problem(400);
    env.call("GET", "/v1/agents/ok/runs/nope", &user(&t), None)
        .await
        .assert_problem(400);
}

#[sqlx::test]
async fn a_tool_call_then_an_answer_is_recorded_step_by_step(pool: sqlx::PgPool) {
    let t = unique("at");
    let env = env(pool, &[&t], &[]).await;
    let tasks = env.gateway.start_background().await;
    env.create(
        &t,
        "calc",
        definition(
            "use-tool",
            json!([{"name": "calc", "type": "builtin", "builtin": {"name": "calculator"}}]),
        ),
    )
    .await;
    let out = env
        .ok(&t, "calc", json!({"input": r#"{"expression": "6 * 7"}"#}))
        .await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], r#"final: {"result":42.0}"#);
    assert_eq!(out["iterations"], 2);
    assert_eq!(
        out["usage"],
        json!({"promptTokens": 20, "completionTokens": 10, "totalTokens": 30})
    );
    let steps = out["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["model", "tool", "model"]);
    assert_eq!(steps[1]["tool"], "calc");
    assert_eq!(steps[1]["arguments"], r#"{"expression": "6 * 7"}"#);
    assert_eq!(steps[1]["output"], r#"{"result":42.0}"#);
    assert_eq!(steps[0]["promptTokens"], 10);

    // The model was offered the tool and was given its result.
    let seen = env.model.all();
    let last = seen.last().unwrap();
    assert_eq!(last["tools"][0]["function"]["name"], "calc");
    assert!(
        last["model"].as_str().unwrap().ends_with("use-tool"),
        "{last}"
    );
    let msgs = last["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(msgs[3]["role"], "tool");
    assert_eq!(msgs[3]["tool_call_id"], msgs[2]["tool_calls"][0]["id"]);

    // The run reads back as it was answered; another user's run is not theirs, an admin's
    // view covers it, and another tenant sees nothing.
    let uri = format!("/v1/agents/calc/runs/{}", out["runId"].as_str().unwrap());
    let r = env.call("GET", &uri, &user(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    assert_eq!(r.body["steps"], out["steps"]);
    env.call("GET", &uri, &token(&t, "carol", &[]), None)
        .await
        .assert_problem(404);
    let r = env.call("GET", &uri, &admin(&t), None).await;
    assert_eq!(r.status, 200);
    env.call("GET", &uri, &admin(&unique("ax")), None)
        .await
        .assert_problem(404);

    // Every model call carried the agent's name, so llmops reports cost by agent.
    let mut events = Vec::new();
    for _ in 0..200 {
        let r = call(
            &env.gateway.router,
            "GET",
            "/v1/llmops/events?agent_id=calc",
            Some(&user(&t)),
            None,
        )
        .await;
        events = r.body["items"].as_array().cloned().unwrap_or_default();
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["agent_id"] == "calc"));
    env.gateway.state.shutdown.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
}

#[sqlx::test]
async fn malformed_arguments_go_back_to_the_model_as_a_tool_error(pool: sqlx::PgPool) {
    let t = unique("am");
    let env = env(pool, &[&t], &[]).await;
    let tool = json!([{"name": "calc", "type": "builtin", "builtin": {"name": "calculator"}}]);
    env.create(&t, "calc", definition("use-tool", tool)).await;
    for (input, says) in [
        ("this is not JSON", "not valid JSON"),
        (r#"{"expression": 42}"#, "schema"),
        (r#"{"nothing": "here"}"#, "schema"),
        (r#"["a"]"#, "object"),
        (r#"{"expression": "1 / 0"}"#, "division by zero"),
    ] {
        let out = env.ok(&t, "calc", json!({ "input": input })).await;
        assert_eq!(out["status"], "succeeded", "{input}: {out}");
        assert_eq!(out["iterations"], 2, "{input}: {out}");
        let step = &out["steps"][1];
        assert!(step["output"].is_null(), "{step}");
        assert!(
            step["error"].as_str().unwrap().contains(says),
            "{input}: {step}"
        );
        // The model read the error.
        assert!(out["output"].as_str().unwrap().contains(says), "{out}");
    }
}

#[sqlx::test]
async fn limits_stop_a_task_and_the_run_says_why(pool: sqlx::PgPool) {
    let t = unique("al");
    let env = env(pool, &[&t], &[]).await;
    let now = json!([{"name": "now", "type": "builtin", "builtin": {"name": "current-time"}}]);
    let mut looping = definition("loop", now.clone());
    looping["maxIterations"] = json!(3);
    env.create(&t, "looping", looping).await;
    let out = env.ok(&t, "looping", json!({"input": "go"})).await;
    assert_eq!(out["status"], "failed");
    assert!(
        out["error"].as_str().unwrap().contains("maxIterations"),
        "{out}"
    );
    assert_eq!(out["iterations"], 3);
    assert_eq!(out["steps"].as_array().unwrap().len(), 6);
    assert!(out["steps"][1]["output"].as_str().unwrap().contains("utc"));
    let uri = format!("/v1/agents/looping/runs/{}", out["runId"].as_str().unwrap());
    let r = env.call("GET", &uri, &user(&t), None).await;
    assert_eq!(r.body["status"], "failed");
    assert!(r.body["finishedAt"].is_string());

    let mut hanging = definition("hang", json!([]));
    hanging["timeoutSeconds"] = json!(1);
    env.create(&t, "hanging", hanging).await;
    let started = Instant::now();
    let out = env.ok(&t, "hanging", json!({"input": "go"})).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out["status"], "failed");
    assert!(
        out["error"].as_str().unwrap().contains("timeoutSeconds"),
        "{out}"
    );
    let uri = format!("/v1/agents/hanging/runs/{}", out["runId"].as_str().unwrap());
    let r = env.call("GET", &uri, &user(&t), None).await;
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["iterations"], 1);
}

/// A writer of log lines into a shared buffer.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[sqlx::test]
async fn http_tools_send_secrets_by_reference_and_never_show_them(pool: sqlx::PgPool) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (t, other) = (unique("ah"), unique("ao"));
    let env = env(pool.clone(), &[&t, &other], &[]).await;
    env.secret(&t, "helpdesk-api", "authorization", SECRET_VALUE);
    env.secret(
        &other,
        "theirs",
        "authorization",
        "Bearer of-another-tenant",
    );
    let http = |url: String, secret: &str| {
        json!([{"name": "order", "type": "http",
                "parameters": {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[0-9]+$"},
                                                                "note": {"type": "string"}},
                               "required": ["id"], "additionalProperties": false},
                "http": {"url": url, "headers": [
                    {"name": "Authorization", "secretKeyRef": {"name": secret, "key": "authorization"}},
                    {"name": "X-Team", "value": "support"}
                ], "timeoutSeconds": 5}}])
    };
    let base = env.tool_base.clone();
    env.create(
        &t,
        "desk",
        definition(
            "use-tool",
            http(format!("{base}/orders/{{id}}"), "helpdesk-api"),
        ),
    )
    .await;
    let out = env
        .ok(
            &t,
            "desk",
            json!({"input": r#"{"id": "42", "note": "printer"}"#}),
        )
        .await;
    assert_eq!(out["status"], "succeeded", "{out}");
    // The tool got the value, the filled URL and the rest of the arguments.
    let seen = env.tool.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["id"], "42");
    assert_eq!(seen[0]["authorization"], SECRET_VALUE);
    assert_eq!(seen[0]["body"], r#"{"note":"printer"}"#);
    // It is told the request's id, never who the tenant or the user is.
    assert!(seen[0]["requestId"].is_string(), "{}", seen[0]);
    assert!(
        seen[0]["tenant"].is_null() && seen[0]["user"].is_null(),
        "{}",
        seen[0]
    );
    // Its answer echoed it; nothing shown or recorded holds it.
    let step = &out["steps"][1];
    assert!(
        step["output"].as_str().unwrap().contains("[redacted]"),
        "{step}"
    );
    let uri = format!("/v1/agents/desk/runs/{}", out["runId"].as_str().unwrap());
    let run = env.call("GET", &uri, &user(&t), None).await;
    let agent = env.call("GET", "/v1/agents/desk", &user(&t), None).await;
    let model_saw = serde_json::to_string(&env.model.all()).unwrap();
    let stored: Vec<(Option<String>, Option<String>, Option<String>)> = {
        let mut tx = faas_runtime::platform::tenant_transaction(&pool, &t)
            .await
            .unwrap();
        sqlx::query_as("SELECT arguments, output, error FROM agent_steps")
            .fetch_all(&mut *tx)
            .await
            .unwrap()
    };
    assert_eq!(stored.len(), 3, "{stored:?}");
    let secret_part = "s3cr3t-agent-credential";
    for (what, text) in [
        ("the invoke answer", out.to_string()),
        ("the run", String::from_utf8_lossy(&run.raw).to_string()),
        ("the agent", agent.body.to_string()),
        ("what the model was sent", model_saw),
        ("the stored steps", format!("{stored:?}")),
        (
            "the logs",
            String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string(),
        ),
    ] {
        assert!(
            !text.contains(secret_part),
            "{what} holds the secret: {text}"
        );
    }
    assert!(!logs.0.lock().unwrap().is_empty(), "logs were captured");

    // Arguments outside the tool's schema are never sent.
    let out = env
        .ok(&t, "desk", json!({"input": r#"{"id": "../../admin"}"#}))
        .await;
    assert!(
        out["steps"][1]["error"]
            .as_str()
            .unwrap()
            .contains("schema"),
        "{out}"
    );
    assert_eq!(env.tool.all().len(), 1);

    // A Secret of another tenant, or a path out of the tenant's folder, cannot be named.
    for (name, secret) in [("theft", "theirs"), ("escape", "..")] {
        let mut d = definition("use-tool", http(format!("{base}/orders/{{id}}"), secret));
        d["tools"][0]["http"]["headers"][0]["secretKeyRef"]["name"] = json!(secret);
        let r = env
            .call(
                "POST",
                "/v1/agents",
                &admin(&t),
                Some(json!({"name": name, "definition": d})),
            )
            .await;
        if r.status == 422 {
            continue;
        }
        assert_eq!(r.status, 201, "{}", r.body);
        let out = env.ok(&t, name, json!({"input": r#"{"id": "7"}"#})).await;
        let error = out["steps"][1]["error"].as_str().unwrap();
        assert!(error.contains("secret"), "{error}");
        assert!(!out.to_string().contains("of-another-tenant"));
    }
    assert_eq!(env.tool.all().len(), 1);

    // An error answer's body is never read; the status is told.
    env.create(
        &t,
        "failing",
        definition("use-tool", http(format!("{base}/failing"), "helpdesk-api")),
    )
    .await;
    let out = env
        .ok(&t, "failing", json!({"input": r#"{"id": "1"}"#}))
        .await;
    let error = out["steps"][1]["error"].as_str().unwrap();
    assert_eq!(error, "the tool answered HTTP 500");
    assert!(!out.to_string().contains("stack trace"));

    // An internal address is refused when the call is made, too (a resource-managed
    // agent is written without the API's checks).
    resource_agent(
        &pool,
        &t,
        "internal",
        definition(
            "use-tool",
            json!([{"name": "meta", "type": "http",
            "http": {"url": "http://169.254.169.254/latest/meta-data", "method": "GET"}}]),
        ),
    )
    .await;
    let out = env.ok(&t, "internal", json!({"input": "{}"})).await;
    let error = out["steps"][1]["error"].as_str().unwrap();
    assert!(error.starts_with("refused"), "{error}");
}

#[sqlx::test]
async fn agents_call_agents_within_depth_and_never_in_a_cycle(pool: sqlx::PgPool) {
    let t = unique("ag");
    let env = env(pool, &[&t], &[("FAAS_AGENT_MAX_DEPTH", "2")]).await;
    let agent_tool =
        |name: &str| json!([{"name": "ask", "type": "agent", "agent": {"name": name}}]);
    env.create(&t, "leaf", definition("answer", json!([])))
        .await;
    env.create(&t, "middle", definition("use-tool", agent_tool("leaf")))
        .await;
    env.create(&t, "top", definition("use-tool", agent_tool("middle")))
        .await;
    env.create(&t, "direct", definition("use-tool", agent_tool("leaf")))
        .await;

    // One level: the other agent's answer is the tool's result.
    let out = env
        .ok(&t, "direct", json!({"input": r#"{"input": "hello"}"#}))
        .await;
    assert_eq!(out["output"], "final: echo: hello", "{out}");

    // Two levels down is one too many with a depth of 2.
    let out = env
        .ok(
            &t,
            "top",
            json!({"input": r#"{"input": "{\"input\": \"hi\"}"}"#}),
        )
        .await;
    assert_eq!(out["status"], "succeeded", "{out}");
    let text = out["output"].as_str().unwrap();
    assert!(text.contains("at most 2 deep"), "{text}");

    // A cycle is refused.
    env.create(&t, "ping", definition("use-tool", agent_tool("pong")))
        .await;
    env.create(&t, "pong", definition("use-tool", agent_tool("ping")))
        .await;
    let out = env
        .ok(
            &t,
            "ping",
            json!({"input": r#"{"input": "{\"input\": \"x\"}"}"#}),
        )
        .await;
    let text = out["output"].as_str().unwrap();
    assert!(text.contains("cycle (ping -> pong -> ping)"), "{text}");
    // The called agent's run names the run that called it.
    let db = env.app.state.db.clone().unwrap();
    let mut tx = faas_runtime::platform::tenant_transaction(&db, &t)
        .await
        .unwrap();
    let child = sqlx::query_scalar::<_, Option<uuid::Uuid>>(
        "SELECT parent_run_id FROM agent_runs WHERE agent_name = 'pong'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(child.unwrap().to_string(), out["runId"].as_str().unwrap());
    tx.commit().await.unwrap();

    // A caller whose time runs out ends the runs of the agents it called with it.
    env.create(&t, "sleeper", definition("hang", json!([])))
        .await;
    let mut impatient = definition("use-tool", agent_tool("sleeper"));
    impatient["timeoutSeconds"] = json!(1);
    env.create(&t, "impatient", impatient).await;
    let out = env
        .ok(&t, "impatient", json!({"input": r#"{"input": "wake up"}"#}))
        .await;
    assert_eq!(out["status"], "failed", "{out}");
    let mut tx = faas_runtime::platform::tenant_transaction(&db, &t)
        .await
        .unwrap();
    let (status, error, finished) = sqlx::query_as::<_, (String, Option<String>, bool)>(
        "SELECT status, error, finished_at IS NOT NULL FROM agent_runs WHERE agent_name = 'sleeper'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(status, "failed");
    assert!(finished);
    assert!(error.unwrap().contains("ended before it did"));
}

#[sqlx::test]
async fn sessions_belong_to_their_user_and_keep_a_window(pool: sqlx::PgPool) {
    let t = unique("as");
    let env = env(pool, &[&t], &[]).await;
    let mut d = definition("answer", json!([]));
    d["memory"] = json!({"type": "window", "size": 2, "ttl": "1h"});
    env.create(&t, "chat", d).await;
    let r = env
        .call("POST", "/v1/agents/chat/sessions", &user(&t), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["expiresAt"].is_string());
    let id = r.body["id"].as_str().unwrap().to_string();
    for input in ["one", "two", "three"] {
        let out = env
            .ok(&t, "chat", json!({"input": input, "sessionId": id}))
            .await;
        assert_eq!(out["output"], format!("echo: {input}"));
        assert_eq!(out["sessionId"], id.as_str());
    }
    // The third call saw the last two messages only.
    let seen = env.model.all();
    let contents: Vec<&str> = seen.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["You are a test agent.", "two", "echo: two", "three"]
    );
    let uri = format!("/v1/agents/chat/sessions/{id}");
    let r = env.call("GET", &uri, &user(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kept: Vec<&str> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["three", "echo: three"]);

    // Another user of the tenant, or another tenant, finds no such session.
    let carol = token(&t, "carol", &["admin"]);
    env.call("GET", &uri, &carol, None)
        .await
        .assert_problem(404);
    env.invoke(&carol, "chat", json!({"input": "hi", "sessionId": id}))
        .await
        .assert_problem(404);
    env.call("DELETE", &uri, &carol, None)
        .await
        .assert_problem(404);
    let b = unique("sb");
    env.call("GET", &uri, &user(&b), None)
        .await
        .assert_problem(404);
    // Nor does another agent of the same user.
    env.create(&t, "other", definition("answer", json!([])))
        .await;
    env.invoke(&user(&t), "other", json!({"input": "hi", "sessionId": id}))
        .await
        .assert_problem(404);

    let r = env.call("DELETE", &uri, &user(&t), None).await;
    assert_eq!(r.status, 204);
    env.call("GET", &uri, &user(&t), None)
        .await
        .assert_problem(404);
}

#[sqlx::test]
async fn a_summary_memory_rolls_older_messages_up(pool: sqlx::PgPool) {
    let t = unique("am");
    let env = env(pool, &[&t], &[("FAAS_AGENT_SUMMARY_TOKENS", "5")]).await;
    let mut d = definition("answer", json!([]));
    d["memory"] = json!({"type": "summary", "size": 2});
    env.create(&t, "chat", d).await;
    let r = env
        .call("POST", "/v1/agents/chat/sessions", &user(&t), None)
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    for input in ["my name is Ada", "I like tea"] {
        env.ok(&t, "chat", json!({"input": input, "sessionId": id}))
            .await;
    }
    // Past the budget, the first turn was summarised by the model and dropped.
    let r = env
        .call(
            "GET",
            &format!("/v1/agents/chat/sessions/{id}"),
            &user(&t),
            None,
        )
        .await;
    let summary = r.body["summary"].as_str().unwrap_or_default().to_string();
    assert!(summary.contains("my name is Ada"), "{}", r.body);
    assert_eq!(
        r.body["messages"].as_array().unwrap().len(),
        2,
        "{}",
        r.body
    );
    let asked = env.model.all();
    let rollup = &asked[asked.len() - 1];
    assert!(
        rollup["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Summarise")
    );

    env.ok(
        &t,
        "chat",
        json!({"input": "what do I drink?", "sessionId": id}),
    )
    .await;
    let asked = env.model.all();
    let turn = asked
        .iter()
        .rev()
        .find(|b| last_user(b) == "what do I drink?")
        .unwrap();
    let msgs = turn["messages"].as_array().unwrap();
    assert!(
        msgs[1]["content"]
            .as_str()
            .unwrap()
            .contains("Summary of the conversation"),
        "{turn}"
    );
    assert!(
        msgs[1]["content"]
            .as_str()
            .unwrap()
            .contains("my name is Ada")
    );
    assert_eq!(msgs[2]["content"], "I like tea");
}

#[sqlx::test]
async fn streamed_tasks_send_steps_and_text_as_they_happen(pool: sqlx::PgPool) {
    let t = unique("aw");
    let env = env(pool, &[&t], &[]).await;
    env.create(
        &t,
        "calc",
        definition(
            "use-tool",
            json!([{"name": "calc", "type": "builtin", "builtin": {"name": "calculator"}}]),
        ),
    )
    .await;
    let r = env
        .invoke(
            &user(&t),
            "calc",
            json!({"input": r#"{"expression": "2 ^ 10"}"#, "stream": true}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type().starts_with("text/event-stream"),
        "{}",
        r.content_type()
    );
    let text = String::from_utf8_lossy(&r.raw).to_string();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).ok()?))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "step").count(),
        3,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, v)| v["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, r#"final: {"result":1024.0}"#);
    let tool_step = &events
        .iter()
        .find(|(n, v)| n == "step" && v["step"]["kind"] == "tool")
        .unwrap()
        .1;
    assert_eq!(
        tool_step["step"]["arguments"],
        r#"{"expression": "2 ^ 10"}"#
    );
    let done = &events.last().unwrap().1;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["output"], r#"final: {"result":1024.0}"#);
    assert_eq!(done["usage"]["totalTokens"], 30);

    // A task whose model cannot be called ends as a failed run, told as such.
    env.create(&t, "nothing", {
        let mut d = definition("answer", json!([]));
        d["model"]["provider"] = json!("missing");
        d
    })
    .await;
    let r = env
        .invoke(&user(&t), "nothing", json!({"input": "hi", "stream": true}))
        .await;
    let text = String::from_utf8_lossy(&r.raw).to_string();
    let done = text
        .split("\n\n")
        .find(|b| b.contains("event: done"))
        .and_then(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
        .unwrap_or_else(|| panic!("{text}"));
    let done: Value = serde_json::from_str(done).unwrap();
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"].as_str().unwrap().contains("gateway"),
        "{done}"
    );
    let r = env
        .invoke(&user(&t), "nothing", json!({"input": "hi"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["iterations"], 1);
}

#[sqlx::test]
async fn the_web_fetch_builtin_goes_through_the_egress_policy(pool: sqlx::PgPool) {
    let t = unique("af");
    let env = env(pool, &[&t], &[]).await;
    env.create(
        &t,
        "fetch",
        definition(
            "use-tool",
            json!([{"name": "fetch", "type": "builtin", "builtin": {"name": "web-fetch"}}]),
        ),
    )
    .await;
    let url = format!("{}/orders/9", env.tool_base);
    let out = env
        .ok(
            &t,
            "fetch",
            json!({"input": json!({"url": url}).to_string()}),
        )
        .await;
    let step = &out["steps"][1];
    assert!(
        step["output"].as_str().unwrap().contains(r#""order":"9""#),
        "{step}"
    );
    for refused in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "file:///etc/passwd",
    ] {
        let out = env
            .ok(
                &t,
                "fetch",
                json!({"input": json!({"url": refused}).to_string()}),
            )
            .await;
        let error = out["steps"][1]["error"].as_str().unwrap();
        assert!(error.starts_with("refused"), "{refused}: {error}");
    }
}

#[sqlx::test]
async fn a_template_name_of_dots_never_reaches_another_route(pool: sqlx::PgPool) {
    let t = unique("ad");
    let env = env(pool, &[&t], &[("FAAS_PROMPT_URL", "http://127.0.0.1:9")]).await;
    let mut d = definition("answer", json!([]));
    d.as_object_mut().unwrap().remove("systemPrompt");
    d["promptTemplateRef"] = json!({"name": ".."});
    let r = env
        .call(
            "POST",
            "/v1/agents",
            &admin(&t),
            Some(json!({"name": "dots", "definition": d})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let out = env.ok(&t, "dots", json!({"input": "hi"})).await;
    assert_eq!(out["status"], "failed", "{out}");
    let reason = out["error"].as_str().unwrap();
    assert!(reason.contains("not a template name"), "{out}");
    assert!(env.model.all().is_empty(), "no model call was made");
}
