//! The API server goes away for 20 seconds while 200 FaasServices converge.

use std::time::{Duration, Instant};

use faas_e2e::faults::{ControlPlane, children_problems, create_many, some_ready, wait_all_ready};
use faas_e2e::{TestNs, WAIT, wait_for};

/// Ready before the fault strikes, so that it strikes in the middle of the convergence.
const FIRST_READY: usize = 20;
const SERVICES: usize = 200;
const OUTAGE: Duration = Duration::from_secs(20);

/// The API server is killed while 200 FaasServices are being reconciled and started again 20
/// seconds later, with the same data. The operator process rides it out: the same process
/// (it never exits for an unreachable API server) converges every FaasService afterwards,
/// each with exactly its own Deployment, Service, ServiceAccount and ConfigMap and no child
/// left without its owner. The leader cannot renew its Lease meanwhile, so it steps down
/// (its controllers stop) without exiting, and leads again once the API server is back and the
/// Lease is still its own. Watches may resume late after such a restart; a FaasService whose
/// rollout is under way is looked at again every 30 seconds regardless.
#[tokio::test]
async fn the_api_server_restarts_while_200_services_converge() {
    let plane = ControlPlane::from_env();
    let ns = TestNs::new("apiserver").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-apiserver").await;
    op.wait_ready().await;
    let pid = op.pid().expect("the operator runs");

    let t0 = Instant::now();
    create_many(&ns, "svc", SERVICES).await;
    let ready = some_ready(&ns, FIRST_READY).await;
    eprintln!(
        "[e2e] {SERVICES} FaasServices created in {:.1?}; {ready} Ready when the API server is killed",
        t0.elapsed()
    );
    assert!(
        ready < SERVICES,
        "every FaasService converged before the outage: nothing was in flight"
    );

    let outage = plane.crash("apiserver");
    // Watched, not slept through blindly: the operator must stay up for the whole outage.
    while outage.elapsed() < OUTAGE {
        assert_eq!(
            op.exit_code(),
            None,
            "the operator exited while the API server was down:\n{}",
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    outage.end();
    // This cluster's controller manager runs without leader election, and its informers stay
    // stale for minutes after the API server comes back (Deployments get no status). A
    // leader-elected one, as on any real cluster, exits when it cannot renew its Lease for
    // this long and is restarted: the same is done here.
    plane.restart("controller-manager");

    let took = wait_all_ready(&ns, SERVICES, Duration::from_secs(240)).await;
    eprintln!("[e2e] all {SERVICES} FaasServices Ready {took:.1?} after the API server came back");
    let problems = children_problems(&ns).await.expect("listing children");
    assert!(problems.is_empty(), "children:\n{}", problems.join("\n"));

    assert_eq!(op.exit_code(), None, "{}", op.log_tail(40));
    assert_eq!(op.pid(), Some(pid));
    wait_for("the operator to lead again", WAIT, || async {
        match op.is_leader().await {
            Ok(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    drop(op);
}
