//! The data-ingestion component against the real Postgres (pgvector), NATS JetStream and
//! the in-process embedding model: uploads, refusals, jobs per tenant, the worker, and a
//! crash of the real binary in the middle of its jobs.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::binary::Binary;
use common::*;
use faas_runtime::Component;
use faas_runtime::platform::config::Config;
use futures::StreamExt;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingest/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

fn config_with(extra: &[(&str, &str)]) -> Config {
    require_env("FAAS_EMBEDDING_MODEL_DIR");
    with_settings(test_config(), extra)
}

async fn ingest(pool: sqlx::PgPool, extra: &[(&str, &str)]) -> TestApp {
    app_with(
        Some(pool),
        &[Component::Rag, Component::DataIngestion],
        config_with(extra),
    )
    .await
}

async fn create_collection(app: &TestApp, tenant: &str, name: &str) {
    let r = call(
        &app.router,
        "POST",
        "/v1/collections",
        Some(&admin(tenant)),
        Some(json!({"name": name, "chunking": {"tokens": 48, "overlap": 8}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// One part of a form: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

fn form(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----faas-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, filename, ctype, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(c) = ctype {
            body.extend_from_slice(format!("Content-Type: {c}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(app: &TestApp, tenant: &str, parts: &[Part<'_>]) -> Resp {
    let (ctype, body) = form(parts);
    let req = Request::builder()
        .method("POST")
        .uri("/v1/ingestion/jobs")
        .header("authorization", format!("Bearer {}", user(tenant)))
        .header("content-type", ctype)
        .body(Body::from(body))
        .unwrap();
    send(&app.router, req).await
}

/// Uploads one file to `collection` with a form.
async fn upload(
    app: &TestApp,
    tenant: &str,
    collection: &str,
    filename: &str,
    ctype: Option<&str>,
    bytes: &[u8],
) -> Resp {
    post_form(
        app,
        tenant,
        &[
            ("collection", None, None, collection.as_bytes()),
            ("file", Some(filename), ctype, bytes),
        ],
    )
    .await
}

async fn post_raw(
    app: &TestApp,
    tenant: &str,
    collection: &str,
    query: &str,
    ctype: &str,
    bytes: Vec<u8>,
) -> Resp {
    let req = Request::builder()
        .method("POST")
        .uri(format!(
            "/v1/ingestion/collections/{collection}/files{query}"
        ))
        .header("authorization", format!("Bearer {}", user(tenant)))
        .header("content-type", ctype)
        .body(Body::from(bytes))
        .unwrap();
    send(&app.router, req).await
}

async fn job(app: &TestApp, tenant: &str, id: &str) -> Value {
    let r = call(
        &app.router,
        "GET",
        &format!("/v1/ingestion/jobs/{id}"),
        Some(&user(tenant)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Waits until every job has ended; their final rows.
async fn settle(app: &TestApp, tenant: &str, ids: &[String]) -> Vec<Value> {
    for _ in 0..600 {
        let mut jobs = Vec::new();
        for id in ids {
            jobs.push(job(app, tenant, id).await);
        }
        if jobs.iter().all(|j| {
            matches!(
                j["status"].as_str(),
                Some("indexed" | "failed" | "cancelled")
            )
        }) {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the jobs did not end within a minute");
}

fn id_of(r: &Resp) -> String {
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job: {}", r.body))
        .to_string()
}

/// The stored text and chunk count of a document, and the chunk rows it really has.
async fn document(db: &sqlx::PgPool, tenant: &str, id: &str) -> (String, i32, i64) {
    let id: uuid::Uuid = id.parse().unwrap();
    let mut tx = faas_runtime::platform::tenant_transaction(db, tenant)
        .await
        .unwrap();
    let (text, chunks): (String, i32) = sqlx::query_as(
        "SELECT content, chunks FROM rag_documents WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rag_chunks WHERE tenant_id = $1 AND document_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    (text, chunks, rows)
}

async fn count(db: &sqlx::PgPool, tenant: Option<&str>, table: &str) -> i64 {
    let mut tx = db.begin().await.unwrap();
    if let Some(t) = tenant {
        sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    // No tenant named in the query: the policy alone decides.
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut *tx)
        .await
        .unwrap()
}

const HTML: &[u8] = br#"<!doctype html><html><head><title>t</title><style>p{}</style></head>
<body><h1>Release notes</h1><script>var tracking = "do not index";</script>
<p>The new release speeds up search.</p><noscript>enable scripts</noscript></body></html>"#;

/// A file to upload: its name and declared type, its bytes, and what its text must and
/// must not hold.
type Sample = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    &'static [&'static str],
    &'static [&'static str],
);

#[sqlx::test]
async fn every_format_is_parsed_and_indexed(pool: sqlx::PgPool) {
    let app = ingest(pool, &[]).await;
    let t = unique("di");
    create_collection(&app, &t, "kb").await;
    let nats = async_nats::connect(require_env("NATS_URL")).await.unwrap();
    let subject = format!("{}.events.document.ingested", app.state.config.nats_prefix);
    let mut events = nats.subscribe(subject).await.unwrap();

    let files: Vec<Sample> = vec![
        (
            "notes.txt",
            Some("text/plain"),
            b"Plain words about ingestion.".to_vec(),
            &["Plain words"],
            &[],
        ),
        (
            "guide.md",
            None,
            b"# Guide\n\n## Setup\nInstall it.\n".to_vec(),
            &["# Guide", "## Setup"],
            &[],
        ),
        (
            "page.html",
            Some("text/html"),
            HTML.to_vec(),
            &["# Release notes", "speeds up search"],
            &["tracking", "enable scripts", "p{}"],
        ),
        (
            "people.csv",
            None,
            b"name,role\nAda,engineer\nGrace,admiral\n".to_vec(),
            &["name: Ada\nrole: engineer", "name: Grace"],
            &[],
        ),
        (
            "data.json",
            Some("application/json"),
            br#"{"product": {"name": "faas", "tags": ["rag"]}}"#.to_vec(),
            &["product.name: faas", "product.tags[0]: rag"],
            &[],
        ),
        (
            "guide.pdf",
            Some("application/octet-stream"),
            fixture("sample.pdf"),
            &["Ingestion guide", "stored in the collection"],
            &[],
        ),
        (
            "guide.docx",
            None,
            fixture("sample.docx"),
            &["# Ingestion guide", "# Indexing"],
            &[],
        ),
    ];
    let mut ids = Vec::new();
    for (name, ctype, bytes, _, _) in &files {
        let r = upload(&app, &t, "kb", name, *ctype, bytes).await;
        assert_eq!(r.status, 202, "{name}: {}", r.body);
        assert_eq!(r.body["status"], "queued");
        assert_eq!(
            r.headers["location"].to_str().unwrap(),
            format!("/v1/ingestion/jobs/{}", id_of(&r))
        );
        ids.push(id_of(&r));
    }
    // And a raw body, its type from Content-Type.
    let r = post_raw(
        &app,
        &t,
        "kb",
        "?filename=raw.md&title=Raw%20notes",
        "text/markdown",
        b"# Raw\nUploaded as the body itself.".to_vec(),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["content_type"], "text/markdown");
    assert_eq!(r.body["title"], "Raw notes");
    ids.push(id_of(&r));

    app.start_background().await;
    let jobs = settle(&app, &t, &ids).await;
    let db = app.state.db().unwrap().clone();
    let expected_types = [
        "text/plain",
        "text/markdown",
        "text/html",
        "text/csv",
        "application/json",
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ];
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j["status"], "indexed", "{j}");
        assert_eq!(j["attempts"], 1, "{j}");
        let (text, chunks, rows) = document(&db, &t, j["document_id"].as_str().unwrap()).await;
        assert!(
            chunks >= 1 && i64::from(chunks) == rows,
            "{j}: {chunks} chunks, {rows} rows"
        );
        assert_eq!(j["chunks"], chunks);
        if let Some((name, _, _, has, lacks)) = files.get(i) {
            assert_eq!(j["content_type"], expected_types[i], "{name}");
            for part in *has {
                assert!(text.contains(part), "{name}: {part:?} not in {text:?}");
            }
            for part in *lacks {
                assert!(!text.contains(part), "{name}: {part:?} in {text:?}");
            }
        }
    }
    // The file's bytes are let go of once the job ends.
    assert_eq!(count(&db, Some(&t), "ingestion_files").await, 0);

    // One DocumentIngested event per job, under the job's id.
    let mut seen = Vec::new();
    while seen.len() < ids.len() {
        let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event per job")
            .unwrap();
        let env = <faas_runtime::platform::events::Envelope as prost::Message>::decode(
            msg.payload.as_ref(),
        )
        .unwrap();
        assert_eq!(env.event_type, "document.ingested.v1");
        assert_eq!(env.tenant_id, t);
        let ev: faas_model::events::DocumentIngested = env.json().unwrap();
        ev.check().unwrap();
        assert_eq!(env.id, ev.job_id.to_string());
        assert!(!ev.existing);
        seen.push(ev.job_id.to_string());
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);
}

#[sqlx::test]
async fn refusals_are_problems_that_say_why(pool: sqlx::PgPool) {
    let app = ingest(pool, &[("FAAS_INGEST_MAX_FILE_BYTES", "4096")]).await;
    let t = unique("dr");
    create_collection(&app, &t, "kb").await;

    // Too large, as a form part and as a raw body: 413 naming the limit.
    let big = vec![b'a'; 5000];
    let r = upload(&app, &t, "kb", "big.txt", None, &big).await;
    r.assert_problem(413);
    assert!(
        r.body["detail"].as_str().unwrap().contains("4096"),
        "{}",
        r.body
    );
    let r = post_raw(&app, &t, "kb", "", "text/plain", big.clone()).await;
    r.assert_problem(413);
    assert!(
        r.body["detail"].as_str().unwrap().contains("4096"),
        "{}",
        r.body
    );

    // Types this service does not read: 415 naming the type.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    for (name, ctype, bytes, named) in [
        ("a.png", Some("image/png"), png.clone(), "image/png"),
        (
            "a.svg",
            Some("image/svg+xml"),
            b"<svg/>".to_vec(),
            "image/svg+xml",
        ),
        (
            "a.zip",
            None,
            b"PK\x03\x04 just a zip".to_vec(),
            "application/zip",
        ),
        (
            "a.bin",
            None,
            vec![0xff, 0xfe, 0x00, 0xd8, 0xc3],
            "application/octet-stream",
        ),
    ] {
        let r = upload(&app, &t, "kb", name, ctype, &bytes).await;
        r.assert_problem(415);
        assert!(
            r.body["detail"].as_str().unwrap().contains(named),
            "{name}: {}",
            r.body
        );
    }
    let r = call(
        &app.router,
        "POST",
        "/v1/ingestion/jobs",
        Some(&user(&t)),
        Some(json!({"collection": "kb"})),
    )
    .await;
    r.assert_problem(415);

    // Broken files and forms: 422 with the parser's reason.
    let app_big = &app;
    let cases: Vec<(&str, Vec<Part<'_>>, &str)> = vec![
        (
            "empty",
            vec![
                ("collection", None, None, b"kb"),
                ("file", Some("e.txt"), None, b""),
            ],
            "empty",
        ),
        (
            "no file",
            vec![("collection", None, None, b"kb")],
            "no file part",
        ),
        (
            "no collection",
            vec![("file", Some("a.txt"), None, b"x")],
            "names no collection",
        ),
        (
            "bad collection",
            vec![
                ("collection", None, None, b"Bad Name"),
                ("file", Some("a.txt"), None, b"x"),
            ],
            "collection: 1 to 63",
        ),
        (
            "metadata not an object",
            vec![
                ("collection", None, None, b"kb"),
                ("metadata", None, None, b"[1]"),
                ("file", Some("a.txt"), None, b"x"),
            ],
            "metadata: must be a JSON object",
        ),
        (
            "unknown part",
            vec![
                ("collection", None, None, b"kb"),
                ("owner", None, None, b"x"),
                ("file", Some("a.txt"), None, b"x"),
            ],
            "\"owner\"",
        ),
        (
            "twice",
            vec![
                ("collection", None, None, b"kb"),
                ("collection", None, None, b"kb"),
            ],
            "more than once",
        ),
        (
            "not utf-8 declared text",
            vec![
                ("collection", None, None, b"kb"),
                ("file", Some("a.txt"), Some("text/plain"), b"ok \xc3\x28"),
            ],
            "not UTF-8",
        ),
        (
            "bad json",
            vec![
                ("collection", None, None, b"kb"),
                ("file", Some("a.json"), None, b"{\"a\": "),
            ],
            "JSON could not be read",
        ),
        (
            "declared pdf",
            vec![
                ("collection", None, None, b"kb"),
                ("file", Some("a.pdf"), None, b"not a pdf"),
            ],
            "does not start with %PDF-",
        ),
    ];
    for (what, parts, says) in cases {
        let r = post_form(app_big, &t, &parts).await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{what}: {}",
            r.body
        );
    }
    let roomy = ingest(app.state.db().unwrap().clone(), &[]).await;
    for (name, says) in [
        ("truncated.pdf", "truncated"),
        ("bomb.docx", "more than the limit"),
    ] {
        let r = upload(&roomy, &t, "kb", name, None, &fixture(name)).await;
        r.assert_problem(422);
        assert!(
            r.body["detail"].as_str().unwrap().contains(says),
            "{name}: {}",
            r.body
        );
    }

    // A collection the tenant does not have: 404, nothing recorded.
    let r = upload(&app, &t, "nope", "a.txt", None, b"words").await;
    r.assert_problem(404);
    assert_eq!(
        count(app.state.db().unwrap(), Some(&t), "ingestion_jobs").await,
        0
    );

    // Queries and paths.
    for (uri, status) in [
        ("/v1/ingestion/jobs?limit=0", 400),
        ("/v1/ingestion/jobs?limit=201", 400),
        ("/v1/ingestion/jobs?status=done", 400),
        ("/v1/ingestion/jobs?cursor=garbage", 400),
        ("/v1/ingestion/jobs?colour=red", 400),
        ("/v1/ingestion/jobs/not-a-uuid", 400),
        (
            "/v1/ingestion/jobs/0190a6f2-7b7e-7c3a-9f00-000000000000",
            404,
        ),
    ] {
        let r = call(&app.router, "GET", uri, Some(&user(&t)), None).await;
        r.assert_problem(status);
    }
    let r = call(&app.router, "GET", "/v1/ingestion/jobs", None, None).await;
    r.assert_problem(401);
}

#[sqlx::test]
async fn the_same_file_twice_is_one_job_and_one_document(pool: sqlx::PgPool) {
    let app = ingest(pool, &[]).await;
    let t = unique("dd");
    create_collection(&app, &t, "kb").await;
    create_collection(&app, &t, "other").await;
    let text = b"# Handbook\n\nThe same file, uploaded again and again.".to_vec();
    let first = upload(&app, &t, "kb", "h.md", None, &text).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = upload(&app, &t, "kb", "copy.md", None, &text).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(id_of(&again), id_of(&first));
    let raw = post_raw(&app, &t, "kb", "", "text/markdown", text.clone()).await;
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(id_of(&raw), id_of(&first));
    // Another collection is another job.
    let elsewhere = upload(&app, &t, "other", "h.md", None, &text).await;
    assert_eq!(elsewhere.status, 202);
    assert_ne!(id_of(&elsewhere), id_of(&first));

    app.start_background().await;
    let jobs = settle(&app, &t, &[id_of(&first), id_of(&elsewhere)]).await;
    assert!(jobs.iter().all(|j| j["status"] == "indexed"), "{jobs:?}");
    let after = upload(&app, &t, "kb", "h.md", None, &text).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["status"], "indexed");
    assert_eq!(after.body["document_id"], jobs[0]["document_id"]);
    let db = app.state.db().unwrap();
    assert_eq!(count(db, Some(&t), "ingestion_jobs").await, 2);
    assert_eq!(count(db, Some(&t), "rag_documents").await, 2);
    // A checksum names the bytes.
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&text))
    };
    assert_eq!(jobs[0]["checksum"], sha);
}

#[sqlx::test]
async fn tenants_see_only_their_jobs_and_row_level_security_holds(pool: sqlx::PgPool) {
    let app = ingest(pool, &[]).await;
    let (a, b) = (unique("da"), unique("db"));
    create_collection(&app, &a, "kb").await;
    create_collection(&app, &b, "kb").await;
    let r = upload(&app, &a, "kb", "a.txt", None, b"the plans of a").await;
    assert_eq!(r.status, 202);
    let id = id_of(&r);
    // The same bytes from b are b's own job.
    let rb = upload(&app, &b, "kb", "a.txt", None, b"the plans of a").await;
    assert_eq!(rb.status, 202);
    assert_ne!(id_of(&rb), id);

    for (method, uri) in [
        ("GET", format!("/v1/ingestion/jobs/{id}")),
        ("POST", format!("/v1/ingestion/jobs/{id}/cancel")),
    ] {
        let r = call(&app.router, method, &uri, Some(&user(&b)), None).await;
        r.assert_problem(404);
    }
    let r = call(
        &app.router,
        "GET",
        "/v1/ingestion/jobs",
        Some(&user(&b)),
        None,
    )
    .await;
    let listed: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![id_of(&rb)]);
    assert_eq!(job(&app, &a, &id).await["status"], "queued");

    let db = app.state.db().unwrap();
    for table in ["ingestion_jobs", "ingestion_files"] {
        assert_eq!(count(db, None, table).await, 0, "{table} without a tenant");
        assert_eq!(count(db, Some(&a), table).await, 1, "{table} of a");
        assert_eq!(count(db, Some(&b), table).await, 1, "{table} of b");
    }
    // Writing another tenant's row is refused, and so is changing one.
    let mut tx = faas_runtime::platform::tenant_transaction(db, &a)
        .await
        .unwrap();
    let e = sqlx::query(
        "INSERT INTO ingestion_jobs (tenant_id, id, collection, content_type, size_bytes, checksum) \
         VALUES ($1, gen_random_uuid(), 'kb', 'text/plain', 1, repeat('a', 64))",
    )
    .bind(&b)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(e.to_string().contains("row-level security"), "{e}");
    drop(tx);
    let mut tx = faas_runtime::platform::tenant_transaction(db, &a)
        .await
        .unwrap();
    let done = sqlx::query("UPDATE ingestion_jobs SET status = 'cancelled'")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1, "only a's own job is reached");
}

#[sqlx::test]
async fn a_cancelled_job_is_never_indexed(pool: sqlx::PgPool) {
    let app = ingest(pool, &[]).await;
    let t = unique("dc");
    create_collection(&app, &t, "kb").await;
    let r = upload(&app, &t, "kb", "a.txt", None, b"words to forget").await;
    let id = id_of(&r);
    let cancel = format!("/v1/ingestion/jobs/{id}/cancel");
    let r = call(&app.router, "POST", &cancel, Some(&user(&t)), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert!(r.body["finished_at"].is_string());
    let r = call(&app.router, "POST", &cancel, Some(&user(&t)), None).await;
    r.assert_problem(409);
    assert!(r.body["detail"].as_str().unwrap().contains("cancelled"));

    app.start_background().await;
    // A job indexed after it is cancelled would show up here within the wait.
    let other = upload(&app, &t, "kb", "b.txt", None, b"words to keep").await;
    let jobs = settle(&app, &t, &[id.clone(), id_of(&other)]).await;
    assert_eq!(jobs[0]["status"], "cancelled");
    assert_eq!(jobs[0]["document_id"], Value::Null);
    assert_eq!(jobs[1]["status"], "indexed");
    let db = app.state.db().unwrap();
    assert_eq!(count(db, Some(&t), "rag_documents").await, 1);
    assert_eq!(count(db, Some(&t), "ingestion_files").await, 0);

    // The same file uploaded again after its job was cancelled is queued again.
    let r = upload(&app, &t, "kb", "a.txt", None, b"words to forget").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(id_of(&r), id);
    let jobs = settle(&app, &t, &[id]).await;
    assert_eq!(jobs[0]["status"], "indexed");

    let r = call(
        &app.router,
        "GET",
        "/v1/ingestion/jobs?status=indexed&limit=1",
        Some(&user(&t)),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let cursor = r.body["next_cursor"].as_str().unwrap();
    let r = call(
        &app.router,
        "GET",
        &format!("/v1/ingestion/jobs?status=indexed&limit=1&cursor={cursor}"),
        Some(&user(&t)),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["next_cursor"], Value::Null);
}

#[sqlx::test]
async fn a_corrupt_file_fails_its_job_with_the_reason(pool: sqlx::PgPool) {
    let app = ingest(pool, &[]).await;
    let t = unique("df");
    create_collection(&app, &t, "kb").await;
    // It has a PDF's header and end marker, so it is taken, and found corrupt when parsed.
    let r = upload(&app, &t, "kb", "bad.pdf", None, &fixture("corrupt.pdf")).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // Headings and nothing under them: text, but nothing the collection can index.
    let bare = upload(&app, &t, "kb", "bare.md", None, b"# Title\n## Part\n").await;
    assert_eq!(bare.status, 202, "{}", bare.body);
    app.start_background().await;
    let jobs = settle(&app, &t, &[id_of(&r), id_of(&bare)]).await;
    assert_eq!(jobs[1]["status"], "failed", "{}", jobs[1]);
    assert!(
        jobs[1]["reason"]
            .as_str()
            .unwrap()
            .contains("nothing to index"),
        "{}",
        jobs[1]
    );
    assert_eq!(jobs[0]["status"], "failed", "{}", jobs[0]);
    let reason = jobs[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("the PDF could not be read"), "{reason}");
    assert_eq!(jobs[0]["document_id"], Value::Null);
    let r = call(
        &app.router,
        "GET",
        "/v1/ingestion/jobs?status=failed",
        Some(&user(&t)),
        None,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["items"][1]["reason"], reason);
}

/// `faas-runtime serve --service data-ingestion,rag`, with short leases.
fn start(nats_prefix: &str) -> Binary {
    Binary::start(
        "data-ingestion,rag",
        &[
            ("DATABASE_URL", require_env("DATABASE_URL")),
            ("NATS_URL", require_env("NATS_URL")),
            (
                "FAAS_EMBEDDING_MODEL_DIR",
                require_env("FAAS_EMBEDDING_MODEL_DIR"),
            ),
            ("FAAS_NATS_PREFIX", nats_prefix.to_string()),
            ("FAAS_INGEST_LEASE_SECS", "4".into()),
        ],
    )
}

/// A text of `paragraphs` paragraphs, distinct for `n`.
fn long_text(n: usize, paragraphs: usize) -> String {
    let mut out = format!("# Report {n}\n\n");
    for p in 0..paragraphs {
        out.push_str(&format!(
            "## Section {p}\n\nReport {n}, section {p}: the ingestion worker claims the job, \
             parses the file, cuts the text into chunks, embeds every chunk and stores the \
             document with its vectors in one transaction. Crash safety means nothing is lost \
             and nothing is stored twice when the process dies at any point of it.\n\n"
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_kill_9_and_are_indexed_exactly_once() {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let prefix = unique("crash");
    let tenant = unique("dk");
    let auth = format!("Bearer {}", user(&tenant));
    let mut rt = start(&prefix);
    rt.wait_ready(&client).await;
    let r = client
        .post(format!("{}/v1/collections", rt.base))
        .header("authorization", format!("Bearer {}", admin(&tenant)))
        .json(&json!({"name": "kb", "chunking": {"tokens": 48, "overlap": 8}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let texts: Vec<String> = (0..8).map(|n| long_text(n, 40)).collect();
    let mut ids = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        let r = client
            .post(format!(
                "{}/v1/ingestion/collections/kb/files?filename=report-{n}.md",
                rt.base
            ))
            .header("authorization", &auth)
            .header("content-type", "text/markdown")
            .body(text.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let statuses = |base: String| {
        let client = client.clone();
        let auth = auth.clone();
        let ids = ids.clone();
        async move {
            let mut out = Vec::new();
            for id in &ids {
                let r = client
                    .get(format!("{base}/v1/ingestion/jobs/{id}"))
                    .header("authorization", &auth)
                    .send()
                    .await
                    .unwrap();
                let j: Value = r.json().await.unwrap();
                out.push(j);
            }
            out
        }
    };
    // Kill it once work is under way and before it is done.
    let mut before = Vec::new();
    for _ in 0..600 {
        before = statuses(rt.base.clone()).await;
        if before.iter().any(|j| {
            matches!(
                j["status"].as_str(),
                Some("parsing" | "chunking" | "embedding")
            )
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.kill();
    let unfinished = before.iter().filter(|j| j["status"] != "indexed").count();
    assert!(
        unfinished > 0,
        "every job ended before the kill; the test proves nothing: {before:?}"
    );

    let mut rt = start(&prefix);
    rt.wait_ready(&client).await;
    let mut after = Vec::new();
    for _ in 0..1200 {
        after = statuses(rt.base.clone()).await;
        if after
            .iter()
            .all(|j| j["status"] == "indexed" || j["status"] == "failed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after.iter().all(|j| j["status"] == "indexed"),
        "jobs after the restart: {after:?}\n{}",
        rt.logs()
    );
    assert!(
        after.iter().any(|j| j["attempts"].as_i64().unwrap() > 1),
        "no job was taken over: {after:?}"
    );

    // Exactly the chunks the chunker makes of each text, once.
    let pool = sqlx::PgPool::connect(&require_env("DATABASE_URL"))
        .await
        .unwrap();
    let state = build_state(Some(pool.clone()), &[Component::Rag], config_with(&[])).await;
    let rag = faas_runtime::shared::documents::Store::from_state(&state).unwrap();
    let collection = faas_runtime::shared::documents::collection(&rag, &tenant, "kb")
        .await
        .unwrap();
    for (j, text) in after.iter().zip(&texts) {
        let expected = faas_runtime::shared::documents::chunk(&rag, &collection, text.trim())
            .await
            .unwrap()
            .len() as i64;
        let (_, chunks, rows) = document(&pool, &tenant, j["document_id"].as_str().unwrap()).await;
        assert_eq!(i64::from(chunks), expected, "{j}");
        assert_eq!(rows, expected, "{j}: chunk rows");
    }
    assert_eq!(
        count(&pool, Some(&tenant), "rag_documents").await,
        texts.len() as i64,
        "one document per job"
    );
    assert_eq!(count(&pool, Some(&tenant), "ingestion_files").await, 0);
}

#[sqlx::test]
async fn a_job_held_by_a_dead_worker_is_taken_over_once_its_lease_lapses(pool: sqlx::PgPool) {
    let app = ingest(pool, &[("FAAS_INGEST_LEASE_SECS", "2")]).await;
    let t = unique("dl");
    create_collection(&app, &t, "kb").await;
    let r = upload(
        &app,
        &t,
        "kb",
        "a.md",
        None,
        b"# Held\n\nA job a dead worker held.",
    )
    .await;
    let id: uuid::Uuid = id_of(&r).parse().unwrap();
    // A worker that claims the job and dies: its lease is never renewed.
    let db = app.state.db().unwrap();
    let lease = Duration::from_secs(2);
    let claimed =
        faas_runtime::data_ingestion::jobs::claim(db, &t, id, uuid::Uuid::now_v7(), lease, 5)
            .await
            .unwrap();
    assert!(matches!(
        claimed,
        faas_runtime::data_ingestion::jobs::Claim::Claimed(..)
    ));
    let held = job(&app, &t, &id.to_string()).await;
    assert_eq!(held["status"], "parsing");
    let started = std::time::Instant::now();
    app.start_background().await;
    let jobs = settle(&app, &t, &[id.to_string()]).await;
    assert_eq!(jobs[0]["status"], "indexed", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2, "{}", jobs[0]);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "taken before the lease lapsed"
    );
}

#[sqlx::test]
async fn a_job_recorded_but_never_sent_is_sent_by_the_sweeper(pool: sqlx::PgPool) {
    let app = ingest(pool, &[("FAAS_INGEST_OUTBOX_SECS", "0.2")]).await;
    let t = unique("do");
    create_collection(&app, &t, "kb").await;
    let db = app.state.db().unwrap().clone();
    // An upload that went through: its message was published and nothing is owed.
    let sent = upload(&app, &t, "kb", "a.md", None, b"# A\n\nPublished at once.").await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(count(&db, None, "ingestion_outbox").await, 0);
    // A process that recorded a job and died before publishing its message.
    let text = b"# B\n\nRecorded, then the process died.".to_vec();
    let (job, _) = faas_runtime::data_ingestion::jobs::record(
        &db,
        &t,
        faas_runtime::data_ingestion::jobs::NewJob {
            collection: "kb".into(),
            filename: Some("b.md".into()),
            title: None,
            content_type: "text/markdown",
            checksum: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&text))
            },
            metadata: Default::default(),
            created_by: "bob".into(),
            bytes: text.into(),
            correlation_id: "lost-upload".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(count(&db, None, "ingestion_outbox").await, 1);
    app.start_background().await;
    let jobs = settle(&app, &t, &[id_of(&sent), job.id.to_string()]).await;
    assert!(jobs.iter().all(|j| j["status"] == "indexed"), "{jobs:?}");
    assert_eq!(
        count(&db, None, "ingestion_outbox").await,
        0,
        "nothing is owed any more"
    );
    assert_eq!(count(&db, Some(&t), "rag_documents").await, 2);
}
