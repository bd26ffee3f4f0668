//! Data ingestion: files uploaded (a multipart form or a raw body), their type told from
//! their bytes, and a job per file that a worker takes from NATS, parses to text, and
//! indexes into a RAG collection. Jobs and the files waiting for them are rows in
//! Postgres, so a crash loses nothing; the same file uploaded twice to a collection is
//! one job and one document.

pub mod index;
pub mod jobs;
pub mod parse;
pub mod settings;
pub mod upload;
pub mod worker;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::platform::component::ComponentState;
use crate::platform::error::{Problem, problem_responses};
use crate::platform::extract::{Json, Path, Query};
use crate::platform::{
    ApiError, ApiResult, AppState, Built, ComponentSpec, Principal, RequestContext,
};
use faas_model::Component;
use jobs::{Cancelled, Job, NewJob, Recorded};
use parse::{Kind, ParseError};
use upload::Upload;

/// The component's own state.
pub struct Ingest {
    pub settings: settings::Settings,
    pub index: index::Index,
    /// Places among the parses this process runs at once.
    pub parses: Arc<tokio::sync::Semaphore>,
}

pub type IngestState = ComponentState<Ingest>;

/// Data ingestion as the platform serves it: its routes and the job worker.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::DataIngestion,
    openapi,
    openai_routes: &[],
    build,
};

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let settings = settings::Settings::from_source(&platform.config.source)?;
    let index = index::Index::new(platform)?;
    let parses = Arc::new(tokio::sync::Semaphore::new(settings.parse_concurrency));
    let body_limit = settings.max_file_bytes + upload::FORM_OVERHEAD;
    let state = ComponentState::new(
        platform.clone(),
        Ingest {
            settings,
            index,
            parses,
        },
    );
    let (worker, sweeper) = (state.clone(), state.clone());
    Ok(Built {
        router: router()
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(state),
        background: vec![
            Box::new(move || Box::pin(worker::start(worker))),
            Box::new(move || Box::pin(async move { Ok(tokio::spawn(worker::sweep(sweeper))) })),
        ],
    })
}

fn router() -> Router<IngestState> {
    Router::new()
        .route("/v1/ingestion/jobs", post(upload_form).get(list_jobs))
        .route("/v1/ingestion/jobs/{id}", get(get_job))
        .route("/v1/ingestion/jobs/{id}/cancel", post(cancel_job))
        .route(
            "/v1/ingestion/collections/{collection}/files",
            post(upload_raw),
        )
}

#[derive(OpenApi)]
#[openapi(
    paths(upload_form, upload_raw, list_jobs, get_job, cancel_job),
    components(schemas(Job, JobPage, UploadForm, RawFile, Problem)),
    tags((name = "data-ingestion", description = "File upload, parsing and indexing into RAG collections"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

problem_responses! {
    /// The tenant has no such job, or no collection of that name.
    NotFound = 404;
    /// The job has already ended.
    Ended = 409;
    /// The file is larger than FAAS_INGEST_MAX_FILE_BYTES (20 MiB unless configured).
    TooLarge = 413;
    /// The file is of a type this service does not read (the detail names it), or the
    /// form is not multipart/form-data.
    Unsupported = 415;
    /// The file is empty, corrupt, or breaks a limit of its format; or a part of the form
    /// breaks its rules. The detail says which.
    Invalid = 422;
}

/// A file and where it goes; no other part.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "describes the form, never built")]
struct UploadForm {
    /// The file: plain text, Markdown, HTML, CSV, JSON, PDF or DOCX. Its type is told from
    /// its bytes first, then from the part's Content-Type or file name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The RAG collection to index the file into; it must exist.
    #[schema(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    collection: String,
    /// A flat JSON object stored with the document (as rag's document metadata: at most 32
    /// keys of 1 to 64 characters, values strings of at most 256 characters, numbers,
    /// booleans or null), at most 65536 bytes.
    #[schema(max_length = 65536)]
    metadata: Option<String>,
    /// The document's title; the file name when absent.
    #[schema(max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    title: Option<String>,
}

/// The file's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code, reason = "describes the body, never built")]
struct RawFile(Vec<u8>);

fn ingest_error(e: ParseError) -> ApiError {
    match e {
        ParseError::Unsupported(_) => ApiError::UnsupportedMediaType(e.to_string()),
        other => ApiError::Validation(other.to_string()),
    }
}

/// Checks, records and queues an upload: 202 for a new job (or one queued again after it
/// failed or was cancelled), 200 for the job the same file already has in the collection.
async fn accept(
    st: &IngestState,
    p: &Principal,
    ctx: &RequestContext,
    up: Upload,
) -> ApiResult<Response> {
    let own = st.component();
    if up.bytes.is_empty() {
        return Err(ApiError::Validation("file: the file is empty".into()));
    }
    let kind = parse::sniff(&up.bytes, up.declared.as_deref(), up.filename.as_deref())
        .map_err(ingest_error)?;
    preflight(st, kind, up.bytes.clone()).await?;
    own.index.collection(&p.tenant_id, &up.collection).await?;
    let checksum = hex::encode(Sha256::digest(&up.bytes));
    let db = st.db()?;
    let (job, recorded) = jobs::record(
        db,
        &p.tenant_id,
        NewJob {
            collection: up.collection,
            filename: up.filename,
            title: up.title,
            content_type: kind.media_type(),
            checksum,
            metadata: up.metadata,
            created_by: p.user_id.clone(),
            bytes: up.bytes,
            correlation_id: ctx.correlation_id.clone(),
        },
    )
    .await?;
    // A queued job is queued again too: its first message may have been lost with the
    // process that recorded it.
    if recorded != Recorded::Existing || job.status == "queued" {
        queue(st, ctx, job.id).await;
    }
    let status = if recorded == Recorded::Existing {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = HeaderValue::from_str(&format!("/v1/ingestion/jobs/{}", job.id))
        .map_err(ApiError::internal)?;
    Ok((status, [(header::LOCATION, location)], Json(job)).into_response())
}

/// The checks that need no worker, on a parse thread under the time limit.
async fn preflight(st: &IngestState, kind: Kind, bytes: bytes::Bytes) -> ApiResult<()> {
    let own = st.component();
    let timeout = own.settings.parse_timeout;
    let permit = tokio::time::timeout(timeout, own.parses.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::Overloaded {
            detail: "the service is busy parsing other files; try again".into(),
            retry_after_secs: timeout.as_secs().max(1),
        })?
        .map_err(|_| ApiError::Unavailable("the service is stopping".into()))?;
    parse::run(timeout, permit, move || parse::preflight(kind, &bytes))
        .await
        .map_err(ingest_error)
}

/// Publishes the job's message. When that fails the job stays owed in the outbox and
/// the sweeper sends it later, so the upload is still accepted.
async fn queue(st: &IngestState, ctx: &RequestContext, job_id: Uuid) {
    if let Err(e) = worker::publish(st, ctx, job_id).await {
        tracing::warn!(error = %e, %job_id, "queueing an ingestion job; the sweeper will");
    }
}

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
}

#[utoipa::path(post, path = "/v1/ingestion/jobs", tag = "data-ingestion",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "A job for the file, queued", body = Job,
         headers(("Location" = String, description = "The job"))),
        (status = 200, description = "The job the same file already has in this collection", body = Job,
         headers(("Location" = String, description = "The job"))),
        NotFound, TooLarge, Unsupported, Invalid))]
async fn upload_form(
    State(st): State<IngestState>,
    p: Principal,
    Extension(ctx): Extension<RequestContext>,
    req: Request,
) -> ApiResult<Response> {
    if !is_form(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: multipart/form-data with a file part".into(),
        ));
    }
    let up = upload::form(req, st.component().settings.max_file_bytes).await?;
    accept(&st, &p, &ctx, up).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path, read by hand")]
struct CollectionPath {
    /// The RAG collection to index the file into; it must exist.
    #[param(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    collection: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    /// The file's name (its extension helps tell the type), at most 255 characters.
    #[param(max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    filename: Option<String>,
    /// The document's title; the file name when absent.
    #[param(max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    title: Option<String>,
}

#[utoipa::path(post, path = "/v1/ingestion/collections/{collection}/files", tag = "data-ingestion",
    params(CollectionPath, RawQuery),
    request_body(content = RawFile, content_type = "application/octet-stream",
        description = "The file itself; any Content-Type, which helps tell its type"),
    responses(
        (status = 202, description = "A job for the file, queued", body = Job,
         headers(("Location" = String, description = "The job"))),
        (status = 200, description = "The job the same file already has in this collection", body = Job,
         headers(("Location" = String, description = "The job"))),
        NotFound, TooLarge, Unsupported, Invalid))]
async fn upload_raw(
    State(st): State<IngestState>,
    p: Principal,
    Extension(ctx): Extension<RequestContext>,
    Path(collection): Path<String>,
    Query(q): Query<RawQuery>,
    req: Request,
) -> ApiResult<Response> {
    upload::check_collection(&collection)?;
    let filename = q
        .filename
        .as_deref()
        .map(upload::clean_filename)
        .transpose()?
        .flatten();
    let title = q.title.filter(|t| !t.trim().is_empty());
    if let Some(t) = &title {
        upload::check_title(t)?;
    }
    let (declared, bytes) = upload::raw(req, st.component().settings.max_file_bytes).await?;
    let up = Upload {
        collection,
        filename,
        title,
        declared,
        metadata: Default::default(),
        bytes,
    };
    accept(&st, &p, &ctx, up).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct JobFilter {
    /// Only jobs in this state.
    #[param(pattern = "^(queued|parsing|chunking|embedding|indexed|failed|cancelled)$")]
    status: Option<String>,
    /// Only jobs of this collection.
    #[param(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    collection: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// The previous page's `next_cursor`.
    cursor: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
struct JobPage {
    items: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<Uuid>,
}

#[utoipa::path(get, path = "/v1/ingestion/jobs", tag = "data-ingestion", params(JobFilter),
    responses((status = 200, description = "The tenant's jobs, newest first", body = JobPage)))]
async fn list_jobs(
    State(st): State<IngestState>,
    p: Principal,
    Query(f): Query<JobFilter>,
) -> ApiResult<Json<JobPage>> {
    let limit = f.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit: must be between 1 and 200".into(),
        ));
    }
    if let Some(s) = &f.status
        && !jobs::STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "status: must be one of {}",
            jobs::STATUSES.join(", ")
        )));
    }
    if let Some(c) = &f.collection {
        upload::check_collection(c).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let mut items = jobs::list(
        st.db()?,
        &p.tenant_id,
        f.status.as_deref(),
        f.collection.as_deref(),
        f.cursor,
        limit + 1,
    )
    .await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|j| j.id)
    } else {
        None
    };
    Ok(Json(JobPage { items, next_cursor }))
}

fn no_job() -> ApiError {
    ApiError::NotFound("the tenant has no ingestion job with this id".into())
}

#[utoipa::path(get, path = "/v1/ingestion/jobs/{id}", tag = "data-ingestion",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = Job), NotFound))]
async fn get_job(
    State(st): State<IngestState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    jobs::get(st.db()?, &p.tenant_id, id)
        .await?
        .map(Json)
        .ok_or_else(no_job)
}

#[utoipa::path(post, path = "/v1/ingestion/jobs/{id}/cancel", tag = "data-ingestion",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses((status = 200, description = "The job, cancelled. A job whose document was being \
        stored when it was cancelled ends indexed.", body = Job), NotFound, Ended))]
async fn cancel_job(
    State(st): State<IngestState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    match jobs::cancel(st.db()?, &p.tenant_id, id).await? {
        Cancelled::Done(job) => Ok(Json(job)),
        Cancelled::Final(job) => Err(ApiError::Conflict(format!(
            "the job has already ended: it is {}",
            job.status
        ))),
        Cancelled::Missing => Err(no_job()),
    }
}
