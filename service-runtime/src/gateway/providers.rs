//! The provider registry: per-tenant upstreams in Postgres. API keys are
//! referenced by environment variable name (filled from a Secret) and never
//! stored or returned.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::extract::{Json, Path};
use crate::platform::{ApiError, ApiResult, AppState, Principal};

/// Environment variables a provider may name for its API key must start with
/// this, so a provider can never be pointed at another secret of the process.
pub const KEY_ENV_PREFIX: &str = "LLM_API_KEY_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and compatible servers (vLLM, Ollama, …).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
    /// The built-in local embedding model (feature hashing); embeddings only.
    Local,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Local => "local",
        }
    }

    fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "openai" => Ok(Self::Openai),
            "anthropic" => Ok(Self::Anthropic),
            "local" => Ok(Self::Local),
            other => Err(ApiError::internal(anyhow::anyhow!(
                "unknown provider kind {other} in database"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    /// Lower-case letters, digits and '-', 1 to 63 characters.
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL of the API, e.g. `https://api.openai.com/v1` or `https://api.anthropic.com`.
    #[serde(default)]
    pub base_url: String,
    /// Name of the environment variable holding the API key; must start with `LLM_API_KEY_`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Models this provider serves.
    pub models: Vec<String>,
    /// Lower is tried first in the fallback chain.
    #[serde(default = "default_priority")]
    pub priority: i32,
    #[serde(default = "default_timeout")]
    pub timeout_ms: i32,
    #[serde(default = "default_retries")]
    pub max_retries: i32,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_priority() -> i32 {
    100
}
fn default_timeout() -> i32 {
    60_000
}
fn default_retries() -> i32 {
    2
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Provider {
    pub id: Uuid,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key_env: Option<String>,
    /// Whether the named variable is set in this process.
    pub api_key_present: bool,
    pub models: Vec<String>,
    pub priority: i32,
    pub timeout_ms: i32,
    pub max_retries: i32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Provider {
    pub fn api_key<'a>(&self, state: &'a AppState) -> Option<&'a str> {
        self.api_key_env
            .as_ref()
            .and_then(|n| state.config.provider_keys.0.get(n))
            .map(String::as_str)
    }
}

type Row = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    Vec<String>,
    i32,
    i32,
    i32,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, name, kind, base_url, api_key_env, models, priority, timeout_ms, max_retries, enabled, created_at, updated_at";

fn from_row(state: &AppState, r: Row) -> ApiResult<Provider> {
    let api_key_present =
        r.4.as_ref()
            .is_some_and(|n| state.config.provider_keys.0.contains_key(n));
    Ok(Provider {
        id: r.0,
        name: r.1,
        kind: ProviderKind::parse(&r.2)?,
        base_url: r.3,
        api_key_env: r.4,
        api_key_present,
        models: r.5,
        priority: r.6,
        timeout_ms: r.7,
        max_retries: r.8,
        enabled: r.9,
        created_at: r.10,
        updated_at: r.11,
    })
}

fn validate(input: &ProviderInput) -> ApiResult<()> {
    let n = &input.name;
    if n.is_empty()
        || n.len() > 63
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || n.starts_with('-')
    {
        return Err(ApiError::Validation(
            "name: 1 to 63 lower-case letters, digits or '-', not starting with '-'".into(),
        ));
    }
    if input.kind != ProviderKind::Local {
        let url = reqwest::Url::parse(&input.base_url).map_err(|_| {
            ApiError::Validation("base_url: must be an absolute http(s) URL".into())
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ApiError::Validation(
                "base_url: must be an absolute http(s) URL".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::Validation(
                "base_url: must not hold credentials; use api_key_env".into(),
            ));
        }
    }
    if let Some(env) = &input.api_key_env
        && (!env.starts_with(KEY_ENV_PREFIX)
            || env.len() > 128
            || !env
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(ApiError::Validation(format!(
            "api_key_env: must be an upper-case variable name starting with {KEY_ENV_PREFIX}"
        )));
    }
    if input.models.is_empty() || input.models.len() > 256 {
        return Err(ApiError::Validation("models: list 1 to 256 models".into()));
    }
    if let Some(m) = input
        .models
        .iter()
        .find(|m| m.is_empty() || m.len() > 200 || m.contains('/'))
    {
        return Err(ApiError::Validation(format!(
            "models: {m:?} must be 1 to 200 characters without '/'"
        )));
    }
    if !(1..=600_000).contains(&input.timeout_ms) {
        return Err(ApiError::Validation(
            "timeout_ms: must be between 1 and 600000".into(),
        ));
    }
    if !(0..=10).contains(&input.max_retries) {
        return Err(ApiError::Validation(
            "max_retries: must be between 0 and 10".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/gateway/providers", tag = "gateway", request_body = ProviderInput,
    responses((status = 201, body = Provider), (status = 409, body = crate::platform::error::Problem),
              (status = 422, body = crate::platform::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    Json(input): Json<ProviderInput>,
) -> ApiResult<(StatusCode, Json<Provider>)> {
    p.require_admin()?;
    validate(&input)?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO gateway_providers (id, tenant_id, name, kind, base_url, api_key_env, models, priority, \
         timeout_ms, max_retries, enabled) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&p.tenant_id)
    .bind(&input.name)
    .bind(input.kind.as_str())
    .bind(input.base_url.trim_end_matches('/'))
    .bind(&input.api_key_env)
    .bind(&input.models)
    .bind(input.priority)
    .bind(input.timeout_ms)
    .bind(input.max_retries)
    .bind(input.enabled)
    .fetch_one(state.db()?)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("a provider named {:?} already exists", input.name)),
        other => other,
    })?;
    forget_routes(&p.tenant_id);
    Ok((StatusCode::CREATED, Json(from_row(&state, row)?)))
}

#[utoipa::path(get, path = "/v1/gateway/providers", tag = "gateway",
    responses((status = 200, body = Vec<Provider>)))]
pub async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Provider>>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway_providers WHERE tenant_id = $1 ORDER BY priority, name"
    ))
    .bind(&p.tenant_id)
    .fetch_all(state.db()?)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| from_row(&state, r))
            .collect::<ApiResult<_>>()?,
    ))
}

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("no such provider".into()))
}

#[utoipa::path(get, path = "/v1/gateway/providers/{id}", tag = "gateway",
    responses((status = 200, body = Provider), (status = 404, body = crate::platform::error::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Provider>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway_providers WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(&p.tenant_id)
    .bind(parse_id(&id)?)
    .fetch_optional(state.db()?)
    .await?;
    Ok(Json(from_row(
        &state,
        row.ok_or_else(|| ApiError::NotFound("no such provider".into()))?,
    )?))
}

#[utoipa::path(put, path = "/v1/gateway/providers/{id}", tag = "gateway", request_body = ProviderInput,
    responses((status = 200, body = Provider), (status = 404, body = crate::platform::error::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Json(input): Json<ProviderInput>,
) -> ApiResult<Json<Provider>> {
    p.require_admin()?;
    validate(&input)?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE gateway_providers SET name=$3, kind=$4, base_url=$5, api_key_env=$6, models=$7, priority=$8, \
         timeout_ms=$9, max_retries=$10, enabled=$11, updated_at=now() WHERE tenant_id=$1 AND id=$2 RETURNING {COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(parse_id(&id)?)
    .bind(&input.name)
    .bind(input.kind.as_str())
    .bind(input.base_url.trim_end_matches('/'))
    .bind(&input.api_key_env)
    .bind(&input.models)
    .bind(input.priority)
    .bind(input.timeout_ms)
    .bind(input.max_retries)
    .bind(input.enabled)
    .fetch_optional(state.db()?)
    .await?;
    forget_routes(&p.tenant_id);
    Ok(Json(from_row(
        &state,
        row.ok_or_else(|| ApiError::NotFound("no such provider".into()))?,
    )?))
}

#[utoipa::path(delete, path = "/v1/gateway/providers/{id}", tag = "gateway",
    responses((status = 204), (status = 404, body = crate::platform::error::Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    p.require_admin()?;
    let done = sqlx::query("DELETE FROM gateway_providers WHERE tenant_id = $1 AND id = $2")
        .bind(&p.tenant_id)
        .bind(parse_id(&id)?)
        .execute(state.db()?)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound("no such provider".into()));
    }
    forget_routes(&p.tenant_id);
    Ok(StatusCode::NO_CONTENT)
}

/// The fallback chain for a model: `provider/model` pins one provider;
/// otherwise every enabled provider listing the model, by priority. Each entry is a provider
/// and the name it knows the model by.
pub(crate) type Chain = Vec<(Provider, String)>;

/// Routes resolved recently, so most requests cost no database round trip.
/// Entries live a few seconds; changes made through this replica drop the
/// tenant's entries at once, other replicas see them within that time.
type RouteCache = Mutex<HashMap<(String, String), (Instant, Chain)>>;

fn route_cache() -> &'static RouteCache {
    static CACHE: OnceLock<RouteCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

const ROUTE_TTL: Duration = Duration::from_secs(5);

fn forget_routes(tenant: &str) {
    route_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(t, _), _| t != tenant);
}

/// The fallback chain for a model: `provider/model` pins one provider;
/// otherwise every enabled provider listing the model, by priority.
pub async fn route(state: &AppState, tenant: &str, model: &str) -> ApiResult<Chain> {
    let key = (tenant.to_string(), model.to_string());
    if let Some((at, chain)) = route_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        && at.elapsed() < ROUTE_TTL
    {
        return Ok(chain.clone());
    }
    let (pinned, name) = match model.split_once('/') {
        Some((prov, m)) if !prov.is_empty() && !m.is_empty() => (Some(prov), m),
        _ => (None, model),
    };
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway_providers WHERE tenant_id = $1 AND enabled AND $2 = ANY(models) \
         AND ($3::text IS NULL OR name = $3) ORDER BY priority, name"
    ))
    .bind(tenant)
    .bind(name)
    .bind(pinned)
    .fetch_all(state.db()?)
    .await?;
    let chain: Chain = rows
        .into_iter()
        .map(|r| from_row(state, r).map(|p| (p, name.to_string())))
        .collect::<ApiResult<_>>()?;
    let mut cache = route_cache().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > 10_000 {
        cache.retain(|_, (at, _)| at.elapsed() < ROUTE_TTL);
    }
    cache.insert(key, (Instant::now(), chain.clone()));
    Ok(chain)
}

pub async fn all_enabled(state: &AppState, tenant: &str) -> ApiResult<Vec<Provider>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway_providers WHERE tenant_id = $1 AND enabled ORDER BY priority, name"
    ))
    .bind(tenant)
    .fetch_all(state.db()?)
    .await?;
    rows.into_iter().map(|r| from_row(state, r)).collect()
}
