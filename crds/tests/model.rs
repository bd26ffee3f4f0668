//! The conversions from the resources into the contracts of faas-model: what an Agent or a
//! PromptTemplate declares is what the runtime gets.

use faas_crds::{Agent, PromptTemplate};
use faas_model::agent as model;
use faas_model::prompt::{Content, Role, VariableType};
use serde_json::json;

fn template(yaml: &str) -> PromptTemplate {
    serde_yaml::from_str(yaml).expect("fixture parses")
}

const TEMPLATE: &str = r#"
apiVersion: faas.motadata.io/v1alpha1
kind: PromptTemplate
metadata: {name: support, namespace: team-a}
spec:
  description: Support assistant.
  messages:
    - {role: system, template: "You support {{ product }}; at most {{ words }} words."}
    - {role: developer, template: "Tone: {{ tone }}.{% if email %} Escalate to {{ email }}.{% endif %}"}
  variables:
    - {name: product, description: The product, required: true}
    - {name: words, type: integer, default: 200}
    - {name: tone, type: string, default: friendly}
    - {name: email, type: string, required: false}
    - {name: filters, type: object, default: {lang: en, tags: [a, b]}}
  model: {provider: openai, name: gpt-4o-mini, temperature: 0.2, maxTokens: 1024}
"#;

#[test]
fn a_template_converts_into_the_content_the_prompt_component_stores() {
    let t = template(TEMPLATE);
    let c = Content::from(&t.spec);
    assert_eq!(c.description.as_deref(), Some("Support assistant."));
    let messages = c.messages.as_ref().unwrap();
    assert_eq!(
        messages.iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::System, Role::Developer]
    );
    assert!(c.template.is_none());
    let v = &c.variables;
    // Required when declared so, or when neither `required` nor a default is given.
    assert!(v[0].is_required());
    assert_eq!(v[0].description.as_deref(), Some("The product"));
    // An integer default stays an integer, typed as one.
    assert_eq!(v[1].kind, Some(VariableType::Integer));
    assert_eq!(v[1].default, Some(json!(200)));
    assert!(!v[1].is_required());
    // An optional variable stays optional.
    assert!(!v[3].required);
    assert!(!v[3].is_required());
    assert_eq!(
        v[4].default,
        Some(json!({"lang": "en", "tags": ["a", "b"]}))
    );
    assert_eq!(
        c.model_defaults,
        Some(json!({"model": "openai/gpt-4o-mini", "temperature": 0.2, "max_tokens": 1024}))
    );
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(t.spec.validate(), Ok(()));
}

/// The same content written to the prompt API has the same hash, so a template moved
/// between the two is not a new version.
#[test]
fn the_hash_is_the_one_the_prompt_api_gives_the_same_content() {
    let t = template(
        r#"
apiVersion: faas.motadata.io/v1alpha1
kind: PromptTemplate
metadata: {name: summarise}
spec:
  template: "Summarise {{ document }} in {{ words }} words."
  variables:
    - {name: document}
    - {name: words, type: integer, default: 100}
"#,
    );
    assert_eq!(
        t.spec.content().content_hash(),
        "7f614078233b67880edb0ef756b2733110c34011b6cea865ce9ab6674cf9c02e"
    );
    let api: Content = serde_json::from_value(json!({
        "template": "Summarise {{ document }} in {{ words }} words.",
        "variables": [{"name": "document"}, {"name": "words", "type": "integer", "default": 100}]
    }))
    .unwrap();
    assert_eq!(t.spec.content(), api);
}

#[test]
fn every_role_and_type_is_shared() {
    for &role in Role::ALL {
        let m: faas_crds::prompt_template::MessageTemplate =
            serde_json::from_value(json!({"role": role.as_str(), "template": "x"})).unwrap();
        assert_eq!(m.role, role);
    }
    for &t in VariableType::ALL {
        let v: faas_crds::prompt_template::Variable =
            serde_json::from_value(json!({"name": "v", "type": t.as_str()})).unwrap();
        assert_eq!(faas_model::prompt::Variable::from(&v).kind, Some(t));
    }
}

#[test]
fn what_the_api_server_cannot_check_is_found_by_validate() {
    let mut t = template(TEMPLATE);
    t.spec.variables[0].default = Some(json!("Motadata"));
    t.spec.variables[1].default = Some(json!("many"));
    t.spec.variables[2].default = Some(json!(3));
    t.spec.messages.as_mut().unwrap()[1].template = "{{ tone }\nline two".into();
    let problems = t.spec.validate().unwrap_err();
    let shown: Vec<_> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert_eq!(shown[0], "variables[1].default: is not of type integer");
    assert_eq!(shown[1], "variables[2].default: is not of type string");
    assert_eq!(problems[2].location, "messages[1].template");
    assert_eq!(problems[2].line, Some(1));
    assert!(problems[2].column.is_some());
    assert_eq!(
        shown[3],
        "variables[0].required: a required variable cannot have a default: drop required or the default"
    );
    // As the status reports them.
    let status: Vec<faas_crds::prompt_template::ParseError> =
        problems.iter().map(Into::into).collect();
    let status = serde_json::to_value(&status).unwrap();
    assert_eq!(status[2]["location"], "messages[1].template");
    assert_eq!(status[2]["line"], 1);
    assert!(status[0].get("line").is_none(), "{status}");
}

const AGENT: &str = r#"
apiVersion: faas.motadata.io/v1alpha1
kind: Agent
metadata: {name: support, namespace: team-a}
spec:
  model: {provider: openai, name: gpt-4o-mini, temperature: 0.2, maxTokens: 1024}
  promptTemplateRef:
    name: support
    variables: {product: AIOps}
  tools:
    - name: lookup_ticket
      type: http
      description: Look up a ticket.
      parameters: {type: object, properties: {id: {type: string}}}
      http:
        url: https://helpdesk.example.com/api
        method: GET
        headers:
          - {name: Accept, value: application/json}
          - {name: Authorization, secretKeyRef: {name: helpdesk-api, key: token}}
    - {name: search_docs, type: rag, rag: {collections: [docs, runbooks], topK: 3}}
    - {name: triage, type: agent, agent: {name: triage-agent}}
    - {name: now, type: builtin, builtin: {name: current-time}}
  memory: {type: summary, size: 30, ttl: 1h30m}
  rag: {collections: [kb]}
  maxIterations: 8
  serviceRef: {name: agents}
  tenant: acme
"#;

#[test]
fn an_agent_converts_into_the_definition_the_agent_component_loads() {
    let a: Agent = serde_yaml::from_str(AGENT).unwrap();
    let d = model::Definition::from(&a.spec);
    assert_eq!(d.model.provider, "openai");
    assert_eq!(d.model.max_tokens, Some(1024));
    assert_eq!(d.system_prompt, None);
    let r = d.prompt_template_ref.as_ref().unwrap();
    assert_eq!(r.name, "support");
    assert_eq!(r.variables["product"], json!("AIOps"));
    // Every tool kind maps, with its settings.
    assert_eq!(
        d.tools.iter().map(|t| t.kind).collect::<Vec<_>>(),
        model::ToolKind::ALL
    );
    let http = match d.tools[0].settings() {
        Some(model::ToolSettings::Http(h)) => h,
        other => panic!("{other:?}"),
    };
    assert_eq!(http.method, model::HttpMethod::Get);
    assert_eq!(http.timeout_seconds, 30);
    assert_eq!(http.headers[0].value.as_deref(), Some("application/json"));
    // A secret stays a reference.
    assert_eq!(
        http.headers[1].secret_key_ref,
        Some(model::SecretKeyRef {
            name: "helpdesk-api".into(),
            key: "token".into()
        })
    );
    assert_eq!(http.headers[1].value, None);
    assert_eq!(d.tools[0].parameters.as_ref().unwrap()["type"], "object");
    assert!(matches!(d.tools[1].settings(), Some(model::ToolSettings::Rag(r)) if r.top_k == 3));
    assert!(
        matches!(d.tools[2].settings(), Some(model::ToolSettings::Agent(r)) if r.name == "triage-agent")
    );
    assert!(
        matches!(d.tools[3].settings(), Some(model::ToolSettings::Builtin(b)) if b.name == model::BuiltinName::CurrentTime)
    );
    let memory = d.memory.as_ref().unwrap();
    assert_eq!(memory.kind, model::MemoryKind::Summary);
    assert_eq!(memory.messages_kept(), 30);
    assert_eq!(memory.ttl_seconds(), Some(5400));
    assert_eq!(d.rag.as_ref().unwrap().top_k, 5);
    assert_eq!((d.max_iterations, d.timeout_seconds), (8, 120));
    assert_eq!(d.validate(), Ok(()));
    // The JSON form keeps the resource's field names, without where the agent runs.
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v["tools"][0]["http"]["headers"][1]["secretKeyRef"]["name"],
        "helpdesk-api"
    );
    assert!(v.get("serviceRef").is_none() && v.get("tenant").is_none());
}

#[test]
fn every_enum_of_the_agent_maps() {
    use faas_crds::agent::{BuiltinName, HttpMethod, MemoryType, ToolType};
    let pairs = |crd: serde_json::Value, model: serde_json::Value| assert_eq!(crd, model);
    for (t, k) in [
        (ToolType::Http, model::ToolKind::Http),
        (ToolType::Rag, model::ToolKind::Rag),
        (ToolType::Agent, model::ToolKind::Agent),
        (ToolType::Builtin, model::ToolKind::Builtin),
    ] {
        assert_eq!(model::ToolKind::from(t), k);
        pairs(json!(t), json!(k));
    }
    for m in [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
    ] {
        pairs(json!(m), json!(model::HttpMethod::from(m)));
    }
    for b in [
        BuiltinName::CurrentTime,
        BuiltinName::Calculator,
        BuiltinName::WebFetch,
    ] {
        pairs(json!(b), json!(model::BuiltinName::from(b)));
    }
    for m in [MemoryType::None, MemoryType::Window, MemoryType::Summary] {
        pairs(json!(m), json!(model::MemoryKind::from(m)));
    }
    use strum::VariantArray;
    assert_eq!(model::HttpMethod::VARIANTS.len(), 5);
    assert_eq!(model::BuiltinName::VARIANTS.len(), 3);
    assert_eq!(model::MemoryKind::VARIANTS.len(), 3);
}

#[test]
fn an_agent_that_breaks_the_rules_is_found_by_validate() {
    let mut a: Agent = serde_yaml::from_str(AGENT).unwrap();
    a.spec.system_prompt = Some("Be brief.".into());
    a.spec.tools[1].http = a.spec.tools[0].http.clone();
    let problems = model::Definition::from(&a.spec).validate().unwrap_err();
    let at: Vec<_> = problems.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(at, ["", "tools[1].http"]);
}

/// The samples users start from pass the checks the prompt and agent components make.
#[test]
fn the_samples_pass_the_checks_of_the_runtime() {
    let dir = faas_crds::generate::repo_root().join("manifests/samples");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("sample exists");
    let t: PromptTemplate = serde_yaml::from_str(&read("prompttemplate-support-assistant.yaml"))
        .expect("the sample is a PromptTemplate");
    assert_eq!(t.spec.validate(), Ok(()));
    let a: Agent = serde_yaml::from_str(&read("agent-support-assistant.yaml"))
        .expect("the sample is an Agent");
    assert_eq!(model::Definition::from(&a.spec).validate(), Ok(()));
    // Every variable the template requires is given by the agent.
    let given = &a.spec.prompt_template_ref.as_ref().unwrap().variables;
    for v in t
        .spec
        .content()
        .variables
        .iter()
        .filter(|v| v.is_required())
    {
        assert!(
            given.as_ref().is_some_and(|g| g.contains_key(&v.name)),
            "{} is required and not given",
            v.name
        );
    }
}
