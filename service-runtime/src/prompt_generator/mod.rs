//! The prompt generator: Agent definitions written by a model from a natural-language
//! description, with structured output checked against the Agent CRD's own schema and CEL
//! rules (and the agent component's rules), refused answers corrected by the model, then
//! handed out as Agent YAML or created as API-managed agents; users rate what they got.
//! Who may generate and who may create is set by role claims.

pub mod generate;
pub mod settings;
pub mod store;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use faas_model::Component;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::platform::component::ComponentState;
use crate::platform::egress::EgressPolicy;
use crate::platform::error::{Problem, problem_responses};
use crate::platform::extract::{Json, Path, Query};
use crate::platform::{
    ApiError, ApiResult, AppState, Built, ComponentSpec, Principal, RequestContext,
};
use crate::shared::gateway_client::{GatewayClient, OnBehalfOf, URL_SETTING};
use settings::{Roles, Settings};
use store::{Feedback, Generation};

/// prompt-generator as the platform serves it.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::PromptGenerator,
    openapi,
    openai_routes: &[],
    build,
};

/// prompt-generator's own state.
#[derive(Clone)]
pub struct Generator {
    pub db: sqlx::PgPool,
    pub settings: Settings,
    /// Models, through the gateway; none when FAAS_GATEWAY_URL is not set.
    pub gateway: Option<GatewayClient>,
    /// What the URLs of generated HTTP tools are checked against.
    pub policy: Arc<EgressPolicy>,
}

type GeneratorState = ComponentState<Generator>;

const MAX_PAGE: i64 = 100;
const MAX_COMMENT_CHARS: usize = 4096;

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let src = &platform.config.source;
    let settings = Settings::from_source(src)?;
    let gateway = match src.get(URL_SETTING) {
        Some(_) => Some(GatewayClient::from_source(
            src,
            platform.http.clone(),
            settings.timeout,
        )?),
        None => None,
    };
    let db = platform.db.clone().ok_or_else(|| {
        anyhow::anyhow!("the prompt-generator component needs Postgres (DATABASE_URL)")
    })?;
    let generator = Generator {
        db,
        settings,
        gateway,
        policy: platform.config.egress.policy.clone(),
    };
    Ok(Built::routes(router().with_state(ComponentState::new(
        platform.clone(),
        generator,
    ))))
}

fn router() -> Router<GeneratorState> {
    Router::new()
        .route("/v1/generations", post(create).get(list))
        .route("/v1/generations/{id}", get(get_generation))
        .route("/v1/generations/{id}/yaml", get(get_yaml))
        .route("/v1/generations/{id}/agent", post(create_agent))
        .route("/v1/generations/{id}/feedback", put(put_feedback))
        .route("/v1/feedback", get(list_feedback))
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, get_generation, get_yaml, create_agent, put_feedback, list_feedback),
    components(schemas(GenerationRequest, AgentModel, crate::shared::agents::Agent, Generation, GenerationPage, NewAgentFrom,
                       FeedbackInput, Feedback, FeedbackPage, Problem)),
    tags((name = "prompt-generator", description = "Agent definitions generated from descriptions, and feedback on them"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

problem_responses! {
    /// The caller's roles do not allow this.
    NotAllowed = 403;
    /// There is no such generation of the caller's (an admin sees the tenant's).
    NotFound = 404;
    /// The gateway failed or refused the model call.
    BadGateway = 502;
    /// The generation took longer than its limit.
    Timeout = 504;
}

/// The path's generation.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct GenerationPath {
    /// The generation's id.
    id: Uuid,
}

/// The model a generated Agent calls.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentModel {
    /// A provider registered in the gateway.
    #[schema(min_length = 1, max_length = 63)]
    pub provider: String,
    /// The model's name at that provider.
    #[schema(min_length = 1, max_length = 253)]
    pub name: String,
}

/// What to generate.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerationRequest {
    /// What the agent is for, what it should do and which systems it uses, in plain words.
    #[schema(min_length = 1, max_length = 65536)]
    pub description: String,
    /// The gateway model that writes the definition; defaults to FAAS_PROMPTGEN_MODEL.
    #[schema(min_length = 1, max_length = 256)]
    pub model: Option<String>,
    /// The Agent's name; the model names it when absent.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub name: Option<String>,
    /// The namespace written in the Agent's metadata; none is written when absent.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub namespace: Option<String>,
    /// The agent FaasService that serves it (spec.serviceRef); defaults to `agents`.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub service: Option<String>,
    /// The model the Agent calls; the generating model chooses when absent.
    pub agent_model: Option<AgentModel>,
    /// The most model answers to take, corrections included (1 to FAAS_PROMPTGEN_MAX_ATTEMPTS).
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: Option<u32>,
}

/// A DNS label of 1 to 63 characters.
fn check_label(field: &str, value: &str) -> ApiResult<()> {
    let b = value.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "{field}: 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

fn check_len(field: &str, value: &str, max: usize) -> ApiResult<()> {
    let n = value.chars().count();
    if n == 0 || n > max || value.trim().is_empty() {
        return Err(ApiError::Validation(format!(
            "{field}: 1 to {max} characters, not only spaces"
        )));
    }
    Ok(())
}

fn require(roles: &Roles, p: &Principal, what: &str) -> ApiResult<()> {
    if roles.allow(&p.roles, p.is_admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "your roles do not allow you to {what}"
        )))
    }
}

#[utoipa::path(post, path = "/v1/generations", tag = "prompt-generator", request_body = GenerationRequest,
    responses((status = 201, description = "Generated: `succeeded` with the Agent, or `rejected` with the problems of every answer", body = Generation),
              NotAllowed, BadGateway, Timeout))]
async fn create(
    State(state): State<GeneratorState>,
    p: Principal,
    who: OnBehalfOf,
    Extension(ctx): Extension<RequestContext>,
    Json(input): Json<GenerationRequest>,
) -> ApiResult<(StatusCode, Json<Generation>)> {
    let g = state.component();
    let s = &g.settings;
    require(&s.generate, &p, "generate agents")?;
    check_len("description", &input.description, s.max_description_chars)?;
    for (field, value) in [
        ("name", &input.name),
        ("namespace", &input.namespace),
        ("service", &input.service),
    ] {
        if let Some(v) = value {
            check_label(field, v)?;
        }
    }
    let model = match input.model.as_deref().or(s.model.as_deref()) {
        Some(m) => {
            check_len("model", m, 256)?;
            m.to_string()
        }
        None => {
            return Err(ApiError::Validation(format!(
                "model: name the gateway model that writes the definition (this service has no {})",
                settings::MODEL
            )));
        }
    };
    if let Some(m) = &input.agent_model {
        check_len("agentModel.provider", &m.provider, 63)?;
        check_len("agentModel.name", &m.name, 253)?;
    }
    let attempts = input.max_attempts.unwrap_or(s.max_attempts);
    if !(1..=s.max_attempts).contains(&attempts) {
        return Err(ApiError::Validation(format!(
            "maxAttempts: from 1 to {}",
            s.max_attempts
        )));
    }
    let gateway = g.gateway.as_ref().ok_or_else(|| {
        ApiError::Unavailable(format!(
            "this service has no gateway ({URL_SETTING} is not set)"
        ))
    })?;
    let order = generate::Order {
        id: Uuid::now_v7(),
        description: &input.description,
        model: &model,
        name: input.name.as_deref(),
        namespace: input.namespace.as_deref(),
        service: input.service.as_deref().unwrap_or("agents"),
        agent_model: input
            .agent_model
            .as_ref()
            .map(|m| (m.provider.as_str(), m.name.as_str())),
        attempts,
        max_tokens: s.max_tokens,
    };
    let outcome = tokio::time::timeout(
        s.timeout,
        generate::run(gateway, &who, &ctx, &g.policy, &order),
    )
    .await
    .map_err(|_| {
        ApiError::GatewayTimeout(format!(
            "the generation took longer than {} s",
            s.timeout.as_secs()
        ))
    })??;
    let accepted = outcome.accepted.as_ref();
    let row = store::insert(
        &g.db,
        &p,
        &store::NewGeneration {
            id: order.id,
            description: &input.description,
            model: &model,
            attempts: outcome.attempts,
            name: accepted.map(|a| a.name.as_str()),
            agent: accepted.map(|a| &a.agent),
            problems: &outcome.problems,
            prompt_tokens: outcome.prompt_tokens,
            completion_tokens: outcome.completion_tokens,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationPage {
    pub items: Vec<Generation>,
    /// The cursor of the next page; absent on the last.
    pub next_cursor: Option<Uuid>,
}

/// A page of generations.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// From the previous page's `nextCursor`.
    cursor: Option<Uuid>,
    /// Generations per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(20);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::BadRequest(format!("limit: from 1 to {MAX_PAGE}")))
    }
}

#[utoipa::path(get, path = "/v1/generations", tag = "prompt-generator", params(PageQuery),
    responses((status = 200, description = "The caller's generations (the tenant's, for its admin), newest first", body = GenerationPage)))]
async fn list(
    State(state): State<GeneratorState>,
    p: Principal,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<GenerationPage>> {
    let limit = page_limit(page.limit)?;
    let mut items = store::list(&state.component().db, &p, page.cursor, limit + 1).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more.then(|| items.last().map(|g| g.id)).flatten();
    Ok(Json(GenerationPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/generations/{id}", tag = "prompt-generator", params(GenerationPath),
    responses((status = 200, description = "The generation", body = Generation), NotFound))]
async fn get_generation(
    State(state): State<GeneratorState>,
    p: Principal,
    Path(path): Path<GenerationPath>,
) -> ApiResult<Json<Generation>> {
    Ok(Json(store::get(&state.component().db, &p, path.id).await?))
}

fn accepted_agent(g: &Generation) -> ApiResult<&serde_json::Value> {
    g.agent.as_ref().map(|a| &a.0).ok_or_else(|| {
        ApiError::Conflict(format!(
            "generation {} was rejected: it has no Agent; its problems say why",
            g.id
        ))
    })
}

#[utoipa::path(get, path = "/v1/generations/{id}/yaml", tag = "prompt-generator", params(GenerationPath),
    responses((status = 200, description = "The Agent as YAML, for `kubectl apply -f -` or a GitOps repository", body = String, content_type = "application/yaml"),
              NotFound,
              (status = 409, description = "The generation was rejected: it has no Agent", body = Problem, content_type = "application/problem+json")))]
async fn get_yaml(
    State(state): State<GeneratorState>,
    p: Principal,
    Path(path): Path<GenerationPath>,
) -> ApiResult<Response> {
    let g = store::get(&state.component().db, &p, path.id).await?;
    let text = generate::yaml(g.id, accepted_agent(&g)?)?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response())
}

/// Which agent to create from a generation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgentFrom {
    /// The agent's name; defaults to the generated Agent's.
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )]
    pub name: Option<String>,
}

#[utoipa::path(post, path = "/v1/generations/{id}/agent", tag = "prompt-generator", params(GenerationPath),
    request_body = NewAgentFrom,
    responses((status = 201, description = "Created as an API-managed agent of the tenant, served by its agent component", body = crate::shared::agents::Agent),
              NotAllowed, NotFound,
              (status = 409, description = "The generation was rejected, or the tenant has an agent of that name", body = Problem, content_type = "application/problem+json")))]
async fn create_agent(
    State(state): State<GeneratorState>,
    p: Principal,
    Path(path): Path<GenerationPath>,
    Json(input): Json<NewAgentFrom>,
) -> ApiResult<(StatusCode, Json<crate::shared::agents::Agent>)> {
    let g = state.component();
    require(&g.settings.create, &p, "create agents")?;
    if let Some(n) = &input.name {
        check_label("name", n)?;
    }
    let generation = store::get(&g.db, &p, path.id).await?;
    let object = accepted_agent(&generation)?;
    // Checked again: the egress policy may have changed since it was generated.
    let agent = faas_crds::offline::check_agent(object)
        .map_err(|problems| ApiError::Validation(problems.join("; ")))?;
    let definition = faas_model::agent::Definition::from(&agent.spec);
    let problems = crate::shared::agents::definition_problems(&g.policy, &definition);
    if !problems.is_empty() {
        return Err(ApiError::Validation(format!(
            "the definition is no longer valid: {}",
            problems.join("; ")
        )));
    }
    let name = match &input.name {
        Some(n) => n.clone(),
        None => agent.metadata.name.clone().unwrap_or_default(),
    };
    let created = store::create_agent(&g.db, &p, path.id, &name, &definition).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A rating of a generation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    /// 1 (useless) to 5 (used as it was).
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i16,
    /// What was wrong or right, up to 4096 characters.
    #[schema(max_length = 4096)]
    pub comment: Option<String>,
}

#[utoipa::path(put, path = "/v1/generations/{id}/feedback", tag = "prompt-generator", params(GenerationPath),
    request_body = FeedbackInput,
    responses((status = 200, description = "The caller's feedback on the generation, replacing any they gave before", body = Feedback), NotFound))]
async fn put_feedback(
    State(state): State<GeneratorState>,
    p: Principal,
    Path(path): Path<GenerationPath>,
    Json(input): Json<FeedbackInput>,
) -> ApiResult<Json<Feedback>> {
    if !(1..=5).contains(&input.rating) {
        return Err(ApiError::Validation("rating: from 1 to 5".into()));
    }
    if let Some(c) = &input.comment
        && c.chars().count() > MAX_COMMENT_CHARS
    {
        return Err(ApiError::Validation(format!(
            "comment: at most {MAX_COMMENT_CHARS} characters"
        )));
    }
    let row = store::put_feedback(
        &state.component().db,
        &p,
        path.id,
        input.rating,
        input.comment.as_deref(),
    )
    .await?;
    Ok(Json(row))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackPage {
    pub items: Vec<Feedback>,
    /// The cursor of the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which feedback to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FeedbackQuery {
    /// Only the feedback on this generation.
    generation: Option<Uuid>,
    /// Only ratings of at least this (1 to 5).
    #[param(minimum = 1, maximum = 5)]
    min_rating: Option<i16>,
    /// Only ratings of at most this (1 to 5).
    #[param(minimum = 1, maximum = 5)]
    max_rating: Option<i16>,
    /// From the previous page's `nextCursor`.
    #[param(min_length = 1, max_length = 512)]
    cursor: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// A feedback page's cursor: where the last item sorts.
#[derive(Serialize, Deserialize)]
struct FeedbackCursor {
    at: DateTime<Utc>,
    generation: Uuid,
    user: String,
}

fn encode_cursor(f: &Feedback) -> String {
    let c = FeedbackCursor {
        at: f.updated_at,
        generation: f.generation_id,
        user: f.user_id.clone(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&c).expect("a cursor serializes"))
}

fn decode_cursor(raw: &str) -> ApiResult<FeedbackCursor> {
    let bad = || ApiError::BadRequest("cursor: not a cursor from a previous page".into());
    if raw.len() > 512 {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

#[utoipa::path(get, path = "/v1/feedback", tag = "prompt-generator", params(FeedbackQuery),
    responses((status = 200, description = "Feedback the caller gave (the tenant's, for its admin), newest first", body = FeedbackPage)))]
async fn list_feedback(
    State(state): State<GeneratorState>,
    p: Principal,
    Query(q): Query<FeedbackQuery>,
) -> ApiResult<Json<FeedbackPage>> {
    let limit = page_limit(q.limit)?;
    let (min, max) = (q.min_rating.unwrap_or(1), q.max_rating.unwrap_or(5));
    if !(1..=5).contains(&min) || !(1..=5).contains(&max) || min > max {
        return Err(ApiError::BadRequest(
            "minRating and maxRating: from 1 to 5, minRating no more than maxRating".into(),
        ));
    }
    let before = q
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(|c| (c.at, c.generation, c.user));
    let filter = store::FeedbackFilter {
        generation: q.generation,
        min_rating: min,
        max_rating: max,
        before,
        limit: limit + 1,
    };
    let mut items = store::list_feedback(&state.component().db, &p, &filter).await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more.then(|| items.last().map(encode_cursor)).flatten();
    Ok(Json(FeedbackPage { items, next_cursor }))
}
