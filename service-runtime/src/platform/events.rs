//! Events on NATS JetStream: a Protobuf envelope around a JSON payload,
//! publish with deduplication ids, durable pull consumers with explicit ack,
//! redelivery with backoff and a dead-letter subject after N attempts.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::pull, stream};
use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::context::RequestContext;
use super::metrics::Metrics;

/// The envelope of every event on the bus (see proto/envelope.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// Unique id; also the JetStream deduplication id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Kind of event, e.g. `llmop.v1`.
    #[prost(string, tag = "2")]
    pub event_type: String,
    #[prost(string, tag = "3")]
    pub tenant_id: String,
    #[prost(string, tag = "4")]
    pub user_id: String,
    #[prost(string, tag = "5")]
    pub correlation_id: String,
    #[prost(string, tag = "6")]
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "7")]
    pub time_unix_ms: i64,
    /// Media type of `payload`, `application/json` for now.
    #[prost(string, tag = "8")]
    pub content_type: String,
    #[prost(bytes = "vec", tag = "9")]
    pub payload: Vec<u8>,
    #[prost(string, tag = "10")]
    pub traceparent: String,
}

impl Envelope {
    pub fn new_json(
        event_type: &str,
        ctx: &RequestContext,
        payload: &impl serde::Serialize,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            event_type: event_type.to_string(),
            tenant_id: ctx.tenant_id.clone().unwrap_or_default(),
            user_id: ctx.user_id.clone().unwrap_or_default(),
            correlation_id: ctx.correlation_id.clone(),
            request_id: ctx.request_id.clone(),
            time_unix_ms: chrono::Utc::now().timestamp_millis(),
            content_type: "application/json".into(),
            payload: serde_json::to_vec(payload)?,
            traceparent: super::telemetry::current_traceparent()
                .or_else(|| ctx.traceparent.clone())
                .unwrap_or_default(),
        })
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        if self.content_type != "application/json" {
            return Err(HandlerError::Permanent(format!(
                "unsupported payload type {}",
                self.content_type
            )));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| HandlerError::Permanent(format!("malformed payload: {e}")))
    }
}

/// What a consumer's handler says about a message it could not process.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again later (e.g. the database is down).
    #[error("{0}")]
    Retry(String),
    /// Never going to work: dead-letter at once.
    #[error("{0}")]
    Permanent(String),
}

pub type Handler =
    Arc<dyn Fn(Envelope) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// How long JetStream waits for a message's acknowledgement before delivering it again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How often a handler still at work on a message says so.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs a handler's work, telling JetStream every [`PROGRESS_EVERY`] that the message is
/// still in hand, so work longer than [`ACK_WAIT`] keeps its message rather than having it
/// delivered again meanwhile. A consumer that dies stops saying so, and the message is
/// delivered again once `ACK_WAIT` has passed.
async fn with_progress<T>(
    msg: &jetstream::Message,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = every.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %e, "telling the stream an event is in progress");
                }
            }
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    metrics: Arc<Metrics>,
}

impl EventBus {
    pub async fn connect(url: &str, prefix: &str, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("faas-runtime")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to NATS_URL: {e}"))?;
        let js = jetstream::new(client.clone());
        let bus = Self {
            client,
            js,
            prefix: prefix.to_string(),
            metrics,
        };
        bus.ensure_streams().await?;
        Ok(bus)
    }

    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix.to_uppercase())
    }

    pub fn dlq_stream(&self) -> String {
        format!("{}_DLQ", self.prefix.to_uppercase())
    }

    /// The full subject of an event kind, e.g. `faas.events.llmop`.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.events.{kind}", self.prefix)
    }

    pub fn dlq_subject(&self, kind: &str) -> String {
        format!("{}.dlq.{kind}", self.prefix)
    }

    async fn ensure_streams(&self) -> anyhow::Result<()> {
        for (name, subject) in [
            (self.events_stream(), format!("{}.events.>", self.prefix)),
            (self.dlq_stream(), format!("{}.dlq.>", self.prefix)),
        ] {
            self.js
                .get_or_create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![subject],
                    max_age: Duration::from_secs(7 * 24 * 3600),
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("creating JetStream stream {name}: {e}"))?;
        }
        Ok(())
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes and waits for the stream's acknowledgement.
    pub async fn publish(&self, kind: &str, envelope: &Envelope) -> anyhow::Result<()> {
        let subject = self.subject(kind);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.as_str());
        headers.insert("Content-Type", "application/x-protobuf");
        headers.insert("X-Correlation-ID", envelope.correlation_id.as_str());
        headers.insert("X-Request-ID", envelope.request_id.as_str());
        if !envelope.tenant_id.is_empty() {
            headers.insert("X-Tenant-ID", envelope.tenant_id.as_str());
        }
        if !envelope.user_id.is_empty() {
            headers.insert("X-User-ID", envelope.user_id.as_str());
        }
        if !envelope.traceparent.is_empty() {
            headers.insert("traceparent", envelope.traceparent.as_str());
        }
        let result = async {
            self.js
                .publish_with_headers(subject.clone(), headers, envelope.encode_to_vec().into())
                .await?
                .await?;
            anyhow::Ok(())
        }
        .await;
        self.metrics.event(
            kind,
            if result.is_ok() {
                "published"
            } else {
                "publish_failed"
            },
        );
        result.map_err(|e| anyhow::anyhow!("publishing to {subject}: {e}"))
    }

    /// Starts a durable consumer of one event kind. Messages whose handler
    /// fails are redelivered with a growing delay; after `max_deliver`
    /// attempts, or at once for a permanent failure, they go to the
    /// dead-letter subject. The task stops taking messages when `shutdown`
    /// fires and finishes the one in hand.
    pub async fn consume(
        &self,
        kind: &str,
        durable: &str,
        max_deliver: i64,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let stream = self
            .js
            .get_stream(self.events_stream())
            .await
            .map_err(|e| anyhow::anyhow!("opening stream: {e}"))?;
        let consumer = stream
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.to_string()),
                    filter_subject: self.subject(kind),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    // One more than ours, so the last attempt is still seen
                    // here and dead-lettered instead of silently dropped.
                    max_deliver: max_deliver + 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating consumer {durable}: {e}"))?;
        // Messages already waiting are handled together, concurrently; the
        // stream yields them as soon as one is there, so nothing waits.
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("consuming {durable}: {e}"))?
            .ready_chunks(64);
        let bus = self.clone();
        let kind = kind.to_string();
        Ok(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    m = messages.next() => m,
                };
                let Some(batch) = next else { break };
                let mut work = Vec::with_capacity(batch.len());
                for item in batch {
                    match item {
                        Ok(msg) => work.push(bus.handle(&kind, msg, max_deliver, &handler)),
                        Err(e) => {
                            tracing::warn!(error = %e, "receiving events");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                futures::future::join_all(work).await;
            }
            tracing::info!(kind, "event consumer stopped");
        }))
    }

    async fn handle(
        &self,
        kind: &str,
        msg: jetstream::Message,
        max_deliver: i64,
        handler: &Handler,
    ) {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let outcome = match Envelope::decode(msg.payload.as_ref()) {
            Ok(env) => {
                let correlation = env.correlation_id.clone();
                let span =
                    tracing::info_span!("event", kind, correlation_id = %correlation, delivered);
                with_progress(&msg, tracing::Instrument::instrument(handler(env), span)).await
            }
            Err(e) => Err(HandlerError::Permanent(format!(
                "not an event envelope: {e}"
            ))),
        };
        let ack = match outcome {
            Ok(()) => {
                self.metrics.event(kind, "handled");
                msg.ack().await
            }
            Err(HandlerError::Retry(reason)) if delivered < max_deliver => {
                self.metrics.event(kind, "retry");
                tracing::warn!(
                    kind,
                    delivered,
                    reason,
                    "event handling failed; will be redelivered"
                );
                let delay =
                    Duration::from_millis(200u64.saturating_mul(1 << delivered.clamp(0, 8)));
                msg.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(e) => {
                self.metrics.event(kind, "dead_letter");
                tracing::error!(kind, delivered, reason = %e, "event moved to the dead-letter subject");
                let mut headers = msg.headers.clone().unwrap_or_default();
                headers.insert("Faas-Dead-Letter-Reason", e.to_string().as_str());
                headers.insert("Faas-Delivered", delivered.to_string().as_str());
                // A fresh id: the original one is still inside the dedup window.
                headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
                let publish = async {
                    self.js
                        .publish_with_headers(self.dlq_subject(kind), headers, msg.payload.clone())
                        .await?
                        .await?;
                    anyhow::Ok(())
                };
                match publish.await {
                    Ok(()) => msg.ack_with(AckKind::Term).await,
                    Err(err) => {
                        tracing::error!(error = %err, "dead-lettering failed; leaving for redelivery");
                        msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                            .await
                    }
                }
            }
        };
        if let Err(e) = ack {
            tracing::warn!(error = %e, "acknowledging event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_protobuf() {
        let ctx = RequestContext {
            request_id: "r".into(),
            correlation_id: "c".into(),
            tenant_id: Some("t".into()),
            ..Default::default()
        };
        let env = Envelope::new_json("x.v1", &ctx, &serde_json::json!({"a": 1})).unwrap();
        let back = Envelope::decode(env.encode_to_vec().as_slice()).unwrap();
        assert_eq!(env, back);
        let v: serde_json::Value = back.json().unwrap();
        assert_eq!(v["a"], 1);
    }
}
