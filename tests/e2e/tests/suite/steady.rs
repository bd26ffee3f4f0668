//! In steady state the operator writes nothing.

use std::time::Duration;

use faas_e2e::{TestNs, WAIT, wait_for};

use crate::common::*;

/// How long to watch for writes; FAAS_E2E_STEADY_SECONDS overrides the default of 60.
fn window() -> Duration {
    let secs = std::env::var("FAAS_E2E_STEADY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[tokio::test]
async fn in_steady_state_the_operator_writes_nothing() {
    let ns = TestNs::new("steady").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-steady").await;
    op.wait_ready().await;

    let fs = create_fs(&ns, "rag", full_spec()).await;
    assert_children(&ns, &fs, true).await;
    wait_ready(&ns, "rag").await;
    // Let the start-up settle (pods Ready, Deployment and HPA status written, the status that
    // follows them): wait until three samples two seconds apart agree.
    let before = wait_for("the FaasService and its children to settle", WAIT, || {
        let ns = &ns;
        async move {
            let mut last = children_versions(ns, "rag").await;
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let now = children_versions(ns, "rag").await;
                if now != last {
                    return Err(format!("still changing: {now:?}"));
                }
                last = now;
            }
            Ok(last)
        }
    })
    .await;
    assert!(
        before.len() >= 7,
        "expected the FaasService and its children: {before:?}"
    );
    let reconciles_before = op.reconciles().await.expect("metrics");

    observe_for(window()).await;

    let after = children_versions(&ns, "rag").await;
    let reconciles = op.reconciles().await.expect("metrics") - reconciles_before;
    assert_eq!(
        before.len(),
        after.len(),
        "children appeared or vanished: {after:?}"
    );
    let mut problems = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        if b.resource_version == a.resource_version {
            continue;
        }
        // Written meanwhile: by whom? Only other controllers' status writes are acceptable
        // (the HPA controller, for one, records its failing metrics), never the operator's.
        let changed: Vec<&String> = a
            .managers
            .iter()
            .filter(|(m, t)| b.managers.get(*m) != Some(*t))
            .map(|(m, _)| m)
            .collect();
        let by_operator = changed.iter().any(|m| m.starts_with("faas-operator"));
        if by_operator || b.generation != a.generation || b.kind == "FaasService" {
            problems.push(format!(
                "{} {}: resourceVersion {} -> {}, generation {:?} -> {:?}, written by {changed:?}",
                b.kind, b.name, b.resource_version, a.resource_version, b.generation, a.generation
            ));
        } else {
            eprintln!(
                "[e2e] {} {} written in the window by {changed:?} (not the operator)",
                b.kind, b.name
            );
        }
    }
    assert!(
        problems.is_empty(),
        "writes in steady state ({reconciles} reconciles in {:?}):\n{}",
        window(),
        problems.join("\n")
    );
    drop(op);
}
