//! `--only-rag [--chunks N] [--queries N] [--no-ingest] [--keep-db]`: rag against Postgres
//! with pgvector, in a database of its own, with the release runtime serving `rag`.
//!
//! 1. Ingest: documents added over HTTP (chunked, embedded by the in-process model,
//!    stored), chunks per second.
//! 2. Search at scale: `--chunks` (default 100,000) chunks over ten tenants, bulk loaded
//!    with vectors near those of 2,000 embedded sentences (each chunk is a sentence's
//!    vector plus noise, its text the sentence plus filler words), so that the data has
//!    the clustered shape of real embeddings; the HNSW index is built after the load.
//!    Then, one query at a time, p50/p95 of vector, keyword and hybrid queries of one
//!    tenant through `POST /v1/collections/{name}/query` (the query's vector given, so
//!    the model is not in the loop) beside the same statement as raw SQL (its own
//!    transaction setting the tenant for row-level security and the scan settings) on
//!    one connection; and recall@10 of the tenant-filtered HNSW query against an exact
//!    scan.

use std::time::{Duration, Instant};

use faas_runtime::rag::search::{Mode, leg, statement};
use faas_runtime::shared::embed::{LocalEmbedder, LocalSettings};
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::Row;

use super::{env, pct, spawn_with, token, unique, wait_ready};

const TENANTS: usize = 10;
const BASES: usize = 2_000;
const DIMS: usize = 384;

const SUBJECTS: &[&str] = &[
    "the operator",
    "a tenant",
    "the gateway",
    "the cluster",
    "an agent",
    "the scheduler",
    "the billing team",
    "a support engineer",
    "the mobile app",
    "the database",
    "the cache",
    "a webhook",
    "the audit log",
    "an administrator",
    "the ingestion job",
    "the search index",
];
const VERBS: &[&str] = &[
    "restarts",
    "rejects",
    "retries",
    "encrypts",
    "exports",
    "throttles",
    "archives",
    "replicates",
    "validates",
    "renames",
    "schedules",
    "indexes",
    "rotates",
    "deletes",
    "summarises",
    "migrates",
];
const OBJECTS: &[&str] = &[
    "expired invoices",
    "stale sessions",
    "large uploads",
    "failed deliveries",
    "password resets",
    "nightly backups",
    "access tokens",
    "usage reports",
    "customer records",
    "TLS certificates",
    "draft documents",
    "rate limit counters",
    "shipping labels",
    "model checkpoints",
    "chat transcripts",
    "pricing tables",
];
const WHEN: &[&str] = &[
    "every night",
    "after a deploy",
    "when a quota is reached",
    "on the first of the month",
    "before a region fails over",
    "during maintenance",
    "when a user signs in",
    "after three failures",
];

fn sentence(i: usize) -> String {
    let mut r = rand::rngs::StdRng::seed_from_u64(i as u64);
    format!(
        "{} {} {} {}.",
        SUBJECTS[r.random_range(0..SUBJECTS.len())],
        VERBS[r.random_range(0..VERBS.len())],
        OBJECTS[r.random_range(0..OBJECTS.len())],
        WHEN[r.random_range(0..WHEN.len())],
    )
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(chunks: usize, queries: usize, out: &mut String) {
    let admin_url = env("DATABASE_URL");
    let db_name = unique("bench_rag_");
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("postgres");
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&admin)
        .await
        .expect("create the bench database");
    let (prefix, _) = admin_url.rsplit_once('/').expect("a database URL");
    let url = format!("{prefix}/{db_name}");
    let model_dir = env("FAAS_EMBEDDING_MODEL_DIR");
    let rt = spawn_with(
        "rag",
        &[
            ("DATABASE_URL", url.as_str()),
            ("FAAS_EMBEDDING_MODEL_DIR", model_dir.as_str()),
            ("FAAS_MAX_BODY_BYTES", "8388608"),
        ],
    );
    let client = reqwest::Client::new();
    assert!(wait_ready(&client, &rt.base).await, "rag did not start");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("bench database");

    // 1. Ingest over HTTP.
    out.push_str("### rag\n\n");
    if !super::flag("--no-ingest") {
        ingest(&client, &rt.base, out).await;
    }
    search(&client, &rt.base, &pool, &model_dir, chunks, queries, out).await;
    drop(rt);
    pool.close().await;
    if super::flag("--keep-db") {
        eprintln!("rag: kept the database {db_name}");
        return;
    }
    sqlx::query(&format!("DROP DATABASE {db_name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .ok();
}

async fn ingest(client: &reqwest::Client, base: &str, out: &mut String) {
    let tenant = unique("ingest");
    let (admin_token, user_token) = (token(&tenant, &["admin"]), token(&tenant, &[]));
    let r = client
        .post(format!("{base}/v1/collections"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "docs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let docs: Vec<String> = (0..64)
        .map(|d| {
            (0..12)
                .map(|p| {
                    format!(
                        "## Part {p}\n{} {} {} {}\n",
                        sentence(d * 100 + p),
                        sentence(d * 100 + p + 50),
                        sentence(d * 100 + p + 70),
                        sentence(d * 100 + p + 90)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let t0 = Instant::now();
    let mut indexed = 0i64;
    let mut pending = futures::stream::FuturesUnordered::new();
    for text in docs {
        let (c, base, tok) = (client.clone(), base.to_string(), user_token.clone());
        pending.push(tokio::spawn(async move {
            let r = c
                .post(format!("{base}/v1/collections/docs/documents"))
                .bearer_auth(&tok)
                .json(&json!({"text": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.unwrap()["chunks"]
                .as_i64()
                .unwrap()
        }));
        if pending.len() >= 2 {
            use futures::StreamExt;
            indexed += pending.next().await.unwrap().unwrap();
        }
    }
    {
        use futures::StreamExt;
        while let Some(n) = pending.next().await {
            indexed += n.unwrap();
        }
    }
    let took = t0.elapsed();
    out.push_str(&format!(
        "Ingest over HTTP (`POST …/documents`, 2 at a time, 64 Markdown documents of 12 sections): \
         {indexed} chunks in {:.1} s, **{:.0} chunks/s** (in-process model, chunk size 200 tokens).\n\n",
        took.as_secs_f64(),
        indexed as f64 / took.as_secs_f64()
    ));
    eprintln!("rag ingest done");
}

async fn search(
    client: &reqwest::Client,
    base: &str,
    pool: &sqlx::PgPool,
    model_dir: &str,
    chunks: usize,
    queries: usize,
    out: &mut String,
) {
    // 2. The search data set.
    let settings = LocalSettings {
        model_dir: model_dir.into(),
        workers: 1,
        queue: 4,
        limits: Default::default(),
    };
    let model = LocalEmbedder::start(&settings).expect("the model");
    let mut bases = Vec::with_capacity(BASES);
    for start in (0..BASES).step_by(200) {
        let texts: Vec<String> = (start..(start + 200).min(BASES)).map(sentence).collect();
        bases.extend(model.embed_texts(texts).await.unwrap().vectors);
    }
    eprintln!("rag: {BASES} base sentences embedded");
    let mut collections = Vec::new();
    for t in 0..TENANTS {
        let tenant = format!("bench-tenant-{t}");
        let id = uuid::Uuid::now_v7();
        let mut tx = faas_runtime::platform::tenant_transaction(pool, &tenant)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO rag_collections (tenant_id, id, name, embedding_model, dimensions, \
             chunk_tokens, chunk_overlap) VALUES ($1, $2, 'kb', 'all-MiniLM-L6-v2', 384, 200, 40)",
        )
        .bind(&tenant)
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO rag_documents (tenant_id, id, collection_id, checksum, content) \
             VALUES ($1, $2, $2, 'bench', 'bench')",
        )
        .bind(&tenant)
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        collections.push((tenant, id));
    }
    sqlx::query("DROP INDEX rag_chunks_hnsw_384")
        .execute(pool)
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let t0 = Instant::now();
    let per_tenant = chunks / TENANTS;
    for (tenant, id) in &collections {
        let mut tx = faas_runtime::platform::tenant_transaction(pool, tenant)
            .await
            .unwrap();
        for start in (0..per_tenant).step_by(1000) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO rag_chunks (tenant_id, collection_id, document_id, ord, content, \
                 tokens, dims, embedding) ",
            );
            let rows: Vec<(usize, String, Vec<f32>)> = (start..(start + 1000).min(per_tenant))
                .map(|ord| {
                    let b = rng.random_range(0..BASES);
                    let mut v: Vec<f32> = bases[b]
                        .iter()
                        .map(|x| x + (rng.random::<f32>() - 0.5) * 0.06)
                        .collect();
                    normalise(&mut v);
                    let filler = format!(
                        "{} {}",
                        SUBJECTS[ord % SUBJECTS.len()],
                        OBJECTS[(ord / 7) % OBJECTS.len()]
                    );
                    (ord, format!("{} {filler}", sentence(b)), v)
                })
                .collect();
            qb.push_values(rows, |mut b, (ord, text, v)| {
                b.push_bind(tenant)
                    .push_bind(*id)
                    .push_bind(*id)
                    .push_bind(ord as i32)
                    .push_bind(text)
                    .push_bind(20i32)
                    .push_bind(DIMS as i32)
                    .push_bind(pgvector::Vector::from(v));
            });
            qb.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let loaded = t0.elapsed();
    let t0 = Instant::now();
    sqlx::query("SET maintenance_work_mem = '512MB'")
        .execute(pool)
        .await
        .ok();
    sqlx::query(
        "CREATE INDEX rag_chunks_hnsw_384 ON rag_chunks USING hnsw \
         ((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE rag_chunks")
        .execute(pool)
        .await
        .unwrap();
    let built = t0.elapsed();
    out.push_str(&format!(
        "Search data: {} chunks over {TENANTS} tenants ({per_tenant} each), loaded in {:.1} s; \
         HNSW (m 16, ef_construction 64, pgvector defaults) built in {:.1} s.\n\n",
        per_tenant * TENANTS,
        loaded.as_secs_f64(),
        built.as_secs_f64()
    ));
    eprintln!("rag: data set loaded");

    // Queries: sentences of the data set with words changed, embedded by the model.
    let qtexts: Vec<String> = (0..queries)
        .map(|i| {
            let s = sentence((i * 7919) % BASES);
            s.replace("the ", "our ").replace(" every ", " each ")
        })
        .collect();
    let mut qvecs = Vec::new();
    for chunk in qtexts.chunks(100) {
        qvecs.extend(model.embed_texts(chunk.to_vec()).await.unwrap().vectors);
    }
    let (tenant, collection_id) = collections[3].clone();
    let user_token = token(&tenant, &[]);

    out.push_str("| query (top 10, one tenant of ten) | HTTP p50 | HTTP p95 | raw SQL p50 | raw SQL p95 | p95 ratio |\n|---|---|---|---|---|---|\n");
    for mode in [Mode::Vector, Mode::Keyword, Mode::Hybrid] {
        let name = match mode {
            Mode::Vector => "vector",
            Mode::Keyword => "keyword",
            Mode::Hybrid => "hybrid",
        };
        let sql = statement(mode, DIMS);
        let mut raw = Vec::new();
        let mut http = Vec::new();
        let mut conn = pool.acquire().await.unwrap();
        for round in 0..2 {
            // Each pass runs every query once, so neither side reads what the other just
            // brought into the cache; the first round warms both.
            let mut counts = Vec::with_capacity(qtexts.len());
            for (text, v) in qtexts.iter().zip(&qvecs) {
                // Raw SQL: the same statement, in a transaction that sets the tenant.
                let t = Instant::now();
                let mut tx = sqlx::Acquire::begin(&mut *conn).await.unwrap();
                sqlx::query(
                    "SELECT set_config('faas.tenant_id', $1, true), \
                     set_config('hnsw.iterative_scan', 'relaxed_order', true), \
                     set_config('hnsw.ef_search', $2, true)",
                )
                .bind(&tenant)
                .bind(leg(10).clamp(100, 1000).to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
                let rows = sqlx::query(&sql)
                    .bind(&tenant)
                    .bind(collection_id)
                    .bind((mode != Mode::Keyword).then(|| pgvector::Vector::from(v.clone())))
                    .bind(text)
                    .bind(Option::<sqlx::types::Json<serde_json::Value>>::None)
                    .bind(leg(10) as i64)
                    .bind(10i64)
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                counts.push(rows.len());
                if round == 1 {
                    raw.push(t.elapsed());
                }
            }
            for ((text, v), count) in qtexts.iter().zip(&qvecs).zip(counts) {
                let mut body = json!({"query": text, "mode": name, "top_k": 10});
                if mode != Mode::Keyword {
                    body["vector"] = json!(v);
                }
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/v1/collections/kb/query"))
                    .bearer_auth(&user_token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let answer: serde_json::Value = r.json().await.unwrap();
                let took = t.elapsed();
                assert_eq!(answer["hits"].as_array().unwrap().len(), count);
                if round == 1 {
                    http.push(took);
                }
            }
        }
        raw.sort();
        http.sort();
        out.push_str(&format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2}× |\n",
            pct(&http, 0.50),
            pct(&http, 0.95),
            pct(&raw, 0.50),
            pct(&raw, 0.95),
            pct(&http, 0.95) / pct(&raw, 0.95)
        ));
        eprintln!("rag: {name} queries done");
    }

    // Recall@10 of the tenant-filtered HNSW query against an exact scan.
    let mut conn = pool.acquire().await.unwrap();
    let mut found = 0usize;
    let mut wanted = 0usize;
    // The served vector statement (its leg, then the top 10) against the exact order.
    let ann_sql = statement(Mode::Vector, DIMS);
    let exact_sql = "SELECT c.ord AS chunk FROM rag_chunks c WHERE c.tenant_id = $1 \
                     AND c.collection_id = $2 AND c.dims = 384 \
                     ORDER BY (c.embedding::vector(384) <=> $3::vector(384)) + 0 LIMIT 10";
    let mut exact_times = Vec::new();
    for v in &qvecs {
        let mut tx = sqlx::Acquire::begin(&mut *conn).await.unwrap();
        sqlx::query(
            "SELECT set_config('faas.tenant_id', $1, true), \
             set_config('hnsw.iterative_scan', 'relaxed_order', true), \
             set_config('hnsw.ef_search', $2, true)",
        )
        .bind(&tenant)
        .bind(leg(10).clamp(100, 1000).to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
        let ids = |rows: Vec<sqlx::postgres::PgRow>| -> Vec<i32> {
            rows.iter().map(|r| r.get::<i32, _>("chunk")).collect()
        };
        let vector = pgvector::Vector::from(v.clone());
        let ann = ids(sqlx::query(&ann_sql)
            .bind(&tenant)
            .bind(collection_id)
            .bind(vector.clone())
            .bind("")
            .bind(Option::<sqlx::types::Json<serde_json::Value>>::None)
            .bind(leg(10) as i64)
            .bind(10i64)
            .fetch_all(&mut *tx)
            .await
            .unwrap());
        let t = Instant::now();
        let exact = ids(sqlx::query(exact_sql)
            .bind(&tenant)
            .bind(collection_id)
            .bind(vector)
            .fetch_all(&mut *tx)
            .await
            .unwrap());
        exact_times.push(t.elapsed());
        tx.commit().await.unwrap();
        wanted += exact.len();
        found += exact.iter().filter(|id| ann.contains(id)).count();
    }
    exact_times.sort();
    out.push_str(&format!(
        "\nRecall@10 of the tenant-filtered HNSW query (iterative scan, ef_search {}) against an \
         exact scan of the tenant's {per_tenant} chunks, over {} queries: **{:.3}** (exact scan p50 {:.1} ms).\n\n",
        leg(10).clamp(100, 1000),
        qvecs.len(),
        found as f64 / wanted.max(1) as f64,
        ms(exact_times[exact_times.len() / 2]),
    ));
}
