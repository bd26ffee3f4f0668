//! Retrieval: the nearest chunks by vector (HNSW, cosine), the best by keywords (full
//! text), or both fused by reciprocal rank in one statement. Every statement names the
//! tenant and runs where row-level security shows that tenant's rows only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use sqlx::{PgPool, Postgres, Transaction};

use crate::platform::{ApiError, ApiResult};
use crate::shared::documents::{Collection, DIMENSIONS, Store};

/// The constant of reciprocal rank fusion: a rank r scores 1 / (K + r).
const RRF_K: f64 = 60.0;
/// Candidates each leg of a hybrid query returns, at least.
const MIN_LEG: usize = 40;

/// How a query finds chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nearest by meaning (cosine similarity of the embeddings).
    Vector,
    /// Best by words (Postgres full text, English stemming).
    Keyword,
    /// Both, fused by reciprocal rank.
    #[default]
    Hybrid,
}

/// One chunk found, with where it comes from.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Hit {
    pub document_id: Uuid,
    pub title: Option<String>,
    pub source: Option<String>,
    /// The chunk's place in its document, from 0.
    pub chunk: i32,
    pub heading: Option<String>,
    pub text: String,
    #[schema(value_type = Object)]
    pub metadata: sqlx::types::Json<Map<String, Value>>,
    /// Cosine similarity (vector), full-text rank (keyword) or fused score (hybrid):
    /// higher is better.
    pub score: f64,
    /// Rank in the vector leg, from 1, when the chunk was found there.
    pub vector_rank: Option<i64>,
    /// Rank in the keyword leg, from 1, when the chunk was found there.
    pub keyword_rank: Option<i64>,
    #[serde(skip)]
    pub tokens: i32,
}

/// A query, checked.
pub struct Query<'a> {
    pub text: &'a str,
    pub vector: Option<Vec<f32>>,
    pub mode: Mode,
    pub top_k: usize,
    pub filter: Option<Map<String, Value>>,
}

/// The chunk columns a hit shows, from `c` (chunks) and `d` (documents).
const HIT_COLUMNS: &str = "c.document_id, d.title, d.source, c.ord AS chunk, c.heading, \
                           c.content AS text, c.metadata, c.tokens";

/// The statement of `mode` for vectors of `dims` values. `$1` tenant, `$2` collection,
/// `$3` vector, `$4` query text, `$5` filter (or null), `$6` leg size, `$7` top k.
pub fn statement(mode: Mode, dims: usize) -> String {
    debug_assert!(DIMENSIONS.contains(&dims));
    let scope = "c.tenant_id = $1 AND c.collection_id = $2 AND ($5::jsonb IS NULL OR c.metadata @> $5::jsonb)";
    let vector_leg = format!(
        "SELECT c.id, c.embedding::vector({dims}) <=> $3::vector({dims}) AS distance \
         FROM rag_chunks c WHERE {scope} AND c.dims = {dims} \
         ORDER BY c.embedding::vector({dims}) <=> $3::vector({dims}) LIMIT $6"
    );
    let keyword_leg = format!(
        "SELECT c.id, ts_rank_cd(c.tsv, websearch_to_tsquery('english', $4)) AS rank \
         FROM rag_chunks c WHERE {scope} AND c.tsv @@ websearch_to_tsquery('english', $4) \
         ORDER BY rank DESC, c.id LIMIT $6"
    );
    // `f`: the candidates' ids and scores, best first. Only the `top_k` best are read
    // back, each by its key (a lateral join, so the plan cannot turn into a scan of
    // the tenant's chunks).
    let fused = match mode {
        Mode::Vector => format!(
            "SELECT id, (1 - distance)::float8 AS score, \
             row_number() OVER (ORDER BY distance) AS vr, NULL::int8 AS kr FROM ({vector_leg}) s"
        ),
        Mode::Keyword => format!(
            "SELECT id, rank::float8 AS score, NULL::int8 AS vr, \
             row_number() OVER (ORDER BY rank DESC, id) AS kr FROM ({keyword_leg}) s"
        ),
        Mode::Hybrid => format!(
            "WITH v AS (SELECT id, row_number() OVER (ORDER BY distance) AS r FROM ({vector_leg}) s), \
             k AS (SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS r FROM ({keyword_leg}) s) \
             SELECT id, (COALESCE(1.0 / ({RRF_K} + v.r), 0) + COALESCE(1.0 / ({RRF_K} + k.r), 0))::float8 \
             AS score, v.r AS vr, k.r AS kr FROM v FULL JOIN k USING (id)"
        ),
    };
    format!(
        "SELECT h.*, f.score, f.vr::int8 AS vector_rank, f.kr::int8 AS keyword_rank \
         FROM (SELECT * FROM ({fused}) a ORDER BY score DESC, id LIMIT $7) f \
         CROSS JOIN LATERAL (SELECT {HIT_COLUMNS} FROM rag_chunks c \
           JOIN rag_documents d ON d.tenant_id = $1 AND d.id = c.document_id \
           WHERE c.tenant_id = $1 AND c.id = f.id) h \
         ORDER BY f.score DESC, f.id"
    )
}

/// The size of each leg for `top_k` results.
pub fn leg(top_k: usize) -> usize {
    (top_k * 4).max(MIN_LEG)
}

/// A transaction for searching as `tenant`: row-level security set to the tenant, and
/// HNSW scans that keep going until they have found `leg` rows passing the filters
/// (pgvector 0.8 iterative scans), looking at least that far. One round trip after
/// `BEGIN`.
pub async fn begin(
    db: &PgPool,
    tenant: &str,
    leg: usize,
) -> ApiResult<Transaction<'static, Postgres>> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "SELECT set_config('faas.tenant_id', $1, true), \
         set_config('hnsw.iterative_scan', 'relaxed_order', true), \
         set_config('hnsw.ef_search', $2, true)",
    )
    .bind(tenant)
    .bind(leg.clamp(100, 1000).to_string())
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// The `top_k` best chunks of `collection` for `q`, in a transaction from [`begin`].
pub async fn run(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    collection: &Collection,
    q: Query<'_>,
) -> ApiResult<Vec<Hit>> {
    let dims = collection.dimensions;
    if !DIMENSIONS.contains(&dims) {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "collection {} has {dims} dimensions",
            collection.name
        )));
    }
    let vector = match (q.mode, q.vector) {
        (Mode::Keyword, _) => None,
        (_, Some(v)) => Some(pgvector::Vector::from(v)),
        (_, None) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a vector query without a vector"
            )));
        }
    };
    Ok(sqlx::query_as::<_, Hit>(&statement(q.mode, dims))
        .bind(tenant)
        .bind(collection.id)
        .bind(vector)
        .bind(q.text)
        .bind(q.filter.map(sqlx::types::Json))
        .bind(leg(q.top_k) as i64)
        .bind(q.top_k as i64)
        .fetch_all(&mut **tx)
        .await?)
}

/// The `top_k` best chunks of `collection` for `q`.
pub async fn search(
    rag: &Store,
    tenant: &str,
    collection: &Collection,
    q: Query<'_>,
) -> ApiResult<Vec<Hit>> {
    let mut tx = begin(rag.db(), tenant, leg(q.top_k)).await?;
    let hits = run(&mut tx, tenant, collection, q).await?;
    tx.commit().await?;
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_tenant_in_every_table_they_read() {
        for mode in [Mode::Vector, Mode::Keyword, Mode::Hybrid] {
            let s = statement(mode, 384);
            let reads = s.matches("FROM rag_chunks").count() + s.matches("JOIN rag_").count();
            let scoped =
                s.matches("c.tenant_id = $1").count() + s.matches("d.tenant_id = $1").count();
            assert!(reads > 0 && scoped >= reads, "{mode:?}: {s}");
        }
        assert!(statement(Mode::Hybrid, 768).contains("vector(768)"));
    }
}
