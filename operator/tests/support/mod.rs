//! An in-memory Kubernetes API server behind `tower_test`, good enough for the requests the
//! controllers make: GET, LIST with a label selector, server-side apply (PATCH), merge
//! patches with a resourceVersion precondition, status apply, DELETE (which only marks an
//! object with finalizers) and event creation. Every request is logged so tests can assert on
//! writes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the controller made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
}

impl Call {
    /// Whether the call changes state.
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
    next_rv: u64,
}

/// The fake API server.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// Starts the server; returns a client talking to it.
    pub fn start() -> (Client, FakeApi) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = FakeApi::default();
        let server = api.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let response = server.handle(request).await;
                respond.send_response(response);
            }
        });
        (Client::new(service, "default"), api)
    }

    /// Stores an object at its API path.
    pub fn put(&self, path: &str, mut object: Value) {
        let mut s = self.state.lock().unwrap();
        s.next_rv += 1;
        object["metadata"]["resourceVersion"] = json!(s.next_rv.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{}", s.next_rv));
        }
        s.objects.insert(path.to_string(), object);
    }

    /// The object stored at a path.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Removes a stored object (as another client would).
    #[allow(
        dead_code,
        reason = "used by the FaasService tests, not by every test binary"
    )]
    pub fn delete(&self, path: &str) {
        self.state.lock().unwrap().objects.remove(path);
    }

    /// Changes a stored object in place (as another client would).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut s = self.state.lock().unwrap();
        s.next_rv += 1;
        let rv = s.next_rv;
        let obj = s.objects.get_mut(path).expect("object exists");
        f(obj);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Forgets the calls made so far.
    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// The writes made so far, as "METHOD path".
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(Call::is_write)
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let merge = request
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/merge-patch+json"));
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let body = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        self.state.lock().unwrap().calls.push(Call {
            method: method.clone(),
            path: path.clone(),
        });

        if path.contains("/events") {
            let ev: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            return respond(StatusCode::CREATED, ev);
        }
        match method {
            Method::GET => match self.get(&path) {
                Some(obj) => respond(StatusCode::OK, obj),
                None if is_collection(&path) => respond(StatusCode::OK, self.list(&path, &query)),
                None => not_found(&path),
            },
            Method::PATCH if merge => {
                let patch: Value = serde_json::from_slice(&body).expect("merge patches are JSON");
                self.merge(&path, patch)
            }
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(&body).expect("apply patches are JSON");
                if let Some(object_path) = path.strip_suffix("/status") {
                    let Some(mut obj) = self.get(object_path) else {
                        return not_found(&path);
                    };
                    obj["status"] = patch["status"].clone();
                    self.put(object_path, obj.clone());
                    return respond(StatusCode::OK, self.get(object_path).unwrap());
                }
                let mut obj = patch;
                if let Some(existing) = self.get(&path) {
                    obj["metadata"]["uid"] = existing["metadata"]["uid"].clone();
                    if !existing["status"].is_null() {
                        obj["status"] = existing["status"].clone();
                    }
                }
                self.put(&path, obj);
                respond(StatusCode::OK, self.get(&path).unwrap())
            }
            // An object with finalizers is only marked for deletion, as the API server does.
            Method::DELETE if self.get(&path).is_some_and(|o| has_finalizers(&o)) => {
                self.edit(&path, |o| {
                    o["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
                });
                respond(StatusCode::OK, self.get(&path).unwrap())
            }
            Method::DELETE => match self.state.lock().unwrap().objects.remove(&path) {
                Some(_) => respond(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                None => not_found(&path),
            },
            _ => respond(StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }

    /// A JSON merge patch (RFC 7386), refused with 409 when it names another resourceVersion.
    /// An object being deleted goes once its last finalizer is removed.
    fn merge(&self, path: &str, patch: Value) -> Response<Body> {
        let Some(mut obj) = self.get(path) else {
            return not_found(path);
        };
        let wanted = &patch["metadata"]["resourceVersion"];
        if !wanted.is_null() && *wanted != obj["metadata"]["resourceVersion"] {
            return respond(
                StatusCode::CONFLICT,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
            );
        }
        merge_into(&mut obj, &patch);
        if !obj["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(&obj) {
            self.state.lock().unwrap().objects.remove(path);
            return respond(StatusCode::OK, obj);
        }
        self.put(path, obj);
        respond(StatusCode::OK, self.get(path).unwrap())
    }

    fn list(&self, path: &str, query: &str) -> Value {
        let selector: Vec<(String, String)> = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("labelSelector="))
            .map(|s| {
                urldecode(s)
                    .split(',')
                    .filter_map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let prefix = format!("{path}/");
        let items: Vec<Value> = self
            .state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
            .filter(|(_, o)| {
                selector
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][k] == json!(v))
            })
            .map(|(_, o)| o.clone())
            .collect();
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
    }
}

fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

fn merge_into(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_into(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn is_collection(path: &str) -> bool {
    // /api/v1/namespaces/{ns}/{plural} or /apis/{g}/{v}/namespaces/{ns}/{plural}
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        (parts.first(), parts.len()),
        (Some(&"api"), 5) | (Some(&"apis"), 6)
    )
}

fn urldecode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn respond(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn not_found(path: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
    )
}

/// A fresh database with the runtime's migrations applied, on the Postgres `DATABASE_URL`
/// names (scripts/services.sh). `None` when it is not set: `make test-unit` runs without
/// Postgres, `make test` always with it.
#[allow(
    dead_code,
    reason = "used by the tests that need Postgres, not by every test binary"
)]
pub async fn database() -> Option<sqlx::PgPool> {
    use sqlx::Connection as _;
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: skipping a test that needs Postgres");
        return None;
    };
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("DATABASE_URL answers");
    let name = format!("operator_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("creating a test database");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a Postgres URL");
    let pool = sqlx::PgPool::connect_with(options.database(&name))
        .await
        .expect("connecting to the test database");
    let migrations =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../service-runtime/migrations");
    sqlx::migrate::Migrator::new(migrations)
        .await
        .expect("the runtime's migrations")
        .run(&pool)
        .await
        .expect("applying the runtime's migrations");
    Some(pool)
}
