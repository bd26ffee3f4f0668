//! Request bodies that must be JSON objects. serde accepts a JSON array for a struct (its
//! fields in order), so `[]` would pass for a struct whose fields all have defaults; every
//! gateway body is checked to be an object first.

use axum::extract::{FromRequest, Request};
use serde::de::{DeserializeOwned, Error as _, Visitor};
use serde::{Deserialize, Deserializer};
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

/// A body of the OpenAI-compatible routes, read as a `T`. A JSON object within the
/// nesting bound and without an escaped NUL is decoded straight into `T`, in one pass;
/// anything else, and anything that pass refuses, takes the checked path through a
/// `Value` ([`crate::platform::body::decode`], then [`from_object`]), which decides
/// and words the error. Both accept the same bodies: the one pass refuses more (a
/// repeated key), never less.
pub struct OpenAiBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OpenAiBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (encoding, bytes) = crate::platform::extract::body_bytes(req).await?;
        decode_object(encoding, &bytes).map(OpenAiBody)
    }
}

/// See [`OpenAiBody`].
pub fn decode_object<T: DeserializeOwned>(
    encoding: crate::platform::body::Encoding,
    bytes: &[u8],
) -> Result<T, ApiError> {
    use crate::platform::body::{Encoding, MAX_DEPTH, decode, json_scan};
    if encoding == Encoding::Json && bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    {
        let (depth, nul) = json_scan(bytes);
        if depth <= MAX_DEPTH
            && !nul
            && let Ok(v) = serde_json::from_slice(bytes)
        {
            return Ok(v);
        }
    }
    from_object(decode::<Value>(encoding, bytes)?)
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

/// The integer a JSON number stands for: JSON Schema counts `2.0` as the integer 2, so an
/// integer field takes it too; `2.5` and values outside `T` are refused.
pub fn integral<T: TryFrom<i64>>(n: &serde_json::Number) -> Option<T> {
    let i = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => f as i64,
        _ => return None,
    };
    T::try_from(i).ok()
}

struct Integer<T>(std::marker::PhantomData<T>);

impl<T: TryFrom<i64>> Visitor<'_> for Integer<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "an integer in the range of {}",
            std::any::type_name::<T>()
        )
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        i64::try_from(v)
            .ok()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        serde_json::Number::from_f64(v)
            .and_then(|n| integral(&n))
            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Float(v), &self))
    }
}

/// `deserialize_with` for integer fields (see [`integral`]).
pub fn integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(Integer(std::marker::PhantomData))
}

/// [`integer`] for optional fields; `null` is absent.
pub fn opt_integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => integral(&n)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not an integer in range"))),
        Some(other) => Err(D::Error::custom(format!(
            "invalid type: {}, expected an integer",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
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
    struct Counts {
        #[serde(deserialize_with = "integer")]
        a: i32,
        #[serde(default, deserialize_with = "opt_integer")]
        b: Option<u32>,
    }

    #[test]
    fn integers_may_be_written_as_integral_floats() {
        let ok = |v: Value| from_object::<Counts>(v).map(|c| (c.a, c.b));
        assert_eq!(
            ok(serde_json::json!({"a": 2.0, "b": 7.0})).unwrap(),
            (2, Some(7))
        );
        assert_eq!(
            ok(serde_json::json!({"a": -3, "b": null})).unwrap(),
            (-3, None)
        );
        for bad in [
            serde_json::json!({"a": 2.5}),
            serde_json::json!({"a": 1e300}),
            serde_json::json!({"a": i64::MAX}),
            serde_json::json!({"a": u64::MAX}),
            serde_json::json!({"a": "1"}),
            serde_json::json!({"a": 1, "b": -1}),
            serde_json::json!({"a": 1, "b": 4294967296u64}),
            serde_json::json!({"a": 1, "b": true}),
        ] {
            assert!(ok(bad.clone()).is_err(), "{bad}");
        }
    }
}
