//! Logs (JSON by default), OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set,
//! and W3C trace context in and out. Every log line passes through a [`Redactor`] on its
//! way out, so a configured secret or anything shaped like a credential never reaches it.

use secrecy::ExposeSecret;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use regex::Regex;
use tracing_subscriber::fmt::MakeWriter;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::config::{Config, LogFormat};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static OTEL_ON: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber. Call once, from the binary.
pub fn init(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = Redacting(Arc::new(Redactor::from_config(config)));
    let fmt = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .boxed(),
    };
    let otel = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("setting OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(config.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("faas-runtime");
            opentelemetry::global::set_tracer_provider(provider.clone());
            let _ = PROVIDER.set(provider);
            OTEL_ON.store(true, Ordering::Relaxed);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(())
}

/// Flushes pending spans.
pub fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown()
    {
        tracing::warn!(error = %e, "flushing traces");
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes the incoming W3C trace context the parent of the request span.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !OTEL_ON.load(Ordering::Relaxed) || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// The traceparent of the current span, when traces are exported.
pub fn current_traceparent() -> Option<String> {
    if !OTEL_ON.load(Ordering::Relaxed) {
        return None;
    }
    let cx = tracing::Span::current().context();
    let mut map: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut map);
    map.remove("traceparent")
}

const REDACTED: &str = "[redacted]";

/// Shapes of credentials, whoever configured them: bearer tokens, `sk-…` keys, JWTs,
/// `api_key=…`-style pairs and passwords in URLs.
static CREDENTIAL_SHAPES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    CREDENTIAL_PATTERNS
        .iter()
        .map(|(re, with)| (Regex::new(re).expect("a valid pattern"), *with))
        .collect()
});

/// All of [`CREDENTIAL_SHAPES`] in one automaton: most lines hold none, and one pass
/// over them says so.
static ANY_CREDENTIAL_SHAPE: LazyLock<regex::RegexSet> = LazyLock::new(|| {
    regex::RegexSet::new(CREDENTIAL_PATTERNS.iter().map(|(re, _)| re)).expect("valid patterns")
});

const CREDENTIAL_PATTERNS: [(&str, &str); 5] = [
    (
        r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+",
        "${1}${2}[redacted]",
    ),
    (r"\bsk-[A-Za-z0-9_-]{4,}", REDACTED),
    (
        r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
        REDACTED,
    ),
    (
        r#"(?i)\b(x-api-key|api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|client[_-]?secret|password|passwd)((?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)[^\s"'&,;}\\]+"#,
        "${1}${2}[redacted]",
    ),
    (
        r#"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@"]*:)[^@/\s"]+@"#,
        "${1}[redacted]@",
    ),
];

/// Replaces configured secret values and credential-shaped text with `[redacted]`.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

/// Secrets shorter than this are not searched for: they would blank ordinary words.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = Vec::new();
        for s in secrets.into_iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
            // As it appears inside a JSON string, too.
            let escaped = serde_json::to_string(&s).unwrap_or_default();
            let escaped = escaped.trim_matches('"').to_string();
            // Some encoders also escape the slash.
            let slashed = escaped.replace('/', "\\/");
            for form in [slashed, escaped] {
                if form != s {
                    all.push(form);
                }
            }
            all.push(s);
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Self { secrets: all }
    }

    /// The secrets of a configuration: provider keys, the JWT signing key, and the
    /// passwords in the database, cache and NATS URLs.
    pub fn from_config(config: &super::config::Config) -> Self {
        let mut secrets: Vec<String> = config.provider_keys.0.values().cloned().collect();
        secrets.extend(
            config
                .egress
                .credentials
                .iter()
                .map(|c| c.key.expose_secret().to_string()),
        );
        if let super::config::AuthMode::Jwt(jwt) = &config.auth
            && let Some(s) = &jwt.hs256_secret
        {
            secrets.push(s.expose_secret().to_string());
        }
        for url in [&config.database_url, &config.redis_url, &config.nats_url]
            .into_iter()
            .flatten()
        {
            secrets.extend(url_password(url.expose_secret()));
        }
        Self::new(secrets)
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        if !ANY_CREDENTIAL_SHAPE.is_match(&out) {
            return out;
        }
        for (re, with) in CREDENTIAL_SHAPES.iter() {
            if let Cow::Owned(changed) = re.replace_all(&out, *with) {
                out = Cow::Owned(changed);
            }
        }
        out
    }
}

/// The password of a URL, as written and percent-decoded.
fn url_password(text: &str) -> Vec<String> {
    let Some(pw) = url::Url::parse(text)
        .ok()
        .and_then(|u| u.password().map(String::from))
    else {
        return Vec::new();
    };
    let decoded = percent_decode(&pw);
    if decoded == pw {
        vec![pw]
    } else {
        vec![pw, decoded]
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The log writer: collects one formatted event, writes it redacted to stdout.
#[derive(Clone)]
struct Redacting(Arc<Redactor>);

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine {
            redactor: self.0.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// The formatter writes an event into one of these, which is dropped right after.
struct RedactingLine {
    redactor: Arc<Redactor>,
    buf: Vec<u8>,
}

impl Write for RedactingLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let line = self.redactor.redact(&text);
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_secrets_and_credential_shapes_are_redacted() {
        let r = Redactor::new([
            "provider-key-value".to_string(),
            "pa\"ss".to_string(),
            "abc".to_string(),
        ]);
        for (input, leaked) in [
            ("upstream said provider-key-value", "provider-key-value"),
            (r#"{"detail":"x pa\"ss y"}"#, "pa\\\"ss"),
            (
                "authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln",
                "eyJhbGciOi",
            ),
            ("header Bearer abc.def-ghi", "abc.def-ghi"),
            ("key sk-proj-AbCdEf0123456789 in text", "AbCdEf0123456789"),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
                "eyJzdWIiOiJ4In0",
            ),
            ("GET /x?api_key=s3cr3tvalue&y=1", "s3cr3tvalue"),
            (r#"{"x-api-key": "s3cr3tvalue"}"#, "s3cr3tvalue"),
            (r#"{"msg":"password=\"hunter22\""}"#, "hunter22"),
            ("postgres://faas:pg-pass@db:5432/faas", "pg-pass"),
        ] {
            let out = r.redact(input);
            assert!(!out.contains(leaked), "{input} -> {out}");
            assert!(out.contains(REDACTED), "{input} -> {out}");
        }
        // Short secrets would blank ordinary words; text without secrets is untouched.
        assert_eq!(r.redact("abc tokens_in=3"), "abc tokens_in=3");
    }

    #[test]
    fn passwords_of_urls_are_found_written_and_decoded() {
        assert_eq!(
            url_password("redis://:p%40ss%2Fw@cache:6379"),
            vec!["p%40ss%2Fw".to_string(), "p@ss/w".to_string()]
        );
        assert!(url_password("nats://nats:4222").is_empty());
    }
}
