//! Prompt templates: versioned CRUD, rendering with strict variables
//! (minijinja), and context building under a token budget. Templates synced
//! from PromptTemplate resources (source `resource`) are read-only here.

use std::collections::{BTreeMap, HashSet};

use faas_model::prompt::{Content, MessageTemplate, Role, Variable, VariableType};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::platform::error::{Problem, problem_responses};
use crate::platform::extract::{Json, Path, Query};
use crate::platform::{ApiError, ApiResult, AppState, Principal};

mod budget;
mod render;

use render::{check_source, environment};

/// The prompt component as the platform serves it.
pub static SPEC: crate::platform::ComponentSpec = crate::platform::ComponentSpec {
    component: faas_model::Component::Prompt,
    openapi,
    openai_routes: &[],
    build: |platform| {
        Ok(crate::platform::Built::routes(
            router().with_state(platform.clone()),
        ))
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/prompts", post(create).get(list))
        .route("/v1/prompts/context", post(build_context))
        .route(
            "/v1/prompts/{name}",
            get(get_one).put(update).delete(delete),
        )
        .route("/v1/prompts/{name}/versions", get(versions))
        .route("/v1/prompts/{name}/render", post(render))
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, get_one, update, delete, versions, render, build_context),
    components(schemas(TemplateInput, UpdateInput, Variable, VariableType, MessageTemplate, Role, PromptTemplate, Summary, VersionInfo,
                       RenderInput, Rendered, RenderedMessage, ContextInput, ContextMessage, ContextResult,
                       Problem)),
    tags((name = "prompt", description = "Versioned prompt templates"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    if let Some(c) = doc.components.as_mut() {
        for name in ["TemplateInput", "UpdateInput"] {
            if let Some(schema) = c.schemas.remove(name) {
                c.schemas.insert(name.into(), exactly_one_source(schema));
            }
        }
    }
    doc
}

/// The schema of a version, with what serde cannot say: exactly one of
/// `template` and `messages`.
fn exactly_one_source(
    schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let given = |ty: Type| ObjectBuilder::new().schema_type(ty);
    let template = ObjectBuilder::new()
        .property("template", given(Type::String))
        .property("messages", null())
        .required("template");
    let messages = ObjectBuilder::new()
        .property("messages", given(Type::Array))
        .property("template", null())
        .required("messages");
    AllOfBuilder::new()
        .item(schema)
        .item(OneOfBuilder::new().item(template).item(messages))
        .into()
}

problem_responses! {
    /// No template by this name (or version) for the tenant.
    NotFound = 404;
    /// The template comes from a PromptTemplate resource and is read-only here.
    ReadOnly = 403;
    /// A template by this name exists, or changed concurrently.
    Conflict = 409;
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// Lower-case letters, digits, '-', '_' or '.', 1 to 128 characters,
    /// starting with a letter or digit.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[a-z0-9][a-z0-9._-]*$")]
    pub name: String,
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// A single template; give this or `messages`.
    #[serde(default)]
    #[schema(
        max_length = 262144,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub template: Option<String>,
    /// Chat messages, each a template; give this or `template`.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 64)]
    pub messages: Option<Vec<MessageTemplate>>,
    #[serde(default)]
    #[schema(max_items = 128)]
    pub variables: Vec<Variable>,
    /// A JSON object of at most 64 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub model_defaults: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInput {
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// A single template; give this or `messages`.
    #[serde(default)]
    #[schema(
        max_length = 262144,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub template: Option<String>,
    /// Chat messages, each a template; give this or `template`.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 64)]
    pub messages: Option<Vec<MessageTemplate>>,
    #[serde(default)]
    #[schema(max_items = 128)]
    pub variables: Vec<Variable>,
    /// A JSON object of at most 64 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub model_defaults: Option<Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PromptTemplate {
    pub name: String,
    pub version: i32,
    pub description: Option<String>,
    pub template: Option<String>,
    pub messages: Option<Vec<MessageTemplate>>,
    pub variables: Vec<Variable>,
    pub model_defaults: Option<Value>,
    /// `api`, or `resource` for templates from PromptTemplate resources (read-only).
    pub source: String,
    pub content_hash: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Checks a version: the checks of the content, and the static bound of what each template
/// builds (with each variable at a nominal size) before minijinja parses it. Answers the
/// first problem.
fn validate(c: &Content) -> ApiResult<()> {
    let nominal = render::nominal_inputs(&c.variables);
    c.validate_with(|_, src| render::check_budget(src, &nominal))
        .map_err(|problems| {
            let first = problems.into_iter().next().map(|p| p.to_string());
            ApiError::Validation(first.unwrap_or_default())
        })
}

/// Checks a version off the async workers: a large template takes a while.
async fn validated(c: Content) -> ApiResult<Content> {
    off_workers(move || validate(&c).map(|()| c)).await
}

/// Runs template work on a blocking thread. A panic there comes from the
/// template engine failing on the client's template: it is logged and
/// answered as a template the service cannot handle.
async fn off_workers<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            tracing::error!(error = %e, "the template engine panicked");
            Err(ApiError::Validation(
                "template: the template engine cannot handle this template".into(),
            ))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// A template name in a path: what `name` allows, and the names of
/// PromptTemplate resources (up to 253 characters).
fn path_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(ApiError::BadRequest(
            "name: 1 to 253 lower-case letters, digits, '-', '_' or '.'".into(),
        ));
    }
    Ok(())
}

fn version_param(version: Option<i32>) -> ApiResult<Option<i32>> {
    match version {
        Some(v) if v < 1 => Err(ApiError::BadRequest("version: at least 1".into())),
        other => Ok(other),
    }
}

/// A stored version, read by column name; the JSON columns decode into their types.
#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    version: i32,
    description: Option<String>,
    template: Option<String>,
    messages: Option<sqlx::types::Json<Vec<MessageTemplate>>>,
    variables: sqlx::types::Json<Vec<Variable>>,
    model_defaults: Option<Value>,
    source: String,
    content_hash: String,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, version, description, template, messages, variables, model_defaults, source, content_hash, created_by, created_at";

impl From<Row> for PromptTemplate {
    fn from(r: Row) -> Self {
        PromptTemplate {
            name: r.name,
            version: r.version,
            description: r.description,
            template: r.template,
            messages: r.messages.map(|m| m.0),
            variables: r.variables.0,
            model_defaults: r.model_defaults,
            source: r.source,
            content_hash: r.content_hash,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

async fn insert(
    state: &AppState,
    p: &Principal,
    name: &str,
    version: i32,
    c: &Content,
) -> ApiResult<PromptTemplate> {
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO prompt_templates (tenant_id, name, version, description, template, messages, variables, \
         model_defaults, source, content_hash, created_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'api',$9,$10) \
         RETURNING {COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(name)
    .bind(version)
    .bind(&c.description)
    .bind(&c.template)
    .bind(c.messages.as_ref().map(sqlx::types::Json))
    .bind(sqlx::types::Json(&c.variables))
    .bind(&c.model_defaults)
    .bind(c.content_hash())
    .bind(&p.user_id)
    .fetch_one(state.db()?)
    .await?;
    Ok(row.into())
}

async fn latest(
    state: &AppState,
    tenant: &str,
    name: &str,
    version: Option<i32>,
) -> ApiResult<PromptTemplate> {
    path_name(name)?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM prompt_templates WHERE tenant_id = $1 AND name = $2 \
         AND retired_at IS NULL AND ($3::int IS NULL OR version = $3) ORDER BY version DESC LIMIT 1"
    ))
    .bind(tenant)
    .bind(name)
    .bind(version)
    .fetch_optional(state.db()?)
    .await?;
    match row {
        Some(r) => Ok(r.into()),
        None if version.is_some() => Err(ApiError::NotFound(format!(
            "template {name} has no version {}",
            version.unwrap_or(0)
        ))),
        None => Err(ApiError::NotFound(format!("no template named {name}"))),
    }
}

fn read_only(t: &PromptTemplate) -> ApiResult<()> {
    if t.source == "resource" {
        return Err(ApiError::Forbidden(format!(
            "template {} comes from a PromptTemplate resource; change the resource instead",
            t.name
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/prompts", tag = "prompt", request_body = TemplateInput,
    responses((status = 201, description = "The first version", body = PromptTemplate), Conflict))]
async fn create(
    State(state): State<AppState>,
    p: Principal,
    Json(input): Json<TemplateInput>,
) -> ApiResult<(StatusCode, Json<PromptTemplate>)> {
    if !valid_name(&input.name) {
        return Err(ApiError::Validation(
            "name: 1 to 128 lower-case letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let c = Content {
        description: input.description,
        template: input.template,
        messages: input.messages,
        variables: input.variables,
        model_defaults: input.model_defaults,
    };
    let c = validated(c).await?;
    let exists: Option<i32> = sqlx::query_scalar(
        "SELECT version FROM prompt_templates WHERE tenant_id = $1 AND name = $2 LIMIT 1",
    )
    .bind(&p.tenant_id)
    .bind(&input.name)
    .fetch_optional(state.db()?)
    .await?;
    if exists.is_some() {
        return Err(ApiError::Conflict(format!(
            "a template named {} exists; PUT a new version instead",
            input.name
        )));
    }
    let t = insert(&state, &p, &input.name, 1, &c)
        .await
        .map_err(|e| match e {
            ApiError::Conflict(_) => {
                ApiError::Conflict(format!("a template named {} exists", input.name))
            }
            other => other,
        })?;
    Ok((StatusCode::CREATED, Json(t)))
}

type SummaryRow = (String, i32, Option<String>, String, DateTime<Utc>);

#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub name: String,
    pub version: i32,
    pub description: Option<String>,
    pub source: String,
    pub updated_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/v1/prompts", tag = "prompt",
    responses((status = 200, description = "The latest version of every template", body = Vec<Summary>)))]
async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Summary>>> {
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT DISTINCT ON (name) name, version, description, source, created_at FROM prompt_templates \
         WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY name, version DESC",
    )
    .bind(&p.tenant_id)
    .fetch_all(state.db()?)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(name, version, description, source, updated_at)| Summary {
                name,
                version,
                description,
                source,
                updated_at,
            })
            .collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// A specific version; the latest when absent.
    #[param(minimum = 1)]
    pub version: Option<i32>,
}

#[utoipa::path(get, path = "/v1/prompts/{name}", tag = "prompt", params(("name" = String, Path, description = "The template's name", min_length = 1, max_length = 253, pattern = r"^[a-z0-9._-]+$"), VersionQuery),
    responses((status = 200, description = "The version asked for, else the latest", body = PromptTemplate), NotFound))]
async fn get_one(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<PromptTemplate>> {
    let version = version_param(q.version)?;
    Ok(Json(latest(&state, &p.tenant_id, &name, version).await?))
}

#[utoipa::path(put, path = "/v1/prompts/{name}", tag = "prompt", params(("name" = String, Path, description = "The template's name", min_length = 1, max_length = 253, pattern = r"^[a-z0-9._-]+$")), request_body = UpdateInput,
    responses((status = 200, description = "The new version, or the latest when nothing changed", body = PromptTemplate),
              ReadOnly, NotFound, Conflict))]
async fn update(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Json(input): Json<UpdateInput>,
) -> ApiResult<Json<PromptTemplate>> {
    let current = latest(&state, &p.tenant_id, &name, None).await?;
    read_only(&current)?;
    let c = Content {
        description: input.description,
        template: input.template,
        messages: input.messages,
        variables: input.variables,
        model_defaults: input.model_defaults,
    };
    let c = validated(c).await?;
    if c.content_hash() == current.content_hash {
        // Nothing changed: no new version.
        return Ok(Json(current));
    }
    let t = insert(&state, &p, &name, current.version + 1, &c)
        .await
        .map_err(|e| match e {
            ApiError::Conflict(_) => {
                ApiError::Conflict(format!("template {name} was changed concurrently; retry"))
            }
            other => other,
        })?;
    Ok(Json(t))
}

#[utoipa::path(delete, path = "/v1/prompts/{name}", tag = "prompt", params(("name" = String, Path, description = "The template's name", min_length = 1, max_length = 253, pattern = r"^[a-z0-9._-]+$")),
    responses((status = 204, description = "Every version is deleted"), ReadOnly, NotFound))]
async fn delete(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let current = latest(&state, &p.tenant_id, &name, None).await?;
    read_only(&current)?;
    sqlx::query(
        "DELETE FROM prompt_templates WHERE tenant_id = $1 AND name = $2 AND source = 'api'",
    )
    .bind(&p.tenant_id)
    .bind(&name)
    .execute(state.db()?)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct VersionInfo {
    pub version: i32,
    pub content_hash: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/v1/prompts/{name}/versions", tag = "prompt", params(("name" = String, Path, description = "The template's name", min_length = 1, max_length = 253, pattern = r"^[a-z0-9._-]+$")),
    responses((status = 200, description = "Every version, newest first", body = Vec<VersionInfo>), NotFound))]
async fn versions(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<VersionInfo>>> {
    path_name(&name)?;
    let rows: Vec<VersionInfo> = sqlx::query_as(
        "SELECT version, content_hash, created_by, created_at FROM prompt_templates \
         WHERE tenant_id = $1 AND name = $2 AND retired_at IS NULL ORDER BY version DESC",
    )
    .bind(&p.tenant_id)
    .bind(&name)
    .fetch_all(state.db()?)
    .await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound(format!("no template named {name}")));
    }
    Ok(Json(rows))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderInput {
    /// Values of the declared variables, by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
    /// A specific version; the latest when absent.
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(minimum = 1)]
    pub version: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct RenderedMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Serialize, ToSchema)]
pub struct Rendered {
    pub name: String,
    pub version: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<RenderedMessage>>,
    pub model_defaults: Option<Value>,
    /// Estimated tokens of the rendered prompt.
    pub tokens: u64,
}

/// The render context: the given variables over the defaults, each checked
/// against its declaration.
fn render_context(
    t: &PromptTemplate,
    given: &serde_json::Map<String, Value>,
) -> ApiResult<BTreeMap<String, Value>> {
    let declared: HashSet<&str> = t.variables.iter().map(|v| v.name.as_str()).collect();
    let mut unknown: Vec<&str> = given
        .keys()
        .map(String::as_str)
        .filter(|k| !declared.contains(k))
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(format!(
            "unknown variables: {}",
            unknown.join(", ")
        )));
    }
    let mut ctx = BTreeMap::new();
    let mut missing = Vec::new();
    for v in &t.variables {
        match given.get(&v.name).or(v.default.as_ref()) {
            Some(val) => {
                if let Some(k) = v.kind
                    && !k.matches(val)
                {
                    return Err(ApiError::Validation(format!(
                        "variable {}: must be of type {k}",
                        v.name
                    )));
                }
                ctx.insert(v.name.clone(), val.clone());
            }
            None if v.is_required() => missing.push(v.name.as_str()),
            None => {
                ctx.insert(v.name.clone(), Value::Null);
            }
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Validation(format!(
            "missing variables: {}",
            missing.join(", ")
        )));
    }
    Ok(ctx)
}

/// Renders a template with strict variables, within the limits of
/// [`render`]: the templates are checked again with the sizes of the given
/// values before they are compiled, and the rendered text is bounded.
/// CPU-bound: call it off the async workers.
pub fn render_template(
    t: &PromptTemplate,
    given: &serde_json::Map<String, Value>,
) -> ApiResult<Rendered> {
    let ctx = render_context(t, given)?;
    let inputs = render::actual_inputs(&ctx);
    let sources: Vec<(String, &str)> = match (&t.template, &t.messages) {
        (Some(src), _) => vec![("template".into(), src.as_str())],
        (None, Some(ms)) => ms
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("messages[{i}]"), m.template.as_str()))
            .collect(),
        (None, None) => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "template without content"
            )));
        }
    };
    for (what, src) in &sources {
        check_source(what, src, &inputs)?;
    }
    let env = environment();
    let ctx = minijinja::Value::from_serialize(&ctx);
    let mut left = render::MAX_OUTPUT_BYTES;
    let mut texts = Vec::with_capacity(sources.len());
    for (what, src) in &sources {
        texts.push(render::render_source(&env, what, src, &ctx, &mut left)?);
    }
    let (text, messages, tokens) = match &t.messages {
        Some(ms) if t.template.is_none() => {
            let out: Vec<RenderedMessage> = ms
                .iter()
                .zip(texts)
                .map(|(m, content)| RenderedMessage {
                    role: m.role,
                    content,
                })
                .collect();
            let tokens = out.iter().map(|m| estimate_tokens(&m.content) + 4).sum();
            (None, Some(out), tokens)
        }
        _ => {
            let text = texts.into_iter().next().unwrap_or_default();
            let tokens = estimate_tokens(&text);
            (Some(text), None, tokens)
        }
    };
    Ok(Rendered {
        name: t.name.clone(),
        version: t.version,
        text,
        messages,
        model_defaults: t.model_defaults.clone(),
        tokens,
    })
}

#[utoipa::path(post, path = "/v1/prompts/{name}/render", tag = "prompt", params(("name" = String, Path, description = "The template's name", min_length = 1, max_length = 253, pattern = r"^[a-z0-9._-]+$")), request_body = RenderInput,
    responses((status = 200, description = "The rendered prompt", body = Rendered), NotFound))]
async fn render(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Json(input): Json<RenderInput>,
) -> ApiResult<Json<Rendered>> {
    if input.version.is_some_and(|v| v < 1) {
        return Err(ApiError::Validation("version: at least 1".into()));
    }
    let t = match (
        latest(&state, &p.tenant_id, &name, input.version).await,
        input.version,
    ) {
        // The template exists (or this is the 404); the body names a version it lacks.
        (Err(ApiError::NotFound(_)), Some(v)) => {
            latest(&state, &p.tenant_id, &name, None).await?;
            return Err(ApiError::Validation(format!(
                "version: template {name} has no version {v}"
            )));
        }
        (t, _) => t?,
    };
    let vars = input.variables;
    let rendered = off_workers(move || render_template(&t, &vars)).await?;
    Ok(Json(rendered))
}

/// A rough token estimate: four characters a token.
pub fn estimate_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ContextMessage {
    pub role: Role,
    pub content: String,
    /// Kept whatever the budget (system messages always are).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    /// Oldest first.
    #[schema(max_items = 10000)]
    pub messages: Vec<ContextMessage>,
    /// Tokens the result may use.
    #[schema(minimum = 1, maximum = 10000000)]
    #[serde(deserialize_with = "crate::platform::integer::integer")]
    pub max_tokens: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ContextResult {
    pub messages: Vec<ContextMessage>,
    pub tokens: u64,
    /// How many messages were left out (the oldest unpinned ones).
    pub dropped: usize,
}

/// Keeps pinned and system messages, then the most recent others that fit.
pub fn fit_context(messages: Vec<ContextMessage>, max_tokens: u64) -> ApiResult<ContextResult> {
    let cost = |m: &ContextMessage| estimate_tokens(&m.content) + 4;
    let keep_always = |m: &ContextMessage| m.pinned || m.role == Role::System;
    let fixed: u64 = messages.iter().filter(|m| keep_always(m)).map(cost).sum();
    if fixed > max_tokens {
        return Err(ApiError::Validation(format!(
            "pinned and system messages need {fixed} tokens, more than max_tokens {max_tokens}"
        )));
    }
    let mut used = fixed;
    let mut keep = vec![false; messages.len()];
    for (i, m) in messages.iter().enumerate() {
        keep[i] = keep_always(m);
    }
    for i in (0..messages.len()).rev() {
        if keep[i] {
            continue;
        }
        let c = cost(&messages[i]);
        if used + c > max_tokens {
            // Older messages are not considered once one does not fit, so
            // the kept history stays contiguous.
            break;
        }
        used += c;
        keep[i] = true;
    }
    let total = messages.len();
    let kept: Vec<ContextMessage> = messages
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(m, _)| m)
        .collect();
    Ok(ContextResult {
        dropped: total - kept.len(),
        messages: kept,
        tokens: used,
    })
}

#[utoipa::path(post, path = "/v1/prompts/context", tag = "prompt", request_body = ContextInput,
    responses((status = 200, description = "The messages that fit", body = ContextResult)))]
async fn build_context(
    _p: Principal,
    Json(input): Json<ContextInput>,
) -> ApiResult<Json<ContextResult>> {
    if input.max_tokens == 0 || input.max_tokens > 10_000_000 {
        return Err(ApiError::Validation(
            "max_tokens: must be between 1 and 10000000".into(),
        ));
    }
    if input.messages.len() > 10_000 {
        return Err(ApiError::Validation("messages: at most 10000".into()));
    }
    Ok(Json(fit_context(input.messages, input.max_tokens)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, content: &str) -> ContextMessage {
        ContextMessage {
            role,
            content: content.into(),
            pinned: false,
        }
    }

    #[test]
    fn context_keeps_system_and_the_most_recent() {
        let msgs = vec![
            m(Role::System, "rules"),
            m(Role::User, &"a".repeat(40)),
            m(Role::Assistant, &"b".repeat(40)),
            m(Role::User, "last"),
        ];
        // system 2+4, last 1+4, b 10+4 = 25; a would need 14 more.
        let r = fit_context(msgs, 30).unwrap();
        let roles: Vec<_> = r.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, vec!["system", "assistant", "user"]);
        assert_eq!(r.dropped, 1);
        assert_eq!(r.tokens, 25);
        assert!(fit_context(vec![m(Role::System, &"x".repeat(400))], 10).is_err());
    }
}
