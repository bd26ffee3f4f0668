//! Decoding of request bodies under bounds: a nesting limit checked before any
//! recursive decoder runs, no NUL character in any text (Postgres rejects it), and
//! bodies that match their schema exactly (an array is never taken for an object).

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Deepest nesting of arrays and objects a body may have. JSON Schemas in tool
/// definitions are the deepest legitimate bodies and stay far below it.
pub const MAX_DEPTH: usize = 64;

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MessagePack,
}

/// Decodes a body into `T`, within [`MAX_DEPTH`], rejecting NUL characters and
/// arrays where the schema wants an object.
pub fn decode<T: DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<T, ApiError> {
    let value = match encoding {
        Encoding::Json => json_value(bytes)?,
        Encoding::MessagePack => msgpack_value(bytes)?,
    };
    check_text(&value)?;
    from_value(value)
}

/// Parses JSON after checking its nesting without recursion.
pub fn json_value(bytes: &[u8]) -> Result<Value, ApiError> {
    let (depth, _) = json_scan(bytes);
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

pub fn too_deep() -> ApiError {
    ApiError::BadRequest(format!(
        "the body nests arrays and objects deeper than the limit of {MAX_DEPTH} levels"
    ))
}

/// The nesting of a JSON text and whether any of its strings holds an escaped NUL
/// (`\u0000`), in one pass without recursion; malformed input is left to the parser.
pub fn json_scan(bytes: &[u8]) -> (usize, bool) {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped, mut nul) = (false, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, b'u') => {
                    escaped = false;
                    nul |= bytes.get(i + 1..i + 5) == Some(b"0000");
                }
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest, nul)
}

fn msgpack_value(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut rest = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    de.set_max_depth(MAX_DEPTH);
    let value = serde::Deserialize::deserialize(&mut de).map_err(|e| match e {
        rmp_serde::decode::Error::DepthLimitExceeded => too_deep(),
        other => ApiError::BadRequest(format!("malformed MessagePack body: {other}")),
    })?;
    drop(de);
    if !rest.is_empty() {
        return Err(ApiError::BadRequest(
            "malformed MessagePack body: bytes after the value".into(),
        ));
    }
    Ok(value)
}

/// Rejects a NUL character in any string or key, naming where it is. The place is
/// worked out only when there is one, so a clean body costs no allocation per node.
pub fn check_text(value: &Value) -> Result<(), ApiError> {
    if !has_nul(value) {
        return Ok(());
    }
    let mut stack: Vec<(String, &Value)> = vec![(String::new(), value)];
    while let Some((at, v)) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return Err(nul_at(&at)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    stack.push((format!("{at}/{i}"), item));
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if k.contains('\0') {
                        return Err(nul_at(&here));
                    }
                    stack.push((here, item));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn has_nul(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

fn nul_at(pointer: &str) -> ApiError {
    let pointer = pointer.replace('\0', "\\u0000");
    let at = if pointer.is_empty() { "/" } else { &pointer };
    ApiError::BadRequest(format!("text may not contain the NUL character (at {at})"))
}

/// Deserializes `T` from a decoded body, naming the path of the first mismatch.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Strict(value)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::Validation(format!("invalid request body: {inner}"))
        } else {
            ApiError::Validation(format!("invalid request body at `{path}`: {inner}"))
        }
    })
}

/// A `serde_json::Value` deserializer that will not build a struct from an array,
/// which serde otherwise allows (`[]` would be taken for an object of defaults).
struct Strict(Value);

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(StrictSeq(items.into_iter())),
            Value::Object(map) => visitor.visit_map(StrictMap::new(map)),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(StrictMap::new(map)),
            other => Err(de::Error::invalid_type(unexpected(&other), &"an object")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(StrictMap::new(map)),
            other => Err(de::Error::invalid_type(unexpected(&other), &"an object")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct identifier
    }
}

struct StrictSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for StrictSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Strict(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct StrictMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl StrictMap {
    fn new(map: Map<String, Value>) -> Self {
        Self {
            entries: map.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for StrictMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let key: de::value::StringDeserializer<serde_json::Error> = k.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value is missing"))?;
        seed.deserialize(Strict(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Limits {
        #[serde(default)]
        rpm: Option<u32>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        on: bool,
    }

    fn json<T: DeserializeOwned>(s: &str) -> Result<T, ApiError> {
        decode(Encoding::Json, s.as_bytes())
    }

    #[test]
    fn an_array_is_not_an_object() {
        let err = json::<Limits>("[]").unwrap_err();
        assert!(matches!(err, ApiError::Validation(_)), "{err:?}");
        assert!(err.to_string().contains("an object"), "{err}");
        let err = json::<Limits>(r#"{"inner": [true]}"#).unwrap_err();
        assert!(err.to_string().contains("`inner`"), "{err}");
        let ok: Limits = json(r#"{"rpm": 5, "tags": ["a"], "inner": {"on": true}}"#).unwrap();
        assert_eq!(ok.rpm, Some(5));
        assert_eq!(ok.inner, Some(Inner { on: true }));
        // Values that are free-form stay free-form.
        let v: Value = json(r#"[1, {"a": [2]}]"#).unwrap();
        assert_eq!(v[1]["a"][0], 2);
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        json::<Value>(&ok).unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = json::<Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("64 levels"), "{err}");
        // Brackets inside strings are text, not nesting.
        let text = format!(r#"{{"t": "{}"}}"#, "[{".repeat(1000));
        json::<Value>(&text).unwrap();
        let mut packed = vec![0x91u8; 100_000];
        packed.push(0xc0);
        let err = decode::<Value>(Encoding::MessagePack, &packed).unwrap_err();
        assert!(err.to_string().contains("64 levels"), "{err}");
    }

    #[test]
    fn the_scan_finds_escaped_nul_only_inside_strings() {
        assert_eq!(json_scan(br#"{"a": "x\u0000"}"#), (1, true));
        assert_eq!(json_scan(br#"{"a": "x\\u0000"}"#), (1, false));
        assert_eq!(json_scan(br#"{"a": ["\u00001"]}"#), (2, true));
        assert_eq!(json_scan(br#"{"a": "\u0001", "b": "\\"}"#), (1, false));
    }

    #[test]
    fn nul_characters_are_refused_with_their_place() {
        let err = json::<Value>(r#"{"messages": [{"content": "a\u0000b"}]}"#).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        assert!(err.to_string().contains("/messages/0/content"), "{err}");
        let err = json::<Value>(r#"{"k\u0000": 1}"#).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn messagepack_bodies_decode_like_json() {
        let packed = rmp_serde::to_vec_named(&serde_json::json!({"rpm": 7})).unwrap();
        let v: Limits = decode(Encoding::MessagePack, &packed).unwrap();
        assert_eq!(v.rpm, Some(7));
        let mut trailing = packed.clone();
        trailing.push(0xc0);
        assert!(decode::<Limits>(Encoding::MessagePack, &trailing).is_err());
        assert!(decode::<Limits>(Encoding::MessagePack, &[0xc1]).is_err());
    }
}
