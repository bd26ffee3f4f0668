//! Chat sessions: a user's conversation with an agent, kept in Postgres so that any
//! replica serves it and it outlives restarts. A session belongs to its tenant and its
//! user: another user's session is not found. What the model is given of it follows the
//! agent's memory: nothing (`none`), the last `size` messages (`window`), or a summary
//! the model writes of older messages plus the last `size` (`summary`).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use faas_model::agent::{Definition, MemoryKind};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::store::{self, Agent};
use super::{AgentPath, AgentState, Agents, Caller, check_name};
use crate::platform::extract::{Json, Path};
use crate::platform::{
    ApiError, ApiResult, Principal, RequestContext, tenant_execute, tenant_transaction, without_nul,
};
use crate::shared::gateway_client::{ChatRequest, Message, OnBehalfOf};

/// A session and the messages it keeps verbatim.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: Uuid,
    pub agent: String,
    /// The rolled-up memory of older messages (summary memory).
    pub summary: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the session is forgotten unless it is used again (the memory's ttl).
    pub expires_at: Option<DateTime<Utc>>,
    /// The messages kept, oldest first.
    pub messages: Vec<SessionMessage>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SessionMessage {
    #[schema(pattern = "^(user|assistant)$")]
    pub role: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    summary: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

/// The path's agent and session.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SessionPath {
    /// The agent's name.
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
    )]
    name: String,
    /// The session's id.
    id: Uuid,
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("the caller has no session {id} with this agent"))
}

fn expiry(d: &Definition) -> Option<i64> {
    d.memory().ttl_seconds().and_then(|s| i64::try_from(s).ok())
}

/// The caller's live session with the agent, and its messages.
pub async fn load(db: &PgPool, p: &Principal, agent: &Agent, id: Uuid) -> ApiResult<Session> {
    let mut tx = tenant_transaction(db, &p.tenant_id).await?;
    let row = sqlx::query_as::<_, SessionRow>(
        "SELECT id, summary, created_at, updated_at, expires_at FROM agent_sessions \
         WHERE tenant_id = $1 AND id = $2 AND agent_id = $3 AND user_id = $4 \
         AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(&p.tenant_id)
    .bind(id)
    .bind(agent.id)
    .bind(&p.user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found(id))?;
    let messages = sqlx::query_as::<_, SessionMessage>(
        "SELECT role, content, created_at FROM agent_session_messages \
         WHERE tenant_id = $1 AND session_id = $2 ORDER BY seq",
    )
    .bind(&p.tenant_id)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Session {
        id: row.id,
        agent: agent.name.clone(),
        summary: row.summary,
        created_at: row.created_at,
        updated_at: row.updated_at,
        expires_at: row.expires_at,
        messages,
    })
}

/// What the model is given of the session, before the new input.
pub fn history(d: &Definition, s: &Session) -> Vec<Message> {
    let memory = d.memory();
    let keep = usize::try_from(memory.messages_kept()).unwrap_or(0);
    let mut out = Vec::new();
    match memory.kind {
        MemoryKind::None => return out,
        MemoryKind::Window => {}
        MemoryKind::Summary => {
            if let Some(summary) = &s.summary {
                out.push(Message::new(
                    "system",
                    format!("Summary of the conversation so far:\n{summary}"),
                ));
            }
        }
    }
    let skip = s.messages.len().saturating_sub(keep);
    out.extend(
        s.messages[skip..]
            .iter()
            .map(|m| Message::new(&m.role, m.content.clone())),
    );
    out
}

/// Estimated tokens: four characters a token.
fn tokens(s: &str) -> usize {
    s.chars().count().div_ceil(4)
}

/// Adds a turn to the session; a window forgets what it no longer keeps, a summary rolls
/// what it no longer keeps into its summary once the session is over its token budget.
/// Most tokens the model may write for a session's summary, and most characters kept of
/// it (a model that ignores the limit cannot grow the session).
const SUMMARY_MAX_TOKENS: u32 = 512;
const SUMMARY_MAX_CHARS: usize = 8 * 1024;

pub async fn remember(
    agents: &Agents,
    caller: &Caller,
    agent: &Agent,
    d: &Definition,
    id: Uuid,
    input: &str,
    output: &str,
) -> ApiResult<()> {
    let tenant = &caller.principal.tenant_id;
    let memory = d.memory();
    let keep = i64::from(memory.messages_kept().max(0));
    let mut tx = tenant_transaction(&agents.db, tenant).await?;
    if memory.kind != MemoryKind::None {
        sqlx::query(
            "INSERT INTO agent_session_messages (tenant_id, session_id, role, content) \
             VALUES ($1, $2, 'user', $3), ($1, $2, 'assistant', $4)",
        )
        .bind(tenant)
        .bind(id)
        .bind(without_nul(input))
        .bind(without_nul(output))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE agent_sessions SET updated_at = now(), \
         expires_at = CASE WHEN $3::bigint IS NULL THEN NULL ELSE now() + make_interval(secs => $3) END \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(expiry(d))
    .execute(&mut *tx)
    .await?;
    if memory.kind == MemoryKind::Window {
        sqlx::query(
            "DELETE FROM agent_session_messages WHERE tenant_id = $1 AND session_id = $2 \
             AND seq NOT IN (SELECT seq FROM agent_session_messages \
                             WHERE tenant_id = $1 AND session_id = $2 ORDER BY seq DESC LIMIT $3)",
        )
        .bind(tenant)
        .bind(id)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // The turn is stored; a summary that fails now is tried again on a later turn.
    if memory.kind == MemoryKind::Summary
        && let Err(e) = roll_up(agents, caller, agent, d, id, keep).await
    {
        tracing::warn!(session = %id, agent = %agent.name, error = %e, "rolling up a session's memory failed");
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Stored {
    seq: i64,
    role: String,
    content: String,
}

/// When the session's messages are over the token budget, the model summarises the
/// older ones (all but the last `keep`) with the previous summary, and they are dropped.
async fn roll_up(
    agents: &Agents,
    caller: &Caller,
    agent: &Agent,
    d: &Definition,
    id: Uuid,
    keep: i64,
) -> ApiResult<()> {
    let tenant = &caller.principal.tenant_id;
    let mut tx = tenant_transaction(&agents.db, tenant).await?;
    let summary: Option<String> =
        sqlx::query_scalar("SELECT summary FROM agent_sessions WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let stored = sqlx::query_as::<_, Stored>(
        "SELECT seq, role, content FROM agent_session_messages \
         WHERE tenant_id = $1 AND session_id = $2 ORDER BY seq",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let total: usize = stored.iter().map(|m| tokens(&m.content)).sum::<usize>()
        + summary.as_deref().map_or(0, tokens);
    let older = stored.len().saturating_sub(keep as usize);
    if total <= agents.settings.summary_tokens || older == 0 {
        return Ok(());
    }
    let Some(gateway) = &agents.gateway else {
        return Ok(());
    };
    let mut transcript = String::new();
    if let Some(s) = &summary {
        transcript.push_str(&format!("Summary so far:\n{s}\n\n"));
    }
    for m in &stored[..older] {
        transcript.push_str(&format!("{}: {}\n", m.role, m.content));
    }
    let req = ChatRequest {
        model: format!("{}/{}", d.model.provider, d.model.name),
        messages: vec![
            Message::new(
                "system",
                "Summarise the conversation below for your own memory: keep the facts, names, \
                 decisions and open questions, in at most 200 words.",
            ),
            Message::new("user", transcript),
        ],
        temperature: Some(0.0),
        max_tokens: Some(SUMMARY_MAX_TOKENS),
        ..Default::default()
    };
    let who: OnBehalfOf = caller.who.for_agent(&agent.name);
    let done = gateway.chat(&who, &caller.ctx, &req).await?;
    let Some(text) = done
        .message()
        .and_then(|m| m.content.clone())
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(());
    };
    let text: String = text.chars().take(SUMMARY_MAX_CHARS).collect();
    let last_rolled = stored[older - 1].seq;
    let mut tx = tenant_transaction(&agents.db, tenant).await?;
    sqlx::query("UPDATE agent_sessions SET summary = $3 WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .bind(without_nul(&text))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM agent_session_messages WHERE tenant_id = $1 AND session_id = $2 AND seq <= $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(last_rolled)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/agents/{name}/sessions", tag = "agent", params(AgentPath),
    responses((status = 201, description = "A new session of the caller with the agent", body = Session),
              (status = 404, description = "The tenant has no such agent", body = crate::platform::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn create_session(
    State(state): State<AgentState>,
    p: Principal,
    Extension(_ctx): Extension<RequestContext>,
    Path(path): Path<AgentPath>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    check_name(&path.name)?;
    let db = &state.component().db;
    let agent = store::get(db, &p.tenant_id, &path.name).await?;
    let d = agent.parsed()?;
    let mut tx = tenant_transaction(db, &p.tenant_id).await?;
    let row = sqlx::query_as::<_, SessionRow>(
        "INSERT INTO agent_sessions (tenant_id, id, agent_id, user_id, expires_at) \
         VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint IS NULL THEN NULL ELSE now() + make_interval(secs => $5) END) \
         RETURNING id, summary, created_at, updated_at, expires_at",
    )
    .bind(&p.tenant_id)
    .bind(Uuid::now_v7())
    .bind(agent.id)
    .bind(&p.user_id)
    .bind(expiry(&d))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Session {
            id: row.id,
            agent: agent.name,
            summary: row.summary,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
            messages: Vec::new(),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/agents/{name}/sessions/{id}", tag = "agent", params(SessionPath),
    responses((status = 200, description = "The caller's session and the messages it keeps", body = Session),
              (status = 404, description = "The tenant has no such agent, or the caller no such session with it (another user's is not found either)", body = crate::platform::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn get_session(
    State(state): State<AgentState>,
    p: Principal,
    Path(path): Path<SessionPath>,
) -> ApiResult<Json<Session>> {
    check_name(&path.name)?;
    let db = &state.component().db;
    let agent = store::get(db, &p.tenant_id, &path.name).await?;
    Ok(Json(load(db, &p, &agent, path.id).await?))
}

#[utoipa::path(delete, path = "/v1/agents/{name}/sessions/{id}", tag = "agent", params(SessionPath),
    responses((status = 204, description = "Forgotten, with its messages"),
              (status = 404, description = "The tenant has no such agent, or the caller no such session with it", body = crate::platform::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn delete_session(
    State(state): State<AgentState>,
    p: Principal,
    Path(path): Path<SessionPath>,
) -> ApiResult<StatusCode> {
    check_name(&path.name)?;
    let db = &state.component().db;
    let agent = store::get(db, &p.tenant_id, &path.name).await?;
    let deleted = tenant_execute(
        db,
        &p.tenant_id,
        sqlx::query(
            "DELETE FROM agent_sessions WHERE tenant_id = $1 AND id = $2 AND agent_id = $3 AND user_id = $4",
        )
        .bind(&p.tenant_id)
        .bind(path.id)
        .bind(agent.id)
        .bind(&p.user_id),
    )
    .await?;
    if deleted == 0 {
        return Err(not_found(path.id));
    }
    Ok(StatusCode::NO_CONTENT)
}
