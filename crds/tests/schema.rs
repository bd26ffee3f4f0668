//! The schema rules users meet at admission, checked with the same CEL rules the API server
//! evaluates, and the drift check of the committed CRD YAML.

use faas_crds::{Agent, FaasService, PromptTemplate};

fn faas(yaml: &str) -> FaasService {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

fn agent(yaml: &str) -> Agent {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

fn template(yaml: &str) -> PromptTemplate {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

/// The CEL error messages of an invalid object, joined.
fn errors<T>(result: Result<(), T>) -> String
where
    T: std::fmt::Debug,
{
    match result {
        Ok(()) => String::new(),
        Err(e) => format!("{e:?}"),
    }
}

const GATEWAY: &str = r#"
apiVersion: faas.motadata.io/v1alpha1
kind: FaasService
metadata: {name: gateway, namespace: team-a}
spec:
  component: gateway
  replicas: 2
"#;

#[test]
fn valid_faas_service_passes() {
    assert_eq!(errors(faas(GATEWAY).validate_cel()), "");
    let full = faas(
        r#"
apiVersion: faas.motadata.io/v1alpha1
kind: FaasService
metadata: {name: rag, namespace: team-a}
spec:
  component: rag
  autoscaling: {minReplicas: 2, maxReplicas: 5, targetCPUUtilizationPercentage: 70}
  ingress: {host: rag.example.com, path: /api, tls: {secretName: rag-tls}}
  dependsOn: [{name: gateway}]
  database: {name: pg, key: dsn}
  config: {FAAS_RAG_CHUNK_SIZE: 800}
"#,
    );
    assert_eq!(errors(full.validate_cel()), "");
}

#[test]
fn replicas_and_autoscaling_are_exclusive() {
    let mut svc = faas(GATEWAY);
    svc.spec.autoscaling = serde_yaml::from_str("{minReplicas: 1, maxReplicas: 3}").unwrap();
    let msg = errors(svc.validate_cel());
    assert!(msg.contains("mutually exclusive"), "{msg}");
}

#[test]
fn min_replicas_must_not_exceed_max() {
    let mut svc = faas(GATEWAY);
    svc.spec.replicas = None;
    svc.spec.autoscaling = serde_yaml::from_str("{minReplicas: 4, maxReplicas: 3}").unwrap();
    let msg = errors(svc.validate_cel());
    assert!(
        msg.contains("minReplicas must be less than or equal to maxReplicas"),
        "{msg}"
    );
}

#[test]
fn ingress_host_and_path_must_be_well_formed() {
    for (host, path, expected) in [
        ("https://rag.example.com", "/", "lowercase DNS name"),
        ("Rag.Example.com", "/", "lowercase DNS name"),
        ("rag.example.com:443", "/", "lowercase DNS name"),
        ("rag.example.com", "api", "must start with '/'"),
        ("rag.example.com", "/a//b", "must start with '/'"),
    ] {
        let mut svc = faas(GATEWAY);
        svc.spec.ingress =
            serde_yaml::from_str(&format!("{{host: '{host}', path: '{path}'}}")).unwrap();
        let msg = errors(svc.validate_cel());
        assert!(msg.contains(expected), "{host} {path}: {msg}");
    }
    let mut svc = faas(GATEWAY);
    svc.spec.ingress = serde_yaml::from_str("{host: '*.apps.example.com'}").unwrap();
    assert_eq!(errors(svc.validate_cel()), "");
}

#[test]
fn auth_needs_one_key_source_unless_disabled() {
    for (auth, ok) in [
        ("{hs256SecretRef: {name: jwt, key: k}}", true),
        (
            "{jwksSecretRef: {name: idp, key: jwks.json}, issuer: https://idp}",
            true,
        ),
        ("{disabled: true}", true),
        ("{}", false),
        (
            "{hs256SecretRef: {name: jwt, key: k}, jwksSecretRef: {name: idp, key: j}}",
            false,
        ),
        (
            "{disabled: true, hs256SecretRef: {name: jwt, key: k}}",
            false,
        ),
    ] {
        let mut svc = faas(GATEWAY);
        svc.spec.auth = serde_yaml::from_str(auth).unwrap();
        let msg = errors(svc.validate_cel());
        assert_eq!(msg.is_empty(), ok, "{auth}: {msg}");
        if !ok {
            assert!(
                msg.contains("set exactly one of hs256SecretRef and jwksSecretRef"),
                "{msg}"
            );
        }
    }
}

#[test]
fn config_values_are_numbers_or_strings() {
    let yaml = GATEWAY.replace("replicas: 2", "config: {FAAS_TIMEOUT: 30, FAAS_MODE: fast}");
    assert!(faas(&yaml).spec.config.is_some());
    let nested = GATEWAY.replace("replicas: 2", "config: {FAAS_TIMEOUT: {seconds: 30}}");
    assert!(serde_yaml::from_str::<FaasService>(&nested).is_err());
}

#[test]
fn depends_on_names_are_unique() {
    let mut svc = faas(GATEWAY);
    svc.spec.depends_on = serde_yaml::from_str("[{name: cache}, {name: cache}]").unwrap();
    assert!(errors(svc.validate_cel()).contains("must not name the same FaasService twice"));
}

#[test]
fn component_cannot_change() {
    let old = faas(GATEWAY);
    let mut new = old.clone();
    new.spec.component = faas_crds::Component::Rag;
    let msg = errors(new.validate_cel_update(&old));
    assert!(msg.contains("spec.component is immutable"), "{msg}");
    let mut scaled = old.clone();
    scaled.spec.replicas = Some(5);
    assert_eq!(errors(scaled.validate_cel_update(&old)), "");
}

#[test]
fn unknown_component_is_not_accepted() {
    let bad = GATEWAY.replace("component: gateway", "component: mailer");
    assert!(serde_yaml::from_str::<FaasService>(&bad).is_err());
}

const AGENT: &str = r#"
apiVersion: faas.motadata.io/v1alpha1
kind: Agent
metadata: {name: support, namespace: team-a}
spec:
  model: {provider: openai, name: gpt-4o-mini, temperature: 0.2}
  systemPrompt: You answer support questions.
  serviceRef: {name: agents}
  tools:
    - name: lookup_order
      type: http
      http:
        url: https://orders.internal/api/lookup
        headers:
          - name: Authorization
            secretKeyRef: {name: orders-token, key: token}
    - name: docs
      type: rag
      rag: {collections: [handbook]}
"#;

#[test]
fn valid_agent_passes_and_gets_defaults() {
    let a = agent(AGENT);
    assert_eq!(errors(a.validate_cel()), "");
    assert_eq!(a.spec.max_iterations, 10);
    assert_eq!(a.spec.timeout_seconds, 120);
    assert_eq!(a.spec.tools[1].rag.as_ref().unwrap().top_k, 5);
}

#[test]
fn agent_needs_exactly_one_instruction_source() {
    let mut a = agent(AGENT);
    a.spec.prompt_template_ref = serde_yaml::from_str("{name: support-prompt}").unwrap();
    assert!(
        errors(a.validate_cel())
            .contains("exactly one of spec.systemPrompt and spec.promptTemplateRef")
    );
    a.spec.prompt_template_ref = None;
    a.spec.system_prompt = None;
    assert!(
        errors(a.validate_cel())
            .contains("exactly one of spec.systemPrompt and spec.promptTemplateRef")
    );
}

#[test]
fn tool_names_unique_and_settings_match_type() {
    let mut a = agent(AGENT);
    a.spec.tools[1].name = "lookup_order".into();
    assert!(errors(a.validate_cel()).contains("spec.tools names must be unique"));

    let mut a = agent(AGENT);
    a.spec.tools[1].type_ = faas_crds::agent::ToolType::Http;
    let msg = errors(a.validate_cel());
    assert!(msg.contains("http is required for"), "{msg}");
    assert!(msg.contains("rag is required for"), "{msg}");
}

#[test]
fn header_value_xor_secret() {
    let mut a = agent(AGENT);
    let headers = &mut a.spec.tools[0].http.as_mut().unwrap().headers;
    headers[0].value = Some("Bearer inline".into());
    assert!(errors(a.validate_cel()).contains("exactly one of value and secretKeyRef"));
}

#[test]
fn memory_ttl_is_a_duration() {
    let mut a = agent(AGENT);
    a.spec.memory = serde_yaml::from_str("{type: window, size: 10, ttl: 1day}").unwrap();
    assert!(errors(a.validate_cel()).contains("spec.memory.ttl must be a duration"));
    a.spec.memory = serde_yaml::from_str("{type: window, size: 10, ttl: 1h30m}").unwrap();
    assert_eq!(errors(a.validate_cel()), "");
}

const TEMPLATE: &str = r#"
apiVersion: faas.motadata.io/v1alpha1
kind: PromptTemplate
metadata: {name: summarise, namespace: team-a}
spec:
  template: "Summarise {{ document }} in {{ words }} words."
  variables:
    - {name: document, required: true}
    - {name: words, type: integer, default: 100}
"#;

#[test]
fn valid_template_passes() {
    let t = template(TEMPLATE);
    assert_eq!(errors(t.validate_cel()), "");
    assert_eq!(t.spec.variables[0].type_, None);
    assert_eq!(t.spec.variables[1].default, Some(serde_json::json!(100)));
    assert_eq!(t.spec.validate(), Ok(()));
}

#[test]
fn template_xor_messages_and_variable_rules() {
    let mut t = template(TEMPLATE);
    t.spec.messages = serde_yaml::from_str("[{role: user, template: hi}]").unwrap();
    assert!(errors(t.validate_cel()).contains("exactly one of spec.template and spec.messages"));

    let mut t = template(TEMPLATE);
    t.spec.variables[1].name = "document".into();
    assert!(errors(t.validate_cel()).contains("spec.variables names must be unique"));

    let mut t = template(TEMPLATE);
    t.spec.variables[0].name = "1st".into();
    assert!(errors(t.validate_cel()).contains("must be an identifier"));
}

#[test]
fn every_role_of_the_prompt_component_is_a_role_of_the_resource() {
    for &role in faas_model::prompt::Role::ALL {
        let t = template(&TEMPLATE.replace(
            "template: \"Summarise {{ document }} in {{ words }} words.\"",
            &format!(
                "messages: [{{role: {role}, template: \"{{{{ document }}}} {{{{ words }}}}\"}}]"
            ),
        ));
        assert_eq!(errors(t.validate_cel()), "", "{role}");
        assert_eq!(t.spec.validate(), Ok(()), "{role}");
    }
    let wizard = TEMPLATE.replace(
        "template: \"Summarise {{ document }} in {{ words }} words.\"",
        "messages: [{role: wizard, template: hi}]",
    );
    assert!(serde_yaml::from_str::<PromptTemplate>(&wizard).is_err());
    // The schema lists the same roles.
    let crd = serde_json::to_value(
        faas_crds::generate::crds()
            .into_iter()
            .find(|(n, _)| *n == "prompttemplates")
            .unwrap()
            .1,
    )
    .unwrap();
    let roles = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["messages"]["items"]["properties"]["role"]["enum"];
    assert_eq!(
        roles,
        &serde_json::json!(["system", "developer", "user", "assistant", "tool"])
    );
}

#[test]
fn a_default_is_any_value_kept_as_written() {
    let crd = serde_json::to_value(
        faas_crds::generate::crds()
            .into_iter()
            .find(|(n, _)| *n == "prompttemplates")
            .unwrap()
            .1,
    )
    .unwrap();
    let variable = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["variables"]["items"];
    let default = &variable["properties"]["default"];
    assert_eq!(default["x-kubernetes-preserve-unknown-fields"], true);
    assert!(default.get("type").is_none(), "{default}");
    // The API server compiles no rule over a field without a type, so none may name it.
    let rules = variable["x-kubernetes-validations"].to_string();
    assert!(!rules.contains("default"), "{rules}");
    assert!(variable["required"].to_string().contains("name"));
    for default in ["100", "[a, b]", "{k: v}", "true", "text"] {
        let yaml = TEMPLATE.replace(
            "type: integer, default: 100",
            &format!("default: {default}"),
        );
        let t = template(&yaml);
        assert_eq!(errors(t.validate_cel()), "", "{default}");
        assert_eq!(t.spec.validate(), Ok(()), "{default}");
    }
}

#[test]
fn committed_crd_yaml_matches_the_types() {
    let root = faas_crds::generate::repo_root();
    for (relative, expected) in faas_crds::generate::files() {
        let actual = std::fs::read_to_string(root.join(&relative)).unwrap_or_default();
        assert!(
            actual == expected,
            "{} differs from the Rust types; run `cargo run -p faas-crds --bin crdgen` and commit the result",
            relative.display()
        );
    }
}

#[test]
fn crds_have_the_names_users_type() {
    use kube::CustomResourceExt;
    for (crd, short) in [
        (FaasService::crd(), "fsvc"),
        (Agent::crd(), "agt"),
        (PromptTemplate::crd(), "pt"),
    ] {
        let names = &crd.spec.names;
        assert_eq!(names.short_names.as_deref(), Some(&[short.to_string()][..]));
        assert_eq!(names.categories.as_deref(), Some(&["faas".to_string()][..]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }
    let scale = FaasService::crd().spec.versions[0]
        .subresources
        .clone()
        .unwrap()
        .scale
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

/// The CEL errors of changing spec.tenant from `from` to `to` (`None`: left out).
fn tenant_change<K>(
    mut old: K,
    tenant: fn(&mut K) -> &mut Option<String>,
    from: Option<&str>,
    to: Option<&str>,
) -> String
where
    K: kube::CustomResourceExt + serde::Serialize + Clone,
{
    *tenant(&mut old) = from.map(String::from);
    let mut new = old.clone();
    *tenant(&mut new) = to.map(String::from);
    errors(kube::core::cel::validate_cel_update(&new, &old))
}

#[test]
fn the_tenant_of_an_agent_or_a_template_never_changes() {
    const MESSAGE: &str = "spec.tenant cannot be changed; delete and re-create the resource";
    let changes: [(Option<&str>, Option<&str>); 5] = [
        (None, None),
        (Some("team-b"), Some("team-b")),
        (None, Some("team-b")),
        (Some("team-b"), Some("team-c")),
        (Some("team-b"), None),
    ];
    for (i, (from, to)) in changes.into_iter().enumerate() {
        let refused = i >= 2;
        for msg in [
            tenant_change(agent(AGENT), |a| &mut a.spec.tenant, from, to),
            tenant_change(template(TEMPLATE), |t| &mut t.spec.tenant, from, to),
        ] {
            assert_eq!(msg.contains(MESSAGE), refused, "{from:?} → {to:?}: {msg}");
            if !refused {
                assert_eq!(msg, "", "{from:?} → {to:?}");
            }
        }
    }
}
