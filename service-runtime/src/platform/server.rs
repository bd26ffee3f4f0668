//! The HTTP application: component routers plus health, readiness, metrics and
//! the OpenAPI document; serving with graceful shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, ComponentSpec};

pub fn openapi_for(components: &[&ComponentSpec]) -> utoipa::openapi::OpenApi {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Motadata FaaS runtime")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(format!(
                    "Components served: {}",
                    components
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
                .build(),
        )
        .build();
    for c in components {
        doc.merge((c.openapi)());
    }
    let mut comps = doc.components.take().unwrap_or_default();
    comps.add_security_scheme(
        "bearer",
        utoipa::openapi::security::SecurityScheme::Http(
            utoipa::openapi::security::HttpBuilder::new()
                .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    comps
        .schemas
        .entry("Problem".into())
        .or_insert_with(<super::error::Problem as utoipa::PartialSchema>::schema);
    comps
        .schemas
        .entry("OpenAiError".into())
        .or_insert_with(<super::error::OpenAiError as utoipa::PartialSchema>::schema);
    doc.components = Some(comps);
    let openai: std::collections::HashSet<&str> = components
        .iter()
        .flat_map(|c| c.openai_routes.iter().copied())
        .collect();
    for (path, item) in doc.paths.paths.iter_mut() {
        let style = if openai.contains(path.as_str()) {
            ErrorStyle::OpenAi
        } else {
            ErrorStyle::Problem
        };
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            document_platform_errors(op, style);
        }
    }
    doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    doc
}

#[derive(Clone, Copy)]
enum ErrorStyle {
    Problem,
    OpenAi,
}

/// Statuses the platform itself may answer on any route (before or around the
/// handler), added to each operation so the document tells every outcome.
fn document_platform_errors(op: &mut utoipa::openapi::path::Operation, style: ErrorStyle) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let mut statuses: Vec<(&str, &str)> = vec![
        (
            "400",
            "Malformed request: bad path or query, or a NUL character",
        ),
        ("401", "Missing or invalid bearer token"),
        (
            "429",
            "The tenant's request rate limit is reached; see Retry-After",
        ),
        (
            "503",
            "A backing service is unavailable, the server is at capacity (see Retry-After), \
             or the request timed out",
        ),
    ];
    if op.request_body.is_some() {
        statuses.extend([
            ("413", "The body is larger than the limit"),
            ("415", "The body is neither JSON nor MessagePack"),
        ]);
    }
    if op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        statuses.push(("422", "A value breaks a rule the schema cannot express"));
    }
    let (media, schema) = match style {
        ErrorStyle::Problem => ("application/problem+json", "Problem"),
        ErrorStyle::OpenAi => ("application/json", "OpenAiError"),
    };
    let content = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build()
    };
    for (status, description) in statuses {
        let entry = op.responses.responses.entry(status.to_string());
        let response = entry
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
        if let RefOr::T(r) = response
            && r.content.is_empty()
        {
            r.content.insert(media.to_string(), content());
        }
    }
    // Errors are rendered in one place, so every error of a route has one shape,
    // whatever a component's annotation said.
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response
            && (status.starts_with('4') || status.starts_with('5'))
        {
            r.content.clear();
            r.content.insert(media.to_string(), content());
        }
    }
}

/// No text anywhere may hold a NUL (requests with one are refused), so every schema
/// of the document says so of its strings and of its objects' keys.
fn forbid_nul_in_strings(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let mut schemas: Vec<&mut Value> = Vec::new();
    let mut stack = vec![doc];
    // Find the schema positions: `schema` of parameters, bodies and responses, and
    // the named schemas of the components.
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "schema" {
                        schemas.push(child);
                    } else if k == "schemas" && child.is_object() {
                        schemas.extend(
                            child
                                .as_object_mut()
                                .into_iter()
                                .flat_map(|m| m.values_mut()),
                        );
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    while let Some(schema) = schemas.pop() {
        let Value::Object(map) = schema else { continue };
        if map.contains_key("$ref") {
            continue;
        }
        let kinds: Vec<String> = match map.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
            _ => vec!["string".into(), "object".into()],
        };
        let free = ["pattern", "enum", "const", "format"]
            .iter()
            .all(|k| !map.contains_key(*k));
        if free && kinds.iter().any(|k| k == "string") {
            map.insert("pattern".into(), Value::from(NO_NUL_PATTERN));
        }
        if kinds.iter().any(|k| k == "object") {
            map.entry("propertyNames")
                .or_insert_with(|| serde_json::json!({"pattern": NO_NUL_PATTERN}));
            // Values of free-form members are free of NUL too, at any depth.
            if matches!(
                map.get("additionalProperties"),
                None | Some(Value::Bool(true))
            ) {
                map.insert("additionalProperties".into(), nul_free_ref());
            }
        }
        if kinds.iter().any(|k| k == "array") || map.get("type").is_none() {
            map.entry("items").or_insert_with(nul_free_ref);
        }
        for (k, child) in map.iter_mut() {
            match (k.as_str(), child) {
                ("properties" | "patternProperties" | "$defs", Value::Object(props)) => {
                    schemas.extend(props.values_mut())
                }
                ("items" | "additionalProperties" | "not" | "contains", c @ Value::Object(_)) => {
                    schemas.push(c)
                }
                ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(list)) => {
                    schemas.extend(list.iter_mut())
                }
                _ => {}
            }
        }
    }
}

fn nul_free_ref() -> serde_json::Value {
    serde_json::json!({"$ref": "#/components/schemas/NulFreeValue"})
}

/// Any JSON value whose strings and keys hold no NUL, at any depth.
fn nul_free_value_schema() -> serde_json::Value {
    serde_json::json!({
        "description": "Any JSON value with no NUL character in its strings or keys",
        "pattern": NO_NUL_PATTERN,
        "propertyNames": {"pattern": NO_NUL_PATTERN},
        "additionalProperties": nul_free_ref(),
        "items": nul_free_ref(),
    })
}

/// Any text without the NUL character.
pub const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// The served document: the components' operations with the platform's outcomes.
pub fn openapi_document(components: &[&ComponentSpec]) -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi_for(components)).unwrap_or_default();
    forbid_nul_in_strings(&mut doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        schemas.insert("NulFreeValue".into(), nul_free_value_schema());
    }
    doc
}

/// CORS for the configured origins; none configured, no CORS headers at all.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                super::context::X_REQUEST_ID,
                super::context::X_CORRELATION_ID,
                super::context::TRACEPARENT,
            ])
            .expose_headers([
                super::context::X_REQUEST_ID,
                super::context::X_CORRELATION_ID,
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// The whole application: the components' routes (built by `component::build_all`)
/// with the platform's routes and middleware around them.
pub fn app(state: AppState, components: Router) -> Router {
    let doc = serde_json::to_vec(&openapi_document(state.specs())).unwrap_or_default();
    let platform: Router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        doc,
                    )
                }
            }),
        )
        .with_state(state.clone());
    let router = platform
        .merge(components)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::context::middleware,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    match cors(&state.config.cors_allowed_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("the route does not accept this method".into())
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut checks = BTreeMap::new();
    let mut ok = !state.shutdown.is_cancelled();
    if state.shutdown.is_cancelled() {
        checks.insert("shutdown", "in progress".to_string());
    }
    if let Some(db) = &state.db {
        let r =
            tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(db)).await;
        let good = matches!(r, Ok(Ok(_)));
        ok &= good;
        checks.insert("postgres", if good { "ok" } else { "unavailable" }.into());
    }
    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        let good = matches!(r, Ok(Ok(_)));
        ok &= good;
        checks.insert("redis", if good { "ok" } else { "unavailable" }.into());
    }
    if let Some(ev) = &state.events {
        let good = ev.is_connected();
        ok &= good;
        checks.insert("nats", if good { "ok" } else { "unavailable" }.into());
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"status": if ok { "ready" } else { "not ready" }, "checks": checks})),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves `app` (the application `app::app` built) and starts its background work until SIGTERM/SIGINT (or until `state.shutdown` is cancelled), then
/// stops accepting, drains requests and consumers within the grace period.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    app: super::Built,
) -> anyhow::Result<()> {
    let mut tasks = super::component::start(app.background).await?;
    if let Some(limiter) = &state.tenant_limiter {
        tasks.push(super::ratelimit::spawn_sweeper(
            limiter.clone(),
            state.shutdown.clone(),
        ));
    }
    let shutdown = state.shutdown.clone();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal_token.cancel();
    });
    let grace = state.config.shutdown_grace;
    let app = app.router;
    tracing::info!(
        address = %listener.local_addr()?,
        components = %state.specs().iter().map(|c| c.name()).collect::<Vec<_>>().join(","),
        "serving"
    );
    // Streamed answers are many small writes: without TCP_NODELAY each one after the
    // first waits for the client's delayed ACK (some 40 ms).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY");
        }
    });
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    shutdown.cancelled().await;
    let drain = async {
        let _ = server.await;
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs_f64(),
            "drain did not finish within the grace period"
        );
    }
    if let Some(db) = &state.db {
        db.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}
