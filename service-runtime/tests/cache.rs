//! The cache component against the real Redis.

mod common;

use common::*;
use faas_runtime::Component;
use serde_json::json;

async fn cache() -> TestApp {
    app(None, &[Component::Cache]).await
}

#[tokio::test]
async fn set_get_delete_with_ttl() {
    let app = cache().await;
    let t = user(&unique("c"));
    let r = call(
        &app.router,
        "PUT",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        Some(json!({"value": {"name": "Ada", "langs": ["rust"]}, "ttl_seconds": 120})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &app.router,
        "GET",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["key"], "user:42/profile");
    assert_eq!(r.body["value"]["langs"][0], "rust");
    let ttl = r.body["ttl_seconds"].as_i64().unwrap();
    assert!(ttl > 0 && ttl <= 120, "{ttl}");
    // Overwrite.
    call(
        &app.router,
        "PUT",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        Some(json!({"value": 7})),
    )
    .await;
    let r = call(
        &app.router,
        "GET",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.body["value"], 7);
    let r = call(
        &app.router,
        "DELETE",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    call(
        &app.router,
        "GET",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        None,
    )
    .await
    .assert_problem(404);
    call(
        &app.router,
        "DELETE",
        "/v1/cache/items/user:42/profile",
        Some(&t),
        None,
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn items_expire() {
    let app = cache().await;
    let t = user(&unique("c"));
    call(
        &app.router,
        "PUT",
        "/v1/cache/items/short",
        Some(&t),
        Some(json!({"value": 1, "ttl_seconds": 1})),
    )
    .await;
    let mut gone = false;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if call(&app.router, "GET", "/v1/cache/items/short", Some(&t), None)
            .await
            .status
            == 404
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "the item outlived its TTL");
}

#[tokio::test]
async fn batch_get_returns_null_for_missing_keys() {
    let app = cache().await;
    let t = user(&unique("c"));
    for (k, v) in [("a", 1), ("b", 2)] {
        call(
            &app.router,
            "PUT",
            &format!("/v1/cache/items/{k}"),
            Some(&t),
            Some(json!({"value": v})),
        )
        .await;
    }
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": ["a", "b", "zzz"]})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"items": {"a": 1, "b": 2, "zzz": null}, "found": 2})
    );
}

#[tokio::test]
async fn invalidation_by_prefix_and_by_tag() {
    let app = cache().await;
    let t = user(&unique("c"));
    for (k, tags) in [
        ("user:1:name", json!(["user-1"])),
        ("user:1:mail", json!(["user-1", "mail"])),
        ("user:2:name", json!(["user-2"])),
        ("user:*:odd", json!([])),
        ("order:9", json!(["mail"])),
    ] {
        let r = call(
            &app.router,
            "PUT",
            &format!("/v1/cache/items/{k}"),
            Some(&t),
            Some(json!({"value": k, "tags": tags})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Glob characters in a prefix are literal.
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"prefix": "user:*"})),
    )
    .await;
    assert_eq!(r.body["deleted"], 1);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"prefix": "user:1:"})),
    )
    .await;
    assert_eq!(r.body["deleted"], 2);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": ["user:1:name", "user:2:name", "order:9"]})),
    )
    .await;
    assert_eq!(r.body["found"], 2);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"tag": "mail"})),
    )
    .await;
    // user:1:mail is already gone; order:9 goes now.
    assert_eq!(r.body["deleted"], 1);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": ["user:2:name", "order:9"]})),
    )
    .await;
    assert_eq!(
        r.body["items"],
        json!({"user:2:name": "user:2:name", "order:9": null})
    );
}

#[tokio::test]
async fn tenants_cannot_see_or_touch_each_others_keys() {
    let app = cache().await;
    let a = user(&unique("ca"));
    let b = user(&unique("cb"));
    call(
        &app.router,
        "PUT",
        "/v1/cache/items/secret",
        Some(&a),
        Some(json!({"value": "a's", "tags": ["t"]})),
    )
    .await;
    call(&app.router, "GET", "/v1/cache/items/secret", Some(&b), None)
        .await
        .assert_problem(404);
    call(
        &app.router,
        "DELETE",
        "/v1/cache/items/secret",
        Some(&b),
        None,
    )
    .await
    .assert_problem(404);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&b),
        Some(json!({"keys": ["secret"]})),
    )
    .await;
    assert_eq!(r.body["found"], 0);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&b),
        Some(json!({"prefix": ""})),
    )
    .await;
    assert_eq!(r.body["deleted"], 0);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&b),
        Some(json!({"tag": "t"})),
    )
    .await;
    assert_eq!(r.body["deleted"], 0);
    // B writing the same key does not change A's value.
    call(
        &app.router,
        "PUT",
        "/v1/cache/items/secret",
        Some(&b),
        Some(json!({"value": "b's"})),
    )
    .await;
    let r = call(&app.router, "GET", "/v1/cache/items/secret", Some(&a), None).await;
    assert_eq!(r.body["value"], "a's");
}

#[tokio::test]
async fn bad_input_is_rejected_with_a_reason() {
    let app = cache().await;
    let t = user(&unique("c"));
    let put = |body| {
        call(
            &app.router,
            "PUT",
            "/v1/cache/items/k",
            Some(&t),
            Some(body),
        )
    };
    put(json!({"value": 1, "ttl_seconds": 0}))
        .await
        .assert_problem(422);
    put(json!({"value": 1, "ttl_seconds": 99999999}))
        .await
        .assert_problem(422);
    let tags: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let r = put(json!({"value": 1, "tags": tags})).await;
    r.assert_problem(422);
    assert!(r.body["detail"].as_str().unwrap().contains("tags"));
    put(json!({"value": 1, "tags": [""]}))
        .await
        .assert_problem(422);
    put(json!({"value": 1, "extra": true}))
        .await
        .assert_problem(422);
    let long = "k".repeat(600);
    call(
        &app.router,
        "GET",
        &format!("/v1/cache/items/{long}"),
        Some(&t),
        None,
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": []})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": "a"})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"prefix": "a", "tag": "b"})),
    )
    .await
    .assert_problem(422);
}
