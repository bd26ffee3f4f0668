//! Agents: definitions (managed here or by Agent resources), tasks run as an LLM
//! tool-calling loop through the gateway with step and time limits, every step recorded,
//! and chat sessions with memory. Tools are HTTP endpoints (through the egress guard, with
//! credentials read from mounted Secrets at call time), rag searches, other agents and
//! built-ins. Nothing is kept in process memory: any replica serves any run or session.

pub mod builtin;
pub mod memory;
pub mod run;
pub mod settings;
pub mod store;
pub mod tools;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use faas_model::Component;
use faas_model::agent::Definition;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::platform::component::ComponentState;
use crate::platform::egress::EgressPolicy;
use crate::platform::error::{NotAdmin, Problem, problem_responses};
use crate::platform::extract::{Json, Path, Query};
use crate::platform::http_client::HttpClient;
use crate::platform::{
    ApiError, ApiResult, AppState, Built, ComponentSpec, Principal, RequestContext,
};
use crate::shared::gateway_client::{GatewayClient, OnBehalfOf, URL_SETTING};
use store::{Agent, Run, Step};

/// agent as the platform serves it.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::Agent,
    openapi,
    openai_routes: &[],
    build,
};

/// agent's own state.
#[derive(Clone)]
pub struct Agents {
    pub db: sqlx::PgPool,
    pub settings: settings::Settings,
    /// Models, through the gateway; none when FAAS_GATEWAY_URL is not set.
    pub gateway: Option<GatewayClient>,
    /// Calls to URLs tenants chose (HTTP tools, web fetch), under the egress policy.
    pub egress: HttpClient,
    pub policy: Arc<EgressPolicy>,
    /// Calls to the platform's own components (rag, prompt).
    pub peers: HttpClient,
}

/// The state of agent's routes.
pub type AgentState = ComponentState<Agents>;

/// Longest time one model call may take; the task's own limit is what stops it first.
const MODEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);
const MAX_PAGE: i64 = 100;
const NAME_PATTERN: &str = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$";

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let src = &platform.config.source;
    let settings = settings::Settings::from_source(src)?;
    let gateway = match src.get(URL_SETTING) {
        Some(_) => Some(GatewayClient::from_source(
            src,
            platform.http.clone(),
            MODEL_TIMEOUT,
        )?),
        None => None,
    };
    let policy = platform.config.egress.policy.clone();
    let db = platform
        .db
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the agent component needs Postgres (DATABASE_URL)"))?;
    let agents = Agents {
        db,
        settings,
        gateway,
        egress: platform.http.guarded(&policy)?,
        policy,
        peers: platform.http.clone(),
    };
    Ok(Built::routes(
        router().with_state(ComponentState::new(platform.clone(), agents)),
    ))
}

fn router() -> Router<AgentState> {
    Router::new()
        .route("/v1/agents", post(create).get(list))
        .route(
            "/v1/agents/{name}",
            get(get_agent).put(replace).delete(delete),
        )
        .route("/v1/agents/{name}/invoke", post(run::invoke))
        .route("/v1/agents/{name}/runs/{id}", get(get_run))
        .route("/v1/agents/{name}/sessions", post(memory::create_session))
        .route(
            "/v1/agents/{name}/sessions/{id}",
            get(memory::get_session).delete(memory::delete_session),
        )
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, get_agent, replace, delete, run::invoke, get_run,
          memory::create_session, memory::get_session, memory::delete_session),
    components(schemas(NewAgent, Replacement, Agent, AgentPage, Run, Step, RunWithSteps,
                       run::InvokeRequest, run::InvokeResult, run::RunUsage, run::StepEvent, run::InvokeEvent,
                       run::DeltaEvent, memory::Session, memory::SessionMessage, Problem)),
    tags((name = "agent", description = "Agents, their runs, and chat sessions with memory"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

problem_responses! {
    /// The tenant has no such agent (or run, or session of the caller).
    NotFound = 404;
    /// The agent is managed by an Agent resource: read-only here.
    ReadOnly = 409;
    /// The definition breaks rules: the detail names every problem found and its field.
    Invalid = 422;
}

/// The path's agent.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AgentPath {
    /// The agent's name.
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
    )]
    name: String,
}

/// The path's agent and run.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct RunPath {
    /// The agent's name.
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
    )]
    name: String,
    /// The run's id.
    id: Uuid,
}

/// An agent's name: a Kubernetes resource name (lower-case letters, digits, '-' and '.',
/// 1 to 253 characters, starting and ending with a letter or digit).
pub fn check_name(name: &str) -> ApiResult<()> {
    let b = name.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 253
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || matches!(c, b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "name: 1 to 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit ({NAME_PATTERN})"
        )))
    }
}

/// Every rule of a definition: the model's own, the JSON Schemas of the tools'
/// parameters, and the egress policy for the URLs of HTTP tools.
fn check_definition(agents: &Agents, d: &Definition) -> ApiResult<()> {
    let problems = crate::shared::agents::definition_problems(&agents.policy, d);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "the definition is invalid: {}",
            problems.join("; ")
        )))
    }
}

/// A new agent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Unique in the tenant: lower-case letters, digits, '-' and '.'.
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
    )]
    pub name: String,
    pub definition: Definition,
}

/// A new definition of an agent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    pub definition: Definition,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPage {
    pub items: Vec<Agent>,
    /// The cursor of the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A page of agents.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// From the previous page's `nextCursor`.
    #[param(
        min_length = 1,
        max_length = 253,
        pattern = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
    )]
    cursor: Option<String>,
    /// Agents per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[utoipa::path(post, path = "/v1/agents", tag = "agent", request_body = NewAgent,
    responses((status = 201, description = "Created", body = Agent), NotAdmin,
              (status = 409, description = "The tenant has an agent of that name", body = Problem, content_type = "application/problem+json"),
              Invalid))]
async fn create(
    State(state): State<AgentState>,
    p: Principal,
    Json(input): Json<NewAgent>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    p.require_admin()?;
    check_name(&input.name)?;
    let agents = state.component();
    check_definition(agents, &input.definition)?;
    let created = store::create(
        &agents.db,
        &p.tenant_id,
        &input.name,
        &input.definition,
        &p.user_id,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/agents", tag = "agent", params(PageQuery),
    responses((status = 200, description = "The tenant's agents, by name", body = AgentPage)))]
async fn list(
    State(state): State<AgentState>,
    p: Principal,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<AgentPage>> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit: from 1 to {MAX_PAGE}")));
    }
    if let Some(c) = &page.cursor {
        check_name(c).map_err(|_| {
            ApiError::BadRequest("cursor: not a cursor from a previous page".into())
        })?;
    }
    let mut items = store::list(
        &state.component().db,
        &p.tenant_id,
        page.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more.then(|| items.last().map(|a| a.name.clone())).flatten();
    Ok(Json(AgentPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/agents/{name}", tag = "agent", params(AgentPath),
    responses((status = 200, description = "The agent", body = Agent), NotFound))]
async fn get_agent(
    State(state): State<AgentState>,
    p: Principal,
    Path(path): Path<AgentPath>,
) -> ApiResult<Json<Agent>> {
    check_name(&path.name)?;
    Ok(Json(
        store::get(&state.component().db, &p.tenant_id, &path.name).await?,
    ))
}

#[utoipa::path(put, path = "/v1/agents/{name}", tag = "agent", params(AgentPath), request_body = Replacement,
    responses((status = 200, description = "Replaced; the revision grew if the definition changed", body = Agent),
              NotAdmin, NotFound, ReadOnly, Invalid))]
async fn replace(
    State(state): State<AgentState>,
    p: Principal,
    Path(path): Path<AgentPath>,
    Json(input): Json<Replacement>,
) -> ApiResult<Json<Agent>> {
    check_name(&path.name)?;
    p.require_admin()?;
    let agents = state.component();
    check_definition(agents, &input.definition)?;
    Ok(Json(
        store::replace(&agents.db, &p.tenant_id, &path.name, &input.definition).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/agents/{name}", tag = "agent", params(AgentPath),
    responses((status = 204, description = "Deleted, with its runs and sessions"), NotAdmin, NotFound, ReadOnly))]
async fn delete(
    State(state): State<AgentState>,
    p: Principal,
    Path(path): Path<AgentPath>,
) -> ApiResult<StatusCode> {
    check_name(&path.name)?;
    p.require_admin()?;
    store::delete(&state.component().db, &p.tenant_id, &path.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A run and its steps.
#[derive(Serialize, ToSchema)]
pub struct RunWithSteps {
    #[serde(flatten)]
    pub run: Run,
    pub steps: Vec<Step>,
}

#[utoipa::path(get, path = "/v1/agents/{name}/runs/{id}", tag = "agent", params(RunPath),
    responses((status = 200, description = "The run and every step of it, in order; a user sees their own runs, an admin every run", body = RunWithSteps), NotFound))]
async fn get_run(
    State(state): State<AgentState>,
    p: Principal,
    Extension(_ctx): Extension<RequestContext>,
    Path(path): Path<RunPath>,
) -> ApiResult<Json<RunWithSteps>> {
    check_name(&path.name)?;
    let (run, steps) = store::run(&state.component().db, &p, &path.name, path.id).await?;
    Ok(Json(RunWithSteps { run, steps }))
}

/// The caller of a task: who they are, and how calls are made for them.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub who: OnBehalfOf,
    pub ctx: RequestContext,
}
