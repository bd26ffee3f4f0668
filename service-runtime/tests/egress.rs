//! The egress policy where calls are made: the resolver that judges every address a name
//! resolves to, wired into the client for tenant-influenced URLs. Names are resolved by a
//! stand-in, and every connection goes to a counting listener on loopback; other addresses
//! are refused before any connection, so nothing here leaves the machine.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faas_runtime::platform::RequestContext;
use faas_runtime::platform::egress::{EgressPolicy, GuardedResolver, Lookup, Refusal};
use faas_runtime::platform::http_client::{Breakers, HttpClient, RetryPolicy, UpstreamError};
use faas_runtime::platform::metrics::Metrics;
use futures::future::BoxFuture;
use reqwest::dns::Resolve;

/// Answers names from a table and remembers what it was asked.
#[derive(Default, Clone)]
struct Table {
    answers: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Table {
    fn with(self, name: &str, addrs: &[&str]) -> Self {
        let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
        self.answers.lock().unwrap().insert(name.into(), addrs);
        self
    }
}

impl Lookup for Table {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        self.asked.lock().unwrap().push(host.clone());
        let found = self
            .answers
            .lock()
            .unwrap()
            .get(host.trim_end_matches('.'))
            .cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        })
    }
}

/// A loopback HTTP server that counts the connections it accepts.
async fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, count)
}

fn client(policy: EgressPolicy, table: &Table) -> HttpClient {
    let base = HttpClient::new(
        Duration::from_secs(5),
        Arc::new(Breakers::new(100, Duration::from_secs(1))),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    base.guarded_with_lookup(&Arc::new(policy), Arc::new(table.clone()))
        .unwrap()
}

async fn get(http: &HttpClient, url: &str) -> Result<reqwest::Response, UpstreamError> {
    let req = http.inner().get(url).build().unwrap();
    http.send(
        "t",
        "test",
        req,
        &RequestContext::default(),
        RetryPolicy::new(2, true),
        None,
    )
    .await
}

fn refused(r: Result<reqwest::Response, UpstreamError>) -> bool {
    matches!(
        r,
        Err(UpstreamError::Blocked {
            refusal: Refusal::Blocked,
            ..
        })
    )
}

#[tokio::test]
async fn names_that_resolve_inside_are_refused_before_connecting() {
    let (port, count) = listener().await;
    let table = Table::default()
        .with("evil.example.com", &["127.0.0.1"])
        .with("mixed.example.com", &["127.0.0.1", "::1"])
        .with("mapped.example.com", &["::ffff:127.0.0.1"]);
    let http = client(EgressPolicy::default(), &table);
    for host in [
        "evil.example.com",
        "mixed.example.com",
        "mapped.example.com",
        "nowhere.example.com",
    ] {
        let r = get(&http, &format!("http://{host}:{port}/x")).await;
        assert!(refused(r), "{host}");
    }
    // IP literals never reach a resolver: they are judged before the request.
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://localhost:{port}/x"),
    ] {
        assert!(refused(get(&http, &url).await), "{url}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 0, "no connection was made");
    // Names are resolved fully qualified, so no search domain turns them into a service.
    let asked = table.asked.lock().unwrap().clone();
    assert!(asked.iter().all(|h| h.ends_with('.')), "{asked:?}");
    assert!(
        !asked.iter().any(|h| h.starts_with("localhost")),
        "{asked:?}"
    );
}

#[tokio::test]
async fn the_allowlist_opens_a_network_or_a_name() {
    let (port, count) = listener().await;
    let table = Table::default()
        .with("llm.corp.example.com", &["127.0.0.1"])
        .with("evil.example.com", &["127.0.0.1"]);
    let by_name = client(EgressPolicy::parse("*.corp.example.com").unwrap(), &table);
    let r = get(&by_name, &format!("http://llm.corp.example.com:{port}/x")).await;
    assert_eq!(r.unwrap().status(), 200);
    assert!(refused(
        get(&by_name, &format!("http://evil.example.com:{port}/x")).await
    ));
    let by_net = client(EgressPolicy::parse("127.0.0.0/8").unwrap(), &table);
    let r = get(&by_net, &format!("http://evil.example.com:{port}/x")).await;
    assert_eq!(r.unwrap().status(), 200);
    let r = get(&by_net, &format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(r.unwrap().status(), 200);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_name_that_rebinds_inside_after_registration_is_refused_when_called() {
    let (port, count) = listener().await;
    let policy = EgressPolicy::default();
    let url = format!("http://rebind.example.com:{port}/x");
    // When registered, the URL is judged without resolving it: a public name passes.
    assert_eq!(policy.check_url(&url.parse().unwrap()), Ok(()));
    // By the time it is called, the name points at loopback.
    let table = Table::default().with("rebind.example.com", &["127.0.0.1"]);
    assert!(refused(get(&client(policy, &table), &url).await));
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_resolver_answers_only_allowed_addresses() {
    // Resolving connects nowhere: these addresses are judged, never dialled.
    let table = Table::default()
        .with("metadata.example.com", &["169.254.169.254"])
        .with("private.example.com", &["10.0.0.1"])
        .with("nat64.example.com", &["64:ff9b::a9fe:a9fe"])
        .with(
            "public.example.com",
            &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        );
    let resolver =
        |policy: EgressPolicy| GuardedResolver::new(Arc::new(policy), Arc::new(table.clone()));
    let open = resolver(EgressPolicy::default());
    for name in [
        "metadata.example.com",
        "private.example.com",
        "nat64.example.com",
        "kubernetes.default",
        "redis",
    ] {
        let err = match open.resolve(name.parse().unwrap()).await {
            Err(e) => e,
            Ok(_) => panic!("{name} resolved"),
        };
        assert_eq!(
            err.downcast_ref::<Refusal>(),
            Some(&Refusal::Blocked),
            "{name}"
        );
    }
    let addrs: Vec<_> = open
        .resolve("public.example.com".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs.len(), 2);
    let private_ok = resolver(EgressPolicy::parse("10.0.0.0/8").unwrap());
    assert!(
        private_ok
            .resolve("private.example.com".parse().unwrap())
            .await
            .is_ok()
    );
    let closed = resolver(EgressPolicy::default().with_public(false));
    assert!(
        closed
            .resolve("public.example.com".parse().unwrap())
            .await
            .is_err()
    );
}
