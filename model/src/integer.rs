//! Integer fields as JSON Schema counts integers: `3.0` is the integer 3. serde refuses
//! it for an integer type, so schema-valid requests would be 422s without these.

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The integer a JSON number stands for: JSON Schema counts `2.0` as the integer 2, so an
/// integer field takes it too; `2.5`, values outside `T` and floats beyond 2^53 (which no
/// longer hold every integer) are refused.
pub fn integral<T: TryFrom<i64>>(n: &serde_json::Number) -> Option<T> {
    let i = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
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
    struct Counts {
        #[serde(deserialize_with = "integer")]
        a: i32,
        #[serde(default, deserialize_with = "opt_integer")]
        b: Option<u32>,
    }

    #[test]
    fn integers_may_be_written_as_integral_floats() {
        let ok = |v: Value| serde_json::from_value::<Counts>(v).map(|c| (c.a, c.b));
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
