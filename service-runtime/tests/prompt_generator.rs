//! The prompt-generator component against the real Postgres, its model served by the real
//! gateway whose provider is a local server speaking the OpenAI chat-completions protocol,
//! scripted by model name:
//!   `good`     answers a valid agent (a clock with the current-time builtin);
//!   `mend`     first answers an agent with two tools of one name and an http tool without
//!              its settings, then, once told why it was refused, the valid one;
//!   `stubborn` answers that invalid agent for ever;
//!   `prose`    answers words, not JSON;
//!   `inside`   answers an agent whose http tool calls the cloud metadata address;
//!   `hang`     never answers.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use faas_runtime::Component;
use serde_json::{Value, json};

const MODELS: [&str; 6] = ["good", "mend", "stubborn", "prose", "inside", "hang"];

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Value>>>);

fn good() -> Value {
    json!({
        "name": "clock",
        "spec": {
            "model": {"provider": "up", "name": "good"},
            "systemPrompt": "You tell people the time.",
            "tools": [{"name": "now", "type": "builtin", "description": "The current time.",
                       "builtin": {"name": "current-time"}}],
            "maxIterations": 4,
        }
    })
}

fn broken() -> Value {
    json!({
        "name": "clock",
        "spec": {
            "model": {"provider": "up", "name": "good"},
            "systemPrompt": "You tell people the time.",
            "tools": [
                {"name": "now", "type": "builtin", "builtin": {"name": "current-time"}},
                {"name": "now", "type": "http"},
            ],
        }
    })
}

fn answer(body: &Value) -> Option<String> {
    let model = body["model"].as_str().unwrap_or_default();
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    Some(match model {
        m if m.ends_with("hang") => return None,
        m if m.ends_with("mend") && last.contains("refused") => good().to_string(),
        m if m.ends_with("mend") || m.ends_with("stubborn") => broken().to_string(),
        m if m.ends_with("prose") => "Sure! Here is a lovely agent for you.".into(),
        m if m.ends_with("inside") => {
            let mut a = good();
            a["spec"]["tools"] = json!([{"name": "meta", "type": "http", "description": "x",
                "http": {"url": "http://169.254.169.254/latest/meta-data"}}]);
            a.to_string()
        }
        _ => format!("```json\n{}\n```", good()),
    })
}

async fn chat(State(seen): State<Seen>, axum::Json(body): axum::Json<Value>) -> Response {
    seen.0.lock().unwrap().push(body.clone());
    let Some(text) = answer(&body) else {
        tokio::time::sleep(Duration::from_secs(600)).await;
        return ().into_response();
    };
    axum::Json(json!({
        "id": "chatcmpl-g", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }))
    .into_response()
}

struct Env {
    app: TestApp,
    _gateway: TestApp,
    model: Seen,
}

async fn env(pool: sqlx::PgPool, tenants: &[&str], extra: &[(&str, &str)]) -> Env {
    let model = Seen::default();
    let upstream = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(model.clone());
    let (gateway, gateway_url) =
        gateway_over(&pool, &[Component::Gateway], tenants, upstream, &MODELS).await;
    let mut settings = vec![
        ("FAAS_GATEWAY_URL", gateway_url.as_str()),
        ("FAAS_PROMPTGEN_MODEL", "up/good"),
    ];
    settings.extend_from_slice(extra);
    let app = app_with(
        Some(pool),
        &[Component::PromptGenerator, Component::Agent],
        with_settings(test_config(), &settings),
    )
    .await;
    Env {
        app,
        _gateway: gateway,
        model,
    }
}

impl Env {
    async fn call(&self, method: &str, uri: &str, token: &str, body: Option<Value>) -> Resp {
        call(&self.app.router, method, uri, Some(token), body).await
    }

    async fn generate(&self, token: &str, body: Value) -> Resp {
        self.call("POST", "/v1/generations", token, Some(body))
            .await
    }

    fn requests(&self) -> Vec<Value> {
        self.model.0.lock().unwrap().clone()
    }
}

#[sqlx::test]
async fn a_description_becomes_an_agent_checked_against_the_crd(pool: sqlx::PgPool) {
    let t = unique("pg");
    let env = env(pool, &[&t], &[]).await;
    let r = env
        .generate(
            &user(&t),
            json!({"description": "An agent that tells the time.", "namespace": "team-a"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let g = r.body;
    assert_eq!(g["status"], "succeeded");
    assert_eq!(g["attempts"], 1);
    assert_eq!(g["name"], "clock");
    assert_eq!(g["userId"], "bob");
    assert_eq!(g["promptTokens"], 100);
    let agent = &g["agent"];
    assert_eq!(agent["apiVersion"], "faas.motadata.io/v1alpha1");
    assert_eq!(agent["kind"], "Agent");
    assert_eq!(agent["metadata"]["namespace"], "team-a");
    assert_eq!(agent["spec"]["serviceRef"]["name"], "agents");
    // Defaults the API server would fill in are written out.
    assert_eq!(agent["spec"]["timeoutSeconds"], 120);
    assert!(agent.get("status").is_none());

    // The model was asked for structured output with the CRD's spec schema.
    let sent = env.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["model"], "good");
    let schema = &sent[0]["response_format"]["json_schema"]["schema"];
    assert!(schema["properties"]["spec"]["properties"]["tools"].is_object());
    assert_eq!(
        sent[0]["messages"][1]["content"],
        "An agent that tells the time."
    );

    // The same generation, as YAML ready for kubectl.
    let id = g["id"].as_str().unwrap();
    let y = env
        .call(
            "GET",
            &format!("/v1/generations/{id}/yaml"),
            &user(&t),
            None,
        )
        .await;
    assert_eq!(y.status, 200);
    assert_eq!(y.content_type(), "application/yaml");
    let text = String::from_utf8(y.raw.to_vec()).unwrap();
    let back: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(&back, agent);
    let typed: faas_crds::Agent = serde_yaml::from_str(&text).unwrap();
    assert_eq!(typed.spec.tools[0].name, "now");

    let got = env
        .call("GET", &format!("/v1/generations/{id}"), &user(&t), None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["agent"], *agent);
}

#[sqlx::test]
async fn refused_answers_go_back_with_their_problems(pool: sqlx::PgPool) {
    let t = unique("pg");
    let env = env(pool, &[&t], &[]).await;
    let r = env
        .generate(
            &user(&t),
            json!({"description": "A clock.", "model": "up/mend"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    assert_eq!(r.body["attempts"], 2);
    let first = r.body["problems"][0].as_array().unwrap();
    let text = first
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("names must be unique"), "{text}");
    assert!(text.contains("http is required"), "{text}");
    // The second request held the refused answer and the reasons.
    let sent = env.requests();
    assert_eq!(sent.len(), 2);
    let msgs = sent[1]["messages"].as_array().unwrap();
    assert_eq!(msgs[msgs.len() - 2]["role"], "assistant");
    let correction = msgs.last().unwrap()["content"].as_str().unwrap();
    assert!(correction.contains("names must be unique"), "{correction}");

    // An answer that never passes is rejected after the attempts, with every reason.
    let r = env
        .generate(
            &user(&t),
            json!({"description": "A clock.", "model": "up/stubborn", "maxAttempts": 2}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "rejected");
    assert_eq!(r.body["attempts"], 2);
    assert_eq!(r.body["problems"].as_array().unwrap().len(), 2);
    assert!(r.body["agent"].is_null());
    let id = r.body["id"].as_str().unwrap();
    env.call(
        "GET",
        &format!("/v1/generations/{id}/yaml"),
        &user(&t),
        None,
    )
    .await
    .assert_problem(409);
    env.call(
        "POST",
        &format!("/v1/generations/{id}/agent"),
        &admin(&t),
        Some(json!({})),
    )
    .await
    .assert_problem(409);

    // Words instead of JSON; an internal address in a tool.
    for (model, expect) in [
        ("up/prose", "not one JSON object"),
        ("up/inside", "spec.tools[0].http.url"),
    ] {
        let r = env
            .generate(
                &user(&t),
                json!({"description": "x", "model": model, "maxAttempts": 1}),
            )
            .await;
        assert_eq!(r.body["status"], "rejected", "{}", r.body);
        let p = r.body["problems"][0].to_string();
        assert!(p.contains(expect), "{model}: {p}");
    }
}

#[sqlx::test]
async fn who_may_generate_and_create_is_set_by_role(pool: sqlx::PgPool) {
    let t = unique("pg");
    let env = env(
        pool,
        &[&t],
        &[
            ("FAAS_PROMPTGEN_GENERATE_ROLES", "agent-author"),
            ("FAAS_PROMPTGEN_CREATE_ROLES", "agent-publisher"),
        ],
    )
    .await;
    let body = json!({"description": "A clock."});
    env.generate(&user(&t), body.clone())
        .await
        .assert_problem(403);
    assert!(
        env.requests().is_empty(),
        "a refused caller costs no model call"
    );
    let author = token(&t, "carol", &["agent-author"]);
    let r = env.generate(&author, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();

    let create = format!("/v1/generations/{id}/agent");
    env.call("POST", &create, &author, Some(json!({})))
        .await
        .assert_problem(403);
    let publisher = token(&t, "carol", &["agent-author", "agent-publisher"]);
    let made = env
        .call(
            "POST",
            &create,
            &publisher,
            Some(json!({"name": "office-clock"})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["name"], "office-clock");
    assert_eq!(made.body["source"], "api");
    assert_eq!(made.body["createdBy"], "carol");
    assert_eq!(made.body["definition"]["tools"][0]["name"], "now");
    // It is a real agent of the tenant, served by the agent component.
    let agent = env
        .call("GET", "/v1/agents/office-clock", &user(&t), None)
        .await;
    assert_eq!(agent.status, 200, "{}", agent.body);
    let g = env
        .call("GET", &format!("/v1/generations/{id}"), &publisher, None)
        .await;
    assert_eq!(g.body["createdAgent"], "office-clock");
    // The same name twice is a conflict; the admin may always create.
    env.call(
        "POST",
        &create,
        &admin(&t),
        Some(json!({"name": "office-clock"})),
    )
    .await
    .assert_problem(409);
    let r = env.call("POST", &create, &admin(&t), Some(json!({}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["name"], "clock");
}

#[sqlx::test]
async fn generations_and_feedback_belong_to_their_tenant_and_user(pool: sqlx::PgPool) {
    let (a, b) = (unique("pga"), unique("pgb"));
    let env = env(pool, &[&a, &b], &[]).await;
    let r = env
        .generate(&user(&a), json!({"description": "A clock."}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/v1/generations/{id}");

    // Another tenant, and another user of the tenant, see nothing; its admin does.
    env.call("GET", &path, &user(&b), None)
        .await
        .assert_problem(404);
    env.call("GET", &path, &admin(&b), None)
        .await
        .assert_problem(404);
    let dave = token(&a, "dave", &[]);
    env.call("GET", &path, &dave, None)
        .await
        .assert_problem(404);
    assert_eq!(env.call("GET", &path, &admin(&a), None).await.status, 200);
    let feedback = format!("{path}/feedback");
    env.call("PUT", &feedback, &user(&b), Some(json!({"rating": 1})))
        .await
        .assert_problem(404);
    let list = env.call("GET", "/v1/generations", &user(&b), None).await;
    assert_eq!(list.body["items"], json!([]));

    // A rating, then another that replaces it.
    let f = env
        .call(
            "PUT",
            &feedback,
            &user(&a),
            Some(json!({"rating": 2, "comment": "too terse"})),
        )
        .await;
    assert_eq!(f.status, 200, "{}", f.body);
    let f = env
        .call("PUT", &feedback, &user(&a), Some(json!({"rating": 5})))
        .await;
    assert_eq!(f.body["rating"], 5);
    assert!(f.body["comment"].is_null());
    env.call(
        "PUT",
        &feedback,
        &admin(&a),
        Some(json!({"rating": 3, "comment": "fine"})),
    )
    .await;
    let mine = env.call("GET", "/v1/feedback", &user(&a), None).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
    let all = env
        .call("GET", "/v1/feedback?maxRating=4", &admin(&a), None)
        .await;
    let items = all.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["userId"], "alice");
    let paged = env
        .call("GET", "/v1/feedback?limit=1", &admin(&a), None)
        .await;
    assert_eq!(paged.body["items"].as_array().unwrap().len(), 1);
    let cursor = paged.body["nextCursor"].as_str().unwrap();
    let next = env
        .call(
            "GET",
            &format!("/v1/feedback?limit=1&cursor={cursor}"),
            &admin(&a),
            None,
        )
        .await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["items"].as_array().unwrap().len(), 1);
    assert_ne!(
        next.body["items"][0]["userId"],
        paged.body["items"][0]["userId"]
    );
    assert!(next.body["nextCursor"].is_null());
    assert!(env.call("GET", "/v1/feedback", &admin(&b), None).await.body["items"] == json!([]));
}

#[sqlx::test]
async fn bad_requests_are_refused_before_any_model_call(pool: sqlx::PgPool) {
    let t = unique("pg");
    let env = env(
        pool,
        &[&t],
        &[("FAAS_PROMPTGEN_MAX_DESCRIPTION_CHARS", "100")],
    )
    .await;
    let u = user(&t);
    for (body, status) in [
        (json!({}), 422),
        (json!({"description": ""}), 422),
        (json!({"description": "   "}), 422),
        (json!({"description": "x".repeat(101)}), 422),
        (json!({"description": "x", "surprise": 1}), 422),
        (json!({"description": "x", "name": "Not A Name"}), 422),
        (
            json!({"description": "x", "namespace": "a".repeat(64)}),
            422,
        ),
        (json!({"description": "x", "maxAttempts": 0}), 422),
        (json!({"description": "x", "maxAttempts": 4}), 422),
        (
            json!({"description": "x", "agentModel": {"provider": "", "name": "m"}}),
            422,
        ),
        (json!({"description": ["nested", {"deep": [[[[1]]]]}]}), 422),
    ] {
        let r = env.generate(&u, body.clone()).await;
        assert!(
            r.status.as_u16() == status || r.status.as_u16() == 400,
            "{body}: {} {}",
            r.status,
            r.body
        );
        r.assert_problem(r.status.as_u16());
    }
    assert!(env.requests().is_empty());
    let nope = uuid::Uuid::now_v7();
    env.call("GET", &format!("/v1/generations/{nope}"), &u, None)
        .await
        .assert_problem(404);
    env.call("GET", "/v1/generations/not-a-uuid", &u, None)
        .await
        .assert_problem(400);
    for q in ["limit=0", "limit=101", "cursor=nope"] {
        let r = env
            .call("GET", &format!("/v1/generations?{q}"), &u, None)
            .await;
        assert_eq!(r.status.as_u16(), 400, "{q}: {}", r.body);
    }
    for q in [
        "minRating=0",
        "maxRating=6",
        "minRating=4&maxRating=2",
        "cursor=%21%21",
    ] {
        let r = env
            .call("GET", &format!("/v1/feedback?{q}"), &u, None)
            .await;
        assert_eq!(r.status.as_u16(), 400, "{q}: {}", r.body);
        r.assert_problem(400);
    }
    let g = env.generate(&u, json!({"description": "A clock."})).await;
    let id = g.body["id"].as_str().unwrap();
    for body in [
        json!({"rating": 0}),
        json!({"rating": 6}),
        json!({"rating": 3, "comment": "c".repeat(4097)}),
    ] {
        env.call(
            "PUT",
            &format!("/v1/generations/{id}/feedback"),
            &u,
            Some(body),
        )
        .await
        .assert_problem(422);
    }
}

#[sqlx::test]
async fn a_generation_that_hangs_times_out_and_no_model_is_a_clear_error(pool: sqlx::PgPool) {
    let t = unique("pg");
    let env = env(pool.clone(), &[&t], &[("FAAS_PROMPTGEN_TIMEOUT_SECS", "1")]).await;
    let r = env
        .generate(&user(&t), json!({"description": "x", "model": "up/hang"}))
        .await;
    r.assert_problem(504);
    let list = env.call("GET", "/v1/generations", &user(&t), None).await;
    assert_eq!(list.body["items"], json!([]));
    // A model the gateway does not know: its refusal, not a 500.
    let r = env
        .generate(
            &user(&t),
            json!({"description": "x", "model": "up/unknown"}),
        )
        .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"].as_str().unwrap().starts_with("model: "),
        "{}",
        r.body
    );

    // Without FAAS_PROMPTGEN_MODEL a request must name its model.
    let bare = app_with(
        Some(pool),
        &[Component::PromptGenerator],
        with_settings(test_config(), &[("FAAS_GATEWAY_URL", "http://127.0.0.1:9")]),
    )
    .await;
    let r = call(
        &bare.router,
        "POST",
        "/v1/generations",
        Some(&user(&t)),
        Some(json!({"description": "x"})),
    )
    .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("FAAS_PROMPTGEN_MODEL")
    );
}
