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

fn path_key(k: &str) -> String {
    k.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b':' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Glob characters in keys and prefixes are literal: a prefix matches only
/// keys that start with exactly it, and only the caller's.
#[tokio::test]
async fn prefixes_with_glob_characters_match_only_themselves() {
    let app = cache().await;
    let a = user(&unique("ca"));
    let b = user(&unique("cb"));
    let keys = ["a*", "a?", "a[b]", "a\\x", "ab", "a]", "a^"];
    for k in keys {
        let r = call(
            &app.router,
            "PUT",
            &format!("/v1/cache/items/{}", path_key(k)),
            Some(&a),
            Some(json!({"value": k})),
        )
        .await;
        assert_eq!(r.status, 200, "{k}: {}", r.body);
        let r = call(
            &app.router,
            "GET",
            &format!("/v1/cache/items/{}", path_key(k)),
            Some(&a),
            None,
        )
        .await;
        assert_eq!(r.body["key"], k);
    }
    let invalidate = |t: String, prefix: &str| {
        let (router, body) = (app.router.clone(), json!({"prefix": prefix}));
        async move {
            call(
                &router,
                "POST",
                "/v1/cache/invalidate",
                Some(&t),
                Some(body),
            )
            .await
            .body["deleted"]
                .as_u64()
                .unwrap()
        }
    };
    // Another tenant's patterns reach nothing of A's.
    for p in ["*", "?", "[", "a*", "a", "", "\\"] {
        assert_eq!(invalidate(b.clone(), p).await, 0, "{p}");
    }
    assert_eq!(invalidate(a.clone(), "a[").await, 1);
    assert_eq!(invalidate(a.clone(), "a\\").await, 1);
    assert_eq!(invalidate(a.clone(), "a?").await, 1);
    assert_eq!(invalidate(a.clone(), "a*").await, 1);
    assert_eq!(invalidate(a.clone(), "a]").await, 1);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&a),
        Some(json!({"keys": keys})),
    )
    .await;
    assert_eq!(r.body["found"], 2, "{}", r.body);
    assert_eq!(invalidate(a.clone(), "").await, 2);
}

#[tokio::test]
async fn ttls_values_and_batches_are_bounded() {
    let app = cache().await;
    let t = user(&unique("c"));
    let put = |key: &str, body: serde_json::Value| {
        let (router, uri, t) = (
            app.router.clone(),
            format!("/v1/cache/items/{key}"),
            t.clone(),
        );
        async move { call(&router, "PUT", &uri, Some(&t), Some(body)).await }
    };
    for ttl in [
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!("60"),
        json!(2_592_001),
    ] {
        let r = put("k", json!({"value": 1, "ttl_seconds": ttl})).await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains("ttl_seconds"),
            "{}",
            r.body
        );
    }
    let r = raw_call(
        &app.router,
        "PUT",
        "/v1/cache/items/k",
        Some(&t),
        "application/json",
        br#"{"value": 1, "ttl_seconds": 18446744073709551616}"#,
    )
    .await;
    r.assert_problem(422);
    assert_eq!(
        put("k", json!({"value": 1, "ttl_seconds": 2_592_000}))
            .await
            .status,
        200
    );

    let r = put("big", json!({"value": "v".repeat(1_100_000)})).await;
    r.assert_problem(422);
    assert!(r.body["detail"].as_str().unwrap().contains("1048576"));
    // Limits count characters; control characters are refused.
    let wide = "é".repeat(512);
    assert_eq!(put(&path_key(&wide), json!({"value": 1})).await.status, 200);
    put(&path_key(&"é".repeat(513)), json!({"value": 1}))
        .await
        .assert_problem(422);
    put("a%01b", json!({"value": 1})).await.assert_problem(422);
    let r = put("k", json!({"value": 1, "tags": ["t\u{0}"]})).await;
    assert!(r.status.is_client_error(), "{}", r.body);
    call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"prefix": "p\u{7}"})),
    )
    .await
    .assert_problem(422);
    call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"tag": "x".repeat(129)})),
    )
    .await
    .assert_problem(422);

    // Nine values of a megabyte are more than one batch returns.
    let mut keys = Vec::new();
    for i in 0..9 {
        let k = format!("m{i}");
        assert_eq!(
            put(&k, json!({"value": "m".repeat(1_000_000)}))
                .await
                .status,
            200
        );
        keys.push(k);
    }
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": keys})),
    )
    .await;
    r.assert_problem(422);
    assert!(r.body["detail"].as_str().unwrap().contains("fewer keys"));
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": &keys[..3]})),
    )
    .await;
    assert_eq!(r.body["found"], 3);
    let many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    call(
        &app.router,
        "POST",
        "/v1/cache/batch-get",
        Some(&t),
        Some(json!({"keys": many})),
    )
    .await
    .assert_problem(422);
}

/// Tag invalidation reads large tags a chunk at a time.
#[tokio::test]
async fn invalidating_a_large_tag_deletes_every_member() {
    let app = cache().await;
    let t = user(&unique("c"));
    for i in 0..1200 {
        let r = call(
            &app.router,
            "PUT",
            &format!("/v1/cache/items/item-{i}"),
            Some(&t),
            Some(json!({"value": i, "tags": ["bulk"]})),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"tag": "bulk"})),
    )
    .await;
    assert_eq!(r.body["deleted"], 1200, "{}", r.body);
    let r = call(
        &app.router,
        "POST",
        "/v1/cache/invalidate",
        Some(&t),
        Some(json!({"tag": "bulk"})),
    )
    .await;
    assert_eq!(r.body["deleted"], 0);
}

/// The OpenAPI document states what the routes answer and the limits they enforce.
#[tokio::test]
async fn the_openapi_document_states_answers_and_limits() {
    let app = cache().await;
    let doc = call(&app.router, "GET", "/openapi.json", None, None)
        .await
        .body;
    let item = &doc["paths"]["/v1/cache/items/{key}"];
    for status in ["200", "400", "401", "413", "415", "422", "429", "503"] {
        assert!(
            item["put"]["responses"][status].is_object(),
            "PUT lacks {status}"
        );
    }
    assert!(item["get"]["responses"]["404"]["content"]["application/problem+json"].is_object());
    assert_eq!(item["get"]["parameters"][0]["schema"]["maxLength"], 512);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PutItem"]["properties"]["ttl_seconds"]["maximum"],
        2_592_000
    );
    assert_eq!(schemas["PutItem"]["properties"]["tags"]["maxItems"], 32);
    assert_eq!(schemas["BatchGet"]["properties"]["keys"]["maxItems"], 1000);
    assert_eq!(
        schemas["InvalidateBody"]["oneOf"].as_array().unwrap().len(),
        2
    );
}
