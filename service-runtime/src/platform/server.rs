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

use super::AppState;
use super::error::ApiError;

pub fn openapi_for(components: &[crate::Component]) -> utoipa::openapi::OpenApi {
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
        doc.merge(c.openapi());
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
    doc.components = Some(comps);
    doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    doc
}

/// The whole application for the state's components.
pub fn app(state: AppState) -> Router {
    let doc = serde_json::to_vec(&openapi_for(&state.components)).unwrap_or_default();
    let mut router: Router<AppState> = Router::new();
    for c in &state.components {
        router = router.merge(c.router());
    }
    router
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::context::middleware,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
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

/// Serves until SIGTERM/SIGINT (or until `state.shutdown` is cancelled), then
/// stops accepting, drains requests and consumers within the grace period.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let tasks = crate::start_background(&state).await?;
    let shutdown = state.shutdown.clone();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal_token.cancel();
    });
    let grace = state.config.shutdown_grace;
    let app = app(state.clone());
    tracing::info!(
        address = %listener.local_addr()?,
        components = %state.components.iter().map(|c| c.name()).collect::<Vec<_>>().join(","),
        "serving"
    );
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
