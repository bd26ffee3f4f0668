//! Whether a live object holds what was applied. The live object has more than was applied
//! (defaults, other managers' fields, status), and the API server rewrites quantities into
//! their canonical form, so plain equality would see a change on every read.

use serde_json::Value;

/// The first field (as a JSON path) whose value in `desired` is not the one in `actual`, or
/// `None` when every field of `desired` has the same value in `actual`. Fields that only
/// `actual` has (defaults, other managers' fields, status) do not matter.
pub fn first_difference(desired: &Value, actual: &Value) -> Option<String> {
    difference(desired, actual, false)
}

/// Fields whose values the API server rewrites into canonical quantities ("0.5" → "500m").
const QUANTITY_FIELDS: &[&str] = &["requests", "limits", "sizeLimit"];

fn difference(desired: &Value, actual: &Value, quantities: bool) -> Option<String> {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().find_map(|(k, dv)| {
            if dv.is_null() {
                return None;
            }
            let quantities = quantities || QUANTITY_FIELDS.contains(&k.as_str());
            match a.get(k) {
                None => Some(format!(".{k}")),
                Some(av) => difference(dv, av, quantities).map(|rest| format!(".{k}{rest}")),
            }
        }),
        (Value::Array(d), Value::Array(a)) if d.len() == a.len() => {
            d.iter().zip(a).enumerate().find_map(|(i, (x, y))| {
                difference(x, y, quantities).map(|rest| format!("[{i}]{rest}"))
            })
        }
        (Value::Array(_), Value::Array(_)) => Some(" (length)".into()),
        (d, a) if d == a => None,
        (Value::String(d), Value::String(a)) if quantities && same_quantity(d, a) => None,
        _ => Some(String::new()),
    }
}

/// Whether two Kubernetes quantities ("500m", "0.5", "1Gi", "1024Mi") denote the same amount.
pub fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity_value(a), quantity_value(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 8.0,
        _ => false,
    }
}

fn quantity_value(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_compare_by_amount_only_where_kubernetes_normalizes_them() {
        assert!(same_quantity("0.5", "500m"));
        assert!(same_quantity("1Gi", "1024Mi"));
        assert!(same_quantity("1e3", "1k"));
        assert!(!same_quantity("1Gi", "1G"));
        assert!(!same_quantity("abc", "abc "));
        let desired = json!({"resources": {"requests": {"cpu": "0.5"}}, "env": [{"value": "0.5"}]});
        let live = json!({"resources": {"requests": {"cpu": "500m"}}, "env": [{"value": "0.5"}]});
        assert_eq!(first_difference(&desired, &live), None);
        let edited =
            json!({"resources": {"requests": {"cpu": "500m"}}, "env": [{"value": "500m"}]});
        assert_eq!(
            first_difference(&desired, &edited).as_deref(),
            Some(".env[0].value")
        );
    }
}
