//! Jobs in Postgres. Every statement runs in a transaction that first sets
//! `faas.tenant_id`, which row-level security checks, and names the tenant itself too.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

/// The states of a job, in order; the last three are final.
pub const STATUSES: &[&str] = &[
    "queued",
    "parsing",
    "chunking",
    "embedding",
    "indexed",
    "failed",
    "cancelled",
];
/// States of a job a worker is on.
const RUNNING: &str = "('parsing', 'chunking', 'embedding')";

use crate::platform::ApiResult;
use crate::platform::tenant_transaction as begin;

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub collection: String,
    pub filename: Option<String>,
    pub title: Option<String>,
    /// The format the file was found to be.
    pub content_type: String,
    pub size_bytes: i64,
    /// SHA-256 of the file, hex.
    pub checksum: String,
    #[schema(value_type = Object)]
    pub metadata: sqlx::types::Json<serde_json::Map<String, serde_json::Value>>,
    /// queued, parsing, chunking, embedding, indexed, failed or cancelled.
    #[schema(pattern = "^(queued|parsing|chunking|embedding|indexed|failed|cancelled)$")]
    pub status: String,
    /// Why the job failed.
    pub reason: Option<String>,
    /// Times a worker has started on it.
    pub attempts: i32,
    /// The document in the collection, once indexed.
    pub document_id: Option<Uuid>,
    /// Chunks of the document, once indexed.
    pub chunks: Option<i32>,
    /// Bytes of text parsed from the file.
    pub text_bytes: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "indexed" | "failed" | "cancelled")
    }
}

const COLUMNS: &str = "id, collection, filename, title, content_type, size_bytes, checksum, metadata, \
     status, reason, attempts, document_id, chunks, text_bytes, created_at, updated_at, started_at, finished_at";

/// An upload to record.
pub struct NewJob {
    pub collection: String,
    pub filename: Option<String>,
    pub title: Option<String>,
    pub content_type: &'static str,
    pub checksum: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_by: String,
    pub bytes: bytes::Bytes,
    /// The upload's correlation id, given to the job's message.
    pub correlation_id: String,
}

/// What recording an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new job, queued.
    Created,
    /// The same file's job in this collection had failed or been cancelled: queued again.
    Requeued,
    /// The same file's job in this collection is queued, running or indexed.
    Existing,
}

/// Records an upload, or finds the job of the same file in the same collection.
pub async fn record(pool: &PgPool, tenant: &str, new: NewJob) -> ApiResult<(Job, Recorded)> {
    let mut tx = begin(pool, tenant).await?;
    let size = i64::try_from(new.bytes.len()).unwrap_or(i64::MAX);
    let inserted: Option<Job> = sqlx::query_as(&format!(
        "INSERT INTO ingestion_jobs (tenant_id, id, collection, filename, title, content_type, size_bytes, \
         checksum, metadata, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT ON CONSTRAINT ingestion_jobs_one_per_file DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(&new.collection)
    .bind(&new.filename)
    .bind(&new.title)
    .bind(new.content_type)
    .bind(size)
    .bind(&new.checksum)
    .bind(sqlx::types::Json(&new.metadata))
    .bind(&new.created_by)
    .fetch_optional(&mut *tx)
    .await?;
    let (job, recorded) = match inserted {
        Some(job) => (job, Recorded::Created),
        None => {
            let existing: Job = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM ingestion_jobs WHERE tenant_id = $1 AND collection = $2 \
                 AND checksum = $3 FOR UPDATE"
            ))
            .bind(tenant)
            .bind(&new.collection)
            .bind(&new.checksum)
            .fetch_one(&mut *tx)
            .await?;
            if !matches!(existing.status.as_str(), "failed" | "cancelled") {
                tx.commit().await?;
                return Ok((existing, Recorded::Existing));
            }
            let job: Job = sqlx::query_as(&format!(
                "UPDATE ingestion_jobs SET status = 'queued', reason = NULL, attempts = 0, lease_owner = NULL, \
                 lease_until = NULL, document_id = NULL, chunks = NULL, text_bytes = NULL, filename = $3, \
                 title = $4, metadata = $5, created_by = $6, updated_at = now(), started_at = NULL, \
                 finished_at = NULL WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ))
            .bind(tenant)
            .bind(existing.id)
            .bind(&new.filename)
            .bind(&new.title)
            .bind(sqlx::types::Json(&new.metadata))
            .bind(&new.created_by)
            .fetch_one(&mut *tx)
            .await?;
            (job, Recorded::Requeued)
        }
    };
    sqlx::query(
        "INSERT INTO ingestion_files (tenant_id, job_id, bytes) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, job_id) DO UPDATE SET bytes = EXCLUDED.bytes",
    )
    .bind(tenant)
    .bind(job.id)
    .bind(new.bytes.as_ref())
    .execute(&mut *tx)
    .await?;
    // The job's message is owed until it is published (see `outbox`).
    sqlx::query(
        "INSERT INTO ingestion_outbox (tenant_id, job_id, correlation_id) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, job_id) DO UPDATE SET created_at = now()",
    )
    .bind(tenant)
    .bind(job.id)
    .bind(&new.correlation_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((job, recorded))
}

/// The job's message was published: nothing is owed for it any more.
pub async fn sent(pool: &PgPool, tenant: &str, job: Uuid) -> ApiResult<()> {
    sqlx::query("DELETE FROM ingestion_outbox WHERE tenant_id = $1 AND job_id = $2")
        .bind(tenant)
        .bind(job)
        .execute(pool)
        .await?;
    Ok(())
}

/// A job whose message is owed: its tenant, id and the correlation id of its upload.
#[derive(Debug, sqlx::FromRow)]
pub struct Owed {
    pub tenant_id: String,
    pub job_id: Uuid,
    pub correlation_id: Option<String>,
}

/// Up to `limit` jobs owed a message for longer than `after`, locked (others skip them)
/// until `tx` ends; the sweeper deletes each once it has published it.
pub async fn owed(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    after: std::time::Duration,
    limit: i64,
) -> ApiResult<Vec<Owed>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, job_id, correlation_id FROM ingestion_outbox \
         WHERE created_at < now() - make_interval(secs => $1) \
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(after.as_secs_f64())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get(pool: &PgPool, tenant: &str, id: Uuid) -> ApiResult<Option<Job>> {
    let mut tx = begin(pool, tenant).await?;
    let job = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ingestion_jobs WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(job)
}

/// A page of the tenant's jobs, newest first, after `before` when given.
pub async fn list(
    pool: &PgPool,
    tenant: &str,
    status: Option<&str>,
    collection: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> ApiResult<Vec<Job>> {
    let mut tx = begin(pool, tenant).await?;
    let jobs = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ingestion_jobs WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR collection = $3) \
         AND ($4::uuid IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    ))
    .bind(tenant)
    .bind(status)
    .bind(collection)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(jobs)
}

/// What cancelling did.
pub enum Cancelled {
    Done(Job),
    /// The job had already ended.
    Final(Job),
    Missing,
}

pub async fn cancel(pool: &PgPool, tenant: &str, id: Uuid) -> ApiResult<Cancelled> {
    let mut tx = begin(pool, tenant).await?;
    let done: Option<Job> = sqlx::query_as(&format!(
        "UPDATE ingestion_jobs SET status = 'cancelled', updated_at = now(), finished_at = now() \
         WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'parsing', 'chunking', 'embedding') \
         RETURNING {COLUMNS}"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match done {
        Some(job) => {
            drop_file(&mut tx, tenant, id).await?;
            Cancelled::Done(job)
        }
        None => match sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM ingestion_jobs WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        {
            Some(job) => Cancelled::Final(job),
            None => Cancelled::Missing,
        },
    };
    tx.commit().await?;
    Ok(outcome)
}

async fn drop_file(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM ingestion_files WHERE tenant_id = $1 AND job_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a worker found when it came for a job.
pub enum Claim {
    /// The job is this worker's until the lease runs out: its row and its file.
    Claimed(Box<Job>, Vec<u8>),
    /// The job has ended (or is gone): nothing to do.
    Done,
    /// Another worker holds the job until then.
    Held(DateTime<Utc>),
    /// The job has been started `attempts` times already, the limit: it failed.
    Exhausted,
}

/// Takes the job for `owner` when it is queued, or running under a lapsed lease, and
/// has been started fewer than `max_attempts` times.
pub async fn claim(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    owner: Uuid,
    lease: std::time::Duration,
    max_attempts: i32,
) -> ApiResult<Claim> {
    #[derive(sqlx::FromRow)]
    struct Row {
        status: String,
        attempts: i32,
        lease_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    }
    let mut tx = begin(pool, tenant).await?;
    let row: Option<Row> = sqlx::query_as(
        "SELECT status, attempts, lease_until, now() AS now FROM ingestion_jobs \
         WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Claim::Done);
    };
    match row.status.as_str() {
        "queued" => {}
        "parsing" | "chunking" | "embedding" => {
            if let Some(until) = row.lease_until.filter(|u| *u > row.now) {
                return Ok(Claim::Held(until));
            }
        }
        _ => return Ok(Claim::Done),
    }
    if row.attempts >= max_attempts {
        sqlx::query(
            "UPDATE ingestion_jobs SET status = 'failed', reason = $3, lease_owner = NULL, lease_until = NULL, \
             updated_at = now(), finished_at = now() WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(format!(
            "gave up after {} attempts; the last one did not finish",
            row.attempts
        ))
        .execute(&mut *tx)
        .await?;
        drop_file(&mut tx, tenant, id).await?;
        tx.commit().await?;
        return Ok(Claim::Exhausted);
    }
    let job: Job = sqlx::query_as(&format!(
        "UPDATE ingestion_jobs SET status = 'parsing', attempts = attempts + 1, lease_owner = $3, \
         lease_until = now() + make_interval(secs => $4), started_at = coalesce(started_at, now()), \
         updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    let bytes: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT bytes FROM ingestion_files WHERE tenant_id = $1 AND job_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(bytes) = bytes else {
        // A running job always has its file; without it the job cannot go on.
        sqlx::query(
            "UPDATE ingestion_jobs SET status = 'failed', reason = 'the uploaded file is gone', \
             lease_owner = NULL, lease_until = NULL, updated_at = now(), finished_at = now() \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Claim::Done);
    };
    tx.commit().await?;
    Ok(Claim::Claimed(Box::new(job), bytes))
}

/// Moves `owner`'s job from one running state to the next and renews its lease; false
/// when the job is no longer `owner`'s in state `from` (cancelled, or taken over).
pub async fn advance(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    owner: Uuid,
    from: &str,
    to: &str,
    lease: std::time::Duration,
) -> ApiResult<bool> {
    let mut tx = begin(pool, tenant).await?;
    let done = sqlx::query(
        "UPDATE ingestion_jobs SET status = $5, lease_until = now() + make_interval(secs => $6), \
         updated_at = now() WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = $4",
    )
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .bind(from)
    .bind(to)
    .bind(lease.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Renews `owner`'s lease on a running job; false when it is no longer `owner`'s.
pub async fn heartbeat(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    owner: Uuid,
    lease: std::time::Duration,
) -> ApiResult<bool> {
    let mut tx = begin(pool, tenant).await?;
    let done = sqlx::query(&format!(
        "UPDATE ingestion_jobs SET lease_until = now() + make_interval(secs => $4) \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status IN {RUNNING}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the job is still `owner`'s, in state `status`.
pub async fn holds(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    owner: Uuid,
    status: &str,
) -> ApiResult<bool> {
    let mut tx = begin(pool, tenant).await?;
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM ingestion_jobs WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = $4",
    )
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .bind(status)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(held.is_some())
}

/// Marks `owner`'s job indexed and lets go of its file. A job cancelled while its document
/// was being stored is indexed too: the document is in the collection.
pub async fn indexed(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    owner: Uuid,
    document_id: Uuid,
    chunks: i32,
    text_bytes: i64,
) -> ApiResult<Option<Job>> {
    let mut tx = begin(pool, tenant).await?;
    let job: Option<Job> = sqlx::query_as(&format!(
        "UPDATE ingestion_jobs SET status = 'indexed', reason = NULL, document_id = $4, chunks = $5, \
         text_bytes = $6, lease_owner = NULL, lease_until = NULL, updated_at = now(), finished_at = now() \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status IN ('embedding', 'cancelled') \
         RETURNING {COLUMNS}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .bind(document_id)
    .bind(chunks)
    .bind(text_bytes)
    .fetch_optional(&mut *tx)
    .await?;
    if job.is_some() {
        drop_file(&mut tx, tenant, id).await?;
    }
    tx.commit().await?;
    Ok(job)
}

/// Fails `owner`'s running job with `reason` and lets go of its file.
pub async fn fail(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
    owner: Uuid,
    reason: &str,
) -> ApiResult<()> {
    let mut tx = begin(pool, tenant).await?;
    let done = sqlx::query(&format!(
        "UPDATE ingestion_jobs SET status = 'failed', reason = $4, lease_owner = NULL, lease_until = NULL, \
         updated_at = now(), finished_at = now() \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status IN {RUNNING}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        drop_file(&mut tx, tenant, id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Puts `owner`'s running job back in the queue, for another attempt.
pub async fn release(pool: &PgPool, tenant: &str, id: Uuid, owner: Uuid) -> ApiResult<()> {
    let mut tx = begin(pool, tenant).await?;
    sqlx::query(&format!(
        "UPDATE ingestion_jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status IN {RUNNING}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
