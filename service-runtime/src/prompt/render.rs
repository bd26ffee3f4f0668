//! Checking templates before minijinja sees them, and rendering them within
//! bounds: a lexical shape check ([`structure`]), a static bound of what the
//! template builds ([`budget`]), fuel for the instructions it runs, and a
//! writer that fails once the rendered text passes its limit.
//!
//! [`structure`]: faas_model::prompt::structure

use std::collections::BTreeMap;
use std::io;

use faas_model::prompt::{MAX_TEMPLATE_CHARS, Variable, VariableType, structure};
use serde_json::Value;

use super::budget::{self, Bound, Inputs, Kind};
use crate::platform::{ApiError, ApiResult};
/// Rendered text of one request, all messages together.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Instructions a single render may run (minijinja fuel).
pub const RENDER_FUEL: u64 = 200_000;
/// What each variable is assumed to hold when a template is saved; a render
/// is checked again with the values it is given.
const NOMINAL_BYTES: u64 = 4096;
const NOMINAL_DEPTH: u32 = 8;

pub(super) fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    // minijinja's own panic on a divisor of 0 and on steps near the ends
    // of the integer range.
    env.add_function("range", range);
    env.add_test("divisibleby", divisible_by);
    env
}

/// `range` as minijinja has it (at most 100,000 items, lazy), computed in
/// i128 so that no bound or step overflows.
fn range(
    lower: i64,
    upper: Option<i64>,
    step: Option<i64>,
) -> Result<minijinja::Value, minijinja::Error> {
    let (start, end) = match upper {
        Some(upper) => (i128::from(lower), i128::from(upper)),
        None => (0, i128::from(lower)),
    };
    let step = i128::from(step.unwrap_or(1));
    let invalid =
        |m: &str| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m.to_string());
    if step == 0 {
        return Err(invalid("cannot create range with step of 0"));
    }
    let span = if step > 0 { end - start } else { start - end };
    let len = if span <= 0 {
        0
    } else {
        (span + step.abs() - 1) / step.abs()
    };
    if len > 100_000 {
        return Err(invalid("range has too many elements"));
    }
    // Every item lies between start and end, so fits an i64.
    Ok(minijinja::Value::make_iterable(move || {
        (0..len as usize).map(move |i| minijinja::Value::from((start + i as i128 * step) as i64))
    }))
}

/// `divisibleby`, false where the division is undefined.
fn divisible_by(v: &minijinja::Value, by: &minijinja::Value) -> bool {
    let int = |x: &minijinja::Value| x.as_i64().map(i128::from);
    match (int(v), int(by)) {
        (Some(a), Some(b)) => a.checked_rem(b) == Some(0),
        _ => match (f64::try_from(v.clone()), f64::try_from(by.clone())) {
            (Ok(a), Ok(b)) if b != 0.0 && a.is_finite() => a % b == 0.0,
            _ => false,
        },
    }
}

pub(super) fn template_error(what: &str, e: &minijinja::Error) -> ApiError {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        return ApiError::Validation(format!(
            "{what}: rendering needs more than the limit of {RENDER_FUEL} instructions"
        ));
    }
    ApiError::Validation(format!("{what}: {}", structure::describe(e)))
}

/// Checks one template source; only then may minijinja parse it.
pub(super) fn check_source(what: &str, src: &str, inputs: &Inputs) -> ApiResult<()> {
    if src.len() > MAX_TEMPLATE_CHARS && src.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(ApiError::Validation(format!(
            "{what}: longer than the limit of {MAX_TEMPLATE_CHARS} characters"
        )));
    }
    structure::check(src).map_err(|e| ApiError::Validation(format!("{what}: {e}")))?;
    check_budget(src, inputs).map_err(|e| ApiError::Validation(format!("{what}: {e}")))
}

/// The static bound of what a source that passed the structure check builds.
pub(super) fn check_budget(src: &str, inputs: &Inputs) -> Result<(), String> {
    let bounds = budget::analyse(src, inputs)?;
    tracing::debug!(
        memory = bounds.memory,
        work = bounds.work,
        "template within bounds"
    );
    Ok(())
}

/// Bounds of the declared variables before any value is known.
pub(super) fn nominal_inputs(vars: &[Variable]) -> Inputs {
    let mut inputs = Inputs::default();
    for v in vars {
        let kind = match v.kind {
            Some(VariableType::String) => Kind::Str,
            Some(VariableType::Number | VariableType::Integer | VariableType::Boolean) => {
                Kind::Number
            }
            Some(VariableType::Array | VariableType::Object) => Kind::Other,
            None => Kind::Any,
        };
        let mut b = Bound::nominal(kind, NOMINAL_BYTES, NOMINAL_DEPTH);
        if let Some(d) = &v.default {
            let given = Bound::of_json(d);
            b.bytes = b.bytes.max(given.bytes);
            b.depth = b.depth.max(given.depth);
        }
        inputs.insert(&v.name, b);
    }
    inputs
}

/// Bounds of the values a render is given.
pub(super) fn actual_inputs(ctx: &BTreeMap<String, Value>) -> Inputs {
    let mut inputs = Inputs::default();
    for (k, v) in ctx {
        inputs.insert_value(k, v);
    }
    inputs
}

/// Collects rendered text and fails once it would pass `max` bytes.
struct Limited {
    out: Vec<u8>,
    max: usize,
    over: bool,
}

impl io::Write for Limited {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.max {
            self.over = true;
            return Err(io::Error::other("rendered text passes its limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders one checked source; `left` is what remains of the output limit.
pub(super) fn render_source(
    env: &minijinja::Environment<'static>,
    what: &str,
    src: &str,
    ctx: &minijinja::Value,
    left: &mut usize,
) -> ApiResult<String> {
    let tmpl = env
        .template_from_str(src)
        .map_err(|e| template_error(what, &e))?;
    let mut w = Limited {
        out: Vec::new(),
        max: *left,
        over: false,
    };
    if let Err(e) = tmpl.render_captured_to(ctx, &mut w) {
        if w.over {
            return Err(ApiError::Validation(format!(
                "{what}: the rendered prompt would be longer than the limit of {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        return Err(template_error(what, &e));
    }
    *left -= w.out.len();
    String::from_utf8(w.out).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Templates at the structural limits, each checked, compiled and
    /// rendered the way a request does it.
    fn at_the_limits() -> Vec<String> {
        let n = structure::MAX_TAG_LINKS - 1;
        let blocks = structure::MAX_BLOCK_DEPTH - 1;
        let open = "{% if x %}".repeat(blocks);
        let close = "{% endif %}".repeat(blocks);
        let brackets = structure::MAX_BRACKET_DEPTH - 1;
        let nested = format!("{}x{}", "(".repeat(brackets), ")".repeat(brackets));
        [
            format!("x{}", "|e".repeat(n)),
            format!("x{}", ".b".repeat(n)),
            format!("x{}", "[0]".repeat(n)),
            format!("x{}", "()".repeat(n)),
            format!("{}x", "not ".repeat(n)),
            format!("{}1", "- ".repeat(n)),
            format!("1{}", "+1".repeat(n)),
            format!("x{}", "~x".repeat(n)),
            format!("x{}", " if x else x".repeat(n / 2)),
            format!("{nested}{}", ".b".repeat(n - brackets)),
        ]
        .into_iter()
        .map(|e| format!("{open}{{{{ {e} }}}}{close}"))
        .collect()
    }

    #[test]
    fn templates_at_the_limits_fit_a_quarter_of_a_worker_stack() {
        let run = || {
            let mut inputs = Inputs::default();
            inputs.insert("x", Bound::string(1));
            let env = environment();
            let ctx = minijinja::Value::from_serialize(serde_json::json!({"x": "x"}));
            for src in at_the_limits() {
                // Calls are refused by the bound, the rest are rendered.
                if check_source("template", &src, &inputs).is_ok() {
                    let mut left = MAX_OUTPUT_BYTES;
                    let _ = render_source(&env, "template", &src, &ctx, &mut left);
                    let t = env.template_from_str(&src).unwrap();
                    let _ = t.undeclared_variables(false);
                }
            }
        };
        // Tokio's workers and blocking threads have 2 MiB.
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }
}
