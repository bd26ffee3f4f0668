//! Prompt templates.

use axum::Router;
use utoipa::OpenApi;

use crate::platform::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

#[derive(OpenApi)]
#[openapi(tags((name = "prompt", description = "Versioned prompt templates")))]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
