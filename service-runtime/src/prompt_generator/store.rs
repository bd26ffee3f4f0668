//! The prompt generator's rows: generations and the feedback on them. Every query runs in a
//! tenant transaction, so row-level security hides other tenants' rows whatever a query
//! forgets; a user sees their own generations and feedback, the tenant's admin all of them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{ApiError, ApiResult, Principal, tenant_transaction, without_nul};
use crate::shared::agents;

/// A generation as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Generation {
    pub id: Uuid,
    /// Who asked for it.
    pub user_id: String,
    pub description: String,
    /// The gateway model that wrote it.
    pub model: String,
    /// `succeeded` (`agent` passed every check) or `rejected` (no attempt did; `problems`
    /// says why).
    #[schema(pattern = "^(succeeded|rejected)$")]
    pub status: String,
    /// Model answers it took, corrections included.
    pub attempts: i32,
    /// The Agent's name.
    pub name: Option<String>,
    /// The Agent resource (apiVersion, kind, metadata, spec), when it succeeded.
    #[schema(value_type = Option<Object>)]
    pub agent: Option<sqlx::types::Json<Value>>,
    /// The problems of each refused answer, in order.
    #[schema(value_type = Vec<Vec<String>>)]
    pub problems: sqlx::types::Json<Value>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The API-managed agent created from it, if any.
    pub created_agent: Option<String>,
    pub created_at: DateTime<Utc>,
}

const GENERATION_COLUMNS: &str = "id, user_id, description, model, status, attempts, name, \
     agent, problems, prompt_tokens, completion_tokens, created_agent, created_at";

/// A generation to record.
pub struct NewGeneration<'a> {
    pub id: Uuid,
    pub description: &'a str,
    pub model: &'a str,
    pub attempts: u32,
    pub name: Option<&'a str>,
    pub agent: Option<&'a Value>,
    pub problems: &'a [Vec<String>],
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub async fn insert(
    db: &PgPool,
    caller: &Principal,
    g: &NewGeneration<'_>,
) -> ApiResult<Generation> {
    let tenant = caller.tenant_id.as_str();
    let problems: Vec<Vec<String>> = g
        .problems
        .iter()
        .map(|p| p.iter().map(|s| without_nul(s).into_owned()).collect())
        .collect();
    let mut tx = tenant_transaction(db, tenant).await?;
    let row = sqlx::query_as::<_, Generation>(&format!(
        "INSERT INTO prompt_generations (tenant_id, id, user_id, description, model, status, \
         attempts, name, agent, problems, prompt_tokens, completion_tokens) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {GENERATION_COLUMNS}"
    ))
    .bind(tenant)
    .bind(g.id)
    .bind(&caller.user_id)
    .bind(without_nul(g.description))
    .bind(g.model)
    .bind(if g.agent.is_some() {
        "succeeded"
    } else {
        "rejected"
    })
    .bind(i32::try_from(g.attempts).unwrap_or(i32::MAX))
    .bind(g.name)
    .bind(g.agent.map(sqlx::types::Json))
    .bind(sqlx::types::Json(problems))
    .bind(i64::try_from(g.prompt_tokens).unwrap_or(i64::MAX))
    .bind(i64::try_from(g.completion_tokens).unwrap_or(i64::MAX))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("there is no generation {id} of yours"))
}

/// The generation `id`, if the caller may see it.
pub async fn get(db: &PgPool, caller: &Principal, id: Uuid) -> ApiResult<Generation> {
    let mut tx = tenant_transaction(db, &caller.tenant_id).await?;
    let found = visible(&mut tx, caller, id, false).await?;
    tx.commit().await?;
    Ok(found)
}

async fn visible(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Principal,
    id: Uuid,
    lock: bool,
) -> ApiResult<Generation> {
    sqlx::query_as::<_, Generation>(&format!(
        "SELECT {GENERATION_COLUMNS} FROM prompt_generations WHERE tenant_id = $1 AND id = $2 \
         AND (user_id = $3 OR $4){}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(&caller.tenant_id)
    .bind(id)
    .bind(&caller.user_id)
    .bind(caller.is_admin)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| not_found(id))
}

/// The caller's generations (the tenant's, for its admin), newest first, after `before`.
pub async fn list(
    db: &PgPool,
    caller: &Principal,
    before: Option<Uuid>,
    limit: i64,
) -> ApiResult<Vec<Generation>> {
    let mut tx = tenant_transaction(db, &caller.tenant_id).await?;
    let items = sqlx::query_as::<_, Generation>(&format!(
        "SELECT {GENERATION_COLUMNS} FROM prompt_generations WHERE tenant_id = $1 \
         AND (user_id = $2 OR $3) AND ($4::uuid IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    ))
    .bind(&caller.tenant_id)
    .bind(&caller.user_id)
    .bind(caller.is_admin)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(items)
}

/// Creates the API-managed agent `name` from the generation `id` (its definition already
/// checked by the caller), and records it on the generation, in one transaction.
pub async fn create_agent(
    db: &PgPool,
    caller: &Principal,
    id: Uuid,
    name: &str,
    definition: &faas_model::agent::Definition,
) -> ApiResult<agents::Agent> {
    let mut tx = tenant_transaction(db, &caller.tenant_id).await?;
    visible(&mut tx, caller, id, true).await?;
    let created = agents::insert(
        &mut tx,
        &caller.tenant_id,
        name,
        definition,
        &caller.user_id,
    )
    .await?;
    sqlx::query(
        "UPDATE prompt_generations SET created_agent = $3 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(&caller.tenant_id)
    .bind(id)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(created)
}

/// A user's rating of a generation.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Feedback {
    pub generation_id: Uuid,
    pub user_id: String,
    /// 1 (useless) to 5 (used as it was).
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i16,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const FEEDBACK_COLUMNS: &str = "generation_id, user_id, rating, comment, created_at, updated_at";

/// Records the caller's feedback on a generation they may see, replacing what they gave
/// before.
pub async fn put_feedback(
    db: &PgPool,
    caller: &Principal,
    id: Uuid,
    rating: i16,
    comment: Option<&str>,
) -> ApiResult<Feedback> {
    let mut tx = tenant_transaction(db, &caller.tenant_id).await?;
    visible(&mut tx, caller, id, false).await?;
    let row = sqlx::query_as::<_, Feedback>(&format!(
        "INSERT INTO prompt_generation_feedback (tenant_id, generation_id, user_id, rating, comment) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (generation_id, user_id) DO UPDATE \
         SET rating = EXCLUDED.rating, comment = EXCLUDED.comment, updated_at = now() \
         RETURNING {FEEDBACK_COLUMNS}"
    ))
    .bind(&caller.tenant_id)
    .bind(id)
    .bind(&caller.user_id)
    .bind(rating)
    .bind(comment.map(without_nul))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Which feedback to read.
pub struct FeedbackFilter {
    pub generation: Option<Uuid>,
    pub min_rating: i16,
    pub max_rating: i16,
    /// Only feedback older than this (the previous page's last), newest first.
    pub before: Option<(DateTime<Utc>, Uuid, String)>,
    pub limit: i64,
}

/// Feedback the caller gave (the tenant's, for its admin), newest first.
pub async fn list_feedback(
    db: &PgPool,
    caller: &Principal,
    f: &FeedbackFilter,
) -> ApiResult<Vec<Feedback>> {
    let (at, generation, user) = match &f.before {
        Some((at, g, u)) => (Some(*at), Some(*g), Some(u.as_str())),
        None => (None, None, None),
    };
    let mut tx = tenant_transaction(db, &caller.tenant_id).await?;
    let items = sqlx::query_as::<_, Feedback>(&format!(
        "SELECT {FEEDBACK_COLUMNS} FROM prompt_generation_feedback WHERE tenant_id = $1 \
         AND (user_id = $2 OR $3) AND ($4::uuid IS NULL OR generation_id = $4) \
         AND rating BETWEEN $5 AND $6 \
         AND ($7::timestamptz IS NULL OR (updated_at, generation_id, user_id) < ($7, $8, $9)) \
         ORDER BY updated_at DESC, generation_id DESC, user_id DESC LIMIT $10"
    ))
    .bind(&caller.tenant_id)
    .bind(&caller.user_id)
    .bind(caller.is_admin)
    .bind(f.generation)
    .bind(f.min_rating)
    .bind(f.max_rating)
    .bind(at)
    .bind(generation)
    .bind(user)
    .bind(f.limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(items)
}
