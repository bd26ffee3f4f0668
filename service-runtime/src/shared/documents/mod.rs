//! The document store of rag, which data ingestion writes into too: collections, cutting
//! a document into chunks, embedding them and storing document and chunks together, in
//! Postgres behind row-level security (migration 0006).

pub mod chunk;
pub mod metadata;
pub mod settings;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{ApiError, ApiResult, AppState, RequestContext};
use crate::shared::embed::{self, Embedder, GatewayEmbedder, LocalEmbedder};
use crate::shared::gateway_client::{GatewayClient, OnBehalfOf};
use chunk::{Chunk, Sizes};
use settings::Settings;

/// Characters of a collection's name.
pub const MAX_COLLECTION_NAME: usize = faas_model::rag::MAX_COLLECTION_NAME;

/// A collection's name: 1 to 63 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or
/// digit (422 naming `collection` otherwise). The rule is faas-model's, which agent
/// definitions are checked with too.
pub fn check_collection_name(name: &str) -> ApiResult<()> {
    let ok = faas_model::rag::is_collection_name(name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "collection: 1 to {MAX_COLLECTION_NAME} of a-z, 0-9, '.', '_' and '-', starting \
             with a letter or digit"
        )))
    }
}

/// Dimensions a collection's vectors may have: one HNSW index each.
pub const DIMENSIONS: [usize; 4] = [384, 768, 1024, 1536];
/// Texts sent to the embedding model in one call.
const EMBED_BATCH: usize = 64;

/// The store, as the components that use it hold it. Cheap to clone; holds no data
/// beyond the model's weights.
#[derive(Clone)]
pub struct Store {
    db: PgPool,
    local: LocalEmbedder,
    gateway: Option<GatewayClient>,
    pub settings: Arc<Settings>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("gateway", &self.gateway)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Reads the settings, loads (or shares) the local model, and the gateway client when
    /// `FAAS_GATEWAY_URL` is set; an error names the setting that is missing or wrong.
    pub fn from_state(state: &AppState) -> anyhow::Result<Store> {
        let settings = Settings::from_source(&state.config.source)?;
        let local = LocalEmbedder::of_process(state)?;
        let gateway = match state
            .config
            .source
            .get(crate::shared::gateway_client::URL_SETTING)
        {
            Some(_) => Some(GatewayClient::from_source(
                &state.config.source,
                state.http.clone(),
                settings.gateway_timeout,
            )?),
            None => None,
        };
        let db = state
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the document store needs Postgres (DATABASE_URL)"))?;
        Ok(Store {
            db,
            local,
            gateway,
            settings: Arc::new(settings),
        })
    }

    pub fn db(&self) -> &PgPool {
        &self.db
    }

    pub fn local(&self) -> &LocalEmbedder {
        &self.local
    }

    pub fn gateway(&self) -> Option<&GatewayClient> {
        self.gateway.as_ref()
    }

    /// A transaction in which row-level security shows `tenant`'s rows only.
    pub async fn begin(&self, tenant: &str) -> ApiResult<Transaction<'static, Postgres>> {
        crate::platform::tenant_transaction(&self.db, tenant).await
    }

    /// The embedding model of `collection`.
    fn embedder(&self, collection: &Collection) -> ApiResult<Box<dyn Embedder>> {
        if collection.embedding_model == embed::MODEL_NAME {
            return Ok(Box::new(self.local.clone()));
        }
        let client = self.gateway.clone().ok_or_else(|| {
            ApiError::Unavailable(format!(
                "the collection's model {} is served by the gateway, and this service has \
                 none ({} is not set)",
                collection.embedding_model,
                crate::shared::gateway_client::URL_SETTING
            ))
        })?;
        Ok(Box::new(GatewayEmbedder::new(
            client,
            collection.embedding_model.clone(),
            collection.dimensions,
        )))
    }

    /// Tokens of `text` as `collection`'s model counts them: exactly for the local model,
    /// about four characters a token for others.
    fn counter(&self, collection: &Collection) -> Box<dyn Fn(&str) -> usize + Send + Sync> {
        if collection.embedding_model == embed::MODEL_NAME {
            let local = self.local.clone();
            Box::new(move |t| local.count_tokens(t))
        } else {
            Box::new(|t: &str| t.len().div_ceil(4))
        }
    }
}

/// A tenant's collection: the model and dimension of its vectors, fixed at creation,
/// and how its documents are cut.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Collection {
    #[serde(skip)]
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub embedding_model: String,
    #[schema(value_type = u32)]
    #[sqlx(try_from = "i32")]
    pub dimensions: usize,
    #[schema(value_type = u32)]
    #[sqlx(try_from = "i32")]
    pub chunk_tokens: usize,
    #[schema(value_type = u32)]
    #[sqlx(try_from = "i32")]
    pub chunk_overlap: usize,
    pub created_at: DateTime<Utc>,
}

impl Collection {
    pub fn sizes(&self) -> Sizes {
        Sizes {
            tokens: self.chunk_tokens,
            overlap: self.chunk_overlap,
        }
    }
}

const COLLECTION_COLUMNS: &str =
    "id, name, description, embedding_model, dimensions, chunk_tokens, chunk_overlap, created_at";

/// A stored document, without its text.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Document {
    pub id: Uuid,
    pub title: Option<String>,
    pub source: Option<String>,
    pub content_type: Option<String>,
    /// SHA-256 of the text (or of the file it came from), hex: the same content is
    /// stored once per collection.
    pub checksum: String,
    #[schema(value_type = Object)]
    pub metadata: sqlx::types::Json<Map<String, Value>>,
    pub chunks: i32,
    pub tokens: i64,
    pub created_at: DateTime<Utc>,
    pub indexed_at: DateTime<Utc>,
}

pub const DOCUMENT_COLUMNS: &str = "id, title, source, content_type, checksum, metadata, chunks, \
                                    tokens, created_at, indexed_at";

/// A document to index.
#[derive(Debug, Clone, Default)]
pub struct NewDocument {
    pub title: Option<String>,
    pub text: String,
    pub source: Option<String>,
    pub content_type: Option<String>,
    /// The checksum of what the text came from; the text's own when absent.
    pub checksum: Option<String>,
    pub metadata: Map<String, Value>,
}

impl NewDocument {
    fn checksum(&self) -> String {
        self.checksum
            .clone()
            .unwrap_or_else(|| hex::encode(Sha256::digest(self.text.as_bytes())))
    }
}

/// The outcome of storing: a new document, or the one with the same content already there.
#[derive(Debug, Clone)]
pub enum Added {
    Created(Document),
    Existing(Document),
}

impl Added {
    pub fn document(&self) -> &Document {
        match self {
            Added::Created(d) | Added::Existing(d) => d,
        }
    }
}

/// The tenant's collection of that name; 404 when it has none.
pub async fn collection(rag: &Store, tenant: &str, name: &str) -> ApiResult<Collection> {
    let mut tx = rag.begin(tenant).await?;
    let found = find_collection(&mut tx, tenant, name).await?;
    tx.commit().await?;
    found.ok_or_else(|| not_found_collection(name))
}

pub fn not_found_collection(name: &str) -> ApiError {
    ApiError::NotFound(format!("the tenant has no collection named {name:?}"))
}

pub async fn find_collection(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    name: &str,
) -> ApiResult<Option<Collection>> {
    Ok(sqlx::query_as::<_, Collection>(&format!(
        "SELECT {COLLECTION_COLUMNS} FROM rag_collections WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn list_collections(rag: &Store, tenant: &str) -> ApiResult<Vec<Collection>> {
    let mut tx = rag.begin(tenant).await?;
    let rows = sqlx::query_as::<_, Collection>(&format!(
        "SELECT {COLLECTION_COLUMNS} FROM rag_collections WHERE tenant_id = $1 ORDER BY name"
    ))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// What a new collection is made of; checked by the caller.
pub struct CollectionSpec {
    pub name: String,
    pub description: Option<String>,
    pub embedding_model: String,
    pub dimensions: usize,
    pub sizes: Sizes,
}

pub async fn create_collection(
    rag: &Store,
    tenant: &str,
    spec: CollectionSpec,
) -> ApiResult<Collection> {
    let mut tx = rag.begin(tenant).await?;
    let created = sqlx::query_as::<_, Collection>(&format!(
        "INSERT INTO rag_collections (tenant_id, id, name, description, embedding_model, \
         dimensions, chunk_tokens, chunk_overlap) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, name) DO NOTHING RETURNING {COLLECTION_COLUMNS}"
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(&spec.name)
    .bind(&spec.description)
    .bind(&spec.embedding_model)
    .bind(spec.dimensions as i32)
    .bind(spec.sizes.tokens as i32)
    .bind(spec.sizes.overlap as i32)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    created.ok_or_else(|| {
        ApiError::Conflict(format!(
            "the tenant already has a collection named {:?}",
            spec.name
        ))
    })
}

/// Deletes the collection with its documents and chunks; false when there was none.
pub async fn delete_collection(rag: &Store, tenant: &str, name: &str) -> ApiResult<bool> {
    let mut tx = rag.begin(tenant).await?;
    let done = sqlx::query("DELETE FROM rag_collections WHERE tenant_id = $1 AND name = $2")
        .bind(tenant)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// The chunks of `text` for `collection`. Tokenizing is CPU work: this runs on a
/// blocking thread.
/// A text that leaves no chunk (nothing but headings) is refused, naming `text`.
pub async fn chunk(rag: &Store, collection: &Collection, text: &str) -> ApiResult<Vec<Chunk>> {
    let count = rag.counter(collection);
    let sizes = collection.sizes();
    let text = text.to_string();
    let chunks = tokio::task::spawn_blocking(move || chunk::chunk(&text, sizes, &*count))
        .await
        .map_err(ApiError::internal)?;
    if chunks.is_empty() {
        return Err(ApiError::Validation(
            "text: nothing to index (no text outside headings)".into(),
        ));
    }
    Ok(chunks)
}

/// The vectors of `chunks` by `collection`'s model, in order, on behalf of `who`.
pub async fn embed(
    rag: &Store,
    collection: &Collection,
    chunks: &[Chunk],
    who: &OnBehalfOf,
    ctx: &RequestContext,
) -> ApiResult<Vec<Vec<f32>>> {
    let model = rag.embedder(collection)?;
    let mut out = Vec::with_capacity(chunks.len());
    for batch in chunks.chunks(EMBED_BATCH) {
        let texts = batch.iter().map(Chunk::embedding_text).collect();
        let done = model.embed(who, ctx, texts).await?;
        out.extend(done.vectors);
    }
    Ok(out)
}

/// Embeds a query text by `collection`'s model.
pub async fn embed_query(
    rag: &Store,
    collection: &Collection,
    text: &str,
    who: &OnBehalfOf,
    ctx: &RequestContext,
) -> ApiResult<Vec<f32>> {
    let model = rag.embedder(collection)?;
    let mut done = model.embed(who, ctx, vec![text.to_string()]).await?;
    done.vectors
        .pop()
        .ok_or_else(|| ApiError::BadGateway("the embedding model answered no vector".into()))
}

/// Stores `doc` with its chunks and their vectors in one transaction. The same content
/// (checksum) in the same collection is stored once: the second time answers the first
/// document and writes nothing.
pub async fn store(
    rag: &Store,
    tenant: &str,
    collection: &Collection,
    doc: NewDocument,
    chunks: Vec<Chunk>,
    vectors: Vec<Vec<f32>>,
) -> ApiResult<Added> {
    if chunks.len() != vectors.len() {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "{} chunks but {} vectors",
            chunks.len(),
            vectors.len()
        )));
    }
    let mut doc = doc;
    if let std::borrow::Cow::Owned(text) = crate::platform::without_nul(&doc.text) {
        doc.text = text;
    }
    let checksum = doc.checksum();
    let mut tx = rag.begin(tenant).await?;
    let tokens: i64 = chunks.iter().map(|c| c.tokens as i64).sum();
    let created = sqlx::query_as::<_, Document>(&format!(
        "INSERT INTO rag_documents (tenant_id, id, collection_id, title, source, content_type, \
         checksum, metadata, content, chunks, tokens) \
         SELECT $1, $2, c.id, $4, $5, $6, $7, $8, $9, $10, $11 FROM rag_collections c \
         WHERE c.tenant_id = $1 AND c.id = $3 \
         ON CONFLICT (tenant_id, collection_id, checksum) DO NOTHING RETURNING {DOCUMENT_COLUMNS}"
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(collection.id)
    .bind(&doc.title)
    .bind(&doc.source)
    .bind(&doc.content_type)
    .bind(&checksum)
    .bind(sqlx::types::Json(&doc.metadata))
    .bind(&doc.text)
    .bind(chunks.len() as i32)
    .bind(tokens)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(document) = created else {
        let existing = sqlx::query_as::<_, Document>(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM rag_documents \
             WHERE tenant_id = $1 AND collection_id = $2 AND checksum = $3"
        ))
        .bind(tenant)
        .bind(collection.id)
        .bind(&checksum)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        return existing
            .map(Added::Existing)
            .ok_or_else(|| not_found_collection(&collection.name));
    };
    insert_chunks(
        &mut tx,
        tenant,
        collection,
        document.id,
        &doc.metadata,
        chunks,
        vectors,
    )
    .await?;
    tx.commit().await?;
    Ok(Added::Created(document))
}

/// Writes the chunks of one document (in batches, one statement each).
pub async fn insert_chunks(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    collection: &Collection,
    document: Uuid,
    metadata: &Map<String, Value>,
    chunks: Vec<Chunk>,
    vectors: Vec<Vec<f32>>,
) -> ApiResult<()> {
    let meta = sqlx::types::Json(metadata);
    let rows: Vec<(Chunk, Vec<f32>)> = chunks.into_iter().zip(vectors).collect();
    for batch in rows.chunks(500) {
        let mut qb = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO rag_chunks (tenant_id, collection_id, document_id, ord, heading, \
             content, tokens, metadata, dims, embedding) ",
        );
        qb.push_values(batch, |mut b, (c, v)| {
            b.push_bind(tenant)
                .push_bind(collection.id)
                .push_bind(document)
                .push_bind(c.ord as i32)
                .push_bind(&c.heading)
                .push_bind(&c.text)
                .push_bind(c.tokens as i32)
                .push_bind(meta)
                .push_bind(collection.dimensions as i32)
                .push_bind(pgvector::Vector::from(v.clone()));
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Chunks, embeds and stores `doc` in the tenant's collection `name`.
pub async fn add_document(
    rag: &Store,
    tenant: &str,
    name: &str,
    doc: NewDocument,
    who: &OnBehalfOf,
    ctx: &RequestContext,
) -> ApiResult<Added> {
    let collection = collection(rag, tenant, name).await?;
    if let Some(existing) = find_document_by_checksum(rag, tenant, &collection, &doc).await? {
        return Ok(Added::Existing(existing));
    }
    let chunks = chunk(rag, &collection, &doc.text).await?;
    let vectors = embed(rag, &collection, &chunks, who, ctx).await?;
    store(rag, tenant, &collection, doc, chunks, vectors).await
}

async fn find_document_by_checksum(
    rag: &Store,
    tenant: &str,
    collection: &Collection,
    doc: &NewDocument,
) -> ApiResult<Option<Document>> {
    document_by_checksum(rag, tenant, collection, &doc.checksum()).await
}

/// The collection's document of that content (checksum), if it holds one.
pub async fn document_by_checksum(
    rag: &Store,
    tenant: &str,
    collection: &Collection,
    checksum: &str,
) -> ApiResult<Option<Document>> {
    let mut tx = rag.begin(tenant).await?;
    let found = sqlx::query_as::<_, Document>(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM rag_documents \
         WHERE tenant_id = $1 AND collection_id = $2 AND checksum = $3"
    ))
    .bind(tenant)
    .bind(collection.id)
    .bind(checksum)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(found)
}
