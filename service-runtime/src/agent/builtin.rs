//! The tools the runtime implements itself: the current time, a calculator and a web
//! fetch. Each is bounded: the calculator reads at most 256 characters nested at most 32
//! deep, and the fetch goes through the egress policy and reads a bounded answer.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use faas_model::agent::BuiltinName;
use serde_json::{Map, Value, json};

use super::tools::{ToolResult, send_guarded};
use super::{Agents, Caller};

const MAX_EXPRESSION: usize = 256;
const MAX_NESTING: usize = 32;
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn call(
    agents: &Agents,
    caller: &Caller,
    name: BuiltinName,
    args: &Map<String, Value>,
) -> ToolResult {
    match name {
        BuiltinName::CurrentTime => {
            let now = Utc::now();
            Ok(json!({
                "utc": now.to_rfc3339_opts(SecondsFormat::Secs, true),
                "unixSeconds": now.timestamp(),
                "weekday": now.format("%A").to_string(),
            })
            .to_string())
        }
        BuiltinName::Calculator => {
            let expr = args
                .get("expression")
                .and_then(Value::as_str)
                .ok_or_else(|| "the argument expression (a string) is required".to_string())?;
            let result = evaluate(expr)?;
            Ok(json!({ "result": result }).to_string())
        }
        BuiltinName::WebFetch => {
            let raw = args
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| "the argument url (a string) is required".to_string())?;
            let url = url::Url::parse(raw).map_err(|_| "not a valid URL".to_string())?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err("URLs with credentials are not fetched".into());
            }
            agents
                .policy
                .check_url(&url)
                .map_err(|r| format!("refused: {r}"))?;
            let req = agents
                .egress
                .inner()
                .get(url)
                .header(
                    reqwest::header::ACCEPT,
                    "text/html, text/plain, application/json",
                )
                .build()
                .map_err(|_| "the request could not be made".to_string())?;
            send_guarded(agents, caller, req, FETCH_TIMEOUT).await
        }
    }
}

/// The value of an arithmetic expression: numbers, `+ - * / % ^`, unary minus and
/// parentheses. Division by zero and results that are not finite are errors.
pub fn evaluate(expr: &str) -> Result<f64, String> {
    if expr.chars().count() > MAX_EXPRESSION {
        return Err(format!(
            "the expression is longer than {MAX_EXPRESSION} characters"
        ));
    }
    let mut p = Parser {
        chars: expr.chars().filter(|c| !c.is_whitespace()).collect(),
        at: 0,
        depth: 0,
    };
    let v = p.sum()?;
    if p.at != p.chars.len() {
        return Err(format!(
            "unexpected {:?} at position {}",
            p.chars[p.at],
            p.at + 1
        ));
    }
    if !v.is_finite() {
        return Err("the result is not a finite number".into());
    }
    Ok(v)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut v = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            let r = self.product()?;
            v = if op == '+' { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut v = self.power()?;
        while let Some(op @ ('*' | '/' | '%')) = self.peek() {
            self.at += 1;
            let r = self.power()?;
            if op != '*' && r == 0.0 {
                return Err("division by zero".into());
            }
            v = match op {
                '*' => v * r,
                '/' => v / r,
                _ => v % r,
            };
        }
        Ok(v)
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.unary()?;
        if self.peek() == Some('^') {
            self.at += 1;
            self.nest()?;
            let exp = self.power();
            self.depth -= 1;
            return Ok(base.powf(exp?));
        }
        Ok(base)
    }

    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("nested more than {MAX_NESTING} deep"));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<f64, String> {
        if self.peek() == Some('-') {
            self.at += 1;
            self.nest()?;
            let v = self.unary();
            self.depth -= 1;
            return Ok(-v?);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some('(') => {
                self.at += 1;
                self.nest()?;
                let v = self.sum();
                self.depth -= 1;
                let v = v?;
                if self.peek() != Some(')') {
                    return Err("a parenthesis is not closed".into());
                }
                self.at += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                text.parse()
                    .map_err(|_| format!("{text:?} is not a number"))
            }
            Some(c) => Err(format!("unexpected {c:?} at position {}", self.at + 1)),
            None => Err("the expression ends too soon".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(evaluate("1 + 2 * 3").unwrap(), 7.0);
        assert_eq!(evaluate("(1 + 2) * 3").unwrap(), 9.0);
        assert_eq!(evaluate("2 ^ 3 ^ 2").unwrap(), 512.0);
        assert_eq!(evaluate("-4 + 10 % 4").unwrap(), -2.0);
        assert_eq!(evaluate("7 / 2").unwrap(), 3.5);
        for bad in ["1 / 0", "2 ^ 99999", "(1", "1 +", "abc", "1..2", ""] {
            assert!(evaluate(bad).is_err(), "{bad}");
        }
        assert!(evaluate(&"(".repeat(40)).is_err());
        assert!(evaluate(&"-".repeat(100)).is_err());
        assert!(evaluate(&"1+".repeat(200)).is_err());
    }
}
