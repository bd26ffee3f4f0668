//! A task of an agent: the OpenAI tool-calling loop through the gateway, on behalf of the
//! caller and in the agent's name, stopped by `maxIterations` model calls or
//! `timeoutSeconds`, whichever comes first. Every model call and tool call is recorded as
//! a step of the run as it ends; with `stream`, each step is also sent as an event, with
//! the model's text as it is written.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use faas_model::agent::{Definition, ToolSettings};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::{self, Agent, NewStep, Step};
use super::{AgentPath, AgentState, Agents, Caller, check_name, memory, tools};
use crate::platform::extract::{Json, Path};
use crate::platform::http_client::{RetryPolicy, UpstreamError};
use crate::platform::{ApiError, ApiResult, Principal, RequestContext};
use crate::shared::gateway_client::{
    ChatRequest, FunctionCall, Message, OnBehalfOf, StreamPiece, ToolCall,
};

/// Tool calls of one answer that are made; more are refused to the model.
const MAX_CALLS_PER_ANSWER: usize = 16;
/// Tool calls of one answer read at all (each recorded as a step, the ones past
/// [`MAX_CALLS_PER_ANSWER`] as refused); an answer with more is refused whole.
const MAX_CALLS_READ: usize = 64;
/// The most of a peer component's answer read.
const MAX_PEER_BYTES: usize = 4 * 1024 * 1024;
/// The most of a streamed answer assembled.
const MAX_STREAMED_BYTES: usize = 4 * 1024 * 1024;

/// A task for an agent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InvokeRequest {
    /// The task, or the user's message in a session: 1 to 32768 characters (the
    /// service's FAAS_AGENT_MAX_INPUT_CHARS), not only white space.
    #[schema(
        min_length = 1,
        max_length = 32768,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub input: String,
    /// A chat session of the caller with this agent: its memory is given to the model,
    /// and this turn is added to it.
    #[serde(default)]
    pub session_id: Option<Uuid>,
    /// Values of the prompt template's variables, over those the agent gives: at most
    /// 64 strings, numbers, booleans or nulls.
    #[serde(default)]
    #[schema(schema_with = variables_schema)]
    pub variables: Map<String, Value>,
    /// Answer with server-sent events instead of one JSON document.
    #[serde(default)]
    pub stream: bool,
}

const MAX_VARIABLES: usize = 64;

fn variables_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
    let no_nul = || Some("^[^\\u0000]*$");
    let scalar = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .pattern(no_nul()),
        )
        .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Number)))
        .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Boolean)))
        .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Null)));
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Object))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .pattern(no_nul()),
        ))
        .additional_properties(Some(utoipa::openapi::schema::Schema::OneOf(scalar.build())))
        .max_properties(Some(MAX_VARIABLES))
        .into()
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunUsage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

/// How a task ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvokeResult {
    pub run_id: Uuid,
    pub agent: String,
    /// `succeeded`, or `failed` (with `error`): the limits of the agent stop a task
    /// without a final answer as failed.
    #[schema(pattern = "^(succeeded|failed)$")]
    pub status: String,
    /// The final answer.
    pub output: Option<String>,
    /// Why the task failed.
    pub error: Option<String>,
    pub session_id: Option<Uuid>,
    /// Model calls made.
    pub iterations: i32,
    pub usage: RunUsage,
    /// Every step, in order.
    pub steps: Vec<Step>,
}

/// One server-sent event of a streamed task.
#[derive(Serialize, ToSchema)]
pub struct InvokeEvent {
    /// `step`, `delta`, `done` or `error`.
    #[schema(pattern = "^(step|delta|done|error)$")]
    pub event: String,
    /// JSON: a StepEvent (`step`), a DeltaEvent (`delta`), the InvokeResult (`done`), or a
    /// problem (`error`).
    pub data: String,
}

/// The data of a `step` event: a step as it was recorded.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepEvent {
    pub run_id: Uuid,
    pub step: Step,
}

/// The data of a `delta` event: more of the model's text.
#[derive(Serialize, ToSchema)]
pub struct DeltaEvent {
    pub text: String,
}

#[utoipa::path(post, path = "/v1/agents/{name}/invoke", tag = "agent", params(AgentPath),
    request_body = InvokeRequest,
    responses((status = 200, description = "The task ran: its answer, or why it failed (a limit reached, the \
                gateway or a component the agent needs refusing or failing), with every step and the tokens used. With `stream`, server-sent events: \
                `step` (a StepEvent) as each step ends, `delta` ({\"text\"}) as the model writes, then `done` \
                (the InvokeResult) or `error` (a problem)",
               content((InvokeResult = "application/json"), (InvokeEvent = "text/event-stream"))),
              (status = 404, description = "The tenant has no such agent, or the caller no such session with it", body = crate::platform::error::Problem, content_type = "application/problem+json"),
              (status = 422, description = "The input is empty or too long, or the variables are not a flat object of at most 64 values", body = crate::platform::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn invoke(
    State(state): State<AgentState>,
    p: Principal,
    who: OnBehalfOf,
    Extension(ctx): Extension<RequestContext>,
    Path(path): Path<AgentPath>,
    Json(input): Json<InvokeRequest>,
) -> ApiResult<Response> {
    check_name(&path.name)?;
    let agents = state.component();
    let chars = input.input.chars().count();
    let max = agents.settings.max_input_chars;
    if input.input.trim().is_empty() || chars > max {
        return Err(ApiError::Validation(format!(
            "input: 1 to {max} characters, not only white space"
        )));
    }
    if input.variables.len() > MAX_VARIABLES
        || input
            .variables
            .values()
            .any(|v| v.is_array() || v.is_object())
    {
        return Err(ApiError::Validation(format!(
            "variables: at most {MAX_VARIABLES} strings, numbers, booleans or nulls"
        )));
    }
    let agent = store::get(&agents.db, &p.tenant_id, &path.name).await?;
    let definition = agent.parsed()?;
    let (session, history) = match input.session_id {
        Some(id) => {
            let s = memory::load(&agents.db, &p, &agent, id).await?;
            let history = memory::history(&definition, &s);
            (Some(id), history)
        }
        None => (None, Vec::new()),
    };
    let caller = Caller {
        principal: p,
        who,
        ctx,
    };
    let mut task = Task {
        state: state.clone(),
        caller,
        chain: vec![agent.name.clone()],
        agent,
        definition,
        input: input.input,
        variables: input.variables,
        history,
        session,
        parent: None,
        events: None,
    };
    if !input.stream {
        // On a task of its own, so that a caller who goes away, or the request's time
        // limit, never leaves the run unrecorded.
        let result = tokio::spawn(execute_turn(task))
            .await
            .map_err(ApiError::internal)??;
        return Ok(Json(result).into_response());
    }
    let (tx, rx) = mpsc::channel::<Event>(64);
    task.events = Some(tx.clone());
    tokio::spawn(async move {
        let last = match execute_turn(task).await {
            Ok(result) => event("done", &result),
            Err(e) => {
                e.log();
                event("error", &e.problem())
            }
        };
        let _ = tx.send(last).await;
    });
    Ok(Sse::new(receive(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn receive(rx: mpsc::Receiver<Event>) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

fn event(name: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
}

/// Runs the task, then adds the turn to the session's memory when it succeeded.
async fn execute_turn(task: Task) -> ApiResult<InvokeResult> {
    let state = task.state.clone();
    let caller = task.caller.clone();
    let agent = task.agent.clone();
    let definition = task.definition.clone();
    let input = task.input.clone();
    let session = task.session;
    let result = execute(task).await?;
    if let (Some(id), Some(output)) = (session, &result.output)
        && result.status == "succeeded"
    {
        memory::remember(
            state.component(),
            &caller,
            &agent,
            &definition,
            id,
            &input,
            output,
        )
        .await?;
    }
    Ok(result)
}

/// A task under way.
pub(super) struct Task {
    pub state: AgentState,
    pub caller: Caller,
    pub agent: Agent,
    pub definition: Definition,
    pub input: String,
    pub variables: Map<String, Value>,
    /// The session's memory, given to the model before the input.
    pub history: Vec<Message>,
    pub session: Option<Uuid>,
    /// The run of the agent that called this one as a tool.
    pub parent: Option<Uuid>,
    /// The agents above this one, and this one: called as tools, they would make a cycle.
    pub chain: Vec<String>,
    pub events: Option<mpsc::Sender<Event>>,
}

/// What a run has used so far; kept outside the loop, so a run stopped by its time
/// limit is recorded with what it did.
struct Progress {
    run: Uuid,
    seq: i32,
    iterations: i32,
    prompt_tokens: i64,
    completion_tokens: i64,
}

enum End {
    Answer(String),
    Failed(String),
}

/// Runs the task to its end and records it. Boxed: an agent may call agents.
pub(super) fn execute(task: Task) -> BoxFuture<'static, ApiResult<InvokeResult>> {
    Box::pin(async move { task.execute().await })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Task {
    fn agents(&self) -> &Agents {
        self.state.component()
    }

    fn tenant(&self) -> &str {
        &self.caller.principal.tenant_id
    }

    async fn execute(self) -> ApiResult<InvokeResult> {
        let db = self.agents().db.clone();
        let mut progress = Progress {
            run: Uuid::now_v7(),
            seq: 0,
            iterations: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
        };
        store::start_run(
            &db,
            self.tenant(),
            store::NewRun {
                id: progress.run,
                agent: &self.agent,
                user: &self.caller.principal.user_id,
                session: self.session,
                parent: self.parent,
                input: &self.input,
            },
        )
        .await?;
        let limit = self.definition.timeout_seconds.max(1) as u64;
        let ended = tokio::time::timeout(Duration::from_secs(limit), self.run(&mut progress)).await;
        // Once the run is under way, whatever stops it (a limit, the gateway, a component
        // the agent needs) is how the run ended: recorded, and answered with the run.
        let end = match ended {
            Ok(Ok(end)) => end,
            Ok(Err(e)) => {
                e.log();
                End::Failed(e.public_detail())
            }
            Err(_) => End::Failed(format!(
                "timeoutSeconds: the task did not finish within {limit} s"
            )),
        };
        let (output, error) = match &end {
            End::Answer(a) => (Some(a.as_str()), None),
            End::Failed(reason) => (None, Some(reason.as_str())),
        };
        store::finish_run(
            &db,
            self.tenant(),
            progress.run,
            store::Outcome {
                output,
                error,
                iterations: progress.iterations,
                prompt_tokens: progress.prompt_tokens,
                completion_tokens: progress.completion_tokens,
            },
        )
        .await?;
        let (run, steps) =
            store::run(&db, &self.caller.principal, &self.agent.name, progress.run).await?;
        Ok(InvokeResult {
            run_id: run.id,
            agent: run.agent,
            status: run.status,
            output: run.output,
            error: run.error,
            session_id: run.session_id,
            iterations: run.iterations,
            usage: RunUsage {
                prompt_tokens: run.prompt_tokens,
                completion_tokens: run.completion_tokens,
                total_tokens: run.prompt_tokens.saturating_add(run.completion_tokens),
            },
            steps,
        })
    }

    async fn emit(&self, name: &str, value: &impl Serialize) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event(name, value)).await;
        }
    }

    async fn record(&self, p: &mut Progress, step: NewStep) -> ApiResult<()> {
        p.seq += 1;
        store::add_step(&self.agents().db, self.tenant(), p.run, p.seq, &step).await?;
        if self.events.is_some() {
            let step = Step {
                seq: p.seq,
                kind: step.kind.to_string(),
                tool: step.tool,
                tool_call_id: step.tool_call_id,
                arguments: step.arguments,
                output: step.output,
                error: step.error,
                prompt_tokens: step.prompt_tokens,
                completion_tokens: step.completion_tokens,
                duration_ms: step.duration_ms,
                started_at: step.started_at.unwrap_or_else(Utc::now),
            };
            self.emit(
                "step",
                &StepEvent {
                    run_id: p.run,
                    step,
                },
            )
            .await;
        }
        Ok(())
    }

    /// The loop: call the model; when it calls tools, call them and give it their results;
    /// when it answers, that is the end.
    async fn run(&self, p: &mut Progress) -> ApiResult<End> {
        let gateway = self.agents().gateway.as_ref().ok_or_else(|| {
            ApiError::Unavailable(format!(
                "this service has no gateway ({} is not set)",
                crate::shared::gateway_client::URL_SETTING
            ))
        })?;
        let who = self.caller.who.for_agent(&self.agent.name);
        let mut messages = self.opening(&who).await?;
        let d = &self.definition;
        let specs = tools::specs(d);
        for _ in 0..d.max_iterations.max(1) {
            p.iterations += 1;
            let req = ChatRequest {
                model: format!("{}/{}", d.model.provider, d.model.name),
                messages: messages.clone(),
                temperature: d.model.temperature,
                max_tokens: d.model.max_tokens.and_then(|n| u32::try_from(n).ok()),
                tools: specs.clone(),
                ..Default::default()
            };
            let started_at = Utc::now();
            let started = Instant::now();
            let (message, usage) = if self.events.is_some() {
                self.streamed(gateway, &who, &req).await?
            } else {
                let done = gateway.chat(&who, &self.caller.ctx, &req).await?;
                let message = done.message().cloned().ok_or_else(|| {
                    ApiError::BadGateway("the model's answer has no message".into())
                })?;
                (message, done.usage)
            };
            let (pt, ct) = (to_i64(usage.prompt_tokens), to_i64(usage.completion_tokens));
            p.prompt_tokens = p.prompt_tokens.saturating_add(pt);
            p.completion_tokens = p.completion_tokens.saturating_add(ct);
            self.record(
                p,
                NewStep {
                    kind: "model",
                    output: message.content.clone(),
                    prompt_tokens: pt,
                    completion_tokens: ct,
                    duration_ms: started.elapsed().as_millis() as i64,
                    started_at: Some(started_at),
                    ..Default::default()
                },
            )
            .await?;
            if message.tool_calls.is_empty() {
                return Ok(End::Answer(message.content.unwrap_or_default()));
            }
            if message.tool_calls.len() > MAX_CALLS_READ {
                return Err(ApiError::BadGateway(
                    "the model's answer calls too many tools".into(),
                ));
            }
            let calls = message.tool_calls.clone();
            messages.push(Message {
                role: "assistant".into(),
                content: message.content,
                name: None,
                tool_calls: calls.clone(),
                tool_call_id: None,
            });
            for (i, call) in calls.iter().enumerate() {
                let started_at = Utc::now();
                let started = Instant::now();
                let result = if i < MAX_CALLS_PER_ANSWER {
                    self.call_tool(p, call, &who).await
                } else {
                    Err(format!(
                        "refused: at most {MAX_CALLS_PER_ANSWER} tool calls are made of one answer"
                    ))
                };
                let text = match &result {
                    Ok(out) => out.clone(),
                    Err(e) => json!({ "error": e }).to_string(),
                };
                let (output, error) = match result {
                    Ok(out) => (Some(out), None),
                    Err(e) => (None, Some(e)),
                };
                self.record(
                    p,
                    NewStep {
                        kind: "tool",
                        tool: Some(call.function.name.clone()),
                        tool_call_id: Some(call.id.clone()),
                        arguments: Some(call.function.arguments.clone()),
                        output,
                        error,
                        duration_ms: started.elapsed().as_millis() as i64,
                        started_at: Some(started_at),
                        ..Default::default()
                    },
                )
                .await?;
                messages.push(Message {
                    role: "tool".into(),
                    content: Some(text),
                    name: None,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                });
            }
        }
        Ok(End::Failed(format!(
            "maxIterations: no final answer after {} model calls",
            d.max_iterations
        )))
    }

    /// A model call whose answer is streamed: its text is sent on as it comes, and its
    /// tool calls are put together from their pieces.
    async fn streamed(
        &self,
        gateway: &crate::shared::gateway_client::GatewayClient,
        who: &OnBehalfOf,
        req: &ChatRequest,
    ) -> ApiResult<(Message, crate::shared::gateway_client::Usage)> {
        let mut pieces = std::pin::pin!(gateway.chat_stream(who, &self.caller.ctx, req).await?);
        let mut text = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut usage = crate::shared::gateway_client::Usage::default();
        let mut size = 0usize;
        while let Some(piece) = pieces.next().await {
            match piece? {
                StreamPiece::Text(t) => {
                    size += t.len();
                    text.push_str(&t);
                    self.emit("delta", &DeltaEvent { text: t }).await;
                }
                StreamPiece::ToolCall(c) => {
                    if c.index >= MAX_CALLS_READ {
                        return Err(ApiError::BadGateway(
                            "the model's answer calls too many tools".into(),
                        ));
                    }
                    while calls.len() <= c.index {
                        calls.push(ToolCall {
                            id: String::new(),
                            kind: "function".into(),
                            function: FunctionCall {
                                name: String::new(),
                                arguments: String::new(),
                            },
                        });
                    }
                    let call = &mut calls[c.index];
                    if let Some(id) = c.id {
                        call.id = id;
                    }
                    if let Some(name) = c.function.name {
                        size += name.len();
                        call.function.name.push_str(&name);
                    }
                    if let Some(args) = c.function.arguments {
                        size += args.len();
                        call.function.arguments.push_str(&args);
                    }
                }
                StreamPiece::Usage(u) => usage = u,
            }
            if size > MAX_STREAMED_BYTES {
                return Err(ApiError::BadGateway(format!(
                    "the model's answer is longer than {MAX_STREAMED_BYTES} bytes"
                )));
            }
        }
        for (i, c) in calls.iter_mut().enumerate() {
            if c.id.is_empty() {
                c.id = format!("call_{i}");
            }
        }
        let message = Message {
            role: "assistant".into(),
            content: (!text.is_empty() || calls.is_empty()).then_some(text),
            name: None,
            tool_calls: calls,
            tool_call_id: None,
        };
        Ok((message, usage))
    }

    /// The messages before the loop: the instructions, passages retrieved for the input,
    /// the session's memory, and the input.
    async fn opening(&self, who: &OnBehalfOf) -> ApiResult<Vec<Message>> {
        let mut messages = Vec::new();
        let d = &self.definition;
        if let Some(prompt) = &d.system_prompt {
            messages.push(Message::new("system", prompt.clone()));
        } else if let Some(r) = &d.prompt_template_ref {
            messages.extend(self.render(who, r).await?);
        }
        if let Some(r) = &d.rag {
            let hits = tools::search(self.agents(), &self.caller, who, r, &self.input).await?;
            if !hits.is_empty() {
                let mut context = String::from(
                    "Passages retrieved for the task, best first; use them when they help:\n",
                );
                for (i, h) in hits.iter().enumerate() {
                    context.push_str(&format!(
                        "[{}] {}\n{}\n",
                        i + 1,
                        h["title"].as_str().unwrap_or_default(),
                        h["text"].as_str().unwrap_or_default()
                    ));
                }
                messages.push(Message::new("system", context));
            }
        }
        messages.extend(self.history.iter().cloned());
        messages.push(Message::new("user", self.input.clone()));
        Ok(messages)
    }

    /// The agent's prompt template, rendered by the prompt component.
    async fn render(
        &self,
        who: &OnBehalfOf,
        r: &faas_model::agent::PromptTemplateRef,
    ) -> ApiResult<Vec<Message>> {
        let agents = self.agents();
        let base = agents.settings.prompt_url.as_ref().ok_or_else(|| {
            ApiError::Unavailable(format!(
                "this service has no prompt component ({} is not set), which agent {} needs for its promptTemplateRef",
                super::settings::PROMPT_URL,
                self.agent.name
            ))
        })?;
        let mut variables: Map<String, Value> = r
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        variables.extend(self.variables.clone());
        let mut body = json!({ "variables": variables });
        if let Some(v) = self.agent.prompt_template_version {
            body["version"] = json!(v);
        }
        let name: String = r
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        // `.` and `..` would be resolved away, naming another route of the prompt component.
        if name.is_empty() || name.chars().all(|c| c == '.') {
            return Err(ApiError::Validation(format!(
                "promptTemplateRef: {:?} is not a template name",
                r.name
            )));
        }
        let url = base
            .join(&format!("v1/prompts/{name}/render"))
            .map_err(ApiError::internal)?;
        let rendered = peer_call(agents, &self.caller, who, "prompt", url, &body)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(m) | ApiError::Validation(m) => {
                    ApiError::Validation(format!("promptTemplateRef: {m}"))
                }
                other => other,
            })?;
        if let Some(text) = rendered["text"].as_str() {
            return Ok(vec![Message::new("system", text)]);
        }
        Ok(rendered["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| Some(Message::new(m["role"].as_str()?, m["content"].as_str()?)))
            .collect())
    }

    async fn call_tool(
        &self,
        p: &Progress,
        call: &ToolCall,
        who: &OnBehalfOf,
    ) -> tools::ToolResult {
        let tool = self
            .definition
            .tools
            .iter()
            .find(|t| t.name == call.function.name)
            .ok_or_else(|| format!("there is no tool named {:?}", call.function.name))?;
        let args = tools::check_arguments(tool, &call.function.arguments)?;
        let agents = self.agents();
        match tool.settings() {
            Some(ToolSettings::Http(h)) => tools::call_http(agents, &self.caller, h, args).await,
            Some(ToolSettings::Rag(r)) => {
                tools::call_rag(agents, &self.caller, who, r, &args).await
            }
            Some(ToolSettings::Builtin(b)) => {
                super::builtin::call(agents, &self.caller, b.name, &args).await
            }
            Some(ToolSettings::Agent(a)) => self.call_agent(p, &a.name, &args).await,
            None => Err(format!("the tool {} has no settings", tool.name)),
        }
    }

    /// Another agent of the tenant, run in this process as a run of its own whose parent
    /// is this run; refused when it is already above (a cycle) or too deep.
    async fn call_agent(
        &self,
        p: &Progress,
        name: &str,
        args: &Map<String, Value>,
    ) -> tools::ToolResult {
        if self.chain.iter().any(|n| n == name) {
            return Err(format!(
                "refused: calling agent {name} would make a cycle ({} -> {name})",
                self.chain.join(" -> ")
            ));
        }
        let max = self.agents().settings.max_depth;
        if self.chain.len() >= max {
            return Err(format!(
                "refused: agents may call agents at most {max} deep ({} -> {name})",
                self.chain.join(" -> ")
            ));
        }
        let agent = store::get(&self.agents().db, self.tenant(), name)
            .await
            .map_err(|e| e.public_detail())?;
        let definition = agent.parsed().map_err(|e| e.public_detail())?;
        let input = match args.get("input") {
            Some(Value::String(s)) => s.clone(),
            _ => Value::Object(args.clone()).to_string(),
        };
        let mut chain = self.chain.clone();
        chain.push(name.to_string());
        let child = Task {
            state: self.state.clone(),
            caller: self.caller.clone(),
            agent,
            definition,
            input,
            variables: Map::new(),
            history: Vec::new(),
            session: None,
            parent: Some(p.run),
            chain,
            events: None,
        };
        match execute(child).await {
            Ok(r) if r.status == "succeeded" => Ok(r.output.unwrap_or_default()),
            Ok(r) => Err(format!(
                "agent {name} failed (run {}): {}",
                r.run_id,
                r.error.unwrap_or_default()
            )),
            Err(e) => Err(format!("agent {name}: {}", e.public_detail())),
        }
    }
}

/// A JSON call to one of the platform's components, for the caller; its answer, or its
/// refusal as this component's error (its reason kept: the components are ours and
/// their messages name no secret).
pub(super) async fn peer_call(
    agents: &Agents,
    caller: &Caller,
    who: &OnBehalfOf,
    component: &'static str,
    url: url::Url,
    body: &Value,
) -> ApiResult<Value> {
    let req = who
        .authorize(agents.peers.inner().post(url))
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body)
        .build()
        .map_err(ApiError::internal)?;
    let timeout = agents.settings.peer_timeout;
    let resp = agents
        .peers
        .send(
            component,
            component,
            req,
            &caller.ctx,
            RetryPolicy::new(1, true),
            Some(timeout),
        )
        .await
        .map_err(|e| match e {
            UpstreamError::Timeout { .. } => ApiError::GatewayTimeout(format!(
                "the {component} component did not answer in time"
            )),
            other => {
                tracing::warn!(error = %other, component, "calling a component");
                ApiError::Unavailable(format!("the {component} component is unavailable"))
            }
        })?;
    let status = resp.status();
    let text = tools::read_capped(resp, MAX_PEER_BYTES)
        .await
        .map_err(|e| ApiError::BadGateway(format!("{component}: {e}")))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let reason = value["detail"]
        .as_str()
        .map(|s| s.chars().take(500).collect::<String>())
        .unwrap_or_else(|| format!("answered {status}"));
    let reason = format!("{component}: {reason}");
    Err(match status.as_u16() {
        400 | 422 => ApiError::Validation(reason),
        401 => ApiError::Unauthorized(reason),
        403 => ApiError::Forbidden(reason),
        404 => ApiError::NotFound(reason),
        429 => ApiError::TooManyRequests {
            detail: reason,
            retry_after_secs: None,
        },
        503 => ApiError::Unavailable(reason),
        _ => ApiError::BadGateway(reason),
    })
}
