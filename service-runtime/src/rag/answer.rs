//! Answers with citations: retrieve the best chunks, number them into a prompt within a
//! token budget, ask a chat model through the gateway on behalf of the caller, and
//! return the answer with the sources it was given; as server-sent events when asked.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::search::{self, Hit, Mode};
use super::{CollectionPath, RagState, check_name, check_query, run_query};
use crate::platform::extract::{Json, Path};
use crate::platform::{ApiError, ApiResult, Principal, RequestContext};
use crate::shared::documents::{self as index, Store};
use crate::shared::gateway_client::{ChatRequest, Message, OnBehalfOf, StreamPiece};

const MAX_CONTEXT_TOKENS: u64 = 32_000;
const MAX_ANSWER_TOKENS: u64 = 32_000;

const INSTRUCTIONS: &str = "Answer the question from the numbered sources below only. Cite \
the sources you use by their numbers in brackets, like [1] or [2][3]. If the sources do not \
hold the answer, say that you do not know.";

/// A question about one collection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// 1 to 2000 characters.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
    )]
    pub question: String,
    /// The chat model, as the gateway lists it; the service's default
    /// (`FAAS_RAG_ANSWER_MODEL`) when absent.
    #[schema(min_length = 1, max_length = 256)]
    pub model: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Chunks to retrieve, 1 to 50 (default 5).
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 50)]
    pub top_k: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Option<super::Metadata>)]
    pub filter: Option<Map<String, Value>>,
    /// Tokens of sources the prompt may hold, 1 to 32000 (default 2000): the best chunks
    /// that fit are given, in order.
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 32000)]
    pub max_context_tokens: Option<u64>,
    /// Tokens of the answer, 1 to 32000.
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 32000)]
    pub max_tokens: Option<u64>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Answer as server-sent events: `citations`, then `delta` pieces, then `done`.
    #[serde(default)]
    pub stream: bool,
}

/// A source the answer was given, by its number in the prompt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Citation {
    /// The number the answer cites it by (`[1]`).
    pub n: usize,
    pub document_id: Uuid,
    pub title: Option<String>,
    pub source: Option<String>,
    pub chunk: i32,
    pub heading: Option<String>,
    pub score: f64,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct AnswerUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answer {
    pub answer: String,
    pub model: String,
    pub citations: Vec<Citation>,
    pub usage: AnswerUsage,
}

/// The best hits that fit in `budget` tokens, numbered from 1, and the prompt that
/// gives them.
fn prompt(
    rag: &Store,
    question: &str,
    hits: Vec<Hit>,
    budget: usize,
) -> (Vec<Citation>, Vec<Message>) {
    let mut citations = Vec::new();
    let mut sources = String::new();
    let mut used = 0;
    for hit in hits {
        let label = match (&hit.title, &hit.heading) {
            (Some(t), Some(h)) => format!("{t} — {h}"),
            (Some(t), None) => t.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => format!("document {}", hit.document_id),
        };
        let block = format!("[{}] {label}\n{}\n\n", citations.len() + 1, hit.text);
        let tokens = rag.local().count_tokens(&block);
        if used + tokens > budget {
            // A later, shorter hit could fit, but it is worse: keep the order honest.
            break;
        }
        used += tokens;
        sources.push_str(&block);
        citations.push(Citation {
            n: citations.len() + 1,
            document_id: hit.document_id,
            title: hit.title,
            source: hit.source,
            chunk: hit.chunk,
            heading: hit.heading,
            score: hit.score,
            text: hit.text,
        });
    }
    if citations.is_empty() {
        sources.push_str("(no sources were found)\n");
    }
    let messages = vec![
        Message::new("system", format!("{INSTRUCTIONS}\n\nSources:\n\n{sources}")),
        Message::new("user", question.to_string()),
    ];
    (citations, messages)
}

fn check_bounded(what: &str, v: Option<u64>, max: u64) -> ApiResult<()> {
    match v {
        Some(n) if !(1..=max).contains(&n) => {
            Err(ApiError::Validation(format!("{what}: from 1 to {max}")))
        }
        _ => Ok(()),
    }
}

#[utoipa::path(post, path = "/v1/collections/{collection}/answer", tag = "rag",
    params(CollectionPath), request_body = AnswerRequest,
    responses((status = 200, description = "The answer and its sources; with `stream`, server-sent events \
                `citations` (the sources), `delta` ({\"text\"}), then `done` ({\"model\", \"usage\"}) or `error` (a problem)",
               content((Answer = "application/json"), (String = "text/event-stream"))),
              super::NotFound, super::BadGateway, super::GatewayTimeout))]
pub(super) async fn answer(
    State(state): State<RagState>,
    p: Principal,
    who: OnBehalfOf,
    Extension(ctx): Extension<RequestContext>,
    Path(path): Path<CollectionPath>,
    Json(input): Json<AnswerRequest>,
) -> ApiResult<Response> {
    check_name(&path.collection)?;
    let top_k = check_query("question", &input.question, input.top_k, &input.filter)?;
    check_bounded(
        "max_context_tokens",
        input.max_context_tokens,
        MAX_CONTEXT_TOKENS,
    )?;
    check_bounded("max_tokens", input.max_tokens, MAX_ANSWER_TOKENS)?;
    if input
        .temperature
        .is_some_and(|t| !(t.is_finite() && (0.0..=2.0).contains(&t)))
    {
        return Err(ApiError::Validation("temperature: from 0 to 2".into()));
    }
    let rag = state.component();
    let model = input
        .model
        .clone()
        .or_else(|| rag.settings.answer_model.clone())
        .ok_or_else(|| {
            ApiError::Validation(format!(
                "model: required, as this service has no default ({} is not set)",
                super::settings::ANSWER_MODEL
            ))
        })?;
    if model.is_empty() || model.chars().count() > 256 || model.chars().any(char::is_control) {
        return Err(ApiError::Validation(
            "model: 1 to 256 characters without control characters".into(),
        ));
    }
    let collection = index::collection(rag, &p.tenant_id, &path.collection).await?;
    let gateway = rag.gateway().cloned().ok_or_else(|| {
        ApiError::Unavailable(format!(
            "answers need the gateway, and this service has none ({} is not set)",
            crate::shared::gateway_client::URL_SETTING
        ))
    })?;
    let q = search::Query {
        text: &input.question,
        vector: None,
        mode: input.mode,
        top_k,
        filter: input.filter.clone(),
    };
    let hits = run_query(rag, &p.tenant_id, &collection, q, &who, &ctx).await?;
    let budget = input.max_context_tokens.unwrap_or(2000) as usize;
    let (citations, messages) = prompt(rag, &input.question, hits, budget);
    let req = ChatRequest {
        model: model.clone(),
        messages,
        temperature: input.temperature,
        max_tokens: input.max_tokens.map(|n| n as u32),
        ..Default::default()
    };
    if !input.stream {
        let done = gateway.chat(&who, &ctx, &req).await?;
        let answer = done
            .message()
            .and_then(|m| m.content.clone())
            .unwrap_or_default();
        return Ok(Json(Answer {
            answer,
            model: done.model,
            citations,
            usage: AnswerUsage {
                prompt_tokens: done.usage.prompt_tokens,
                completion_tokens: done.usage.completion_tokens,
            },
        })
        .into_response());
    }
    let pieces = gateway.chat_stream(&who, &ctx, &req).await?;
    Ok(Sse::new(events(citations, model, pieces))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Where a streamed answer is.
enum Step<S> {
    Citations(Vec<Citation>, S),
    Body(S, AnswerUsage),
    End,
}

fn event(name: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
}

/// The events of a streamed answer: the citations, the pieces of text, then `done` with
/// the usage, or `error` with the problem when the answer broke off.
fn events(
    citations: Vec<Citation>,
    model: String,
    pieces: impl Stream<Item = Result<StreamPiece, ApiError>> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let start = Step::Citations(citations, Box::pin(pieces));
    stream::unfold(start, move |step| {
        let model = model.clone();
        async move {
            match step {
                Step::Citations(c, s) => Some((
                    event("citations", &c),
                    Step::Body(s, AnswerUsage::default()),
                )),
                Step::Body(mut s, mut usage) => loop {
                    match s.next().await {
                        Some(Ok(StreamPiece::Text(text))) => {
                            let e = event("delta", &serde_json::json!({ "text": text }));
                            return Some((e, Step::Body(s, usage)));
                        }
                        // No tools are offered: nothing to call.
                        Some(Ok(StreamPiece::ToolCall(_))) => {}
                        Some(Ok(StreamPiece::Usage(u))) => {
                            usage = AnswerUsage {
                                prompt_tokens: u.prompt_tokens,
                                completion_tokens: u.completion_tokens,
                            };
                        }
                        Some(Err(e)) => {
                            e.log();
                            return Some((event("error", &e.problem()), Step::End));
                        }
                        None => {
                            let done = serde_json::json!({ "model": model, "usage": usage });
                            return Some((event("done", &done), Step::End));
                        }
                    }
                },
                Step::End => None,
            }
        }
    })
    .map(Ok)
}
