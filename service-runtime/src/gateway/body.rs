//! Request bodies that must be JSON objects. serde accepts a JSON array for a struct (its
//! fields in order), so `[]` would pass for a struct whose fields all have defaults; every
//! gateway body is checked to be an object first.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::platform::ApiError;
use crate::platform::extract::Json;

/// Reads `value` as a `T`, refusing anything but an object.
pub fn from_object<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::Validation(
            "the request body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::Validation(format!("invalid request body: {e}")))
}

/// A JSON (or MessagePack) object body, as the problem+json routes take it.
pub struct Object<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Object<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<Value>::from_request(req, state).await?;
        from_object(value).map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct AllDefaults {
        #[serde(default)]
        a: Option<i32>,
    }

    #[test]
    fn only_objects_are_read() {
        assert!(from_object::<AllDefaults>(serde_json::json!({})).is_ok());
        for v in [
            serde_json::json!([]),
            serde_json::json!([1]),
            serde_json::json!(1),
            Value::Null,
        ] {
            let e = from_object::<AllDefaults>(v).unwrap_err();
            assert!(e.to_string().contains("object"), "{e}");
        }
        let e = from_object::<AllDefaults>(serde_json::json!({"a": 2147483648i64})).unwrap_err();
        assert!(matches!(e, ApiError::Validation(_)), "{e}");
    }
}
