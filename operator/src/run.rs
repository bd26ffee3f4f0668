//! The operator process: HTTP endpoints, leader election, controllers, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use futures::channel::oneshot;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::agent;
use crate::config::Config;
use crate::faas_service;
use crate::kit::database;
use crate::metrics::Metrics;
use crate::prompt_template;
use crate::server::{self, Health};

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(signal_stop(stop_tx));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    info!(addr = %config.http_addr, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn({
        let app = server::router(Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        });
        let mut stop = stop_rx.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }
    });

    let identity = config.identity();
    let reporter = Reporter {
        controller: "faas-operator".into(),
        instance: Some(identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let db = match config
        .database_url
        .as_ref()
        .filter(|u| !u.expose().is_empty())
    {
        Some(url) => Some(database::pool(url.expose())?),
        None => {
            info!(
                "no database configured (FAAS_OPERATOR_DATABASE_URL): Agents and PromptTemplates are not published"
            );
            None
        }
    };
    let ctx = Contexts {
        faas_service: Arc::new(faas_service::Context::new(
            client.clone(),
            recorder.clone(),
            config.defaults(),
            metrics.clone(),
        )),
        prompt_template: Arc::new(prompt_template::Context::new(
            client.clone(),
            recorder.clone(),
            metrics.clone(),
            db.clone(),
        )),
        agent: Arc::new(agent::Context::new(
            client.clone(),
            recorder,
            metrics.clone(),
            db,
            config.cluster_domain.clone(),
        )),
    };

    let result = if config.leader_election {
        lead_then_run(
            &config,
            client,
            ctx,
            identity,
            &metrics,
            &ready,
            stop_rx.clone(),
        )
        .await
    } else {
        ready.store(true, Ordering::Relaxed);
        metrics.leader.set(1);
        run_controllers(&config, ctx, stop_rx.clone()).await;
        Ok(())
    };
    // Whatever ended the controllers, stop the HTTP server too.
    let _ = http.await;
    info!("stopped");
    result
}

/// What each controller shares between its reconciles.
#[derive(Clone)]
struct Contexts {
    faas_service: Arc<faas_service::Context>,
    prompt_template: Arc<prompt_template::Context>,
    agent: Arc<agent::Context>,
}

async fn lead_then_run(
    config: &Config,
    client: Client,
    ctx: Contexts,
    identity: String,
    metrics: &Metrics,
    ready: &AtomicBool,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let namespace = config.lease_namespace();
    let duration = config.lease_duration_seconds.max(2);
    let lease_name = config.lease_name.clone();
    let connect = {
        let namespace = namespace.clone();
        let identity = identity.clone();
        move || {
            LeaseManagerBuilder::new(client.clone(), &lease_name)
                .with_namespace(&namespace)
                .with_identity(&identity)
                .with_duration(duration)
                .with_grace((duration / 3).max(1))
                .build()
        }
    };
    // Fail early, with the Lease named, when leader election cannot work at all.
    connect().await.with_context(|| {
        format!(
            "cannot set up leader election on Lease {namespace}/{}",
            config.lease_name
        )
    })?;
    let (mut leader, lease_task) = crate::leader::elect(connect, Duration::from_secs(2));
    // A standby replica is healthy and ready: it is doing what it should.
    ready.store(true, Ordering::Relaxed);
    info!(lease = %config.lease_name, %namespace, %identity, "waiting for the leader Lease");

    // Lead whenever this replica holds the Lease, until shutdown: a replica that lost it (it
    // could not renew, or another took it) stops its controllers, which drops their caches,
    // and stands by in the same process.
    loop {
        let stopped = tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            became = leader.wait_for(|l| *l) => {
                if became.is_err() {
                    anyhow::bail!("leader election stopped unexpectedly");
                }
                false
            }
        };
        if stopped {
            break;
        }
        info!(%identity, "became the leader");
        metrics.leader.set(1);

        // Controllers run until shutdown or until the Lease is lost.
        let (lost_tx, lost_rx) = watch::channel(false);
        let mut watch_leader = leader.clone();
        let lost_watch = tokio::spawn(async move {
            let _ = watch_leader.wait_for(|l| !*l).await;
            let _ = lost_tx.send(true);
        });
        let combined = merge_stops(stop.clone(), lost_rx.clone());
        run_controllers(config, ctx.clone(), combined).await;
        lost_watch.abort();
        metrics.leader.set(0);
        if *stop.borrow() {
            break;
        }
        warn!(%identity, "lost the leader Lease; the controllers stopped, standing by");
    }
    drop(leader);
    release(lease_task).await;
    Ok(())
}

async fn release<T>(task: tokio::task::JoinHandle<T>) {
    // Dropping the receiver makes the lease task release the Lease; give it a moment.
    if tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .is_err()
    {
        error!("timed out releasing the leader Lease");
    }
}

fn merge_stops(a: watch::Receiver<bool>, b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    for mut r in [a, b] {
        let tx = tx.clone();
        tokio::spawn(async move {
            if r.wait_for(|s| *s).await.is_ok() {
                let _ = tx.send(true);
            }
        });
    }
    rx
}

async fn run_controllers(config: &Config, ctx: Contexts, stop: watch::Receiver<bool>) {
    let namespaces: Vec<Option<String>> = match config.watched_namespaces() {
        list if list.is_empty() => vec![None],
        list => list.into_iter().map(Some).collect(),
    };
    info!(namespaces = ?namespaces, "starting the FaasService, PromptTemplate and Agent controllers");
    let mut tasks = Vec::new();
    for ns in namespaces {
        tasks.push(tokio::spawn(faas_service::run(
            ctx.faas_service.clone(),
            ns.clone(),
            config.concurrency,
            stopped(stop.clone()),
        )));
        tasks.push(tokio::spawn(prompt_template::run(
            ctx.prompt_template.clone(),
            ns.clone(),
            config.concurrency,
            stopped(stop.clone()),
        )));
        tasks.push(tokio::spawn(agent::run(
            ctx.agent.clone(),
            ns,
            config.concurrency,
            stopped(stop.clone()),
        )));
    }
    for t in tasks {
        if let Err(e) = t.await {
            error!(error = %e, "a controller task failed");
        }
    }
}

/// A future that resolves when `stop` turns true (or its sender goes away).
fn stopped(mut stop: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + Sync {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        let _ = tx.send(());
    });
    rx.map(|_| ())
}

async fn signal_stop(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutting down");
    let _ = tx.send(true);
}
