//! One error type for every handler, rendered as RFC 9457 problem+json (or, on
//! the OpenAI-compatible routes, in the OpenAI error shape). Internal causes
//! are logged with the request id and never sent to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_secs: Option<u64>,
    },
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: the server is at capacity for this kind of work and
    /// expects to have room again after about that many seconds.
    #[error("{detail}")]
    Overloaded {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) | ApiError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, stable machine name of the kind of problem.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Validation(_) => "validation-failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::NotAcceptable(_) => "not-acceptable",
            ApiError::TooManyRequests { .. } => "too-many-requests",
            ApiError::BadGateway(_) => "bad-gateway",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::GatewayTimeout(_) => "upstream-timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The text a client may see.
    pub fn public_detail(&self) -> String {
        match self {
            ApiError::Internal(_) => {
                "the server failed to handle the request; see logs for the request id".into()
            }
            other => other.to_string(),
        }
    }

    pub fn log(&self) {
        match self {
            ApiError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            ApiError::BadGateway(d) | ApiError::Unavailable(d) | ApiError::GatewayTimeout(d) => {
                tracing::warn!(detail = %d, "upstream problem")
            }
            ApiError::Overloaded { detail, .. } => tracing::warn!(detail = %detail, "at capacity"),
            _ => {}
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => *retry_after_secs,
            ApiError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Renders in the OpenAI error shape, for the OpenAI-compatible routes.
    pub fn into_openai_response(self) -> Response {
        self.log();
        let status = self.status();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        let body = serde_json::json!({
            "error": {
                "message": self.public_detail(),
                "type": kind,
                "param": null,
                "code": self.code().replace('-', "_"),
            }
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// Declares answers for the components' OpenAPI documents: each `Name = status;` is a
/// problem+json response with that status, described by its doc comment, to name in a
/// route's `responses(...)`. They describe; nothing builds them.
macro_rules! problem_responses {
    ($($(#[doc = $doc:tt])* $vis:vis $name:ident = $status:tt;)+) => {$(
        $(#[doc = $doc])*
        #[derive(utoipa::IntoResponses)]
        #[response(status = $status, content_type = "application/problem+json")]
        #[allow(dead_code, reason = "describes responses, never built")]
        $vis struct $name($crate::platform::error::Problem);
    )+};
}
pub(crate) use problem_responses;

problem_responses! {
    /// The 403 of a route only the tenant's admin may call, for the components' OpenAPI.
    pub NotAdmin = 403;
}

/// The OpenAI error shape, answered on the OpenAI-compatible routes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OpenAiError {
    #[schema(inline)]
    pub error: OpenAiErrorBody,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: String,
}

impl ApiError {
    /// The problem this error is answered as (for errors sent inside a stream).
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("https://faas.motadata.io/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.public_detail(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::BadRequest(format!("malformed JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => {
                ApiError::Validation(format!("invalid request body: {}", e.body_text()))
            }
            JsonRejection::BytesRejection(e) => body_error(e.status(), e.body_text()),
            other => body_error(other.status(), other.body_text()),
        }
    }
}

pub(crate) fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(crate::platform::body_limit())
    } else if status.is_client_error() {
        ApiError::BadRequest(format!("could not read the request body: {text}"))
    } else {
        ApiError::Internal(anyhow::anyhow!("reading body: {text}"))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query string: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(format!("invalid path: {}", r.body_text()))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return ApiError::Conflict("a resource with this name already exists".into());
            }
            if db.is_check_violation() || db.is_foreign_key_violation() {
                return ApiError::Validation(format!(
                    "the request breaks a rule of the data model ({})",
                    db.constraint().unwrap_or("constraint")
                ));
            }
        }
        if matches!(e, sqlx::Error::PoolTimedOut) {
            return ApiError::Unavailable("the database is busy; try again".into());
        }
        ApiError::Internal(e.into())
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
            tracing::warn!(error = %e, "redis unavailable");
            return ApiError::Unavailable("the cache backend is unavailable; try again".into());
        }
        ApiError::Internal(e.into())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
