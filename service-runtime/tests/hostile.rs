//! Hostile input against every route of every component, through the real binary
//! (`serve --service all`, JWT on): each route is taken from the served OpenAPI
//! document, so a route added later is attacked too. Every answer must be a 4xx
//! (never a 5xx), the process must never die or panic, and it must still serve.
mod common;

use std::time::Duration;

use common::binary::Binary;
use common::{require_env, token, unique};
use reqwest::Method;
use serde_json::{Map, Value, json};

/// `faas-runtime serve --service all` with every backing service; rag's answers go
/// through the gateway the same process serves.
fn start() -> Binary {
    Binary::start(
        "all",
        &[
            ("DATABASE_URL", require_env("DATABASE_URL")),
            ("REDIS_URL", require_env("REDIS_URL")),
            ("NATS_URL", require_env("NATS_URL")),
            (
                "FAAS_EMBEDDING_MODEL_DIR",
                require_env("FAAS_EMBEDDING_MODEL_DIR"),
            ),
            ("FAAS_REDIS_PREFIX", unique("h")),
            ("FAAS_NATS_PREFIX", unique("h")),
            ("FAAS_GATEWAY_URL", "http://127.0.0.1:{port}".into()),
        ],
    )
}

/// Fails the test when the process has exited or no longer answers.
async fn assert_alive(rt: &mut Binary, client: &reqwest::Client, after: &str) {
    if let Some(status) = rt.child.try_wait().unwrap() {
        let logs = rt.logs();
        let tail: String = logs.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        panic!("the runtime exited ({status}) after {after}; last log lines:\n{tail}");
    }
    let r = client
        .get(format!("{}/healthz", rt.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz after {after}: {e}"));
    assert_eq!(r.status(), 200, "/healthz after {after}");
}

/// An operation of the document: method, path template, the operation object.
struct Operation {
    method: Method,
    path: String,
    op: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (name, op) in item.as_object().unwrap() {
            let method = match name.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                "patch" => Method::PATCH,
                _ => continue,
            };
            out.push(Operation {
                method,
                path: path.clone(),
                op: op.clone(),
            });
        }
    }
    out
}

/// The path with every `{param}` replaced by `value`.
fn fill(path: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e + 1).unwrap();
        out.push_str(value);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn body_schema<'a>(doc: &'a Value, op: &'a Value) -> Option<&'a Value> {
    let content = op.get("requestBody")?.get("content")?;
    let schema = content
        .get("application/json")
        .or_else(|| content.as_object()?.values().next())?
        .get("schema")?;
    Some(resolve(doc, schema))
}

fn schema_type(schema: &Value) -> &str {
    match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    }
}

/// A plausible value of the schema: enum or default when given, else the simplest
/// value of its type, with one item in every array and every property (`all`) or
/// only the required ones.
fn benign(doc: &Value, schema: &Value, depth: usize, all: bool) -> Value {
    let schema = resolve(doc, schema);
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(d) = schema.get("default") {
        return d.clone();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema[key].as_array().and_then(|e| e.first()) {
            return benign(doc, first, depth, all);
        }
    }
    match schema_type(schema) {
        "integer" => json!(1),
        "number" => json!(1.0),
        "boolean" => json!(true),
        "array" if depth < 4 => json!([benign(doc, &schema["items"], depth + 1, all)]),
        "array" => json!([]),
        "object" if depth < 4 => {
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let obj: Map<String, Value> = props
                .iter()
                .filter(|(k, _)| all || required.contains(&k.as_str()))
                .map(|(k, p)| (k.clone(), benign(doc, p, depth + 1, all)))
                .collect();
            Value::Object(obj)
        }
        "object" => json!({}),
        _ => json!("x"),
    }
}

/// JSON pointers of every string, and of every number, in a value.
fn leaves(v: &Value, at: String, strings: &mut Vec<String>, numbers: &mut Vec<String>) {
    match v {
        Value::String(_) => strings.push(at),
        Value::Number(_) => numbers.push(at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, format!("{at}/{i}"), strings, numbers);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                leaves(item, format!("{at}/{k}"), strings, numbers);
            }
        }
        _ => {}
    }
}

/// Bodies no route may fail on: nesting far past the limit, the wrong top-level
/// type, NUL characters, numbers at the edge of their range, templates whose
/// expressions chain thousands of filters, attributes, `not`s or operators.
fn hostile_bodies(doc: &Value, op: &Value) -> Vec<(&'static str, String, Vec<u8>)> {
    let json_ct = "application/json".to_string();
    let mut deep_pack = vec![0x91u8; 200_000];
    deep_pack.push(0xc0);
    let mut bodies = vec![
        ("deep MessagePack", "application/msgpack".into(), deep_pack),
        (
            "deep JSON",
            json_ct.clone(),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
        ("an array for an object", json_ct.clone(), b"[]".to_vec()),
        ("a number for an object", json_ct.clone(), b"1e999".to_vec()),
        ("not JSON", json_ct.clone(), b"{\"a\":".to_vec()),
        ("a text body", "text/plain".into(), b"hello".to_vec()),
    ];
    let Some(schema) = body_schema(doc, op) else {
        return bodies;
    };
    let mut bases = vec![benign(doc, schema, 0, false), benign(doc, schema, 0, true)];
    // The required fields plus one optional field, for every optional field: one
    // of several alternatives (`template` or `messages`) is valid only alone.
    if let (Value::Object(required), Some(props)) =
        (bases[0].clone(), schema["properties"].as_object())
    {
        for (name, prop) in props {
            if !required.contains_key(name) {
                let mut one = required.clone();
                one.insert(name.clone(), benign(doc, prop, 1, false));
                bases.push(Value::Object(one));
            }
        }
    }
    let texts: Vec<(&'static str, String)> = vec![
        ("NUL", "a\u{0}b".into()),
        (
            "a long filter chain",
            format!("{{{{ x{} }}}}", "|upper".repeat(20_000)),
        ),
        (
            "a long attribute chain",
            format!("{{{{ x{} }}}}", ".a".repeat(30_000)),
        ),
        (
            "a long not chain",
            format!("{{{{ {}x }}}}", "not ".repeat(20_000)),
        ),
        (
            "a long operator chain",
            format!("{{{{ 1{} }}}}", " + 1".repeat(20_000)),
        ),
        (
            "deep block nesting",
            format!(
                "{}{}",
                "{% if x %}".repeat(5_000),
                "{% endif %}".repeat(5_000)
            ),
        ),
        ("an edge date", "-262143-01-01T00:00:00Z".into()),
    ];
    // One hostile text at a time, in a body that is otherwise valid (only the
    // required fields, or all of them), so the text reaches whatever parses it.
    for base in &bases {
        let (mut strings, mut numbers) = (Vec::new(), Vec::new());
        leaves(base, String::new(), &mut strings, &mut numbers);
        for pointer in &strings {
            for (what, text) in &texts {
                let mut v = base.clone();
                *v.pointer_mut(pointer).unwrap() = json!(text);
                bodies.push((*what, json_ct.clone(), serde_json::to_vec(&v).unwrap()));
            }
        }
        for (what, edge) in [
            ("the largest integers", json!(i64::MAX)),
            ("the smallest integers", json!(i64::MIN)),
            ("the largest numbers", json!(1e308)),
            ("negative numbers", json!(-1)),
        ] {
            let mut v = base.clone();
            for pointer in &numbers {
                *v.pointer_mut(pointer).unwrap() = edge.clone();
            }
            bodies.push((what, json_ct.clone(), serde_json::to_vec(&v).unwrap()));
        }
    }
    bodies
}

/// Query values no route may fail on, each sent in every documented query parameter.
const HOSTILE_QUERY: &[&str] = &[
    "%00",
    "-262143-01-01T00:00:00Z",
    "%2B262142-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999",
    "NaN",
    "%5B%5D",
];

fn query_params(op: &Value) -> Vec<String> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one hostile request and records a failure unless the answer is below 500
/// (an error in JSON); a dropped connection (a panic in a handler) is a failure too.
async fn expect_client_error(
    req: reqwest::RequestBuilder,
    what: &str,
    failures: &mut Vec<String>,
) -> u16 {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            failures.push(format!("{what}: no answer: {e}"));
            return 0;
        }
    };
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.text().await.unwrap_or_default();
    if status >= 500 {
        let shown: String = body.chars().take(200).collect();
        failures.push(format!("{what}: answered {status}: {shown}"));
    } else if status >= 400
        && !(ct.starts_with("application/problem+json") || ct.starts_with("application/json"))
    {
        failures.push(format!("{what}: error {status} as {ct:?}"));
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_crashes_or_fails_the_runtime() {
    // No connection reuse: a server may close a connection whose body it refused
    // unread, which is not a failure of the next request.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut rt = start();
    rt.wait_ready(&client).await;
    let doc: Value = client
        .get(format!("{}/openapi.json", rt.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "only {} operations documented", ops.len());
    let bearer = token(&unique("ht"), "mallory", &["admin", "platform-admin"]);
    let mut failures = Vec::new();
    let f = &mut failures;

    // Before authentication: nothing is decoded, whatever the body.
    let mut deep = vec![0x91u8; 200_000];
    deep.push(0xc0);
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        expect_client_error(
            client
                .post(format!("{}{path}", rt.base))
                .header("content-type", "application/msgpack")
                .body(deep.clone()),
            &format!("deep MessagePack to {path}"),
            f,
        )
        .await;
        assert_alive(&mut rt, &client, &format!("deep MessagePack to {path}")).await;
    }

    for o in &ops {
        let path = fill(&o.path, "x");
        let url = format!("{}{path}", rt.base);
        let label = format!("{} {}", o.method, o.path);
        let status = expect_client_error(
            client
                .request(o.method.clone(), &url)
                .header("content-type", "application/msgpack")
                .body(deep.clone()),
            &format!("{label} unauthenticated"),
            f,
        )
        .await;
        if status != 401 {
            f.push(format!("{label} without a token: {status}, not 401"));
        }

        for (what, ct, body) in hostile_bodies(&doc, &o.op) {
            expect_client_error(
                client
                    .request(o.method.clone(), &url)
                    .bearer_auth(&bearer)
                    .header("content-type", ct)
                    .body(body),
                &format!("{label} with {what}"),
                f,
            )
            .await;
        }
        for name in query_params(&o.op) {
            for value in HOSTILE_QUERY {
                expect_client_error(
                    client
                        .request(o.method.clone(), format!("{url}?{name}={value}"))
                        .bearer_auth(&bearer),
                    &format!("{label} with {name}={value}"),
                    f,
                )
                .await;
            }
        }
        if o.path.contains('{') {
            for value in ["%00", &"p".repeat(4096), "..%2F..%2Fetc", "%E2%80%AE"] {
                expect_client_error(
                    client
                        .request(
                            o.method.clone(),
                            format!("{}{}", rt.base, fill(&o.path, value)),
                        )
                        .bearer_auth(&bearer),
                    &format!("{label} with path value {value:.20}"),
                    f,
                )
                .await;
            }
        }
        assert_alive(&mut rt, &client, &label).await;
    }

    assert!(
        failures.is_empty(),
        "{} hostile requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let logs = rt.logs();
    assert!(
        !logs.contains("panicked"),
        "a request panicked: {}",
        logs.lines()
            .filter(|l| l.contains("panicked"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_no_cors_by_default() {
    let client = reqwest::Client::new();
    let mut rt = start();
    rt.wait_ready(&client).await;
    for (path, auth) in [("/healthz", false), ("/v1/prompts", true), ("/nope", true)] {
        let mut req = client
            .get(format!("{}{path}", rt.base))
            .header("origin", "https://evil.example");
        if auth {
            req = req.bearer_auth(token("sec", "u", &[]));
        }
        let r = req.send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(h.contains_key("content-security-policy"), "{path}");
        assert!(!h.contains_key("access-control-allow-origin"), "{path}");
    }
}
