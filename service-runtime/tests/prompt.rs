//! The prompt component against the real Postgres.

mod common;

use common::*;
use faas_runtime::Component;
use serde_json::json;

fn greeting() -> serde_json::Value {
    json!({
        "name": "greeting",
        "description": "says hello",
        "messages": [
            {"role": "system", "template": "You help {{ company }} customers."},
            {"role": "user", "template": "Hello, I am {{ name }}{% if vip %} (VIP){% endif %}."}
        ],
        "variables": [
            {"name": "company", "default": "Motadata", "type": "string"},
            {"name": "name", "type": "string"},
            {"name": "vip", "type": "boolean", "required": false}
        ],
        "model_defaults": {"model": "gpt-4o", "temperature": 0.2}
    })
}

#[sqlx::test]
async fn versioned_crud(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(greeting()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["source"], "api");
    call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(greeting()),
    )
    .await
    .assert_problem(409);

    let mut upd = greeting();
    upd.as_object_mut().unwrap().remove("name");
    // Same content: no new version.
    let r = call(
        &app.router,
        "PUT",
        "/v1/prompts/greeting",
        Some(&t),
        Some(upd.clone()),
    )
    .await;
    assert_eq!(r.body["version"], 1);
    upd["description"] = json!("says hello politely");
    let r = call(
        &app.router,
        "PUT",
        "/v1/prompts/greeting",
        Some(&t),
        Some(upd),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 2);

    let r = call(&app.router, "GET", "/v1/prompts/greeting", Some(&t), None).await;
    assert_eq!(r.body["version"], 2);
    let r = call(
        &app.router,
        "GET",
        "/v1/prompts/greeting?version=1",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body["description"], "says hello");
    call(
        &app.router,
        "GET",
        "/v1/prompts/greeting?version=9",
        Some(&t),
        None,
    )
    .await
    .assert_problem(404);
    call(
        &app.router,
        "GET",
        "/v1/prompts/greeting?version=x",
        Some(&t),
        None,
    )
    .await
    .assert_problem(400);
    let r = call(
        &app.router,
        "GET",
        "/v1/prompts/greeting/versions",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = call(&app.router, "GET", "/v1/prompts", Some(&t), None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["version"], 2);

    let r = call(
        &app.router,
        "DELETE",
        "/v1/prompts/greeting",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    call(&app.router, "GET", "/v1/prompts/greeting", Some(&t), None)
        .await
        .assert_problem(404);
}

/// The hash stored with a version is the content hash of the shared model, so versions
/// written before and after keep comparing equal.
#[sqlx::test]
async fn versions_store_the_content_hash(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(json!({"name": "summarise", "template": "Summarise {{ document }} in {{ words }} words.",
                    "variables": [{"name": "document"}, {"name": "words", "type": "integer", "default": 100}]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["content_hash"],
        "7f614078233b67880edb0ef756b2733110c34011b6cea865ce9ab6674cf9c02e"
    );
    // `required` reads back as stored: true, and a default makes the variable optional.
    assert_eq!(r.body["variables"][1]["required"], true);
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/summarise/render",
        Some(&t),
        Some(json!({"variables": {"document": "the report"}})),
    )
    .await;
    assert_eq!(
        r.body["text"], "Summarise the report in 100 words.",
        "{}",
        r.body
    );
}

#[sqlx::test]
async fn rendering_is_strict_about_variables(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(greeting()),
    )
    .await;
    let render = |vars| {
        call(
            &app.router,
            "POST",
            "/v1/prompts/greeting/render",
            Some(&t),
            Some(json!({"variables": vars})),
        )
    };
    let r = render(json!({"name": "Ada", "vip": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["messages"][0]["content"],
        "You help Motadata customers."
    );
    assert_eq!(r.body["messages"][1]["content"], "Hello, I am Ada (VIP).");
    assert_eq!(r.body["model_defaults"]["model"], "gpt-4o");
    assert!(r.body["tokens"].as_u64().unwrap() > 0);

    let r = render(json!({})).await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("missing variables: name")
    );
    let r = render(json!({"name": "Ada", "nmae": "typo", "zzz": 1})).await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown variables: nmae, zzz")
    );
    let r = render(json!({"name": 42})).await;
    r.assert_problem(422);
    assert!(r.body["detail"].as_str().unwrap().contains("name"));

    // A single-text template.
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(
            json!({"name": "list", "template": "{% for i in items %}- {{ i.title }}\n{% endfor %}",
                    "variables": [{"name": "items", "type": "array"}]}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/list/render",
        Some(&t),
        Some(json!({"variables": {"items": [{"title": "a"}, {"title": "b"}]}})),
    )
    .await;
    assert_eq!(r.body["text"], "- a\n- b\n");
    // Strict undefined: a missing attribute is a 422, not an empty string.
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/list/render",
        Some(&t),
        Some(json!({"variables": {"items": [{"name": "a"}]}})),
    )
    .await;
    r.assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/prompts/nope/render",
        Some(&t),
        Some(json!({})),
    )
    .await
    .assert_problem(404);
}

#[sqlx::test]
async fn templates_are_checked_when_saved(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let post = |body| call(&app.router, "POST", "/v1/prompts", Some(&t), Some(body));
    let r = post(json!({"name": "bad", "template": "Hello\n{{ name "})).await;
    r.assert_problem(422);
    assert!(
        r.body["detail"].as_str().unwrap().contains("line 2"),
        "{}",
        r.body
    );
    let r = post(json!({"name": "undeclared", "template": "{{ who }} and {{ what }}", "variables": [{"name": "who"}]})).await;
    r.assert_problem(422);
    assert!(r.body["detail"].as_str().unwrap().contains("what"));
    post(json!({"name": "both", "template": "x", "messages": [{"role": "user", "template": "y"}]}))
        .await
        .assert_problem(422);
    post(json!({"name": "neither"})).await.assert_problem(422);
    post(json!({"name": "Bad Name", "template": "x"}))
        .await
        .assert_problem(422);
    // Each refusal names the field at fault.
    let refused = |r: Resp, at: &str| {
        r.assert_problem(422);
        let detail = r.body["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains(at), "expected {at} in: {detail}");
    };
    refused(
        post(json!({"name": "role", "messages": [{"role": "user", "template": "x"}, {"role": "wizard", "template": "y"}]})).await,
        "messages[1].role",
    );
    refused(
        post(json!({"name": "dup", "template": "{{ a }}", "variables": [{"name": "a"}, {"name": "a"}]}))
            .await,
        "variables[1].name: a is declared twice",
    );
    refused(
        post(json!({"name": "type", "template": "{{ a }}", "variables": [{"name": "a", "type": "date"}]})).await,
        "variables[0].type",
    );
    refused(
        post(json!({"name": "default", "template": "{{ a }}", "variables": [{"name": "a", "type": "number", "default": "x"}]}))
            .await,
        "variables[0].default: is not of type number",
    );
    refused(
        post(json!({"name": "int", "template": "{{ a }}", "variables": [{"name": "a", "type": "integer", "default": 2.5}]}))
            .await,
        "variables[0].default: is not of type integer",
    );
    refused(
        post(json!({"name": "parse", "messages": [{"role": "system", "template": "ok"}, {"role": "developer", "template": "a\n{% if %}"}]}))
            .await,
        "messages[1].template",
    );
    post(json!({"name": "x", "template": "x", "unknown": 1}))
        .await
        .assert_problem(422);
    call(
        &app.router,
        "PUT",
        "/v1/prompts/missing",
        Some(&t),
        Some(json!({"template": "x"})),
    )
    .await
    .assert_problem(404);
}

#[sqlx::test]
async fn resource_templates_are_read_only(pool: sqlx::PgPool) {
    let app = app(Some(pool.clone()), &[Component::Prompt]).await;
    let tenant = unique("p");
    let t = user(&tenant);
    // As the operator writes a PromptTemplate resource.
    sqlx::query(
        "INSERT INTO prompt_templates (tenant_id, name, version, template, variables, source, content_hash) \
         VALUES ($1, 'from-crd', 3, 'Hi {{ who }}', '[{\"name\": \"who\", \"required\": true}]', 'resource', 'h')",
    )
    .bind(&tenant)
    .execute(&pool)
    .await
    .unwrap();
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/from-crd/render",
        Some(&t),
        Some(json!({"variables": {"who": "you"}})),
    )
    .await;
    assert_eq!(r.body["text"], "Hi you");
    assert_eq!(r.body["version"], 3);
    let r = call(
        &app.router,
        "PUT",
        "/v1/prompts/from-crd",
        Some(&t),
        Some(json!({"template": "changed"})),
    )
    .await;
    r.assert_problem(403);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("PromptTemplate")
    );
    call(
        &app.router,
        "DELETE",
        "/v1/prompts/from-crd",
        Some(&t),
        None,
    )
    .await
    .assert_problem(403);
    call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(json!({"name": "from-crd", "template": "x"})),
    )
    .await
    .assert_problem(409);
}

#[sqlx::test]
async fn retired_resource_templates_are_gone(pool: sqlx::PgPool) {
    let app = app(Some(pool.clone()), &[Component::Prompt]).await;
    let tenant = unique("p");
    let t = user(&tenant);
    // As the operator keeps a template whose resource is being deleted while Agents use it.
    sqlx::query(
        "INSERT INTO prompt_templates (tenant_id, name, version, template, variables, source, content_hash, retired_at) \
         VALUES ($1, 'leaving', 1, 'Hi', '[]', 'resource', 'h', now()), \
                ($1, 'staying', 1, 'Hi', '[]', 'resource', 'h', NULL)",
    )
    .bind(&tenant)
    .execute(&pool)
    .await
    .unwrap();
    for (method, path, body) in [
        ("GET", "/v1/prompts/leaving", None),
        ("GET", "/v1/prompts/leaving?version=1", None),
        ("GET", "/v1/prompts/leaving/versions", None),
        ("POST", "/v1/prompts/leaving/render", Some(json!({}))),
    ] {
        call(&app.router, method, path, Some(&t), body)
            .await
            .assert_problem(404);
    }
    let r = call(&app.router, "GET", "/v1/prompts", Some(&t), None).await;
    let names: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["staying"]);
    // The name stays the resource's until the operator deletes the rows.
    call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(json!({"name": "leaving", "template": "x"})),
    )
    .await
    .assert_problem(409);
}

#[sqlx::test]
async fn tenants_cannot_read_or_change_each_others_templates(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let a = user(&unique("pa"));
    let b = user(&unique("pb"));
    call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&a),
        Some(greeting()),
    )
    .await;
    call(&app.router, "GET", "/v1/prompts/greeting", Some(&b), None)
        .await
        .assert_problem(404);
    call(
        &app.router,
        "GET",
        "/v1/prompts/greeting/versions",
        Some(&b),
        None,
    )
    .await
    .assert_problem(404);
    call(
        &app.router,
        "POST",
        "/v1/prompts/greeting/render",
        Some(&b),
        Some(json!({"variables": {"name": "x"}})),
    )
    .await
    .assert_problem(404);
    call(
        &app.router,
        "PUT",
        "/v1/prompts/greeting",
        Some(&b),
        Some(json!({"template": "x"})),
    )
    .await
    .assert_problem(404);
    call(
        &app.router,
        "DELETE",
        "/v1/prompts/greeting",
        Some(&b),
        None,
    )
    .await
    .assert_problem(404);
    let r = call(&app.router, "GET", "/v1/prompts", Some(&b), None).await;
    assert_eq!(r.body, json!([]));
    // B may use the same name for its own template.
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&b),
        Some(greeting()),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = call(&app.router, "GET", "/v1/prompts/greeting", Some(&a), None).await;
    assert_eq!(r.body["version"], 1);
}

#[sqlx::test]
async fn context_building_fits_the_budget(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let long = "x".repeat(400);
    let body = json!({
        "max_tokens": 130,
        "messages": [
            {"role": "system", "content": "be helpful"},
            {"role": "user", "content": long},
            {"role": "assistant", "content": "pinned fact", "pinned": true},
            {"role": "user", "content": long},
            {"role": "user", "content": "latest question"}
        ]
    });
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/context",
        Some(&t),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["tokens"].as_u64().unwrap() <= 130);
    assert_eq!(r.body["dropped"], 1);
    let contents: Vec<&str> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        vec![
            "be helpful",
            "pinned fact",
            long.as_str(),
            "latest question"
        ]
    );

    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/context",
        Some(&t),
        Some(json!({"max_tokens": 3, "messages": [{"role": "system", "content": "too long for it"}]})),
    )
    .await;
    r.assert_problem(422);
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/context",
        Some(&t),
        Some(json!({"max_tokens": 100, "messages": [{"role": "developer", "content": "d"}, {"role": "tool", "content": "t"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["messages"][0]["role"], "developer");
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/context",
        Some(&t),
        Some(json!({"max_tokens": 100, "messages": [{"role": "user", "content": "u"}, {"role": "wizard", "content": "w"}]})),
    )
    .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("messages[1].role"),
        "{}",
        r.body
    );
    call(
        &app.router,
        "POST",
        "/v1/prompts/context",
        Some(&t),
        Some(json!({"max_tokens": 0, "messages": []})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/prompts/context",
        Some(&t),
        Some(json!({"messages": []})),
    )
    .await
    .assert_problem(422);
}

fn detail(r: &Resp) -> &str {
    r.body["detail"].as_str().unwrap_or("")
}

/// Templates that would overflow the stack, or build gigabytes, from a few
/// bytes: each is refused with the limit it breaks, and the service goes on.
#[sqlx::test]
async fn hostile_templates_are_refused_and_the_service_keeps_serving(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let cases: Vec<(String, &str)> = vec![
        (format!("{{{{ x{} }}}}", "|upper".repeat(6000)), "more than 128"),
        (format!("{{{{ x{} }}}}", ".a".repeat(6000)), "more than 128"),
        (format!("{{{{ x{} }}}}", "[0]".repeat(6000)), "more than 128"),
        (format!("{{{{ {}x }}}}", "not ".repeat(6000)), "more than 128"),
        (format!("{{{{ 1{} }}}}", "+1".repeat(6000)), "more than 128"),
        (format!("{{{{ x{} }}}}", " ~ x".repeat(6000)), "more than 128"),
        (format!("{{{{ {}x{} }}}}", "(".repeat(40), ")".repeat(40)), "deeper than 16"),
        (format!("{}x{}", "{% if x %}".repeat(100), "{% endif %}".repeat(100)), "deeper than 16"),
        (format!("{{% set a = x %}}{}{{{{ a }}}}", "{% set a = a ~ a %}".repeat(30)), "more than the limit of 4194304"),
        ("{% set ns = namespace(a=x) %}{% for i in range(40) %}{% set ns.a = ns.a ~ ns.a %}{% endfor %}{{ ns.a }}".into(), "grow on every pass"),
        ("{% for i in range(40) %}{% set x = x ~ x %}{% endfor %}{{ x }}".into(), "grow on every pass"),
        ("{{ x * 100000000 }}".into(), "more than the limit of 4194304"),
        ("{{ x|replace('', x)|replace('', x) }}".into(), "more than the limit of 4194304"),
        ("{{ range(100000)|join(x) }}".into(), "more than the limit of 4194304"),
        ("{{ '%999999999s'|format(x) }}".into(), "more than the limit of 4194304"),
        ("{{ x|indent(99999999) }}".into(), "at most 100000"),
        ("{{ (x * 100)|list }}".into(), "more than the limit of 4194304"),
        ("{{ (x * 100)|batch(99999, x)|list }}".into(), "more than the limit of 4194304"),
        ("{% macro m(a) %}{{ a }}{{ a }}{% endmacro %}{{ m(m(m(x))) }}".into(), "a macro is not available"),
        ("{% set a %}{{ x }}{{ x }}{% endset %}{{ a }}".into(), "a set block"),
    ];
    for (i, (template, why)) in cases.into_iter().enumerate() {
        let r = call(
            &app.router,
            "POST",
            "/v1/prompts",
            Some(&t),
            Some(json!({"name": format!("evil-{i}"), "template": template, "variables": [{"name": "x"}]})),
        )
        .await;
        r.assert_problem(422);
        assert!(detail(&r).contains(why), "case {i}: {}", r.body);
    }
    // The same checks guard updates.
    call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(greeting()),
    )
    .await;
    let r = call(
        &app.router,
        "PUT",
        "/v1/prompts/greeting",
        Some(&t),
        Some(json!({"template": format!("{{{{ name{} }}}}", "|e".repeat(5000)), "variables": [{"name": "name"}]})),
    )
    .await;
    r.assert_problem(422);
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/greeting/render",
        Some(&t),
        Some(json!({"variables": {"name": "Ada"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 1);
}

#[sqlx::test]
async fn renders_are_bounded_by_the_values_they_are_given(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let create = |name: &str, template: &str| {
        call(
            &app.router,
            "POST",
            "/v1/prompts",
            Some(&t),
            Some(
                json!({"name": name, "template": template, "variables": [{"name": "x", "type": "string"}]}),
            ),
        )
    };
    let render = |name: &str, x: String| {
        let uri = format!("/v1/prompts/{name}/render");
        let router = app.router.clone();
        let t = t.clone();
        async move {
            call(
                &router,
                "POST",
                &uri,
                Some(&t),
                Some(json!({"variables": {"x": x}})),
            )
            .await
        }
    };
    assert_eq!(create("triple", "{{ x ~ x ~ x }}").await.status, 201);
    assert_eq!(render("triple", "ab".into()).await.body["text"], "ababab");
    // 1.5 MB is a valid body; three of it is more than one value may hold.
    let r = render("triple", "x".repeat(1_500_000)).await;
    r.assert_problem(422);
    assert!(detail(&r).contains("4194304"), "{}", r.body);

    let r = create("loop", "{% for i in range(100000) %}{{ x }}{% endfor %}").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = render("loop", "y".repeat(100)).await;
    r.assert_problem(422);
    assert!(
        detail(&r).contains("longer than the limit of 1048576 bytes"),
        "{}",
        r.body
    );

    let r = create(
        "spin",
        "{% for i in range(100000) %}{% for j in range(10) %}{% endfor %}{% endfor %}{{ x }}",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = render("spin", "z".into()).await;
    r.assert_problem(422);
    assert!(detail(&r).contains("200000 instructions"), "{}", r.body);

    // Every message shares the one output limit.
    let big = "m".repeat(700_000);
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts",
        Some(&t),
        Some(json!({"name": "two", "messages": [{"role": "system", "template": "{{ x }}"}, {"role": "user", "template": "{{ x }}"}],
                    "variables": [{"name": "x", "type": "string"}]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    render("two", big).await.assert_problem(422);
}

/// Rows written by the operator are checked when they are rendered.
#[sqlx::test]
async fn stored_templates_are_checked_before_they_are_compiled(pool: sqlx::PgPool) {
    let app = app(Some(pool.clone()), &[Component::Prompt]).await;
    let tenant = unique("p");
    let t = user(&tenant);
    let deep = format!("{{{{ who{} }}}}", "|e".repeat(20_000));
    sqlx::query(
        "INSERT INTO prompt_templates (tenant_id, name, version, template, variables, source, content_hash) \
         VALUES ($1, 'deep', 1, $2, '[{\"name\": \"who\"}]', 'resource', 'h')",
    )
    .bind(&tenant)
    .bind(&deep)
    .execute(&pool)
    .await
    .unwrap();
    let r = call(
        &app.router,
        "POST",
        "/v1/prompts/deep/render",
        Some(&t),
        Some(json!({"variables": {"who": "you"}})),
    )
    .await;
    r.assert_problem(422);
    assert!(detail(&r).contains("more than 128"), "{}", r.body);
    call(&app.router, "GET", "/v1/prompts/deep", Some(&t), None).await;
    let r = call(&app.router, "GET", "/v1/prompts", Some(&t), None).await;
    assert_eq!(r.status, 200);
}

#[sqlx::test]
async fn names_versions_and_sizes_are_checked(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    for uri in [
        "/v1/prompts/Bad%20Name",
        "/v1/prompts/a%00b",
        "/v1/prompts/greeting?version=0",
        "/v1/prompts/greeting?version=-3",
    ] {
        call(&app.router, "GET", uri, Some(&t), None)
            .await
            .assert_problem(400);
    }
    let long = "n".repeat(300);
    call(
        &app.router,
        "GET",
        &format!("/v1/prompts/{long}/versions"),
        Some(&t),
        None,
    )
    .await
    .assert_problem(400);
    let post = |body| call(&app.router, "POST", "/v1/prompts", Some(&t), Some(body));
    let msgs: Vec<_> = (0..65)
        .map(|_| json!({"role": "user", "template": "x"}))
        .collect();
    let r = post(json!({"name": "many", "messages": msgs})).await;
    r.assert_problem(422);
    assert!(detail(&r).contains("at most 64"));
    let vars: Vec<_> = (0..129).map(|i| json!({"name": format!("v{i}")})).collect();
    post(json!({"name": "vars", "template": "x", "variables": vars}))
        .await
        .assert_problem(422);
    post(json!({"name": "ctl", "template": "bell \u{7}"}))
        .await
        .assert_problem(422);
    post(json!({"name": "big-default", "template": "{{ a }}", "variables": [{"name": "a", "default": "d".repeat(70_000)}]}))
        .await
        .assert_problem(422);
    post(json!({"name": "r", "template": "x"})).await;
    call(
        &app.router,
        "POST",
        "/v1/prompts/r/render",
        Some(&t),
        Some(json!({"version": 0})),
    )
    .await
    .assert_problem(422);
    let render = |name: &str, body: serde_json::Value| {
        let (router, uri, t) = (
            app.router.clone(),
            format!("/v1/prompts/{name}/render"),
            t.clone(),
        );
        async move { call(&router, "POST", &uri, Some(&t), Some(body)).await }
    };
    // A version the template lacks is a fault of the body; a missing template a 404.
    let r = render("r", json!({"version": 5})).await;
    r.assert_problem(422);
    assert!(detail(&r).contains("has no version 5"), "{}", r.body);
    render("none", json!({"version": 5}))
        .await
        .assert_problem(404);
    // Integers may be written as JSON Schema counts them.
    let r = render("r", json!({"version": 1.0})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    render("r", json!({"version": 1.5}))
        .await
        .assert_problem(422);
    // What jsonb cannot store or read back is refused.
    let r = post(
        json!({"name": "j", "template": "x", "model_defaults": {"k": 1.7976931348623157e308}}),
    )
    .await;
    r.assert_problem(422);
    let r = post(json!({"name": "j", "template": "x", "model_defaults": {"k": "a\u{0}b"}})).await;
    assert!(r.status.is_client_error(), "{}", r.body);
    post(json!({"name": "j", "template": "x", "model_defaults": "not an object"}))
        .await
        .assert_problem(422);
}

/// The OpenAPI document states what the routes answer and the limits they enforce.
#[sqlx::test]
async fn the_openapi_document_states_answers_and_limits(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let doc = call(&app.router, "GET", "/openapi.json", None, None)
        .await
        .body;
    let create = &doc["paths"]["/v1/prompts"]["post"]["responses"];
    for status in [
        "201", "400", "401", "409", "413", "415", "422", "429", "503",
    ] {
        assert!(
            create[status].is_object(),
            "POST /v1/prompts lacks {status}"
        );
    }
    assert!(create["422"]["content"]["application/problem+json"].is_object());
    let update = &doc["paths"]["/v1/prompts/{name}"]["put"]["responses"];
    for status in ["200", "403", "404", "409", "413", "415", "422"] {
        assert!(
            update[status].is_object(),
            "PUT /v1/prompts/{{name}} lacks {status}"
        );
    }
    let input = &doc["components"]["schemas"]["TemplateInput"]["allOf"];
    assert_eq!(input[0]["properties"]["name"]["maxLength"], 128);
    assert_eq!(input[0]["properties"]["messages"]["maxItems"], 64);
    assert_eq!(input[0]["properties"]["template"]["maxLength"], 262144);
    assert_eq!(input[1]["oneOf"].as_array().unwrap().len(), 2);
    let roles = &doc["components"]["schemas"]["Role"]["enum"];
    assert_eq!(
        roles,
        &json!(["system", "developer", "user", "assistant", "tool"])
    );
    let name = &doc["paths"]["/v1/prompts/{name}"]["get"]["parameters"][0];
    assert_eq!(name["in"], "path");
    assert_eq!(name["schema"]["maxLength"], 253);
}

/// Arithmetic at the ends of the integer range, in places where minijinja
/// itself would panic, answers 200 or 422.
#[sqlx::test]
async fn edge_arithmetic_in_templates_is_not_a_server_error(pool: sqlx::PgPool) {
    let app = app(Some(pool), &[Component::Prompt]).await;
    let t = user(&unique("p"));
    let min128 = "(-170141183460469231731687303715884105727 - 1)";
    let cases = [
        "{{ n is divisibleby(0) }}".to_string(),
        format!("{{{{ {min128} is divisibleby(-1) }}}}"),
        "{{ range(9223372036854775807, -9223372036854775807, -1)|length }}".into(),
        "{{ range(0, 10, -9223372036854775807 - 1)|list }}".into(),
        "{% for a in x %}{{ loop.cycle() }}{% endfor %}".into(),
        "{{ x[::-9223372036854775807 - 1] }}".into(),
        "{{ x[2:5:-1] }}".into(),
        format!("{{{{ {min128}|abs }}}}{{{{ -{min128} }}}}{{{{ {min128} // -1 }}}}"),
        "{{ 1 % 0 }}{{ 1 // 0 }}{{ 2 ** 200 }}{{ x|batch(0) }}".into(),
    ];
    for (i, template) in cases.iter().enumerate() {
        let r = call(
            &app.router,
            "POST",
            "/v1/prompts",
            Some(&t),
            Some(json!({"name": format!("edge-{i}"), "template": template,
                        "variables": [{"name": "x", "default": "abc"}, {"name": "n", "default": 7}]})),
        )
        .await;
        assert!(r.status == 201 || r.status == 422, "{template}: {}", r.body);
        if r.status == 201 {
            let r = call(
                &app.router,
                "POST",
                &format!("/v1/prompts/edge-{i}/render"),
                Some(&t),
                Some(json!({})),
            )
            .await;
            assert!(r.status == 200 || r.status == 422, "{template}: {}", r.body);
        }
    }
}
