//! Relaying a provider's streamed answer to the client as OpenAI chunks, whatever the
//! protocol: its adapter translates each event (see [`Translate`]), the relay counts what
//! passes, ends the stream and forwards it. Errors the provider reports in the stream are
//! replaced by the gateway's own; its key is scrubbed from every event.

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::adapter::OpenStream;
use super::adapter::http::{MAX_ANSWER_BYTES, scrub};
use super::adapter::openai::{Chunk, ChunkDelta};
use super::providers::Provider;
use super::types::{OpenAiError, OpenAiErrorDetail, Usage};
use crate::platform::sse::{self as stream, StreamError};

/// How a stream ended.
pub struct StreamEnd {
    pub usage: Usage,
    pub error: Option<String>,
}

pub type Tx = futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// What the client asked for, and what the relay knows before the first event.
pub struct StreamRequest {
    pub model: String,
    pub include_usage: bool,
    pub prompt_estimate: u64,
}

/// Whether the stream goes on after an event.
#[derive(Debug, PartialEq)]
pub enum Flow {
    More,
    Over,
}

/// One protocol's translation of the events of one streamed answer.
pub trait Translate: Send {
    /// Takes the data of one event (scrubbed of the key); what the client is to receive
    /// goes to `relay`.
    fn event(&mut self, data: &str, relay: &mut Relay) -> Flow;
    /// Whether the provider's own usage reached the client; if not, and the client asked
    /// for it, the relay sends a usage chunk of its own at the end.
    fn usage_passed(&self) -> bool;
}

/// What the client is sent, and what is learnt of the call on the way.
pub struct Relay {
    provider: String,
    include_usage: bool,
    id: String,
    created: i64,
    model: String,
    usage: Usage,
    saw_usage: bool,
    completion_chars: u64,
    error: Option<String>,
    out: Vec<Bytes>,
}

/// Encodes one `data:` event.
pub fn data_event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn push(out: &mut Vec<Bytes>, event: &impl Serialize) {
    if let Ok(json) = serde_json::to_string(event) {
        out.push(data_event(&json));
    }
}

impl Relay {
    pub fn new(provider: &str, req: &StreamRequest) -> Self {
        Self {
            provider: provider.to_string(),
            include_usage: req.include_usage,
            id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            created: chrono::Utc::now().timestamp(),
            model: req.model.clone(),
            usage: Usage::default(),
            saw_usage: false,
            completion_chars: 0,
            error: None,
            out: Vec::new(),
        }
    }

    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// The model as the provider names it in its stream.
    pub fn set_model(&mut self, model: &str) {
        self.model = model.to_string();
    }

    pub fn set_prompt_tokens(&mut self, n: u64) {
        self.usage.prompt_tokens = n;
    }

    /// Completion tokens as the provider reports them.
    pub fn set_completion_tokens(&mut self, n: u64) {
        self.usage.completion_tokens = n;
        self.saw_usage = true;
    }

    /// Usage as the provider reports it.
    pub fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
        self.saw_usage = true;
    }

    /// Counts generated text, for the estimate when the provider reports no usage.
    pub fn generated(&mut self, text: &str) {
        self.completion_chars += text.len() as u64;
    }

    /// The provider reported an error in its stream: the stream ends with the gateway's own.
    pub fn reported_error(&mut self) -> Flow {
        self.error = Some(format!(
            "provider {} reported an error in its stream",
            self.provider
        ));
        Flow::Over
    }

    /// Sends a chunk of this stream with `delta`.
    pub fn chunk(&mut self, delta: ChunkDelta<'_>, finish: Option<&str>) {
        let chunk = Chunk::of_delta(&self.id, self.created, &self.model, delta, finish)
            .with_usage(self.include_usage.then_some(None));
        push(&mut self.out, &chunk);
    }

    /// Sends `event` as it is.
    pub fn pass(&mut self, event: &impl Serialize) {
        push(&mut self.out, event);
    }

    /// The last events: an error, or the usage chunk when asked for and `[DONE]`.
    fn tail(&mut self, prompt_estimate: u64, usage_passed: bool) -> Vec<Bytes> {
        if !self.saw_usage {
            // Providers that do not report usage on streams are estimated.
            if self.usage.prompt_tokens == 0 {
                self.usage.prompt_tokens = prompt_estimate;
            }
            self.usage.completion_tokens = self.completion_chars.div_ceil(4);
        }
        self.usage = Usage::new(self.usage.prompt_tokens, self.usage.completion_tokens);
        if let Some(e) = &self.error {
            let body = OpenAiError {
                error: OpenAiErrorDetail {
                    message: e.clone(),
                    kind: "api_error".into(),
                    param: None,
                    code: Some("upstream_error".into()),
                },
            };
            self.pass(&body);
            return std::mem::take(&mut self.out);
        }
        if self.include_usage && !usage_passed {
            let chunk = Chunk::of_usage(&self.id, self.created, &self.model, &self.usage);
            push(&mut self.out, &chunk);
        }
        self.out.push(data_event("[DONE]"));
        std::mem::take(&mut self.out)
    }
}

async fn forward(tx: &mut Tx, chunks: Vec<Bytes>) -> Result<(), ()> {
    for c in chunks {
        futures::SinkExt::send(tx, Ok(c)).await.map_err(|_| ())?;
    }
    Ok(())
}

fn stream_error(provider: &Provider, e: &StreamError) -> String {
    match e {
        StreamError::Broken => "the provider's stream broke off".into(),
        StreamError::Malformed => format!("provider {} sent a malformed stream", provider.name),
    }
}

/// Relays a streamed answer to the client through `tx`.
pub async fn relay_stream(
    provider: &Provider,
    open: OpenStream,
    req: StreamRequest,
    mut tx: Tx,
) -> StreamEnd {
    let OpenStream { resp, mut events } = open;
    let mut relay = Relay::new(&provider.name, &req);
    let mut body = std::pin::pin!(stream::events(resp.bytes_stream(), MAX_ANSWER_BYTES));
    let disconnected = |usage| StreamEnd {
        usage,
        error: Some("client disconnected".into()),
    };
    while let Some(event) = body.next().await {
        let flow = match event {
            Ok(data) => events.event(&scrub(&data, provider), &mut relay),
            Err(e) => {
                relay.error = Some(stream_error(provider, &e));
                Flow::Over
            }
        };
        if forward(&mut tx, std::mem::take(&mut relay.out))
            .await
            .is_err()
        {
            return disconnected(relay.usage);
        }
        if flow == Flow::Over {
            break;
        }
    }
    let tail = relay.tail(req.prompt_estimate, events.usage_passed());
    if forward(&mut tx, tail).await.is_err() {
        return disconnected(relay.usage);
    }
    StreamEnd {
        usage: relay.usage,
        error: relay.error,
    }
}

/// Translates the data of `events` without I/O: the data of each event the client would
/// receive, and how the stream would end.
#[cfg(test)]
pub fn replay(
    events: &mut dyn Translate,
    data: &[&str],
    req: &StreamRequest,
) -> (Vec<String>, StreamEnd) {
    let mut relay = Relay::new("p", req);
    for d in data {
        if events.event(d, &mut relay) == Flow::Over {
            break;
        }
    }
    let sent = relay.tail(req.prompt_estimate, events.usage_passed());
    let sent = sent
        .iter()
        .map(|b| {
            let text = std::str::from_utf8(b).unwrap();
            text.strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .unwrap()
                .to_string()
        })
        .collect();
    let end = StreamEnd {
        usage: relay.usage,
        error: relay.error,
    };
    (sent, end)
}
