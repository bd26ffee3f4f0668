//! Retrieval-augmented generation: a tenant's collections of documents, cut into chunks,
//! embedded (the in-process model or any model the gateway serves) and kept in Postgres
//! with pgvector; vector, keyword and hybrid search; answers with citations. Nothing is
//! kept in process memory beyond the model's weights.

pub mod answer;
pub mod search;
pub mod settings;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::platform::component::ComponentState;
use crate::platform::error::{NotAdmin, Problem, problem_responses};
use crate::platform::extract::{Json, Path, Query};
use crate::platform::{
    ApiError, ApiResult, AppState, Built, ComponentSpec, Principal, RequestContext,
};
use crate::shared::documents::chunk::Sizes;
use crate::shared::documents::metadata::{Metadata, check_metadata};
use crate::shared::documents::{
    self as index, Collection, CollectionSpec, DIMENSIONS, DOCUMENT_COLUMNS, Document, NewDocument,
    Store, check_collection_name as check_name,
};
use crate::shared::embed::MODEL_NAME;
use crate::shared::gateway_client::OnBehalfOf;
use faas_model::Component;
use search::{Hit, Mode};

/// rag as the platform serves it.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::Rag,
    openapi,
    openai_routes: &[],
    build,
};

/// rag's own state: the document store and its settings.
#[derive(Clone, Debug)]
pub struct Rag {
    pub store: Store,
    pub settings: settings::Settings,
}

impl std::ops::Deref for Rag {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// The state of rag's routes.
pub type RagState = ComponentState<Rag>;

const MAX_DESCRIPTION: usize = 1000;
const MAX_TITLE: usize = 500;
const MAX_SOURCE: usize = 2000;
const MAX_QUERY: usize = 2000;
const MAX_TOP_K: u64 = 50;
const MAX_PAGE: u64 = 100;
/// Tokens of a chunk for models the gateway serves (the local model reads at most its own).
const MAX_CHUNK_TOKENS: u64 = 8192;

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let rag = Rag {
        store: Store::from_state(platform)?,
        settings: settings::Settings::from_source(&platform.config.source)?,
    };
    let db = rag.db().clone();
    Ok(Built {
        router: router().with_state(ComponentState::new(platform.clone(), rag)),
        background: vec![Box::new(move || {
            Box::pin(async move { Ok(tokio::spawn(check_leakproof(db))) })
        })],
    })
}

/// Says once, at start-up, when keyword search and metadata filters cannot use their
/// indexes: under row-level security Postgres uses an index for `@@` and `@>` only when
/// the functions behind them are LEAKPROOF, which a superuser must declare.
async fn check_leakproof(db: sqlx::PgPool) {
    let found: Result<Vec<(String, bool)>, _> = sqlx::query_as(
        "SELECT oid::regprocedure::text, proleakproof FROM pg_proc \
         WHERE oid IN ('ts_match_vq(tsvector,tsquery)'::regprocedure, \
                       'jsonb_contains(jsonb,jsonb)'::regprocedure)",
    )
    .fetch_all(&db)
    .await;
    match found {
        Ok(rows) => {
            for (name, _) in rows.into_iter().filter(|(_, leakproof)| !leakproof) {
                tracing::warn!(
                    function = name,
                    "rag: keyword search or metadata filters read every chunk of a collection, \
                     because {name} is not LEAKPROOF; a superuser can run \
                     ALTER FUNCTION {name} LEAKPROOF in this database"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "rag: checking the full-text functions"),
    }
}

fn router() -> Router<RagState> {
    Router::new()
        .route(
            "/v1/collections",
            post(create_collection).get(list_collections),
        )
        .route(
            "/v1/collections/{collection}",
            get(get_collection).delete(delete_collection),
        )
        .route(
            "/v1/collections/{collection}/documents",
            post(add_document).get(list_documents),
        )
        .route(
            "/v1/collections/{collection}/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .route(
            "/v1/collections/{collection}/documents/{id}/reindex",
            post(reindex_document),
        )
        .route("/v1/collections/{collection}/query", post(query))
        .route("/v1/collections/{collection}/answer", post(answer::answer))
}

#[derive(OpenApi)]
#[openapi(
    paths(create_collection, list_collections, get_collection, delete_collection, add_document,
          list_documents, get_document, delete_document, reindex_document, query, answer::answer),
    components(schemas(NewCollection, EmbeddingSpec, ChunkingSpec, Collection, CollectionList,
                       AddDocument, Document, DocumentWithContent, DocumentPage, QueryRequest,
                       Mode, Hit, QueryResult, answer::AnswerRequest, answer::Answer,
                       answer::Citation, answer::AnswerUsage, Metadata, Problem)),
    tags((name = "rag", description = "Collections of documents, hybrid search and cited answers"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

problem_responses! {
    /// The tenant has no such collection or document.
    NotFound = 404;
    /// The gateway (embedding or chat model of the collection) failed or refused.
    BadGateway = 502;
    /// The gateway did not answer in time.
    GatewayTimeout = 504;
}

/// The path's collection name.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct CollectionPath {
    /// The collection's name.
    #[param(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    collection: String,
}

/// The path's collection and document.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct DocumentPath {
    /// The collection's name.
    #[param(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    collection: String,
    /// The document's id.
    id: Uuid,
}

fn check_text(what: &str, s: &Option<String>, max: usize) -> ApiResult<()> {
    if let Some(s) = s
        && (s.chars().count() > max || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(ApiError::Validation(format!(
            "{what}: at most {max} characters, no control characters"
        )));
    }
    Ok(())
}

/// A new collection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    /// 1 to 63 of a-z, 0-9, `.`, `_` and `-`, unique in the tenant.
    #[schema(min_length = 1, max_length = 63, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    pub name: String,
    #[schema(
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// The model that embeds documents and queries; fixed at creation.
    #[serde(default)]
    pub embedding: Option<EmbeddingSpec>,
    /// How documents are cut; fixed at creation (re-index applies it to old documents).
    #[serde(default)]
    pub chunking: Option<ChunkingSpec>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// `all-MiniLM-L6-v2` (the in-process model, 384 dimensions, the default) or a model
    /// the gateway serves.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub model: String,
    /// The length of the model's vectors: 384, 768, 1024 or 1536. Required for gateway
    /// models; 384 for the in-process one.
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>)]
    pub dimensions: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkingSpec {
    /// Most tokens of a chunk: 16 up to what the model reads (254 for the in-process
    /// model; 8192 otherwise). Default 200.
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>, minimum = 16, maximum = 8192)]
    pub tokens: Option<u64>,
    /// Tokens repeated from the end of a chunk at the start of the next: at most half of
    /// `tokens`. Default 40 (or a fifth of `tokens`, if less).
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>, maximum = 4096)]
    pub overlap: Option<u64>,
}

impl NewCollection {
    fn check(self, rag: &Store) -> ApiResult<CollectionSpec> {
        check_name(&self.name)?;
        check_text("description", &self.description, MAX_DESCRIPTION)?;
        let (model, dims) = match self.embedding {
            None => (MODEL_NAME.to_string(), None),
            Some(e) => (e.model, e.dimensions),
        };
        if model.is_empty() || model.len() > 256 || model.chars().any(char::is_control) {
            return Err(ApiError::Validation(
                "embedding.model: 1 to 256 characters without control characters".into(),
            ));
        }
        let local = model == MODEL_NAME;
        let dimensions = match (local, dims) {
            (true, None | Some(384)) => 384,
            (true, Some(d)) => {
                return Err(ApiError::Validation(format!(
                    "embedding.dimensions: {MODEL_NAME} has 384 dimensions, not {d}"
                )));
            }
            (false, None) => {
                return Err(ApiError::Validation(
                    "embedding.dimensions: required for a model the gateway serves".into(),
                ));
            }
            (false, Some(d)) if DIMENSIONS.contains(&(d as usize)) => d as usize,
            (false, Some(d)) => {
                return Err(ApiError::Validation(format!(
                    "embedding.dimensions: {d} is not one of 384, 768, 1024, 1536"
                )));
            }
        };
        if !local && rag.gateway().is_none() {
            return Err(ApiError::Validation(format!(
                "embedding.model: this service has no gateway ({} is not set); use {MODEL_NAME}",
                crate::shared::gateway_client::URL_SETTING
            )));
        }
        let max_tokens = if local {
            // The model reads max_tokens with its two markers.
            rag.local().max_tokens().saturating_sub(2) as u64
        } else {
            MAX_CHUNK_TOKENS
        };
        let chunking = self.chunking.unwrap_or(ChunkingSpec {
            tokens: None,
            overlap: None,
        });
        let tokens = chunking.tokens.unwrap_or(200.min(max_tokens));
        if !(16..=max_tokens).contains(&tokens) {
            return Err(ApiError::Validation(format!(
                "chunking.tokens: from 16 to {max_tokens} for {model}"
            )));
        }
        let overlap = chunking.overlap.unwrap_or(40.min(tokens / 5));
        if overlap > tokens / 2 {
            return Err(ApiError::Validation(format!(
                "chunking.overlap: at most half of chunking.tokens ({})",
                tokens / 2
            )));
        }
        Ok(CollectionSpec {
            name: self.name,
            description: self.description,
            embedding_model: model,
            dimensions,
            sizes: Sizes {
                tokens: tokens as usize,
                overlap: overlap as usize,
            },
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    pub items: Vec<Collection>,
}

#[utoipa::path(post, path = "/v1/collections", tag = "rag", request_body = NewCollection,
    responses((status = 201, description = "Created", body = Collection), NotAdmin,
              (status = 409, description = "The tenant has a collection of that name", body = Problem, content_type = "application/problem+json")))]
async fn create_collection(
    State(state): State<RagState>,
    p: Principal,
    Json(input): Json<NewCollection>,
) -> ApiResult<(StatusCode, Json<Collection>)> {
    p.require_admin()?;
    let rag = state.component();
    let spec = input.check(rag)?;
    let created = index::create_collection(rag, &p.tenant_id, spec).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/collections", tag = "rag",
    responses((status = 200, description = "The tenant's collections, by name", body = CollectionList)))]
async fn list_collections(
    State(state): State<RagState>,
    p: Principal,
) -> ApiResult<Json<CollectionList>> {
    let items = index::list_collections(state.component(), &p.tenant_id).await?;
    Ok(Json(CollectionList { items }))
}

#[utoipa::path(get, path = "/v1/collections/{collection}", tag = "rag", params(CollectionPath),
    responses((status = 200, description = "The collection", body = Collection), NotFound))]
async fn get_collection(
    State(state): State<RagState>,
    p: Principal,
    Path(path): Path<CollectionPath>,
) -> ApiResult<Json<Collection>> {
    check_name(&path.collection)?;
    Ok(Json(
        index::collection(state.component(), &p.tenant_id, &path.collection).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/collections/{collection}", tag = "rag", params(CollectionPath),
    responses((status = 204, description = "Deleted, with its documents"), NotAdmin, NotFound))]
async fn delete_collection(
    State(state): State<RagState>,
    p: Principal,
    Path(path): Path<CollectionPath>,
) -> ApiResult<StatusCode> {
    check_name(&path.collection)?;
    p.require_admin()?;
    if index::delete_collection(state.component(), &p.tenant_id, &path.collection).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(index::not_found_collection(&path.collection))
    }
}

/// A document given as text.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDocument {
    /// The text; Markdown headings become the headings of its chunks.
    #[schema(min_length = 1, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub text: String,
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub title: Option<String>,
    /// Where the text comes from (a URL, a path), shown in citations.
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub source: Option<String>,
    /// A flat object of strings, numbers, booleans and nulls (at most 32 keys), which
    /// queries can filter on.
    #[serde(default)]
    #[schema(value_type = Metadata)]
    pub metadata: Map<String, Value>,
}

impl AddDocument {
    fn check(self, rag: &Store) -> ApiResult<NewDocument> {
        if self.text.trim().is_empty() {
            return Err(ApiError::Validation("text: must not be empty".into()));
        }
        let max = rag.settings.max_document_bytes;
        if self.text.len() > max {
            return Err(ApiError::Validation(format!("text: at most {max} bytes")));
        }
        check_text("title", &self.title, MAX_TITLE)?;
        check_text("source", &self.source, MAX_SOURCE)?;
        check_metadata("metadata", &self.metadata)?;
        Ok(NewDocument {
            title: self.title,
            text: self.text,
            source: self.source,
            content_type: Some("text/plain".into()),
            checksum: None,
            metadata: self.metadata,
        })
    }
}

#[utoipa::path(post, path = "/v1/collections/{collection}/documents", tag = "rag",
    params(CollectionPath), request_body = AddDocument,
    responses((status = 201, description = "Indexed", body = Document),
              (status = 200, description = "The collection already holds this text: the document that has it", body = Document),
              NotFound, BadGateway, GatewayTimeout))]
async fn add_document(
    State(state): State<RagState>,
    p: Principal,
    who: OnBehalfOf,
    Extension(ctx): Extension<RequestContext>,
    Path(path): Path<CollectionPath>,
    Json(input): Json<AddDocument>,
) -> ApiResult<(StatusCode, Json<Document>)> {
    check_name(&path.collection)?;
    let rag = state.component();
    let doc = input.check(rag)?;
    let added = index::add_document(rag, &p.tenant_id, &path.collection, doc, &who, &ctx).await?;
    Ok(match added {
        index::Added::Created(d) => (StatusCode::CREATED, Json(d)),
        index::Added::Existing(d) => (StatusCode::OK, Json(d)),
    })
}

/// A page of documents.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// From the previous page's `next_cursor`.
    #[param(pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$")]
    cursor: Option<String>,
    /// Documents per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct DocumentPage {
    pub items: Vec<Document>,
    /// The cursor of the next page; absent on the last.
    pub next_cursor: Option<String>,
}

fn encode_cursor(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(c: &str) -> ApiResult<Uuid> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| ApiError::BadRequest("cursor: not a cursor from a previous page".into()))
}

#[utoipa::path(get, path = "/v1/collections/{collection}/documents", tag = "rag",
    params(CollectionPath, PageQuery),
    responses((status = 200, description = "Documents, oldest first", body = DocumentPage), NotFound))]
async fn list_documents(
    State(state): State<RagState>,
    p: Principal,
    Path(path): Path<CollectionPath>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<DocumentPage>> {
    check_name(&path.collection)?;
    let limit = page.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit: from 1 to {MAX_PAGE}")));
    }
    let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
    let rag = state.component();
    let mut tx = rag.begin(&p.tenant_id).await?;
    let collection = index::find_collection(&mut tx, &p.tenant_id, &path.collection)
        .await?
        .ok_or_else(|| index::not_found_collection(&path.collection))?;
    let mut items = sqlx::query_as::<_, Document>(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM rag_documents WHERE tenant_id = $1 AND collection_id = $2 \
         AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4"
    ))
    .bind(&p.tenant_id)
    .bind(collection.id)
    .bind(after)
    .bind(limit as i64 + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let more = items.len() as u64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|d| encode_cursor(d.id)))
        .flatten();
    Ok(Json(DocumentPage { items, next_cursor }))
}

/// A document with its text.
#[derive(Serialize, ToSchema)]
pub struct DocumentWithContent {
    #[serde(flatten)]
    pub document: Document,
    pub content: String,
}

async fn document_of(
    rag: &Store,
    tenant: &str,
    path: &DocumentPath,
) -> ApiResult<(Collection, Document, String)> {
    let mut tx = rag.begin(tenant).await?;
    let collection = index::find_collection(&mut tx, tenant, &path.collection)
        .await?
        .ok_or_else(|| index::not_found_collection(&path.collection))?;
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        document: Document,
        content: String,
    }
    let row = sqlx::query_as::<_, Row>(&format!(
        "SELECT {DOCUMENT_COLUMNS}, content FROM rag_documents \
         WHERE tenant_id = $1 AND collection_id = $2 AND id = $3"
    ))
    .bind(tenant)
    .bind(collection.id)
    .bind(path.id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("the collection has no document {}", path.id)))?;
    tx.commit().await?;
    Ok((collection, row.document, row.content))
}

#[utoipa::path(get, path = "/v1/collections/{collection}/documents/{id}", tag = "rag",
    params(DocumentPath),
    responses((status = 200, description = "The document and its text", body = DocumentWithContent), NotFound))]
async fn get_document(
    State(state): State<RagState>,
    p: Principal,
    Path(path): Path<DocumentPath>,
) -> ApiResult<Json<DocumentWithContent>> {
    check_name(&path.collection)?;
    let (_, document, content) = document_of(state.component(), &p.tenant_id, &path).await?;
    Ok(Json(DocumentWithContent { document, content }))
}

#[utoipa::path(delete, path = "/v1/collections/{collection}/documents/{id}", tag = "rag",
    params(DocumentPath),
    responses((status = 204, description = "Deleted, with its chunks"), NotFound))]
async fn delete_document(
    State(state): State<RagState>,
    p: Principal,
    Path(path): Path<DocumentPath>,
) -> ApiResult<StatusCode> {
    check_name(&path.collection)?;
    let rag = state.component();
    let mut tx = rag.begin(&p.tenant_id).await?;
    let collection = index::find_collection(&mut tx, &p.tenant_id, &path.collection)
        .await?
        .ok_or_else(|| index::not_found_collection(&path.collection))?;
    let done = sqlx::query(
        "DELETE FROM rag_documents WHERE tenant_id = $1 AND collection_id = $2 AND id = $3",
    )
    .bind(&p.tenant_id)
    .bind(collection.id)
    .bind(path.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!(
            "the collection has no document {}",
            path.id
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/collections/{collection}/documents/{id}/reindex", tag = "rag",
    params(DocumentPath),
    responses((status = 200, description = "Cut and embedded again with the collection's settings", body = Document),
              NotFound, BadGateway, GatewayTimeout))]
async fn reindex_document(
    State(state): State<RagState>,
    p: Principal,
    who: OnBehalfOf,
    Extension(ctx): Extension<RequestContext>,
    Path(path): Path<DocumentPath>,
) -> ApiResult<Json<Document>> {
    check_name(&path.collection)?;
    let rag = state.component();
    let (collection, document, content) = document_of(rag, &p.tenant_id, &path).await?;
    let chunks = index::chunk(rag, &collection, &content).await?;
    let vectors = index::embed(rag, &collection, &chunks, &who, &ctx).await?;
    let tokens: i64 = chunks.iter().map(|c| c.tokens as i64).sum();
    let count = chunks.len() as i32;
    let mut tx = rag.begin(&p.tenant_id).await?;
    let updated = sqlx::query_as::<_, Document>(&format!(
        "UPDATE rag_documents SET chunks = $4, tokens = $5, indexed_at = now() \
         WHERE tenant_id = $1 AND collection_id = $2 AND id = $3 RETURNING {DOCUMENT_COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(collection.id)
    .bind(document.id)
    .bind(count)
    .bind(tokens)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("the collection has no document {}", path.id)))?;
    sqlx::query("DELETE FROM rag_chunks WHERE tenant_id = $1 AND document_id = $2")
        .bind(&p.tenant_id)
        .bind(document.id)
        .execute(&mut *tx)
        .await?;
    index::insert_chunks(
        &mut tx,
        &p.tenant_id,
        &collection,
        document.id,
        &updated.metadata,
        chunks,
        vectors,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(updated))
}

/// A search of one collection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// What to look for: 1 to 2000 characters.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub query: String,
    #[serde(default)]
    pub mode: Mode,
    /// Chunks to return, 1 to 50 (default 5).
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 50)]
    pub top_k: Option<u64>,
    /// Only chunks of documents whose metadata has all of these values.
    #[serde(default)]
    #[schema(value_type = Option<Metadata>)]
    pub filter: Option<Map<String, Value>>,
    /// The query's embedding, computed by the caller with the collection's model: the
    /// vector leg uses it instead of embedding `query`. As many values as the
    /// collection's dimensions; not for keyword queries.
    #[serde(default)]
    #[schema(max_items = 1536)]
    pub vector: Option<Vec<f32>>,
}

/// A caller's vector for `collection`, checked.
fn check_vector(v: &[f32], mode: Mode, collection: &Collection) -> ApiResult<()> {
    if mode == Mode::Keyword {
        return Err(ApiError::Validation(
            "vector: keyword queries use no vector".into(),
        ));
    }
    if v.len() != collection.dimensions {
        return Err(ApiError::Validation(format!(
            "vector: {} values, but the collection's vectors have {}",
            v.len(),
            collection.dimensions
        )));
    }
    if v.iter().any(|x| !x.is_finite()) || v.iter().all(|&x| x == 0.0) {
        return Err(ApiError::Validation(
            "vector: finite values, not all zero".into(),
        ));
    }
    Ok(())
}

/// A query, checked: its text, top k and filter.
pub(crate) fn check_query(
    field: &str,
    query: &str,
    top_k: Option<u64>,
    filter: &Option<Map<String, Value>>,
) -> ApiResult<usize> {
    if query.trim().is_empty() || query.chars().count() > MAX_QUERY {
        return Err(ApiError::Validation(format!(
            "{field}: 1 to {MAX_QUERY} characters, not only white space"
        )));
    }
    let top_k = top_k.unwrap_or(5);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(ApiError::Validation(format!(
            "top_k: from 1 to {MAX_TOP_K}"
        )));
    }
    if let Some(f) = filter {
        check_metadata("filter", f)?;
    }
    Ok(top_k as usize)
}

#[derive(Serialize, ToSchema)]
pub struct QueryResult {
    pub mode: Mode,
    pub hits: Vec<Hit>,
}

/// Runs a checked query against the tenant's collection.
pub(crate) async fn run_query(
    rag: &Store,
    tenant: &str,
    collection: &Collection,
    mut q: search::Query<'_>,
    who: &OnBehalfOf,
    ctx: &RequestContext,
) -> ApiResult<Vec<Hit>> {
    let vector = match (q.mode, q.vector.take()) {
        (Mode::Keyword, _) => None,
        (_, Some(given)) => Some(given),
        _ => Some(index::embed_query(rag, collection, q.text, who, ctx).await?),
    };
    search::search(rag, tenant, collection, search::Query { vector, ..q }).await
}

#[utoipa::path(post, path = "/v1/collections/{collection}/query", tag = "rag",
    params(CollectionPath), request_body = QueryRequest,
    responses((status = 200, description = "The best chunks, best first", body = QueryResult),
              NotFound, BadGateway, GatewayTimeout))]
async fn query(
    State(state): State<RagState>,
    p: Principal,
    who: OnBehalfOf,
    Extension(ctx): Extension<RequestContext>,
    Path(path): Path<CollectionPath>,
    Json(input): Json<QueryRequest>,
) -> ApiResult<Json<QueryResult>> {
    check_name(&path.collection)?;
    let top_k = check_query("query", &input.query, input.top_k, &input.filter)?;
    let rag = state.component();
    let mode = input.mode;
    let q = search::Query {
        text: &input.query,
        vector: input.vector,
        mode,
        top_k,
        filter: input.filter,
    };
    let hits = if q.vector.is_some() || mode == Mode::Keyword {
        // Nothing to embed: the collection is read in the search's own transaction.
        let mut tx = search::begin(rag.db(), &p.tenant_id, search::leg(top_k)).await?;
        let collection = index::find_collection(&mut tx, &p.tenant_id, &path.collection)
            .await?
            .ok_or_else(|| index::not_found_collection(&path.collection))?;
        if let Some(v) = &q.vector {
            check_vector(v, mode, &collection)?;
        }
        let hits = search::run(&mut tx, &p.tenant_id, &collection, q).await?;
        tx.commit().await?;
        hits
    } else {
        let collection = index::collection(rag, &p.tenant_id, &path.collection).await?;
        run_query(rag, &p.tenant_id, &collection, q, &who, &ctx).await?
    };
    Ok(Json(QueryResult { mode, hits }))
}
