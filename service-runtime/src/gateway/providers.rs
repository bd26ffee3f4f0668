//! The provider registry: per-tenant upstreams in Postgres. A provider that needs an API
//! key names a credential the platform bound to the tenant (`FAAS_GATEWAY_CREDENTIALS`);
//! the key is sent only to that credential's base URL, and is never stored or returned.
//! Base URLs are held to the egress policy when registered and on every call.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};

use super::GatewayState;
use super::body::{Object, integer};
use crate::platform::config::SecretString;
use crate::platform::egress::{normalise_base_url, valid_name};
use crate::platform::extract::{Json, Path};
use crate::platform::{ApiError, ApiResult, AppState, Principal};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and compatible servers (vLLM, Ollama, …).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
    /// The in-process embedding model (all-MiniLM-L6-v2, 384 dimensions); embeddings only.
    Local,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether providers of this kind answer the operation (`chat` or `embeddings`).
    pub fn serves(self, operation: &str) -> bool {
        match self {
            ProviderKind::Openai => true,
            ProviderKind::Anthropic => operation == "chat",
            ProviderKind::Local => operation == "embeddings",
        }
    }

    /// The kind a stored row names.
    fn from_db(s: &str) -> ApiResult<Self> {
        s.parse().map_err(|_| {
            ApiError::internal(anyhow::anyhow!("unknown provider kind {s} in database"))
        })
    }
}

pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// Model names: no '/' (which pins a provider) and no control characters.
pub const MODEL_PATTERN: &str = "^[^/\\x00-\\x1f\\x7f-\\x9f]{1,200}$";
/// An absolute http(s) URL of a host name, an IPv4 address or a bracketed IPv6 address, with
/// an optional port and path, and no credentials, query or fragment. Labels are letters,
/// digits and '-' (not `xn--`, whose punycode a pattern cannot check); the last one starts
/// with a letter, as a numeric one would make the host an IPv4 address.
pub const BASE_URL_PATTERN: &str = concat!(
    "^[Hh][Tt][Tt][Pp][Ss]?://(",
    // host name
    "((?:[A-WYZa-wyz0-9-][A-Za-z0-9-]*|[Xx](?:[A-Ma-mO-Zo-z0-9-][A-Za-z0-9-]*)?",
    "|[Xx][Nn](?:[A-Za-z0-9][A-Za-z0-9-]*)?|[Xx][Nn]-(?:[A-Za-z0-9][A-Za-z0-9-]*)?)\\.)*",
    "(?:[A-WYZa-wyz][A-Za-z0-9-]*|[Xx](?:[A-Ma-mO-Zo-z0-9-][A-Za-z0-9-]*)?",
    "|[Xx][Nn](?:[A-Za-z0-9][A-Za-z0-9-]*)?|[Xx][Nn]-(?:[A-Za-z0-9][A-Za-z0-9-]*)?)\\.?",
    // IPv4
    "|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    // IPv6
    "|\\[(",
    "([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,7}:",
    "|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}",
    "|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}",
    "|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}",
    "|:((:[0-9A-Fa-f]{1,4}){1,7}|:)",
    ")\\])",
    // port, path
    "(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?",
    "(/[^?#\\s]*)?$"
);
const MAX_MODELS: usize = 256;
const MAX_BASE_URL: usize = 2048;
pub const MAX_PRIORITY: i32 = 1_000_000;
pub const MAX_TIMEOUT_MS: i32 = 600_000;
pub const MAX_RETRIES: i32 = 10;

/// A provider as registered. The document describes it as one of three shapes: with a
/// credential, with a base URL, or the local model (see [`input_schema`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub credential: Option<String>,
    pub models: Vec<String>,
    #[serde(default = "default_priority", deserialize_with = "integer")]
    pub priority: i32,
    #[serde(default = "default_timeout", deserialize_with = "integer")]
    pub timeout_ms: i32,
    #[serde(default = "default_retries", deserialize_with = "integer")]
    pub max_retries: i32,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl utoipa::ToSchema for ProviderInput {}

impl utoipa::PartialSchema for ProviderInput {
    fn schema() -> RefOr<Schema> {
        input_schema().into()
    }
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

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn int(min: i32, max: i32, default: i32) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .default(Some(default.into()))
}

/// What every shape of provider has.
fn common(kinds: &[&str], description: &str) -> ObjectBuilder {
    let models = ArrayBuilder::new()
        .items(RefOr::T(string().pattern(Some(MODEL_PATTERN)).into()))
        .min_items(Some(1))
        .max_items(Some(MAX_MODELS))
        .description(Some(
            "Models this provider serves: 1 to 256 names of 1 to 200 characters, without '/'.",
        ));
    let name = string().pattern(Some(NAME_PATTERN)).description(Some(
        "Lower-case letters, digits and '-', 1 to 63 characters, not starting with '-'.",
    ));
    let priority =
        int(0, MAX_PRIORITY, 100).description(Some("Lower is tried first in the fallback chain."));
    let enabled = ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .default(Some(true.into()));
    ObjectBuilder::new()
        .description(Some(description))
        .property("name", name)
        .property("kind", string().enum_values(Some(kinds.to_vec())))
        .property("models", models)
        .property("priority", priority)
        .property("timeout_ms", int(1, MAX_TIMEOUT_MS, 60_000))
        .property("max_retries", int(0, MAX_RETRIES, 2))
        .property("enabled", enabled)
        .required("name")
        .required("kind")
        .required("models")
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
}

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

/// The three shapes a provider is registered in.
fn input_schema() -> Schema {
    let remote = ["openai", "anthropic"];
    let with_credential = common(
        &remote,
        "A provider whose key is a credential the platform bound to this tenant          (GET /v1/gateway/credentials). The key goes to the credential's base URL only:          leave base_url out or give exactly that URL.",
    )
    .property("credential", string().pattern(Some(NAME_PATTERN)))
    .property("base_url", string().max_length(Some(MAX_BASE_URL)))
    .required("credential");
    let url = string()
        .pattern(Some(BASE_URL_PATTERN))
        .max_length(Some(MAX_BASE_URL))
        .examples(["https://llm.example.com/v1"]);
    let with_url = common(
        &remote,
        "A provider called without a key, at a base URL the egress policy allows.",
    )
    .property("credential", null())
    .property("base_url", url)
    .required("base_url");
    let local = common(
        &["local"],
        "The in-process embedding model, all-MiniLM-L6-v2 (384 dimensions).",
    )
    .property(
        "models",
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(string().enum_values(Some([super::adapter::local::MODEL])))
            .min_items(Some(1)),
    )
    .property("credential", null())
    .property("base_url", string().max_length(Some(0)));
    OneOfBuilder::new()
        .item(with_credential)
        .item(with_url)
        .item(local)
        .into()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Provider {
    pub id: Uuid,
    pub name: String,
    pub kind: ProviderKind,
    /// Where calls go; for a provider with a credential, the credential's base URL.
    pub base_url: String,
    /// The credential whose key calls carry, if any.
    pub credential: Option<String>,
    /// Whether that credential is bound to this tenant now; a provider whose credential is
    /// not is skipped. False when the provider has none.
    pub credential_available: bool,
    pub models: Vec<String>,
    pub priority: i32,
    pub timeout_ms: i32,
    pub max_retries: i32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The key, sent only under `base_url`.
    #[serde(skip)]
    pub(crate) key: Option<SecretString>,
}

impl Provider {
    /// Whether calls may go to this provider: it needs no credential, or has its own.
    pub fn usable(&self) -> bool {
        self.credential.is_none() || self.credential_available
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant_id: String,
    name: String,
    kind: String,
    base_url: String,
    credential: Option<String>,
    models: Vec<String>,
    priority: i32,
    timeout_ms: i32,
    max_retries: i32,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, name, kind, base_url, credential, models, priority, timeout_ms, \
                       max_retries, enabled, created_at, updated_at";

/// A stored provider as it is used now: a credential's base URL and key come from the
/// platform's settings, and only while the credential is bound to the row's tenant.
fn from_row(state: &AppState, r: Row) -> ApiResult<Provider> {
    let cred = r
        .credential
        .as_deref()
        .and_then(|c| state.config.egress.credentials.for_tenant(c, &r.tenant_id));
    Ok(Provider {
        id: r.id,
        name: r.name,
        kind: ProviderKind::from_db(&r.kind)?,
        base_url: cred.map_or(r.base_url, |c| c.base_url.clone()),
        credential_available: cred.is_some(),
        key: cred.map(|c| c.key.clone()),
        credential: r.credential,
        models: r.models,
        priority: r.priority,
        timeout_ms: r.timeout_ms,
        max_retries: r.max_retries,
        enabled: r.enabled,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

fn invalid(reason: impl Into<String>) -> ApiError {
    ApiError::Validation(reason.into())
}

/// The checks that need neither the tenant nor the settings.
fn validate_fields(input: &ProviderInput) -> ApiResult<()> {
    if !valid_name(&input.name) {
        return Err(invalid(
            "name: 1 to 63 lower-case letters, digits or '-', not starting with '-'",
        ));
    }
    if input.models.is_empty() || input.models.len() > MAX_MODELS {
        return Err(invalid("models: list 1 to 256 models"));
    }
    if let Some(m) = input.models.iter().find(|m| {
        let n = m.chars().count();
        n == 0 || n > 200 || m.contains('/') || m.chars().any(char::is_control)
    }) {
        return Err(invalid(format!(
            "models: {m:?} must be 1 to 200 characters without '/' or control characters"
        )));
    }
    if input.kind == ProviderKind::Local
        && let Some(m) = input
            .models
            .iter()
            .find(|m| m.as_str() != super::adapter::local::MODEL)
    {
        return Err(invalid(format!(
            "models: a local provider serves {} only, not {m:?}",
            super::adapter::local::MODEL
        )));
    }
    if !(0..=MAX_PRIORITY).contains(&input.priority) {
        return Err(invalid("priority: must be between 0 and 1000000"));
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&input.timeout_ms) {
        return Err(invalid("timeout_ms: must be between 1 and 600000"));
    }
    if !(0..=MAX_RETRIES).contains(&input.max_retries) {
        return Err(invalid("max_retries: must be between 0 and 10"));
    }
    if input.base_url.chars().count() > MAX_BASE_URL {
        return Err(invalid("base_url: at most 2048 characters"));
    }
    Ok(())
}

/// The base URL calls will go to, once the input's credential and URL are allowed for the
/// tenant: 404 for a credential the tenant may not use (whether it does not exist or serves
/// others only), 403 for a URL the policy forbids, 422 for a malformed one.
fn base_url_for(state: &AppState, tenant: &str, input: &ProviderInput) -> ApiResult<String> {
    match (&input.credential, input.kind) {
        (Some(_), ProviderKind::Local) => {
            Err(invalid("credential: the local model takes no credential"))
        }
        (None, ProviderKind::Local) if !input.base_url.is_empty() => {
            Err(invalid("base_url: the local model takes no base_url"))
        }
        (None, ProviderKind::Local) => Ok(String::new()),
        (Some(name), _) => credential_url(state, tenant, name, &input.base_url),
        (None, _) => {
            let url = normalise_base_url(&input.base_url)
                .map_err(|m| invalid(format!("base_url: {m}")))?;
            let parsed = url::Url::parse(&url).map_err(|_| invalid("base_url: not a URL"))?;
            state
                .config
                .egress
                .policy
                .check_url(&parsed)
                .map_err(|r| ApiError::Forbidden(format!("base_url: {r}")))?;
            Ok(url)
        }
    }
}

/// The base URL of a credential the tenant may use; `given`, if any, must be that URL.
fn credential_url(state: &AppState, tenant: &str, name: &str, given: &str) -> ApiResult<String> {
    let creds = &state.config.egress.credentials;
    let cred = creds.for_tenant(name, tenant).ok_or_else(|| {
        ApiError::NotFound(format!(
            "credential: no credential named {name:?} is available to this tenant"
        ))
    })?;
    let same = given.is_empty() || normalise_base_url(given).is_ok_and(|u| u == cred.base_url);
    if !same {
        return Err(ApiError::Forbidden(format!(
            "base_url: the credential {name} may only be used with {}; leave base_url out",
            cred.base_url
        )));
    }
    Ok(cred.base_url.clone())
}

fn check(state: &AppState, tenant: &str, input: &ProviderInput) -> ApiResult<String> {
    validate_fields(input)?;
    base_url_for(state, tenant, input)
}

fn name_taken(name: &str) -> impl FnOnce(sqlx::Error) -> ApiError + '_ {
    move |e| match ApiError::from(e) {
        ApiError::Conflict(_) => {
            ApiError::Conflict(format!("a provider named {name:?} already exists"))
        }
        other => other,
    }
}

#[utoipa::path(post, path = "/v1/gateway/providers", tag = "gateway", request_body = ProviderInput,
    responses((status = 201, description = "The provider, as registered", body = Provider),
              (status = 403, description = "The caller is not the tenant's admin, or the egress policy or the credential's binding forbids the base URL"),
              (status = 404, description = "No credential of this name is available to the tenant"),
              (status = 409, description = "A provider of this name exists"),
              (status = 422, description = "A field is invalid")))]
pub async fn create(
    State(state): State<GatewayState>,
    p: Principal,
    Object(input): Object<ProviderInput>,
) -> ApiResult<(StatusCode, Json<Provider>)> {
    p.require_admin()?;
    let base_url = check(&state, &p.tenant_id, &input)?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO gateway_providers (id, tenant_id, name, kind, base_url, credential, models, priority, \
         timeout_ms, max_retries, enabled) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&p.tenant_id)
    .bind(&input.name)
    .bind(input.kind.as_str())
    .bind(&base_url)
    .bind(&input.credential)
    .bind(&input.models)
    .bind(input.priority)
    .bind(input.timeout_ms)
    .bind(input.max_retries)
    .bind(input.enabled)
    .fetch_one(state.db()?)
    .await
    .map_err(name_taken(&input.name))?;
    state.component().routes.forget(&p.tenant_id);
    Ok((StatusCode::CREATED, Json(from_row(&state, row)?)))
}

#[utoipa::path(get, path = "/v1/gateway/providers", tag = "gateway",
    responses((status = 200, description = "The tenant's providers, by priority", body = Vec<Provider>)))]
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
    params(("id" = String, Path, description = "The provider's id")),
    responses((status = 200, description = "The provider", body = Provider),
              (status = 404, description = "No such provider in this tenant")))]
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
    params(("id" = String, Path, description = "The provider's id")),
    responses((status = 200, description = "The provider, as changed", body = Provider),
              (status = 403, description = "The caller is not the tenant's admin, or the egress policy or the credential's binding forbids the base URL"),
              (status = 404, description = "No such provider in this tenant, or no credential of this name is available to it"),
              (status = 409, description = "Another provider has this name"),
              (status = 422, description = "A field is invalid")))]
pub async fn update(
    State(state): State<GatewayState>,
    p: Principal,
    Path(id): Path<String>,
    Object(input): Object<ProviderInput>,
) -> ApiResult<Json<Provider>> {
    p.require_admin()?;
    let id = parse_id(&id)?;
    let base_url = check(&state, &p.tenant_id, &input)?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE gateway_providers SET name=$3, kind=$4, base_url=$5, credential=$6, models=$7, priority=$8, \
         timeout_ms=$9, max_retries=$10, enabled=$11, updated_at=now() WHERE tenant_id=$1 AND id=$2 RETURNING {COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(id)
    .bind(&input.name)
    .bind(input.kind.as_str())
    .bind(&base_url)
    .bind(&input.credential)
    .bind(&input.models)
    .bind(input.priority)
    .bind(input.timeout_ms)
    .bind(input.max_retries)
    .bind(input.enabled)
    .fetch_optional(state.db()?)
    .await
    .map_err(name_taken(&input.name))?;
    state.component().routes.forget(&p.tenant_id);
    Ok(Json(from_row(
        &state,
        row.ok_or_else(|| ApiError::NotFound("no such provider".into()))?,
    )?))
}

#[utoipa::path(delete, path = "/v1/gateway/providers/{id}", tag = "gateway",
    params(("id" = String, Path, description = "The provider's id")),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "The caller is not the tenant's admin"),
              (status = 404, description = "No such provider in this tenant")))]
pub async fn delete(
    State(state): State<GatewayState>,
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
    state.component().routes.forget(&p.tenant_id);
    Ok(StatusCode::NO_CONTENT)
}

/// A credential as its tenants see it: never the key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CredentialView {
    pub name: String,
    /// The only base URL its key is sent to.
    pub base_url: String,
}

#[utoipa::path(get, path = "/v1/gateway/credentials", tag = "gateway",
    responses((status = 200, description = "The credentials the platform made available to the caller's tenant", body = Vec<CredentialView>)))]
pub async fn credentials(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<CredentialView>>> {
    let creds = &state.config.egress.credentials;
    Ok(Json(
        creds
            .available_to(&p.tenant_id)
            .map(|c| CredentialView {
                name: c.name.clone(),
                base_url: c.base_url.clone(),
            })
            .collect(),
    ))
}

/// The fallback chain for a model: `provider/model` pins one provider;
/// otherwise every enabled provider listing the model, by priority. Each entry is a provider
/// and the name it knows the model by, shared with the route cache.
pub(crate) type Chain = Vec<Arc<(Provider, String)>>;

/// Routes resolved recently, by tenant and model, so most requests cost no database
/// round trip. Entries live a few seconds; changes made through this replica drop the
/// tenant's entries at once, other replicas see them within that time.
pub struct RouteCache(moka::sync::Cache<(String, String), Chain>);

const ROUTE_TTL: Duration = Duration::from_secs(5);
const MAX_ROUTES: u64 = 100_000;

impl Default for RouteCache {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(MAX_ROUTES)
                .time_to_live(ROUTE_TTL)
                .support_invalidation_closures()
                .build(),
        )
    }
}

impl RouteCache {
    fn get(&self, tenant: &str, model: &str) -> Option<Chain> {
        self.0.get(&(tenant.to_string(), model.to_string()))
    }

    fn forget(&self, tenant: &str) {
        let tenant = tenant.to_string();
        // Only fails when closures are not enabled, which `default` does.
        let _ = self.0.invalidate_entries_if(move |(t, _), _| *t == tenant);
    }
}

/// The fallback chain for a model: `provider/model` pins one provider;
/// otherwise every enabled provider listing the model, by priority.
pub async fn route(state: &GatewayState, tenant: &str, model: &str) -> ApiResult<Chain> {
    let routes = &state.component().routes;
    if let Some(chain) = routes.get(tenant, model) {
        return Ok(chain);
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
        .map(|r| from_row(state, r))
        .filter(|p| p.as_ref().map_or(true, Provider::usable))
        .map(|p| p.map(|p| Arc::new((p, name.to_string()))))
        .collect::<ApiResult<_>>()?;
    routes
        .0
        .insert((tenant.to_string(), model.to_string()), chain.clone());
    Ok(chain)
}

/// The providers calls may go to: enabled, with their credential if they need one.
pub async fn all_usable(state: &AppState, tenant: &str) -> ApiResult<Vec<Provider>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway_providers WHERE tenant_id = $1 AND enabled ORDER BY priority, name"
    ))
    .bind(tenant)
    .fetch_all(state.db()?)
    .await?;
    let all: Vec<Provider> = rows
        .into_iter()
        .map(|r| from_row(state, r))
        .collect::<ApiResult<_>>()?;
    Ok(all.into_iter().filter(Provider::usable).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_the_pattern_admits_are_urls_and_the_others_are_not() {
        let pattern = regex::Regex::new(BASE_URL_PATTERN).unwrap();
        for ok in [
            "https://api.openai.com/v1",
            "HTTP://Example.COM.:8080/a/%zz",
            "http://127.0.0.1:65535",
            "http://[::1]/v1",
            "http://[2001:db8::8a2e:370:7334]/",
            "http://xn-a.example/",
            "http://x/",
            "http://-a.b/",
        ] {
            assert!(pattern.is_match(ok), "{ok}");
            assert!(normalise_base_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://a.com",
            "http://",
            "http://a.com?x=1",
            "http://a.com/#f",
            "http://u:p@a.com",
            "http://a.com:65536",
            "http://1.2.3.256/",
            "http://a.0x1/",
            "http://xn--/",
            "http://xn--zz.com/",
            "http://[:1:3Aec:440d:::6bC5:]",
            "http://a..b/",
        ] {
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }
}
