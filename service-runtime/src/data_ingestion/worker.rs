//! The worker: a durable consumer of job messages. Each message names a job; the worker
//! claims it in Postgres (one worker at a time, under a lease it renews), parses, chunks,
//! embeds and stores it, and acknowledges only once the job's end is committed. A job
//! that has ended is acknowledged and skipped, so a message delivered twice does nothing
//! the second time, and a job whose worker died is taken over once its lease lapses.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::IngestState;
use super::index::Doc;
use super::jobs::{self, Claim, Job};
use super::parse::{self, Budget, Kind, Limits};
use crate::platform::auth::valid_tenant_id;
use crate::platform::events::{Envelope, HandlerError};
use crate::platform::{ApiError, RequestContext};
use faas_model::events::{DOCUMENT_INGESTED_KIND, DOCUMENT_INGESTED_TYPE, DocumentIngested};

/// The event kind of job messages, and their envelope type.
pub const JOB_KIND: &str = "ingestion.job";
pub const JOB_TYPE: &str = "ingestion.job.v1";
/// The durable consumer of job messages.
pub const DURABLE: &str = "data-ingestion";

/// A job message: the job to work on (the tenant is the envelope's).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    pub job_id: Uuid,
}

/// Publishes the message of `job_id` and marks it sent.
pub async fn publish(st: &IngestState, ctx: &RequestContext, job_id: Uuid) -> anyhow::Result<()> {
    let tenant = ctx
        .tenant_id
        .clone()
        .ok_or_else(|| anyhow::anyhow!("a job message needs its tenant"))?;
    let env = Envelope::new_json(JOB_TYPE, ctx, &JobMessage { job_id })?;
    let bus = st.events().map_err(|e| anyhow::anyhow!("{e}"))?;
    bus.publish(JOB_KIND, &env).await?;
    jobs::sent(
        st.db().map_err(|e| anyhow::anyhow!("{e}"))?,
        &tenant,
        job_id,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Sends the messages recorded jobs are still owed (their process died, or NATS was
/// unreachable, between recording and publishing), every `FAAS_INGEST_OUTBOX_SECS`,
/// until shutdown. Replicas share the work: a job being sent by one is skipped by others.
pub async fn sweep(st: IngestState) {
    let every = st.component().settings.outbox_after;
    let shutdown = st.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = sweep_once(&st, every).await {
            tracing::warn!(error = %e, "sending owed ingestion job messages");
        }
    }
}

/// One pass of [`sweep`]: the number of messages sent.
pub async fn sweep_once(st: &IngestState, after: std::time::Duration) -> anyhow::Result<usize> {
    let db = st.db().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tx = db.begin().await?;
    let owed = jobs::owed(&mut tx, after, 100)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sent = 0;
    for job in owed {
        let mut ctx = RequestContext::background();
        ctx.tenant_id = Some(job.tenant_id.clone());
        if let Some(c) = job.correlation_id {
            ctx.correlation_id = c;
        }
        let env = Envelope::new_json(JOB_TYPE, &ctx, &JobMessage { job_id: job.job_id })?;
        let bus = st.events().map_err(|e| anyhow::anyhow!("{e}"))?;
        bus.publish(JOB_KIND, &env).await?;
        sqlx::query("DELETE FROM ingestion_outbox WHERE tenant_id = $1 AND job_id = $2")
            .bind(&job.tenant_id)
            .bind(job.job_id)
            .execute(&mut *tx)
            .await?;
        sent += 1;
    }
    tx.commit().await?;
    if sent > 0 {
        tracing::info!(sent, "sent owed ingestion job messages");
    }
    Ok(sent)
}

/// Starts the consumer of job messages.
pub async fn start(state: IngestState) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let bus = state.events().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    let max_deliver = state.config.nats_max_deliver;
    let shutdown = state.shutdown.clone();
    let handler: crate::platform::events::Handler = Arc::new(move |env: Envelope| {
        let st = state.clone();
        Box::pin(async move { handle(&st, env).await })
    });
    bus.consume(JOB_KIND, DURABLE, max_deliver, handler, shutdown)
        .await
}

/// How working on a job stopped short of indexing it.
enum Stop {
    /// It can never succeed: the job fails with the reason.
    Failed(String),
    /// It may succeed later: the job goes back to the queue.
    Transient(String),
    /// The job is no longer this worker's (cancelled, or taken over).
    Lost,
}

fn retry(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Retry(e.to_string())
}

/// What an error of the index means for the job.
fn stop(e: ApiError) -> Stop {
    match e {
        ApiError::BadRequest(_)
        | ApiError::Validation(_)
        | ApiError::NotFound(_)
        | ApiError::Conflict(_)
        | ApiError::Forbidden(_)
        | ApiError::Unauthorized(_)
        | ApiError::PayloadTooLarge(_)
        | ApiError::UnsupportedMediaType(_) => Stop::Failed(e.public_detail()),
        ApiError::Internal(cause) => {
            tracing::error!(error = ?cause, "indexing a document");
            Stop::Transient("the index failed; see the logs".into())
        }
        other => Stop::Transient(other.public_detail()),
    }
}

fn db_stop(e: ApiError) -> Stop {
    tracing::warn!(error = ?e, "ingestion job database error");
    Stop::Transient("the database is unavailable".into())
}

/// The context of the request that uploaded the job, for the calls made for it.
fn context(env: &Envelope) -> RequestContext {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RequestContext {
        request_id: env.request_id.clone(),
        correlation_id: env.correlation_id.clone(),
        tenant_id: Some(env.tenant_id.clone()),
        user_id: some(&env.user_id),
        traceparent: some(&env.traceparent),
        tracestate: None,
    }
}

async fn handle(st: &IngestState, env: Envelope) -> Result<(), HandlerError> {
    if !valid_tenant_id(&env.tenant_id) {
        return Err(HandlerError::Permanent(
            "the envelope has no valid tenant id".into(),
        ));
    }
    let msg: JobMessage = env.json()?;
    let tenant = env.tenant_id.as_str();
    let db = st.db().map_err(retry)?.clone();
    let lease = st.component().settings.lease;
    let max_attempts = i32::try_from(st.config.nats_max_deliver.max(1)).unwrap_or(i32::MAX);
    let owner = Uuid::now_v7();
    // Another worker's live lease is waited out, this message kept meanwhile: that worker
    // ends the job (and this message is acknowledged), or it dies, its lease lapses and
    // the job is taken over here. Giving up instead could leave the job with no message.
    let (job, bytes) = loop {
        match jobs::claim(&db, tenant, msg.job_id, owner, lease, max_attempts)
            .await
            .map_err(retry)?
        {
            Claim::Claimed(job, bytes) => break (job, bytes),
            Claim::Done | Claim::Exhausted => return Ok(()),
            Claim::Held(until) => {
                if st.shutdown.is_cancelled() {
                    return Err(HandlerError::Retry("another worker holds the job".into()));
                }
                let left = (until - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(left.min(Duration::from_secs(1)) + Duration::from_millis(50))
                    .await;
            }
        }
    };
    tracing::info!(job_id = %job.id, attempt = job.attempts, "ingesting");
    let ctx = context(&env);
    let lost = CancellationToken::new();
    let beat = tokio::spawn(heartbeat(
        db.clone(),
        tenant.to_string(),
        job.id,
        owner,
        lease,
        lost.clone(),
    ));
    let outcome = tokio::select! {
        r = run(st, tenant, &job, bytes, owner, &ctx) => r,
        _ = lost.cancelled() => Err(Stop::Lost),
    };
    beat.abort();
    match outcome {
        Ok(()) => Ok(()),
        Err(Stop::Lost) => {
            tracing::info!(job_id = %job.id, "the job was cancelled or taken over");
            Ok(())
        }
        Err(Stop::Failed(reason)) => {
            tracing::info!(job_id = %job.id, reason, "ingestion failed");
            jobs::fail(&db, tenant, job.id, owner, &reason)
                .await
                .map_err(retry)
        }
        Err(Stop::Transient(reason)) if job.attempts >= max_attempts => {
            let reason = format!("gave up after {} attempts: {reason}", job.attempts);
            jobs::fail(&db, tenant, job.id, owner, &reason)
                .await
                .map_err(retry)
        }
        Err(Stop::Transient(reason)) => {
            jobs::release(&db, tenant, job.id, owner)
                .await
                .map_err(retry)?;
            Err(HandlerError::Retry(reason))
        }
    }
}

/// Renews the lease until aborted; fires `lost` once the job is no longer this worker's.
async fn heartbeat(
    db: sqlx::PgPool,
    tenant: String,
    id: Uuid,
    owner: Uuid,
    lease: Duration,
    lost: CancellationToken,
) {
    let mut every = tokio::time::interval(lease / 4);
    every.tick().await;
    loop {
        every.tick().await;
        match jobs::heartbeat(&db, &tenant, id, owner, lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing an ingestion lease"),
        }
    }
}

/// Moves the job to its next state; [`Stop::Lost`] when it is no longer this worker's.
async fn step(
    st: &IngestState,
    tenant: &str,
    job: &Job,
    owner: Uuid,
    from: &str,
    to: &str,
) -> Result<(), Stop> {
    let db = st.db().map_err(|e| Stop::Transient(e.to_string()))?;
    let lease = st.component().settings.lease;
    match jobs::advance(db, tenant, job.id, owner, from, to, lease).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::Lost),
        Err(e) => Err(db_stop(e)),
    }
}

async fn run(
    st: &IngestState,
    tenant: &str,
    job: &Job,
    bytes: Vec<u8>,
    owner: Uuid,
    ctx: &RequestContext,
) -> Result<(), Stop> {
    let own = st.component();
    let kind = Kind::from_media_type(&job.content_type).ok_or_else(|| {
        Stop::Failed(format!(
            "the file type {} is not supported",
            job.content_type
        ))
    })?;
    let limits = Limits {
        max_text_bytes: own.settings.max_text_bytes,
        timeout: own.settings.parse_timeout,
    };
    let permit = own
        .parses
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Stop::Transient("the service is stopping".into()))?;
    let text = parse::run(limits.timeout, permit, move || {
        parse::parse(kind, &bytes, Budget::new(limits))
    })
    .await
    .map_err(|e| Stop::Failed(e.to_string()))?;
    step(st, tenant, job, owner, "parsing", "chunking").await?;

    let target = own
        .index
        .collection(tenant, &job.collection)
        .await
        .map_err(stop)?;
    // A job done again after a crash may find the document it stored before: then there
    // is nothing to cut or embed again.
    let before = own
        .index
        .existing(tenant, &target, &job.checksum)
        .await
        .map_err(stop)?;
    let pieces = match before {
        Some(_) => Vec::new(),
        None => own.index.chunk(&target, &text).await.map_err(stop)?,
    };
    step(st, tenant, job, owner, "chunking", "embedding").await?;

    let db = st.db().map_err(|e| Stop::Transient(e.to_string()))?;
    let text_bytes = i64::try_from(text.len()).unwrap_or(i64::MAX);
    let stored = match before {
        Some(stored) => stored,
        None => {
            let vectors = own.index.embed(&target, &pieces, ctx).await.map_err(stop)?;
            if !jobs::holds(db, tenant, job.id, owner, "embedding")
                .await
                .map_err(db_stop)?
            {
                return Err(Stop::Lost);
            }
            let doc = Doc {
                title: job.title.clone().or_else(|| job.filename.clone()),
                text,
                source: job.filename.clone(),
                content_type: job.content_type.clone(),
                checksum: job.checksum.clone(),
                metadata: job.metadata.0.clone(),
            };
            own.index
                .store(tenant, &target, doc, pieces, vectors)
                .await
                .map_err(stop)?
        }
    };
    // Published before the job is marked indexed, under the job's id: a worker that dies
    // in between publishes again, and the stream drops the repeat.
    let event = DocumentIngested {
        job_id: job.id,
        collection: job.collection.clone(),
        document_id: stored.document_id,
        existing: stored.existing,
        filename: job.filename.clone(),
        title: job.title.clone(),
        content_type: job.content_type.clone(),
        checksum: job.checksum.clone(),
        size_bytes: job.size_bytes,
        chunks: stored.chunks,
        indexed_at: Utc::now(),
    };
    publish_ingested(st, ctx, &event).await?;
    match jobs::indexed(
        db,
        tenant,
        job.id,
        owner,
        stored.document_id,
        stored.chunks,
        text_bytes,
    )
    .await
    {
        Ok(Some(_)) => {
            tracing::info!(job_id = %job.id, document_id = %stored.document_id, chunks = stored.chunks, "indexed");
            Ok(())
        }
        Ok(None) => Err(Stop::Lost),
        Err(e) => Err(db_stop(e)),
    }
}

async fn publish_ingested(
    st: &IngestState,
    ctx: &RequestContext,
    event: &DocumentIngested,
) -> Result<(), Stop> {
    event.check().map_err(Stop::Failed)?;
    let bus = st.events().map_err(|e| Stop::Transient(e.to_string()))?;
    let mut env = Envelope::new_json(DOCUMENT_INGESTED_TYPE, ctx, event)
        .map_err(|e| Stop::Transient(e.to_string()))?;
    env.id = event.job_id.to_string();
    bus.publish(DOCUMENT_INGESTED_KIND, &env)
        .await
        .map_err(|e| Stop::Transient(format!("the event bus is unavailable: {e}")))
}
