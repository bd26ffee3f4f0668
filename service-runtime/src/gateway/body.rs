//! Request bodies that must be JSON objects, also where the type is free-form at the
//! top (a `Value` read before its fields are looked at).

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::platform::ApiError;
use crate::platform::extract::Json;
pub use crate::platform::integer::{integer, integral, opt_integer};

/// Reads `value` as a `T`, refusing anything but an object, and at every depth a
/// struct built from an array ([`crate::platform::body::from_value`]).
pub fn from_object<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::Validation(
            "the request body must be a JSON object".into(),
        ));
    }
    crate::platform::body::from_value(value)
}

/// A body of the OpenAI-compatible routes (JSON or MessagePack), read as a `T` through
/// the platform's checks: nesting bound, no NUL, an object at the top and no struct
/// built from an array at any depth.
pub struct OpenAiBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OpenAiBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (encoding, bytes) = crate::platform::extract::body_bytes(req).await?;
        from_object(crate::platform::body::decode::<Value>(encoding, &bytes)?).map(OpenAiBody)
    }
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

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<AllDefaults>,
    }

    #[test]
    fn no_struct_is_built_from_an_array_at_any_depth() {
        assert!(from_object::<Outer>(serde_json::json!({"inner": [{"a": 1}]})).is_ok());
        let e = from_object::<Outer>(serde_json::json!({"inner": [[1]]})).unwrap_err();
        assert!(e.to_string().contains("inner[0]"), "{e}");
    }
}
