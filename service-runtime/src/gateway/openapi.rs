//! The gateway's OpenAPI document: each route's own annotations, completed here with the
//! errors every route shares, the body and media type each error is sent with, and the
//! MessagePack forms the platform negotiates.

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};

use super::{limits, providers, types};
use crate::platform::error::Problem;

#[derive(OpenApi)]
#[openapi(
    paths(
        super::chat_completions, super::embeddings, super::models,
        providers::create, providers::list, providers::get_one, providers::update, providers::delete,
        providers::credentials, limits::get_own, limits::put
    ),
    components(schemas(
        types::ChatRequest, types::ChatMessage, types::StreamOptions, types::EmbeddingsRequest,
        types::EncodingFormat, types::Usage, types::ChatCompletion, types::ChatCompletionEvent,
        types::ModelList, types::Model,
        types::EmbeddingList, types::Embedding, types::EmbeddingUsage, types::OpenAiError,
        types::OpenAiErrorDetail, providers::ProviderInput, providers::Provider,
        providers::ProviderKind, providers::CredentialView, limits::Limits, limits::LimitsView,
        limits::BudgetPeriod, Problem
    )),
    tags((name = "gateway", description = "OpenAI-compatible LLM gateway"))
)]
struct Doc;

/// Routes that answer errors in the OpenAI shape.
const OPENAI_PATHS: [&str; 3] = ["/v1/chat/completions", "/v1/embeddings", "/v1/models"];

const JSON: &str = "application/json";
const PROBLEM: &str = "application/problem+json";
const MSGPACK: &str = "application/msgpack";

/// Errors any authenticated route can answer, whatever it does.
const SHARED: [(u16, &str); 3] = [
    (400, "Malformed request: body, MessagePack or path"),
    (401, "Missing, malformed or expired bearer token"),
    (
        503,
        "A backing service is unavailable, or the request ran out of time",
    ),
];

/// Errors of every route that reads a body.
const WITH_BODY: [(u16, &str); 3] = [
    (413, "The body is larger than the limit"),
    (415, "The body is neither JSON nor MessagePack"),
    (422, "The body is not an object of the documented shape"),
];

/// Statuses the platform's middleware answers as problem+json even on the OpenAI routes.
const FROM_MIDDLEWARE: [u16; 3] = [400, 413, 503];

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    for (path, item) in doc.paths.paths.iter_mut() {
        let openai = OPENAI_PATHS.contains(&path.as_str());
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            complete(op, openai);
        }
    }
    doc
}

fn schema(name: &str) -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name(name))))
}

fn complete(op: &mut Operation, openai: bool) {
    let has_body = op.request_body.is_some();
    if let Some(body) = &mut op.request_body {
        body.description = Some(
            "JSON, or the same document as MessagePack (`Content-Type: application/msgpack`)."
                .into(),
        );
    }
    let extra = SHARED.iter().chain(WITH_BODY.iter().filter(|_| has_body));
    for (status, description) in extra {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(*description).build()));
    }
    for (status, resp) in op.responses.responses.iter_mut() {
        let RefOr::T(resp) = resp else { continue };
        let code: u16 = status.parse().unwrap_or(0);
        if code >= 400 {
            error_content(resp, code, openai);
        } else if let Some(json) = resp.content.get(JSON).cloned() {
            resp.content.insert(MSGPACK.into(), json);
        }
    }
}

fn error_content(resp: &mut Response, code: u16, openai: bool) {
    resp.content.clear();
    if openai {
        resp.content.insert(JSON.into(), schema("OpenAiError"));
    }
    if !openai || FROM_MIDDLEWARE.contains(&code) {
        resp.content.insert(PROBLEM.into(), schema("Problem"));
    }
    let shape = if openai { "OpenAiError" } else { "Problem" };
    resp.content.insert(MSGPACK.into(), schema(shape));
    if code == 429 {
        resp.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some(
                    "Seconds until the limit admits calls again, when known",
                ))
                .build(),
        );
    }
}
