//! The rag component against the real Postgres with pgvector and the in-process
//! embedding model; answers through the real gateway to a local OpenAI-speaking server.

mod common;

use common::*;
use faas_runtime::Component;
use faas_runtime::platform::config::Config;
use serde_json::{Value, json};

/// The test configuration with `extra` settings; the model folder must be there.
fn config_with(extra: &[(&str, &str)]) -> Config {
    require_env("FAAS_EMBEDDING_MODEL_DIR");
    with_settings(test_config(), extra)
}

async fn rag(pool: sqlx::PgPool) -> TestApp {
    app_with(Some(pool), &[Component::Rag], config_with(&[])).await
}

async fn create(app: &TestApp, tenant: &str, body: Value) -> Value {
    let r = call(
        &app.router,
        "POST",
        "/v1/collections",
        Some(&admin(tenant)),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn add(app: &TestApp, tenant: &str, collection: &str, body: Value) -> common::Resp {
    call(
        &app.router,
        "POST",
        &format!("/v1/collections/{collection}/documents"),
        Some(&user(tenant)),
        Some(body),
    )
    .await
}

async fn query(app: &TestApp, tenant: &str, collection: &str, body: Value) -> common::Resp {
    call(
        &app.router,
        "POST",
        &format!("/v1/collections/{collection}/query"),
        Some(&user(tenant)),
        Some(body),
    )
    .await
}

/// A call without a body by a user of `tenant`.
async fn as_user(app: &TestApp, method: &str, uri: &str, tenant: &str) -> common::Resp {
    call(&app.router, method, uri, Some(&user(tenant)), None).await
}

fn titles(r: &common::Resp) -> Vec<String> {
    r.body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits: {}", r.body))
        .iter()
        .map(|h| h["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[sqlx::test]
async fn collections_are_checked_owned_by_admins_and_per_tenant(pool: sqlx::PgPool) {
    let app = rag(pool).await;
    let (a, b) = (unique("ra"), unique("rb"));
    let c = create(&app, &a, json!({"name": "handbook", "description": "HR"})).await;
    assert_eq!(c["embedding_model"], "all-MiniLM-L6-v2");
    assert_eq!(c["dimensions"], 384);
    assert_eq!(c["chunk_tokens"], 200);
    assert_eq!(c["chunk_overlap"], 40);

    let post = |token: String, body: Value| {
        let router = app.router.clone();
        async move { call(&router, "POST", "/v1/collections", Some(&token), Some(body)).await }
    };
    post(admin(&a), json!({"name": "handbook"}))
        .await
        .assert_problem(409);
    post(user(&a), json!({"name": "mine"}))
        .await
        .assert_problem(403);
    for (body, says) in [
        (json!({"name": "Bad Name"}), "collection"),
        (json!({"name": ""}), "collection"),
        (json!({"name": "x".repeat(64)}), "collection"),
        (
            json!({"name": "ok", "embedding": {"model": "all-MiniLM-L6-v2", "dimensions": 768}}),
            "384",
        ),
        (
            json!({"name": "ok", "embedding": {"model": "text-embedding-3-small", "dimensions": 1536}}),
            "no gateway",
        ),
        (
            json!({"name": "ok", "embedding": {"model": "text-embedding-3-small"}}),
            "dimensions",
        ),
        (
            json!({"name": "ok", "chunking": {"tokens": 8}}),
            "chunking.tokens",
        ),
        (
            json!({"name": "ok", "chunking": {"tokens": 1000}}),
            "chunking.tokens",
        ),
        (
            json!({"name": "ok", "chunking": {"tokens": 100, "overlap": 60}}),
            "chunking.overlap",
        ),
        (json!({"name": "ok", "chunking": {"tokens": 1.5}}), "tokens"),
        (json!({"name": "ok", "surprise": true}), "surprise"),
        (
            json!({"name": "ok", "description": "a\u{7}b"}),
            "description",
        ),
    ] {
        let r = post(admin(&a), body.clone()).await;
        r.assert_problem(422);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    // The other tenant sees nothing of it and may use the same name.
    let r = as_user(&app, "GET", "/v1/collections/handbook", &b).await;
    r.assert_problem(404);
    create(
        &app,
        &b,
        json!({"name": "handbook", "chunking": {"tokens": 64, "overlap": 8}}),
    )
    .await;
    let r = as_user(&app, "GET", "/v1/collections", &a).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["items"][0]["description"], "HR");

    // Deleting is for admins, and takes the documents along.
    add(
        &app,
        &a,
        "handbook",
        json!({"text": "Holidays are 25 days a year."}),
    )
    .await;
    let r = as_user(&app, "DELETE", "/v1/collections/handbook", &a).await;
    r.assert_problem(403);
    let r = call(
        &app.router,
        "DELETE",
        "/v1/collections/handbook",
        Some(&admin(&a)),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call(
        &app.router,
        "DELETE",
        "/v1/collections/handbook",
        Some(&admin(&a)),
        None,
    )
    .await;
    r.assert_problem(404);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM rag_documents")
        .fetch_one(app.state.db().unwrap())
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "row-level security hides rows from a query without a tenant"
    );
    let r = as_user(&app, "GET", "/v1/collections/handbook", &b).await;
    assert_eq!(r.status, 200, "the other tenant's collection is untouched");
}

#[sqlx::test]
async fn documents_are_chunked_deduplicated_paged_reindexed_and_deleted(pool: sqlx::PgPool) {
    let app = rag(pool).await;
    let t = unique("rd");
    create(
        &app,
        &t,
        json!({"name": "docs", "chunking": {"tokens": 32, "overlap": 8}}),
    )
    .await;
    let text = "# Guide\n## Install\nDownload the package. Unpack it into a folder of your choice. \
                Run the installer as an administrator and follow the steps on screen. \
                The installer checks the system requirements first.\n\n## Configure\n\
                Open the settings file. Set the port and the data directory. Restart the service \
                so the changes take effect. Logs are written to the data directory.";
    let r = add(&app, &t, "docs", json!({"text": text, "title": "Guide", "source": "https://example.com/guide", "metadata": {"lang": "en", "version": 2}})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let doc = r.body.clone();
    let id = doc["id"].as_str().unwrap().to_string();
    assert!(doc["chunks"].as_i64().unwrap() >= 3, "{doc}");
    assert_eq!(doc["metadata"], json!({"lang": "en", "version": 2}));
    assert_eq!(doc["checksum"].as_str().unwrap().len(), 64);

    // The same text again is the same document, and nothing is written twice.
    let again = add(
        &app,
        &t,
        "docs",
        json!({"text": text, "title": "Another title"}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], doc["id"]);
    let db = app.state.db().unwrap().clone();
    let chunks = |db: sqlx::PgPool, tenant: String| async move {
        let mut tx = faas_runtime::platform::tenant_transaction(&db, &tenant)
            .await
            .unwrap();
        let rows: Vec<(i32, Option<String>, i32)> =
            sqlx::query_as("SELECT ord, heading, tokens FROM rag_chunks ORDER BY document_id, ord")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        rows
    };
    let rows = chunks(db.clone(), t.clone()).await;
    assert_eq!(rows.len() as i64, doc["chunks"].as_i64().unwrap());
    assert!(rows.iter().all(|(_, _, tokens)| *tokens <= 32), "{rows:?}");
    let headings: Vec<_> = rows.iter().filter_map(|r| r.1.clone()).collect();
    assert!(
        headings.contains(&"Guide > Install".to_string()),
        "{headings:?}"
    );
    assert!(
        headings.contains(&"Guide > Configure".to_string()),
        "{headings:?}"
    );

    // Get answers the text; list pages with a cursor.
    let r = as_user(
        &app,
        "GET",
        &format!("/v1/collections/docs/documents/{id}"),
        &t,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["content"], text);
    for n in 0..3 {
        let r = add(
            &app,
            &t,
            "docs",
            json!({"text": format!("note number {n}")}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/v1/collections/docs/documents?limit=3&cursor={c}"),
            None => "/v1/collections/docs/documents?limit=3".to_string(),
        };
        let r = call(&app.router, "GET", &uri, Some(&user(&t)), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for d in r.body["items"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_string());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0], id, "oldest first");

    // Re-index applies the collection's settings again, replacing the chunks.
    let r = as_user(
        &app,
        "POST",
        &format!("/v1/collections/docs/documents/{id}/reindex"),
        &t,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["chunks"], doc["chunks"]);
    assert_eq!(chunks(db.clone(), t.clone()).await.len(), rows.len() + 3);

    // Another tenant can neither see nor delete it.
    let other = unique("rx");
    create(&app, &other, json!({"name": "docs"})).await;
    let r = as_user(
        &app,
        "GET",
        &format!("/v1/collections/docs/documents/{id}"),
        &other,
    )
    .await;
    r.assert_problem(404);
    let r = as_user(
        &app,
        "DELETE",
        &format!("/v1/collections/docs/documents/{id}"),
        &other,
    )
    .await;
    r.assert_problem(404);

    let r = as_user(
        &app,
        "DELETE",
        &format!("/v1/collections/docs/documents/{id}"),
        &t,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        chunks(db.clone(), t.clone()).await.len(),
        3,
        "its chunks went with it"
    );
    let r = as_user(
        &app,
        "GET",
        &format!("/v1/collections/docs/documents/{id}"),
        &t,
    )
    .await;
    r.assert_problem(404);
}

#[derive(serde::Deserialize)]
struct Corpus {
    documents: Vec<CorpusDoc>,
    questions: Vec<CorpusQuestion>,
}

#[derive(serde::Deserialize)]
struct CorpusDoc {
    title: String,
    text: String,
}

#[derive(serde::Deserialize)]
struct CorpusQuestion {
    question: String,
    expect: String,
}

fn corpus() -> Corpus {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rag/corpus.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[sqlx::test]
async fn every_question_of_the_corpus_finds_its_document_in_the_top_three(pool: sqlx::PgPool) {
    let app = rag(pool).await;
    let t = unique("rc");
    create(&app, &t, json!({"name": "help"})).await;
    let corpus = corpus();
    for d in &corpus.documents {
        let r = add(&app, &t, "help", json!({"text": d.text, "title": d.title})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut misses = Vec::new();
    for mode in ["hybrid", "vector"] {
        for q in &corpus.questions {
            let r = query(
                &app,
                &t,
                "help",
                json!({"query": q.question, "mode": mode, "top_k": 3}),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let found = titles(&r);
            if !found.contains(&q.expect) {
                misses.push(format!("{mode}: {:?} gave {found:?}", q.question));
            }
        }
    }
    assert!(misses.is_empty(), "missed:\n{}", misses.join("\n"));

    // A vector the caller computed with the collection's model finds the same chunks.
    let model = faas_runtime::shared::embed::LocalEmbedder::of_process(&app.state).unwrap();
    let q = &corpus.questions[4];
    let v = model
        .embed_texts(vec![q.question.clone()])
        .await
        .unwrap()
        .vectors
        .remove(0);
    let by_text = query(
        &app,
        &t,
        "help",
        json!({"query": q.question, "mode": "vector"}),
    )
    .await;
    let by_vector = query(
        &app,
        &t,
        "help",
        json!({"query": q.question, "mode": "vector", "vector": v}),
    )
    .await;
    assert_eq!(by_vector.status, 200, "{}", by_vector.body);
    assert_eq!(titles(&by_vector), titles(&by_text));

    // Keyword search finds literal terms, and ranks by them.
    let r = query(
        &app,
        &t,
        "help",
        json!({"query": "SAML metadata XML", "mode": "keyword"}),
    )
    .await;
    assert_eq!(titles(&r)[0], "Single sign-on with SAML");
    assert!(r.body["hits"][0]["keyword_rank"] == 1 && r.body["hits"][0]["vector_rank"].is_null());
    let r = query(
        &app,
        &t,
        "help",
        json!({"query": "zyxwvut", "mode": "keyword"}),
    )
    .await;
    assert_eq!(r.body["hits"], json!([]), "no word, no hit");
    // Hybrid hits carry the ranks they were fused from, and the heading path.
    let r = query(
        &app,
        &t,
        "help",
        json!({"query": "HMAC signature on deliveries", "top_k": 1}),
    )
    .await;
    let hit = &r.body["hits"][0];
    assert_eq!(hit["title"], "Webhooks");
    assert_eq!(hit["heading"], "Integrations > Webhooks");
    assert!(
        hit["vector_rank"].is_i64() && hit["keyword_rank"].is_i64(),
        "{hit}"
    );
}

#[sqlx::test]
async fn filtered_queries_keep_their_recall(pool: sqlx::PgPool) {
    let app = rag(pool).await;
    let t = unique("rf");
    create(&app, &t, json!({"name": "notes"})).await;
    // 200 documents in 20 groups: a filter keeps one in twenty.
    for i in 0..200 {
        let text = format!(
            "Note {i}: the shipment of crate {i} left warehouse {} on day {}.",
            i % 7,
            i % 30
        );
        let r = add(
            &app,
            &t,
            "notes",
            json!({"text": text, "metadata": {"group": i % 20, "kind": "note"}}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    for mode in ["vector", "hybrid"] {
        let r = query(&app, &t, "notes", json!({"query": "when did the crate leave the warehouse", "mode": mode, "top_k": 10, "filter": {"group": 3}})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let hits = r.body["hits"].as_array().unwrap();
        assert_eq!(
            hits.len(),
            10,
            "{mode}: all ten documents of the group are found"
        );
        assert!(
            hits.iter().all(|h| h["metadata"]["group"] == 3),
            "{mode}: {hits:?}"
        );
    }
    let r = query(
        &app,
        &t,
        "notes",
        json!({"query": "crate", "filter": {"group": 3, "kind": "memo"}}),
    )
    .await;
    assert_eq!(r.body["hits"], json!([]), "every filter value must match");
}

#[sqlx::test]
async fn row_level_security_hides_other_tenants_rows(pool: sqlx::PgPool) {
    let app = rag(pool).await;
    let (a, b) = (unique("ra"), unique("rb"));
    for t in [&a, &b] {
        create(&app, t, json!({"name": "kb"})).await;
        let r = add(
            &app,
            t,
            "kb",
            json!({"text": format!("secret plans of {t}")}),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let db = app.state.db().unwrap();
    let count = |tenant: Option<String>| async move {
        let mut tx = db.begin().await.unwrap();
        if let Some(t) = tenant {
            sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
                .bind(t)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        // No tenant named in the query: the policy alone decides.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rag_chunks")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        n
    };
    assert_eq!(count(None).await, 0);
    assert_eq!(count(Some(a.clone())).await, 1);
    assert_eq!(count(Some(b.clone())).await, 1);
    // Writing another tenant's row is refused too.
    let mut tx = faas_runtime::platform::tenant_transaction(db, &a)
        .await
        .unwrap();
    let e = sqlx::query("INSERT INTO rag_collections (tenant_id, id, name, embedding_model, dimensions, chunk_tokens, chunk_overlap) VALUES ($1, gen_random_uuid(), 'x', 'm', 384, 10, 0)")
        .bind(&b)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("row-level security"), "{e}");
    // Through the API, a query of b's collection by a finds only a's text.
    let r = query(&app, &a, "kb", json!({"query": "secret plans"})).await;
    let texts: Vec<_> = r.body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec![format!("secret plans of {a}")]);
}

#[sqlx::test]
async fn bad_input_is_refused_with_a_reason(pool: sqlx::PgPool) {
    let app = rag(pool).await;
    let t = unique("rq");
    create(&app, &t, json!({"name": "kb"})).await;
    for (body, status, says) in [
        (json!({"text": ""}), 422, "text"),
        (json!({"text": "   \n"}), 422, "text"),
        (
            json!({"text": "# Only\n## Headings\n"}),
            422,
            "nothing to index",
        ),
        (
            json!({"text": "x", "metadata": {"nested": {"a": 1}}}),
            422,
            "metadata.nested",
        ),
        (
            json!({"text": "x", "metadata": {"list": [1]}}),
            422,
            "metadata.list",
        ),
        (
            json!({"text": "x", "metadata": {"long": "y".repeat(1025)}}),
            422,
            "metadata.long",
        ),
        (
            json!({"text": "x", "metadata": (0..33).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            422,
            "32 keys",
        ),
        (json!({"text": "x", "title": "t".repeat(501)}), 422, "title"),
        (json!({"text": 5}), 422, "text"),
        (json!({"text": "x", "extra": 1}), 422, "extra"),
        (json!(["text"]), 422, ""),
    ] {
        let r = add(&app, &t, "kb", body.clone()).await;
        r.assert_problem(status);
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
    }
    for (body, says) in [
        (json!({"query": ""}), "query"),
        (json!({"query": "q".repeat(2001)}), "query"),
        (json!({"query": "q", "top_k": 0}), "top_k"),
        (json!({"query": "q", "top_k": 51}), "top_k"),
        (json!({"query": "q", "top_k": -1}), "top_k"),
        (json!({"query": "q", "mode": "fuzzy"}), "mode"),
        (json!({"query": "q", "filter": {"a": {"b": 1}}}), "filter.a"),
        (json!({"query": "q", "filter": "a=1"}), "filter"),
        (json!({"query": "q", "vector": [0.5, 0.5]}), "384"),
        (json!({"query": "q", "vector": vec![0.0; 384]}), "zero"),
        (json!({"query": "q", "vector": vec![1e40; 384]}), "finite"),
        (
            json!({"query": "q", "mode": "keyword", "vector": vec![0.1; 384]}),
            "keyword",
        ),
        (json!({"query": "q", "vector": "fast"}), "vector"),
    ] {
        let r = query(&app, &t, "kb", body.clone()).await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
    }
    // Unknown collections and documents, bad ids, cursors and limits.
    query(&app, &t, "nope", json!({"query": "q"}))
        .await
        .assert_problem(404);
    add(&app, &t, "nope", json!({"text": "x"}))
        .await
        .assert_problem(404);
    for (uri, status) in [
        ("/v1/collections/kb/documents/not-a-uuid", 400),
        (
            "/v1/collections/kb/documents/0190a6f2-7b7e-7c3a-9f00-000000000000",
            404,
        ),
        ("/v1/collections/kb/documents?cursor=garbage", 400),
        ("/v1/collections/kb/documents?limit=0", 400),
        ("/v1/collections/kb/documents?limit=101", 400),
        ("/v1/collections/kb/documents?limit=ten", 400),
        ("/v1/collections/Bad%20Name", 422),
    ] {
        let r = call(&app.router, "GET", uri, Some(&user(&t)), None).await;
        r.assert_problem(status);
    }
    // Without a token nothing is served.
    let r = call(&app.router, "GET", "/v1/collections", None, None).await;
    r.assert_problem(401);
    // Answers need a model and the gateway.
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/kb/answer",
        Some(&user(&t)),
        Some(json!({"question": "q"})),
    )
    .await;
    r.assert_problem(422);
    assert!(
        r.body["detail"].as_str().unwrap().contains("model"),
        "{}",
        r.body
    );
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/kb/answer",
        Some(&user(&t)),
        Some(json!({"question": "q", "model": "m"})),
    )
    .await;
    r.assert_problem(503);
    for (body, says) in [
        (json!({"question": "", "model": "m"}), "question"),
        (
            json!({"question": "q", "model": "m", "max_context_tokens": 0}),
            "max_context_tokens",
        ),
        (
            json!({"question": "q", "model": "m", "max_tokens": 32001}),
            "max_tokens",
        ),
        (
            json!({"question": "q", "model": "m", "temperature": 3.0}),
            "temperature",
        ),
        (json!({"question": "q", "model": ""}), "model"),
    ] {
        let r = call(
            &app.router,
            "POST",
            "/v1/collections/kb/answer",
            Some(&user(&t)),
            Some(body.clone()),
        )
        .await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
    }
}

/// rag beside a real gateway whose provider for `tenant` is the local OpenAI-speaking
/// server.
async fn rag_with_gateway(pool: sqlx::PgPool, tenant: &str) -> (TestApp, mock::MockServer) {
    let upstream = mock::start().await;
    let gateway = app(Some(pool.clone()), &[Component::Gateway]).await;
    add_provider(
        &gateway,
        tenant,
        json!({"name": "up", "kind": "openai", "base_url": upstream.openai_url(), "models": ["chat-model"]}),
    )
    .await;
    let url = serve_tcp(&gateway.router).await;
    let app = app_with(
        Some(pool),
        &[Component::Rag],
        config_with(&[("FAAS_GATEWAY_URL", &url)]),
    )
    .await;
    (app, upstream)
}

#[sqlx::test]
async fn answers_cite_the_sources_they_were_given(pool: sqlx::PgPool) {
    let t = unique("rn");
    let (app, upstream) = rag_with_gateway(pool, &t).await;
    create(&app, &t, json!({"name": "help"})).await;
    for d in corpus().documents.iter().take(6) {
        add(&app, &t, "help", json!({"text": d.text, "title": d.title})).await;
    }
    let ask = json!({"question": "How long is a password reset link valid?", "model": "chat-model", "top_k": 3});
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/help/answer",
        Some(&user(&t)),
        Some(ask.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["answer"],
        "echo: How long is a password reset link valid?"
    );
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 5})
    );
    let citations = r.body["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 3);
    assert_eq!(citations[0]["n"], 1);
    assert_eq!(citations[0]["title"], "Resetting your password");
    assert_eq!(
        citations[0]["heading"],
        "Account access > Resetting your password"
    );
    // The model was given the numbered sources, best first.
    let seen = upstream.seen();
    let system = seen.last().unwrap().body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("[1] Resetting your password — Account access > Resetting your password"),
        "{system}"
    );
    assert!(system.contains("[3] "), "{system}");
    assert!(system.contains("valid for 30 minutes"), "{system}");

    // A small budget gives fewer sources, and the answer says which.
    let mut small = ask.clone();
    small["max_context_tokens"] = json!(90);
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/help/answer",
        Some(&user(&t)),
        Some(small),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let n = r.body["citations"].as_array().unwrap().len();
    assert!((1..3).contains(&n), "{}", r.body);

    // Streamed: the citations, the pieces, then the usage.
    let mut stream = ask.clone();
    stream["stream"] = json!(true);
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/help/answer",
        Some(&user(&t)),
        Some(stream),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type().starts_with("text/event-stream"),
        "{}",
        r.content_type()
    );
    let text = String::from_utf8(r.raw.to_vec()).unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            (name.to_string(), serde_json::from_str(data).unwrap())
        })
        .collect();
    let names: Vec<_> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        vec!["citations", "delta", "delta", "delta", "done"],
        "{text}"
    );
    assert_eq!(events[0].1.as_array().unwrap().len(), 3);
    let answer: String = events[1..4]
        .iter()
        .map(|e| e.1["text"].as_str().unwrap())
        .collect();
    assert_eq!(answer, "Hello from mock");
    assert_eq!(
        events[4].1["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 3})
    );

    // A model the tenant has no provider for is the gateway's refusal, not a 500.
    let mut unknown = ask.clone();
    unknown["model"] = json!("no-such-model");
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/help/answer",
        Some(&user(&t)),
        Some(unknown),
    )
    .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
    assert_eq!(r.content_type(), "application/problem+json");
    // Another tenant's token reaches the gateway as that tenant: it has no provider.
    let other = unique("ro");
    create(&app, &other, json!({"name": "help"})).await;
    let r = call(
        &app.router,
        "POST",
        "/v1/collections/help/answer",
        Some(&user(&other)),
        Some(ask),
    )
    .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
}
