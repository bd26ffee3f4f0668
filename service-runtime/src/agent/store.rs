//! The agent component's rows: agents, runs and their steps. Every query runs in a
//! tenant transaction, so row-level security hides other tenants' rows whatever a query
//! forgets.

use chrono::{DateTime, Utc};
use faas_model::agent::Definition;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::{ApiError, ApiResult, tenant_execute, tenant_transaction, without_nul};

pub use crate::shared::agents::{AGENT_COLUMNS, Agent, insert};

impl Agent {
    /// The stored definition, read as the model reads it.
    pub fn parsed(&self) -> ApiResult<Definition> {
        serde_json::from_value(self.definition.0.clone()).map_err(|e| {
            ApiError::internal(anyhow::anyhow!(
                "the stored definition of agent {} cannot be read: {e}",
                self.name
            ))
        })
    }
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("the tenant has no agent {name}"))
}

fn read_only(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "agent {name} is managed by an Agent resource and is read-only here; change the resource instead"
    ))
}

pub async fn get(db: &PgPool, tenant: &str, name: &str) -> ApiResult<Agent> {
    let mut tx = tenant_transaction(db, tenant).await?;
    let found = sqlx::query_as::<_, Agent>(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    found.ok_or_else(|| not_found(name))
}

pub async fn list(
    db: &PgPool,
    tenant: &str,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<Agent>> {
    let mut tx = tenant_transaction(db, tenant).await?;
    let items = sqlx::query_as::<_, Agent>(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR name > $2) ORDER BY name LIMIT $3"
    ))
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(items)
}

pub async fn create(
    db: &PgPool,
    tenant: &str,
    name: &str,
    definition: &Definition,
    user: &str,
) -> ApiResult<Agent> {
    let mut tx = tenant_transaction(db, tenant).await?;
    let created = insert(&mut tx, tenant, name, definition, user).await?;
    tx.commit().await?;
    Ok(created)
}

/// Locks an agent's row for a change through the API: it must exist and be API-managed.
async fn lock_writable(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &str,
    name: &str,
) -> ApiResult<()> {
    let source: Option<String> = sqlx::query_scalar(
        "SELECT source FROM agents WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    match source.as_deref() {
        None => Err(not_found(name)),
        Some("resource") => Err(read_only(name)),
        Some(_) => Ok(()),
    }
}

/// Replaces an API-managed agent's definition; the revision grows when it changed.
pub async fn replace(
    db: &PgPool,
    tenant: &str,
    name: &str,
    definition: &Definition,
) -> ApiResult<Agent> {
    let mut tx = tenant_transaction(db, tenant).await?;
    lock_writable(&mut tx, tenant, name).await?;
    let hash = definition.content_hash();
    let updated = sqlx::query_as::<_, Agent>(&format!(
        "UPDATE agents SET definition = $3, content_hash = $4, \
         revision = revision + CASE WHEN content_hash = $4 THEN 0 ELSE 1 END, \
         updated_at = CASE WHEN content_hash = $4 THEN updated_at ELSE now() END \
         WHERE tenant_id = $1 AND name = $2 RETURNING {AGENT_COLUMNS}"
    ))
    .bind(tenant)
    .bind(name)
    .bind(sqlx::types::Json(definition))
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete(db: &PgPool, tenant: &str, name: &str) -> ApiResult<()> {
    let mut tx = tenant_transaction(db, tenant).await?;
    lock_writable(&mut tx, tenant, name).await?;
    sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND name = $2")
        .bind(tenant)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: Uuid,
    pub agent: String,
    /// The agent's revision the run used.
    pub agent_revision: i32,
    pub session_id: Option<Uuid>,
    /// The run of the agent that called this one as a tool.
    pub parent_run_id: Option<Uuid>,
    #[schema(pattern = "^(running|succeeded|failed)$")]
    pub status: String,
    pub input: String,
    /// The final answer.
    pub output: Option<String>,
    /// Why the run failed.
    pub error: Option<String>,
    /// Model calls made.
    pub iterations: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, agent_name AS agent, agent_revision, session_id, parent_run_id, \
     status, input, output, error, iterations, prompt_tokens, completion_tokens, started_at, \
     finished_at";

/// A step of a run: a model call or a tool call.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// 1, 2, … in the order the steps were taken.
    pub seq: i32,
    #[schema(pattern = "^(model|tool)$")]
    pub kind: String,
    /// The tool called.
    pub tool: Option<String>,
    pub tool_call_id: Option<String>,
    /// The arguments the model passed, as it wrote them.
    pub arguments: Option<String>,
    /// The model's text, or the tool's answer as the model was given it.
    pub output: Option<String>,
    pub error: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub duration_ms: i64,
    pub started_at: DateTime<Utc>,
}

/// A step about to be recorded.
#[derive(Debug, Clone, Default)]
pub struct NewStep {
    pub kind: &'static str,
    pub tool: Option<String>,
    pub tool_call_id: Option<String>,
    pub arguments: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub duration_ms: i64,
    pub started_at: Option<DateTime<Utc>>,
}

pub struct NewRun<'a> {
    pub id: Uuid,
    pub agent: &'a Agent,
    pub user: &'a str,
    pub session: Option<Uuid>,
    pub parent: Option<Uuid>,
    pub input: &'a str,
}

pub async fn start_run(db: &PgPool, tenant: &str, run: NewRun<'_>) -> ApiResult<()> {
    tenant_execute(
        db,
        tenant,
        sqlx::query(
            "INSERT INTO agent_runs (tenant_id, id, agent_id, agent_name, agent_revision, user_id, \
             session_id, parent_run_id, input) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(tenant)
        .bind(run.id)
        .bind(run.agent.id)
        .bind(&run.agent.name)
        .bind(run.agent.revision)
        .bind(run.user)
        .bind(run.session)
        .bind(run.parent)
        .bind(run.input),
    )
    .await?;
    Ok(())
}

pub async fn add_step(
    db: &PgPool,
    tenant: &str,
    run: Uuid,
    seq: i32,
    step: &NewStep,
) -> ApiResult<()> {
    tenant_execute(
        db,
        tenant,
        sqlx::query(
            "INSERT INTO agent_steps (tenant_id, run_id, seq, kind, tool, tool_call_id, arguments, \
             output, error, prompt_tokens, completion_tokens, duration_ms, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, now()))",
        )
        .bind(tenant)
        .bind(run)
        .bind(seq)
        .bind(step.kind)
        .bind(step.tool.as_deref().map(without_nul))
        .bind(step.tool_call_id.as_deref().map(without_nul))
        .bind(step.arguments.as_deref().map(without_nul))
        .bind(step.output.as_deref().map(without_nul))
        .bind(step.error.as_deref().map(without_nul))
        .bind(step.prompt_tokens)
        .bind(step.completion_tokens)
        .bind(step.duration_ms)
        .bind(step.started_at),
    )
    .await?;
    Ok(())
}

/// How a run ended.
pub struct Outcome<'a> {
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
    pub iterations: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

pub async fn finish_run(db: &PgPool, tenant: &str, run: Uuid, o: Outcome<'_>) -> ApiResult<()> {
    let mut tx = tenant_transaction(db, tenant).await?;
    // Runs of agents it called that are still going were cut off with it (its time limit
    // ran out while they worked): they end, failed, with it.
    sqlx::query(
        "WITH RECURSIVE below(id) AS ( \
           SELECT id FROM agent_runs WHERE tenant_id = $1 AND parent_run_id = $2 \
           UNION SELECT r.id FROM agent_runs r JOIN below b ON r.parent_run_id = b.id \
           WHERE r.tenant_id = $1) \
         UPDATE agent_runs SET status = 'failed', finished_at = now(), \
         error = 'the run that called this agent ended before it did' \
         WHERE tenant_id = $1 AND status = 'running' AND id IN (SELECT id FROM below)",
    )
    .bind(tenant)
    .bind(run)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
            "UPDATE agent_runs SET status = CASE WHEN $3::text IS NULL THEN 'succeeded' ELSE 'failed' END, \
             output = $4, error = $3, iterations = $5, prompt_tokens = $6, completion_tokens = $7, \
             finished_at = now() WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(run)
        .bind(o.error.map(without_nul))
        .bind(o.output.map(without_nul))
        .bind(o.iterations)
        .bind(o.prompt_tokens)
        .bind(o.completion_tokens)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A run of the agent and its steps, if the caller may see it: their own, or any of the
/// tenant's for an admin.
pub async fn run(
    db: &PgPool,
    caller: &crate::platform::Principal,
    agent: &str,
    id: Uuid,
) -> ApiResult<(Run, Vec<Step>)> {
    let tenant = caller.tenant_id.as_str();
    let mut tx = tenant_transaction(db, tenant).await?;
    let run = sqlx::query_as::<_, Run>(&format!(
        "SELECT {RUN_COLUMNS} FROM agent_runs WHERE tenant_id = $1 AND agent_name = $2 AND id = $3 \
         AND (user_id = $4 OR $5)"
    ))
    .bind(tenant)
    .bind(agent)
    .bind(id)
    .bind(&caller.user_id)
    .bind(caller.is_admin)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("agent {agent} has no run {id}")))?;
    let steps = sqlx::query_as::<_, Step>(
        "SELECT seq, kind, tool, tool_call_id, arguments, output, error, prompt_tokens, \
         completion_tokens, duration_ms, started_at FROM agent_steps \
         WHERE tenant_id = $1 AND run_id = $2 ORDER BY seq",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((run, steps))
}
