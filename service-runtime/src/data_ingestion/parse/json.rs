//! JSON: every scalar becomes a `path: value` line (`items[0].name: Ada`). The nesting is
//! checked before any value is built, and the walk uses no recursion.

use serde_json::Value;

use super::{Budget, ParseError};
use crate::platform::body::json_scan;

/// Deepest nesting of arrays and objects read.
pub const MAX_DEPTH: usize = 64;

/// The nesting is within bounds and the syntax is JSON, without building the value.
pub fn check(bytes: &[u8]) -> Result<(), ParseError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let (depth, _) = json_scan(bytes);
    if depth > MAX_DEPTH {
        return Err(ParseError::Invalid(format!(
            "the JSON nests arrays and objects deeper than the limit of {MAX_DEPTH} levels"
        )));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(drop)
        .map_err(|e| ParseError::Invalid(format!("the JSON could not be read: {e}")))
}

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    check(bytes)?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ParseError::Invalid(format!("the JSON could not be read: {e}")))?;
    let mut stack: Vec<(String, &Value)> = vec![(String::new(), &value)];
    let mut n = 0usize;
    while let Some((path, v)) = stack.pop() {
        n += 1;
        if n.is_multiple_of(1024) {
            budget.tick()?;
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter().rev() {
                    let key = if is_plain_key(k) {
                        k.clone()
                    } else {
                        serde_json::to_string(k).unwrap_or_default()
                    };
                    let p = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    stack.push((p, child));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate().rev() {
                    stack.push((format!("{path}[{i}]"), child));
                }
            }
            scalar => {
                budget.newline()?;
                if !path.is_empty() {
                    budget.push(&path)?;
                    budget.push(": ")?;
                }
                match scalar {
                    Value::String(s) => budget.push(&s.replace(['\r', '\n'], " "))?,
                    other => budget.push(&other.to_string())?,
                }
            }
        }
    }
    Ok(())
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests {
    use crate::data_ingestion::parse::{Kind, ParseError, parse, test_budget};

    #[test]
    fn values_are_flattened_to_paths() {
        let json =
            br#"{"title": "Guide", "tags": ["a", "b"], "author": {"name": "Ada", "born": 1815},
                        "odd key": true, "none": null}"#;
        assert_eq!(
            parse(Kind::Json, json, test_budget()).unwrap(),
            "author.born: 1815\nauthor.name: Ada\nnone: null\n\"odd key\": true\ntags[0]: a\ntags[1]: b\ntitle: Guide"
        );
        assert_eq!(
            parse(Kind::Json, b"\"just text\"", test_budget()).unwrap(),
            "just text"
        );
    }

    #[test]
    fn depth_is_bounded_before_decoding_and_bad_syntax_is_named() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(Kind::Json, deep.as_bytes(), test_budget()).unwrap_err();
        assert!(
            matches!(err, ParseError::Invalid(ref m) if m.contains("64 levels")),
            "{err}"
        );
        let err = parse(Kind::Json, b"{\"a\": ", test_budget()).unwrap_err();
        assert!(err.to_string().contains("could not be read"), "{err}");
    }
}
