//! Validate and build are pure: these tests feed them small YAML fixtures and check that every
//! field of the spec reaches the objects it should, and that every pod is restricted.

use std::collections::BTreeMap;

use faas_crds::FaasService;
use faas_crds::faas_service::{Backend, Component};
use faas_operator::faas_service::Defaults;
use faas_operator::faas_service::build::{self, Children};
use faas_operator::faas_service::validate::{self, Resolved};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::json;

fn fixture(spec: &str) -> FaasService {
    let yaml = format!(
        "apiVersion: faas.motadata.io/v1alpha1\nkind: FaasService\nmetadata: {{name: rag, namespace: team-a, uid: 7d3f, generation: 3}}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    serde_yaml::from_str(&yaml).expect("fixture parses")
}

fn all_found(fs: &FaasService, defaults: &Defaults) -> Resolved {
    let mut r = Resolved::default();
    for (_, s) in validate::secret_refs(fs, defaults) {
        r.secrets.insert(s.name.clone(), Some(vec![s.key.clone()]));
    }
    if let Some(s) = validate::auth(fs, defaults).secret() {
        r.secrets.insert(s.name.clone(), Some(vec![s.key.clone()]));
    }
    for d in validate::dependency_names(fs) {
        r.dependencies.insert(d, Some(Component::Gateway));
    }
    r
}

fn build(fs: &FaasService) -> Children {
    let d = Defaults::default();
    let valid = validate::validate(fs, &d, &all_found(fs, &d)).expect("valid");
    build::children(fs, &valid, &d)
}

const FULL: &str = r#"
component: rag
image: registry.local/faas-runtime:1.4.0
imagePullPolicy: Always
imagePullSecrets: [{name: regcred}]
autoscaling:
  minReplicas: 2
  maxReplicas: 8
  targetCPUUtilizationPercentage: 65
  targetMemoryUtilizationPercentage: 75
  behavior: {scaleDown: {stabilizationWindowSeconds: 120}}
resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {memory: 1Gi}}
env: [{name: LOG_LEVEL, value: debug}]
envFrom: [{configMapRef: {name: rag-extra}}]
config: {FAAS_CHUNK_SIZE: 800, FAAS_EMBEDDINGS_MODEL: local}
auth: {jwksSecretRef: {name: idp, key: jwks.json}, issuer: "https://idp.example.com", audience: rag}
database: {name: rag-pg, key: dsn}
nats: {name: shared-nats}
ingress:
  host: rag.example.com
  path: /v1
  pathType: Exact
  className: nginx
  tls: {secretName: rag-tls}
  annotations: {cert-manager.io/cluster-issuer: letsencrypt}
dependsOn: [{name: llm-gateway}]
podAnnotations: {sidecar.istio.io/inject: "false"}
podLabels: {team: search, app.kubernetes.io/name: spoofed}
nodeSelector: {pool: ai}
tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}]
priorityClassName: high
"#;

#[test]
fn every_spec_field_reaches_its_object() {
    let fs = fixture(FULL);
    let c = build(&fs);
    let pod = c.deployment.spec.template.spec.clone().unwrap();
    let container = &pod.containers[0];

    assert_eq!(
        container.image.as_deref(),
        Some("registry.local/faas-runtime:1.4.0")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        container.args,
        Some(vec!["serve".into(), "--service".into(), "rag".into()])
    );
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    assert_eq!(c.deployment.spec.replicas, None, "the HPA owns replicas");
    let res = container.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "250m");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "1Gi");

    let env: BTreeMap<_, _> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.clone()))
        .collect();
    assert_eq!(env["LOG_LEVEL"].value.as_deref(), Some("debug"));
    assert_eq!(
        container.env.as_ref().unwrap().last().unwrap().name,
        "LOG_LEVEL",
        "user env comes last and wins"
    );
    assert_eq!(
        build::secret_for(&c.deployment, Backend::Database),
        Some(("rag-pg".into(), "dsn".into()))
    );
    assert_eq!(
        build::secret_for(&c.deployment, Backend::Nats),
        Some(("shared-nats".into(), "url".into()))
    );
    assert_eq!(
        build::secret_for(&c.deployment, Backend::Cache),
        None,
        "rag needs no cache unless asked"
    );
    assert_eq!(
        env["FAAS_GATEWAY_URL"].value.as_deref(),
        Some("http://llm-gateway.team-a.svc.cluster.local")
    );
    assert_eq!(
        env["FAAS_SERVICE_LLM_GATEWAY_URL"].value.as_deref(),
        Some("http://llm-gateway.team-a.svc.cluster.local")
    );
    assert_eq!(
        env["FAAS_CONFIG_FILE"].value.as_deref(),
        Some("/etc/faas/config.json")
    );
    assert_eq!(
        container.env_from.as_ref().unwrap()[0]
            .config_map_ref
            .as_ref()
            .unwrap()
            .name,
        "rag-extra"
    );

    let annotations = c
        .deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["sidecar.istio.io/inject"], "false");
    let pod_labels = c
        .deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(pod_labels["team"], "search");
    assert_eq!(
        pod_labels["app.kubernetes.io/name"], "faas-runtime",
        "selector labels cannot be overridden"
    );
    assert!(annotations.contains_key(build::CONFIG_HASH_ANNOTATION));
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "ai");
    assert_eq!(
        pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("gpu")
    );
    assert!(pod.affinity.as_ref().unwrap().node_affinity.is_some());
    assert_eq!(
        pod.topology_spread_constraints.as_ref().unwrap()[0].topology_key,
        "zone"
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.service_account_name.as_deref(), Some("rag"));

    let config: serde_json::Value =
        serde_json::from_str(&c.config_map.data.as_ref().unwrap()["config.json"]).unwrap();
    assert_eq!(
        config,
        json!({"FAAS_CHUNK_SIZE": 800, "FAAS_EMBEDDINGS_MODEL": "local"})
    );

    assert_eq!(env["FAAS_AUTH"].value.as_deref(), Some("jwt"));
    assert_eq!(
        env["FAAS_JWT_JWKS_FILE"].value.as_deref(),
        Some("/etc/faas/auth/jwks.json")
    );
    assert_eq!(
        env["FAAS_JWT_ISSUER"].value.as_deref(),
        Some("https://idp.example.com")
    );
    assert_eq!(env["FAAS_JWT_AUDIENCE"].value.as_deref(), Some("rag"));
    assert!(!env.contains_key("FAAS_JWT_HS256_SECRET"));
    let auth_volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "auth")
        .unwrap();
    let secret_volume = auth_volume.secret.as_ref().unwrap();
    assert_eq!(secret_volume.secret_name.as_deref(), Some("idp"));
    assert_eq!(secret_volume.items.as_ref().unwrap()[0].key, "jwks.json");

    let hpa = c.hpa.as_ref().unwrap();
    assert_eq!(hpa.spec.min_replicas, Some(2));
    assert_eq!(hpa.spec.max_replicas, 8);
    assert_eq!(hpa.spec.scale_target_ref.name, "rag");
    let metrics = hpa.spec.metrics.as_ref().unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(
        metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .target
            .average_utilization,
        Some(65)
    );
    assert_eq!(metrics[1].resource.as_ref().unwrap().name, "memory");
    assert_eq!(
        hpa.spec
            .behavior
            .as_ref()
            .unwrap()
            .scale_down
            .as_ref()
            .unwrap()
            .stabilization_window_seconds,
        Some(120)
    );

    let ing = c.ingress.as_ref().unwrap();
    let ing_spec = ing.spec.as_ref().unwrap();
    assert_eq!(ing_spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &ing_spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("rag.example.com"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(
        (path.path.as_deref(), path.path_type.as_str()),
        (Some("/v1"), "Exact")
    );
    assert_eq!(
        ing_spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
        Some("rag-tls")
    );
    assert_eq!(
        ing.metadata.annotations.as_ref().unwrap()["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );

    assert!(c.pdb.is_some());
    let svc = c.service.spec.as_ref().unwrap();
    assert_eq!(svc.ports.as_ref().unwrap()[0].port, 80);
    assert_eq!(svc.selector.as_ref().unwrap(), &build::selector_labels(&fs));
    assert_eq!(
        c.service_account.automount_service_account_token,
        Some(false)
    );

    for meta in [
        &c.deployment.metadata,
        &c.service.metadata,
        &c.config_map.metadata,
        &c.service_account.metadata,
        &hpa.metadata,
        &ing.metadata,
        &c.pdb.as_ref().unwrap().metadata,
    ] {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.uid.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("FaasService", "7d3f", Some(true), Some(true))
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "faas-operator");
        assert_eq!(labels["app.kubernetes.io/component"], "rag");
        assert!(
            meta.annotations
                .as_ref()
                .unwrap()
                .contains_key(faas_operator::kit::APPLIED_HASH_ANNOTATION)
        );
    }
}

fn assert_restricted(pod: &PodSpec) {
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.privileged, None);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert!(sc.capabilities.as_ref().unwrap().add.is_none());
        let tmp = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/tmp")
            .expect("writable /tmp");
        let vol = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == tmp.name)
            .unwrap();
        assert!(vol.empty_dir.is_some());
    }
    for v in pod.volumes.iter().flatten() {
        assert!(v.host_path.is_none(), "no hostPath volumes");
    }
}

#[test]
fn every_generated_pod_is_restricted() {
    for component in Component::ALL {
        let full = FULL.replace("component: rag\n", "");
        for extra in [
            "replicas: 3",
            "autoscaling: {maxReplicas: 4}",
            full.trim_start(),
        ] {
            let mut spec = format!("component: {component}\n{extra}");
            // A component the default image does not serve runs only from an image that does.
            if !component.served() && !extra.contains("image:") {
                spec.push_str("\nimage: registry.local/faas-runtime-next:2.0.0");
            }
            let fs = fixture(&spec);
            let c = build(&fs);
            assert_restricted(c.deployment.spec.template.spec.as_ref().unwrap());
        }
    }
}

#[test]
fn defaults_fill_what_the_spec_leaves_out() {
    let fs = fixture("component: gateway");
    let c = build(&fs);
    let container = &c.deployment.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("motadata/faas-runtime:0.1.0")
    );
    assert_eq!(c.deployment.spec.replicas, Some(1));
    assert_eq!(
        container
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["memory"]
            .0,
        "128Mi"
    );
    for backend in [Backend::Database, Backend::Cache, Backend::Nats] {
        let (secret, key) = build::secret_for(&c.deployment, backend).unwrap();
        assert_eq!(key, "url");
        assert!(secret.starts_with("faas-"));
    }
    assert!(c.hpa.is_none() && c.ingress.is_none() && c.pdb.is_none());
    let env = container.env.as_ref().unwrap();
    let hs256 = env
        .iter()
        .find(|e| e.name == "FAAS_JWT_HS256_SECRET")
        .expect("JWT verification by default");
    let from = hs256
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        ("faas-auth", "jwt-hs256-secret")
    );
    assert!(
        env.iter()
            .any(|e| e.name == "FAAS_AUTH" && e.value.as_deref() == Some("jwt"))
    );

    let open = build(&fixture("component: gateway\nauth: {disabled: true}"));
    let env = open.deployment.spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "FAAS_AUTH" && e.value.as_deref() == Some("disabled"))
    );
    assert!(!env.iter().any(|e| e.name.starts_with("FAAS_JWT_")));
    let probes = [
        &container.startup_probe,
        &container.liveness_probe,
        &container.readiness_probe,
    ];
    let paths: Vec<_> = probes
        .iter()
        .map(|p| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(paths, ["/healthz", "/healthz", "/readyz"]);

    let autoscaled = build(&fixture(
        "component: gateway\nautoscaling: {maxReplicas: 3}",
    ));
    let m = &autoscaled.hpa.unwrap().spec.metrics.unwrap()[0];
    assert_eq!(
        m.resource.as_ref().unwrap().target.average_utilization,
        Some(build::DEFAULT_CPU_TARGET)
    );
}

#[test]
fn only_a_config_change_changes_the_config_hash() {
    let hash = |spec: &str| {
        let c = build(&fixture(spec));
        c.deployment
            .spec
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[build::CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let base = hash("component: prompt\nconfig: {maxTokens: 100}");
    assert_eq!(
        base,
        hash("component: prompt\nreplicas: 4\nconfig: {maxTokens: 100}")
    );
    assert_ne!(base, hash("component: prompt\nconfig: {maxTokens: 200}"));
}

#[test]
fn validation_names_what_is_missing() {
    let d = Defaults::default();
    let fs =
        fixture("component: gateway\ndatabase: {name: pg, key: dsn}\ndependsOn: [{name: cache}]");
    let mut r = all_found(&fs, &d);

    r.secrets.insert("pg".into(), None);
    let e = validate::validate(&fs, &d, &r).unwrap_err();
    assert_eq!(e.reason, "SecretNotFound");
    assert!(
        e.message.contains("team-a/pg") && e.message.contains("spec.database"),
        "{}",
        e.message
    );

    r.secrets.insert("pg".into(), Some(vec!["url".into()]));
    let e = validate::validate(&fs, &d, &r).unwrap_err();
    assert_eq!(e.reason, "SecretKeyNotFound");
    assert!(e.message.contains("no key 'dsn'"), "{}", e.message);

    r.secrets.insert("pg".into(), Some(vec!["dsn".into()]));
    r.dependencies.insert("cache".into(), None);
    let e = validate::validate(&fs, &d, &r).unwrap_err();
    assert_eq!(e.reason, "DependencyNotFound");

    let unserved = fixture("component: ml");
    let e = validate::validate(&unserved, &d, &all_found(&unserved, &d)).unwrap_err();
    assert_eq!(e.reason, "ComponentNotServed");
    assert!(
        e.message.contains("component ml") && e.message.contains("spec.image"),
        "{}",
        e.message
    );
    let own_image = fixture("component: ml\nimage: registry.local/faas-runtime-next:2.0.0");
    assert!(validate::validate(&own_image, &d, &all_found(&own_image, &d)).is_ok());

    let selfish = fixture("component: gateway\ndependsOn: [{name: rag}]");
    let e = validate::validate(&selfish, &d, &all_found(&selfish, &d)).unwrap_err();
    assert_eq!(e.reason, "InvalidDependency");

    let mut r = all_found(&fs, &d);
    r.secrets
        .insert("faas-auth".into(), Some(vec!["other".into()]));
    let e = validate::validate(&fs, &d, &r).unwrap_err();
    assert_eq!(e.reason, "SecretKeyNotFound");
    assert!(
        e.message.contains("jwt-hs256-secret") && e.message.contains("spec.auth"),
        "{}",
        e.message
    );

    let default_missing = fixture("component: cache");
    let e = validate::validate(&default_missing, &d, &Resolved::default()).unwrap_err();
    assert!(
        e.message.contains("faas-cache") && e.message.contains("operator's default"),
        "{}",
        e.message
    );
    assert_eq!(
        validate::secret_refs(&default_missing, &d).len(),
        1,
        "the cache component needs only Redis"
    );
}

fn agent(name: &str, extra: &str, headers: &[(&str, &str)]) -> faas_crds::Agent {
    let headers: String = headers
        .iter()
        .map(|(secret, key)| {
            format!(
                "        - {{name: X-{key}, secretKeyRef: {{name: {secret:?}, key: {key:?}}}}}\n"
            )
        })
        .collect();
    let yaml = format!(
        "apiVersion: faas.motadata.io/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: team-a}}\nspec:\n  model: {{provider: openai, name: gpt-4o-mini}}\n  systemPrompt: Help.\n  serviceRef: {{name: agents}}\n{extra}  tools:\n    - name: call\n      type: http\n      http:\n        url: https://api.example.com/v1\n        headers:\n        - {{name: Accept, value: application/json}}\n{headers}"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("agent fixture parses: {e}\n{yaml}"))
}

/// The agent service `agents` built with the Secret keys the given Agents name.
fn agent_service(agents: &[faas_crds::Agent]) -> Children {
    let d = Defaults::default();
    let fs: FaasService = serde_yaml::from_str(
        "apiVersion: faas.motadata.io/v1alpha1\nkind: FaasService\nmetadata: {name: agents, namespace: team-a, uid: 7d3f}\nspec: {component: agent}",
    )
    .unwrap();
    let mut resolved = all_found(&fs, &d);
    resolved.tool_secrets = validate::tool_secrets(&fs, agents);
    let valid = validate::validate(&fs, &d, &resolved).expect("valid");
    build::children(&fs, &valid, &d)
}

fn tool_secrets_volume(c: &Children) -> Option<k8s_openapi::api::core::v1::Volume> {
    let pod = c.deployment.spec.template.spec.as_ref().unwrap();
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == "agent-secrets")
        .cloned()
}

fn env_of(c: &Children, name: &str) -> Option<String> {
    let pod = c.deployment.spec.template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// A source of the projected volume: the Secret, whether it is optional, its (key, path) items.
type Source = (String, Option<bool>, Vec<(String, String)>);

fn sources(c: &Children) -> Vec<Source> {
    let volume = tool_secrets_volume(c).expect("the agent-secrets volume");
    volume
        .projected
        .unwrap()
        .sources
        .unwrap()
        .into_iter()
        .map(|s| {
            assert!(
                s.config_map.is_none() && s.downward_api.is_none(),
                "only Secrets"
            );
            let s = s.secret.expect("a Secret source");
            let items = s
                .items
                .expect("named keys only, never the whole Secret")
                .into_iter()
                .map(|i| {
                    assert_eq!(i.mode, None, "the volume's mode applies");
                    (i.key, i.path)
                })
                .collect();
            (s.name, s.optional, items)
        })
        .collect()
}

#[test]
fn an_agent_service_mounts_exactly_the_keys_its_agents_tools_name() {
    let pair = |k: &str, p: &str| (k.to_string(), p.to_string());
    let agents = [
        agent(
            "helper",
            "",
            &[("helpdesk-api", "authorization"), ("crm", "token")],
        ),
        // The same Secret with another key, and a key already named: one source, each key once.
        agent(
            "triage",
            "",
            &[
                ("helpdesk-api", "refresh"),
                ("helpdesk-api", "authorization"),
            ],
        ),
        // Another tenant: the same key again, under that tenant's folder.
        agent(
            "billing",
            "  tenant: billing\n",
            &[("helpdesk-api", "authorization")],
        ),
        // Served by another service, or going: none of their keys.
        served_by(
            agent("elsewhere", "", &[("payroll", "key")]),
            "other-agents",
        ),
        deleting(agent("leaving", "", &[("vault", "key")])),
        // Names no Secret file could have: left out, the Agent reports them.
        agent(
            "hostile",
            "",
            &[
                ("../other", "key"),
                ("crm", "..data"),
                ("crm", "a/b"),
                ("Crm", "x"),
            ],
        ),
    ];
    let c = agent_service(&agents);
    assert_eq!(
        sources(&c),
        vec![
            (
                "crm".to_string(),
                Some(true),
                vec![pair("token", "team-a/crm/token")]
            ),
            (
                "helpdesk-api".to_string(),
                Some(true),
                vec![
                    pair("authorization", "billing/helpdesk-api/authorization"),
                    pair("authorization", "team-a/helpdesk-api/authorization"),
                    pair("refresh", "team-a/helpdesk-api/refresh"),
                ]
            ),
        ]
    );
    let volume = tool_secrets_volume(&c).unwrap();
    assert_eq!(volume.projected.unwrap().default_mode, Some(0o440));
    let pod = c.deployment.spec.template.spec.as_ref().unwrap();
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "agent-secrets")
        .expect("mounted");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        (build::AGENT_SECRETS_DIR, Some(true))
    );
    assert_eq!(
        env_of(&c, build::AGENT_SECRETS_ENV).as_deref(),
        Some(build::AGENT_SECRETS_DIR)
    );
    assert_eq!(
        pod.security_context.as_ref().unwrap().fs_group,
        Some(build::RUNTIME_UID),
        "files of mode 0440 are the fsGroup's to read"
    );
    assert_restricted(pod);

    // The order the Agents are listed in changes nothing.
    let mut reversed = agents.to_vec();
    reversed.reverse();
    assert_eq!(agent_service(&reversed).deployment, c.deployment);
}

#[test]
fn without_a_named_secret_there_is_no_volume_and_no_variable() {
    for agents in [
        vec![],
        vec![agent("helper", "", &[])],
        vec![served_by(
            agent("elsewhere", "", &[("crm", "token")]),
            "other-agents",
        )],
    ] {
        let c = agent_service(&agents);
        assert!(tool_secrets_volume(&c).is_none());
        assert_eq!(env_of(&c, build::AGENT_SECRETS_ENV), None);
    }
    // Only an agent service mounts them.
    let d = Defaults::default();
    let fs = fixture("component: rag");
    let mut resolved = all_found(&fs, &d);
    resolved.tool_secrets = validate::tool_secrets(&fs, &[agent("a", "", &[("crm", "t")])]);
    let valid = validate::validate(&fs, &d, &resolved).unwrap();
    assert!(valid.tool_secrets.is_empty());
    let c = build::children(&fs, &valid, &d);
    assert!(tool_secrets_volume(&c).is_none());
}

fn served_by(mut agent: faas_crds::Agent, service: &str) -> faas_crds::Agent {
    agent.spec.service_ref.name = service.into();
    agent
}

fn deleting(mut agent: faas_crds::Agent) -> faas_crds::Agent {
    agent.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2025-01-01T00:00:00Z")).unwrap());
    agent
}
