//! Extractors whose rejections are the app's error type, so every client
//! mistake becomes a 4xx problem+json with a reason.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::AuthOutcome;
use super::body::Encoding;
use super::error::ApiError;

/// A JSON (or MessagePack) body, read only once the caller is authenticated and
/// decoded under the bounds of [`super::body`].
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (encoding, bytes) = body_bytes(req).await?;
        super::body::decode(encoding, &bytes).map(Json)
    }
}

/// A request's body and its encoding, read under the same rules as [`Json`]: only once the
/// caller is authenticated, and within the body limit.
pub async fn body_bytes(req: Request) -> Result<(Encoding, bytes::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    match parts.extensions.get::<AuthOutcome>() {
        Some(AuthOutcome(Ok(_))) => {}
        Some(AuthOutcome(Err(reason))) => return Err(ApiError::Unauthorized(reason.clone())),
        None => return Err(ApiError::Unauthorized("authentication is required".into())),
    }
    let encoding = body_encoding(&parts.headers)?;
    let limit = parts
        .extensions
        .get::<super::context::BodyLimit>()
        .map_or_else(super::body_limit, |l| l.0);
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| read_error(&e, limit))?;
    Ok((encoding, bytes))
}

fn body_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => Ok(Encoding::Json),
        Some(m) if m.starts_with("application/") && m.ends_with("+json") => Ok(Encoding::Json),
        Some(m) if super::context::is_msgpack_media(m) => Ok(Encoding::MessagePack),
        _ => Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json or application/msgpack".into(),
        )),
    }
}

fn read_error(e: &axum::Error, limit: usize) -> ApiError {
    let too_large = std::error::Error::source(e)
        .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        || e.to_string().contains("length limit");
    if too_large {
        ApiError::PayloadTooLarge(limit)
    } else {
        ApiError::BadRequest("the request body could not be read".into())
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string as `T`; a mistake is a 400 problem naming it.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters as `T`; a mistake is a problem naming it.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
