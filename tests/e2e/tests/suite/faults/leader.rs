//! The leader is SIGKILLed while 100 FaasServices converge; the standby finishes the work.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faas_e2e::faults::{children_problems, create_many, observer, some_ready, wait_all_ready};
use faas_e2e::{Operator, TestNs, WAIT, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

const LEASE: &str = "faas-operator-e2e";
/// The operator's default Lease duration, so the takeover time measured is the one a default
/// installation sees.
const LEASE_SECONDS: i64 = 15;
/// Ready before the fault strikes, so that it strikes in the middle of the convergence.
const FIRST_READY: usize = 10;
const SERVICES: usize = 100;

/// A reading of the Lease.
#[derive(Clone, Debug, PartialEq)]
struct Reading {
    holder: Option<String>,
    transitions: i32,
    acquired: Option<Timestamp>,
    renewed: Option<Timestamp>,
}

async fn read_lease(api: &Api<Lease>) -> Option<Reading> {
    let spec = api.get_opt(LEASE).await.ok().flatten()?.spec?;
    Some(Reading {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        transitions: spec.lease_transitions.unwrap_or(0),
        acquired: spec.acquire_time.map(|t| t.0),
        renewed: spec.renew_time.map(|t| t.0),
    })
}

/// Two operators share the default 15-second Lease. The leader is SIGKILLed (it cannot release
/// the Lease) right after 100 FaasServices were created; the standby takes over once the
/// Lease expires and converges all of them. The takeover time is printed.
///
/// Never two leaders: the Lease's holder history is the old leader, then the standby, with
/// one transition, and the standby acquired it no sooner than the old leader's last renewal
/// plus the Lease duration; the standby reconciled nothing before its metrics said it leads;
/// every Event the operator published names the replica that held the Lease at that moment;
/// and each child's fields were written by one field manager (the operator's), last at a
/// time when the replica that wrote could hold the Lease.
#[tokio::test]
async fn the_standby_takes_over_from_a_killed_leader_mid_convergence() {
    let ns = TestNs::new("takeover").await;
    ns.create_backend_secrets().await;
    let sa = ns.install_chart_rbac(LEASE).await;
    let kubeconfig = ns.service_account_kubeconfig(&sa).await;
    let a = Operator::start(&ns, &kubeconfig, LEASE, "op-a", None);
    let b = Operator::start(&ns, &kubeconfig, LEASE, "op-b", None);
    a.wait_ready().await;
    b.wait_ready().await;
    let leases: Api<Lease> = ns.api();
    let leader_id = wait_for("one leader", WAIT, || async {
        let la = a.is_leader().await.map_err(|e| e.to_string())?;
        let lb = b.is_leader().await.map_err(|e| e.to_string())?;
        let h = read_lease(&leases).await.and_then(|r| r.holder);
        match (la, lb, h) {
            (true, false, Some(h)) if h == a.identity => Ok(h),
            (false, true, Some(h)) if h == b.identity => Ok(h),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (mut leader, standby) = if leader_id == a.identity {
        (a, b)
    } else {
        (b, a)
    };
    let before = read_lease(&leases).await.expect("the Lease");

    // The Lease and the standby, sampled every 100 ms from now on.
    let history: Arc<Mutex<Vec<Reading>>> = Arc::default();
    let standby_early: Arc<Mutex<Vec<String>>> = Arc::default();
    let sampler = {
        let (history, early, leases) = (history.clone(), standby_early.clone(), leases.clone());
        let standby = observer(&standby);
        tokio::spawn(async move {
            loop {
                if let Some(r) = read_lease(&leases).await {
                    let mut h = history.lock().unwrap();
                    if h.last() != Some(&r) {
                        h.push(r);
                    }
                }
                // The reconcile count is read first: a non-zero count with the gauge still
                // at 0 afterwards means it reconciled before it led.
                if let (Ok(n), Ok(leads)) = (standby.reconciles().await, standby.is_leader().await)
                    && n > 0.0
                    && !leads
                {
                    early
                        .lock()
                        .unwrap()
                        .push(format!("{n} reconciles while not leading"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    create_many(&ns, "svc", SERVICES).await;
    let ready = some_ready(&ns, FIRST_READY).await;
    assert!(
        ready < SERVICES,
        "everything converged before the leader was killed"
    );
    let killed_at = Timestamp::now();
    let t_kill = Instant::now();
    leader.kill();
    eprintln!(
        "[e2e] leader {} killed with {ready} of {SERVICES} FaasServices Ready",
        leader.identity
    );

    wait_for("the standby to lead", Duration::from_secs(60), || async {
        let leads = standby.is_leader().await.map_err(|e| e.to_string())?;
        let h = read_lease(&leases).await.and_then(|r| r.holder);
        if leads && h.as_deref() == Some(standby.identity.as_str()) {
            Ok(())
        } else {
            Err(format!("standby leads: {leads}, Lease holder: {h:?}"))
        }
    })
    .await;
    let takeover = t_kill.elapsed();
    eprintln!(
        "[e2e] takeover: standby {} leads {takeover:.1?} after the leader was SIGKILLed (Lease {LEASE_SECONDS}s)",
        standby.identity
    );

    let took = wait_all_ready(&ns, SERVICES, Duration::from_secs(240)).await;
    eprintln!("[e2e] all {SERVICES} FaasServices Ready {took:.1?} after the takeover");
    sampler.abort();
    let problems = children_problems(&ns).await.expect("listing children");
    assert!(problems.is_empty(), "children:\n{}", problems.join("\n"));
    assert_eq!(standby.exit_code(), None, "{}", standby.log_tail(40));

    // The Lease: old leader, then the standby, one transition, and not before it expired.
    let history = history.lock().unwrap().clone();
    let holders: Vec<&str> =
        history
            .iter()
            .filter_map(|r| r.holder.as_deref())
            .fold(Vec::new(), |mut v, h| {
                if v.last() != Some(&h) {
                    v.push(h);
                }
                v
            });
    assert_eq!(
        holders,
        [leader.identity.as_str(), standby.identity.as_str()],
        "Lease history: {history:?}"
    );
    let after = history.last().cloned().expect("readings");
    assert_eq!(after.transitions, before.transitions + 1, "{history:?}");
    let last_renewal = history
        .iter()
        .filter(|r| r.holder.as_deref() == Some(leader.identity.as_str()))
        .filter_map(|r| r.renewed)
        .max()
        .expect("the old leader renewed");
    let acquired = after.acquired.expect("acquireTime");
    let gap = acquired.duration_since(last_renewal);
    assert!(
        gap >= SignedDuration::from_secs(LEASE_SECONDS),
        "the standby took the Lease {gap:?} after the last renewal, before it expired"
    );
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS as u64 + 5),
        "takeover took {takeover:?} with a {LEASE_SECONDS}s Lease"
    );
    let early = standby_early.lock().unwrap().clone();
    assert!(
        early.is_empty(),
        "the standby reconciled before leading: {early:?}"
    );

    // Who wrote, and when. Times in the API are at best microseconds (Events) or seconds
    // (managedFields); one second of slack covers the latter's truncation.
    let slack = SignedDuration::from_secs(1);
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing Events");
    let mut wrong = Vec::new();
    for e in events.items.iter() {
        if e.reporting_controller.as_deref() != Some("faas-operator") {
            continue;
        }
        let at = e.event_time.as_ref().map(|t| t.0);
        let by = e.reporting_instance.clone().unwrap_or_default();
        let fine = match at {
            Some(at) if by == leader.identity => at <= killed_at,
            Some(at) if by == standby.identity => at >= acquired,
            _ => false,
        };
        if !fine {
            wrong.push(format!(
                "{} by {by:?} at {at:?}: {:?}",
                e.name_any(),
                e.note
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "Events published outside their replica's term (old leader killed at {killed_at}, standby acquired at {acquired}):\n{}",
        wrong.join("\n")
    );
    let mut writes = Vec::new();
    collect_writes::<Deployment>(&ns, &mut writes).await;
    collect_writes::<Service>(&ns, &mut writes).await;
    collect_writes::<ConfigMap>(&ns, &mut writes).await;
    collect_writes::<ServiceAccount>(&ns, &mut writes).await;
    let mut bad = Vec::new();
    for (child, ours) in &writes {
        match ours.as_slice() {
            [t] if *t <= killed_at + slack || *t >= acquired - slack => {}
            other => bad.push(format!("{child}: operator writes {other:?}")),
        }
    }
    assert_eq!(writes.len(), 4 * SERVICES);
    assert!(
        bad.is_empty(),
        "children written by more than one operator entry, or while no replica held the Lease (killed at {killed_at}, acquired at {acquired}):\n{}",
        bad.join("\n")
    );
    drop(standby);
}

/// For each of the operator's children of kind K: its name and the times of the managedFields
/// entries of the operator's field manager (one expected: its server-side apply).
async fn collect_writes<K>(ns: &TestNs, out: &mut Vec<(String, Vec<Timestamp>)>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let list = ns
        .api::<K>()
        .list(&ListParams::default().labels(faas_e2e::faults::MANAGED))
        .await
        .expect("listing children");
    for o in list.items {
        let ours: Vec<Timestamp> = o
            .meta()
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| {
                m.manager
                    .as_deref()
                    .is_some_and(|m| m.starts_with("faas-operator"))
            })
            .map(|m| {
                assert_eq!(
                    m.operation.as_deref(),
                    Some("Apply"),
                    "{}: {m:?}",
                    o.name_any()
                );
                m.time.as_ref().map(|t| t.0).expect("a managedFields time")
            })
            .collect();
        out.push((format!("{}/{}", K::kind(&()), o.name_any()), ours));
    }
}
