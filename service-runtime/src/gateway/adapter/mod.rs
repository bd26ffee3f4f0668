//! Provider protocols. Each adapter puts the gateway's OpenAI-shaped requests to its
//! protocol as typed wire requests and reads the answers, plain and streamed, back into
//! the OpenAI shape; a new protocol is one more adapter and one more arm in the dispatch
//! below. Sending, bounds and the gateway's own errors are shared (`http`).

pub mod anthropic;
pub mod http;
pub mod local;
pub mod openai;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::providers::{Provider, ProviderKind};
use super::relay::Translate;
use super::types::{ChatRequest, EmbeddingInput, EmbeddingsRequest, Usage};
use crate::platform::{ApiError, AppState, RequestContext};

/// Why trying one provider did not serve the call.
#[derive(Debug)]
pub enum Failure {
    /// This provider failed; the next one in the chain may be tried.
    Next(ApiError),
    /// The request itself is wrong; trying elsewhere will not help.
    Fatal(ApiError),
}

/// The result of trying one provider.
pub type Attempt<T> = Result<T, Failure>;

/// Adds a protocol's headers to a call: the key (when it may be sent) and any the
/// protocol requires.
pub type Headers = fn(reqwest::RequestBuilder, Option<&str>) -> reqwest::RequestBuilder;

/// A chat protocol: its wire shapes and how they translate to and from the OpenAI ones.
pub trait ChatAdapter {
    /// The body of a chat call.
    type Request<'a>: Serialize;
    /// A non-streamed answer.
    type Response: DeserializeOwned;
    /// That answer in the OpenAI shape.
    type Completion: Serialize;
    /// The translation of one streamed answer into OpenAI chunks.
    type Events: Translate + 'static;

    /// Where chat calls go, under the provider's base URL.
    fn url(base_url: &str) -> String;
    /// The protocol's headers.
    const HEADERS: Headers;
    /// The body asking for `model`; an error when the request cannot be put to the protocol.
    fn request<'a>(
        req: &'a ChatRequest,
        model: &'a str,
        stream: bool,
    ) -> Result<Self::Request<'a>, ApiError>;
    /// The answer as an OpenAI completion with its usage; `None` when it breaks the protocol.
    fn answer(resp: Self::Response, model: &str) -> Option<(Self::Completion, Usage)>;
    /// A translator for one streamed answer.
    fn events() -> Self::Events;
}

/// A streamed answer whose head was a success, and how to translate its events.
pub struct OpenStream {
    pub resp: reqwest::Response,
    pub events: Box<dyn Translate>,
}

fn embeddings_only(p: &Provider) -> Failure {
    Failure::Next(ApiError::BadGateway(format!(
        "provider {} serves embeddings only",
        p.name
    )))
}

/// One non-streamed chat call; the answer is an OpenAI completion, serialized.
pub async fn chat(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<(Vec<u8>, Usage)> {
    match p.kind {
        ProviderKind::Openai => chat_with::<openai::OpenAi>(state, ctx, p, model, req).await,
        ProviderKind::Anthropic => {
            chat_with::<anthropic::Anthropic>(state, ctx, p, model, req).await
        }
        ProviderKind::Local => Err(embeddings_only(p)),
    }
}

async fn chat_with<A: ChatAdapter>(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<(Vec<u8>, Usage)> {
    let body = A::request(req, model, false).map_err(Failure::Fatal)?;
    let url = A::url(&p.base_url);
    let resp: A::Response = http::call_json(state, ctx, p, url, A::HEADERS, &body).await?;
    let (completion, usage) = A::answer(resp, model).ok_or_else(|| http::malformed(p))?;
    let bytes =
        serde_json::to_vec(&completion).map_err(|e| Failure::Fatal(ApiError::internal(e)))?;
    Ok((bytes, usage))
}

/// Opens a streamed chat call; the head is checked before anything is sent to the
/// client, so a failing provider can still be replaced.
pub async fn open_stream(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<OpenStream> {
    match p.kind {
        ProviderKind::Openai => stream_with::<openai::OpenAi>(state, ctx, p, model, req).await,
        ProviderKind::Anthropic => {
            stream_with::<anthropic::Anthropic>(state, ctx, p, model, req).await
        }
        ProviderKind::Local => Err(embeddings_only(p)),
    }
}

async fn stream_with<A: ChatAdapter>(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &ChatRequest,
) -> Attempt<OpenStream> {
    let body = A::request(req, model, true).map_err(Failure::Fatal)?;
    let request =
        http::build(state, p, A::url(&p.base_url), A::HEADERS, &body).map_err(Failure::Next)?;
    let resp = http::send(state, ctx, p, request).await?;
    Ok(OpenStream {
        resp,
        events: Box::new(A::events()),
    })
}

/// Embeddings from one provider, as float vectors plus usage.
pub async fn embeddings(
    state: &AppState,
    ctx: &RequestContext,
    p: &Provider,
    model: &str,
    req: &EmbeddingsRequest,
    input: &EmbeddingInput,
) -> Attempt<(Vec<Vec<f32>>, Usage)> {
    match p.kind {
        ProviderKind::Local => local::embed(state, req, input).await,
        ProviderKind::Openai => openai::embeddings(state, ctx, p, model, req, input).await,
        ProviderKind::Anthropic => Err(Failure::Next(ApiError::BadGateway(format!(
            "provider {} has no embeddings API",
            p.name
        )))),
    }
}

/// A token count as a provider reports it, which may be anything: what is not a
/// non-negative integer counts as nothing.
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Value::deserialize(d)?.as_u64().unwrap_or(0))
}

/// Like [`count`], but telling a missing count from zero.
pub(crate) fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Value::deserialize(d)?.as_u64())
}

pub fn encode_base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_base64_f32(s: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(decode_base64_f32(&encode_base64_f32(&v)).unwrap(), v);
        assert_eq!(decode_base64_f32("AAA="), None);
    }

    #[derive(Deserialize)]
    struct Counts {
        #[serde(default, deserialize_with = "count")]
        a: u64,
        #[serde(default, deserialize_with = "opt_count")]
        b: Option<u64>,
    }

    #[test]
    fn counts_that_are_not_counts_are_nothing() {
        let c: Counts = serde_json::from_str(r#"{"a": -3, "b": 2.5}"#).unwrap();
        assert_eq!((c.a, c.b), (0, None));
        let c: Counts = serde_json::from_str(r#"{"a": 18446744073709551615, "b": 7}"#).unwrap();
        assert_eq!((c.a, c.b), (u64::MAX, Some(7)));
        let c: Counts = serde_json::from_str("{}").unwrap();
        assert_eq!((c.a, c.b), (0, None));
    }
}
