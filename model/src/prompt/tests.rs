use serde_json::json;

use super::*;

fn content(v: Value) -> Content {
    serde_json::from_value(v).expect("content parses")
}

fn greeting() -> Content {
    content(json!({
        "description": "Grüße — says hello",
        "messages": [
            {"role": "system", "template": "You help {{ company }} customers."},
            {"role": "user", "template": "Hello, I am {{ name }}{% if vip %} (VIP){% endif %}."}
        ],
        "variables": [
            {"name": "company", "default": "Motadata", "type": "string"},
            {"name": "name", "type": "string", "description": "who writes"},
            {"name": "vip", "type": "boolean", "required": false},
            {"name": "limit", "type": "integer", "default": 3},
            {"name": "extra", "default": {"b": [1, 2.5, null], "a": true}}
        ],
        "model_defaults": {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 512}
    }))
}

fn problems(c: &Content) -> Vec<ValidationError> {
    c.validate().err().unwrap_or_default()
}

fn locations(c: &Content) -> Vec<String> {
    problems(c).into_iter().map(|p| p.location).collect()
}

/// The hashes of versions already stored: computed by the prompt component before this
/// crate held the content, and never to change.
#[test]
fn content_hash_is_the_stored_one() {
    assert_eq!(
        greeting().content_hash(),
        "5dce1321afe25237866c9127f8475724b0ae4592b07ece98990b7dfc16b9f2a1"
    );
    let summarise = content(json!({
        "template": "Summarise {{ document }} in {{ words }} words.",
        "variables": [{"name": "document"}, {"name": "words", "type": "integer", "default": 100}]
    }));
    assert_eq!(
        summarise.content_hash(),
        "7f614078233b67880edb0ef756b2733110c34011b6cea865ce9ab6674cf9c02e"
    );
    let mut changed = summarise.clone();
    changed.variables[0].required = false;
    assert_ne!(changed.content_hash(), summarise.content_hash());
}

#[test]
fn variables_are_required_unless_a_default_is_given() {
    let c = greeting();
    let required: Vec<_> = c.variables.iter().map(Variable::is_required).collect();
    assert_eq!(required, [false, true, false, false, false]);
    // `required` is written out whether it was given or not, as stored versions have it.
    let v = serde_json::to_value(&c.variables[1]).unwrap();
    assert_eq!(
        v,
        json!({"name": "name", "description": "who writes", "required": true, "type": "string"})
    );
    let v = serde_json::to_value(&c.variables[4]).unwrap();
    assert!(v.get("type").is_none(), "{v}");
}

#[test]
fn valid_content_passes() {
    assert_eq!(greeting().validate(), Ok(()));
    // Globals of the template language need no declaration.
    let c = content(json!({"template": "{% for i in range(3) %}{{ i }}{% endfor %}"}));
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn every_role_reads_back_and_others_are_refused() {
    assert_eq!(Role::ALL.len(), 5);
    for &r in Role::ALL {
        let m: MessageTemplate =
            serde_json::from_value(json!({"role": r.as_str(), "template": "x"})).unwrap();
        assert_eq!(m.role, r);
        assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
    }
    let e = serde_json::from_value::<Content>(
        json!({"messages": [{"role": "wizard", "template": "y"}]}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown variant `wizard`"), "{e}");
    let e = serde_json::from_value::<Variable>(json!({"name": "a", "type": "date"})).unwrap_err();
    assert!(e.to_string().contains("unknown variant `date`"), "{e}");
}

#[test]
fn a_default_of_the_wrong_type_names_the_variable() {
    let c = content(json!({
        "template": "{{ a }}{{ b }}{{ c }}",
        "variables": [
            {"name": "a", "type": "number", "default": "x"},
            {"name": "b", "type": "integer", "default": 2.5},
            {"name": "c", "type": "number", "default": 7}
        ]
    }));
    let p = problems(&c);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        p[0].to_string(),
        "variables[0].default: is not of type number"
    );
    assert_eq!(p[1].location, "variables[1].default");
    assert_eq!(p[1].message, "is not of type integer");
    for &t in VariableType::ALL {
        let sample = match t {
            VariableType::String => json!("s"),
            VariableType::Number => json!(1.5),
            VariableType::Integer => json!(-3),
            VariableType::Boolean => json!(false),
            VariableType::Array => json!([1]),
            VariableType::Object => json!({}),
        };
        assert!(t.matches(&sample), "{t}");
        assert!(!t.matches(&Value::Null), "{t}");
    }
    assert!(VariableType::Number.matches(&json!(3)));
    assert!(!VariableType::Integer.matches(&json!(3.0)));
}

#[test]
fn a_duplicate_or_malformed_variable_names_its_place() {
    let c = content(json!({
        "template": "{{ a }}",
        "variables": [{"name": "a"}, {"name": "1st"}, {"name": "a"}]
    }));
    let p = problems(&c);
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "variables[1].name: \"1st\" is not an identifier (letters, digits, '_', at most 64)",
            "variables[2].name: a is declared twice",
        ]
    );
}

#[test]
fn parse_errors_carry_line_and_column() {
    let c = content(json!({"template": "Hello\n{{ name "}));
    let p = problems(&c);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].location, "template");
    assert_eq!(p[0].line, Some(2));
    assert!(p[0].column.is_some_and(|c| c >= 1), "{p:?}");
    assert!(p[0].message.contains("line 2"), "{p:?}");

    let c = content(json!({
        "messages": [
            {"role": "system", "template": "fine"},
            {"role": "user", "template": "one\ntwo {% if %}"}
        ]
    }));
    let p = problems(&c);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].location, "messages[1].template");
    assert_eq!((p[0].line, p[0].column), (Some(2), Some(11)), "{p:?}");
}

#[test]
fn undeclared_variables_are_named_per_template() {
    let c = content(json!({
        "messages": [
            {"role": "system", "template": "{{ who }} and {{ what }}"},
            {"role": "user", "template": "{{ who }}{{ zeta }}{{ alpha }}"}
        ],
        "variables": [{"name": "who"}]
    }));
    let p = problems(&c);
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "messages[0].template: uses undeclared variables: what",
            "messages[1].template: uses undeclared variables: alpha, zeta",
        ]
    );
}

#[test]
fn declared_variables_no_template_uses_are_named_in_declaration_order() {
    let c = content(json!({
        "messages": [
            {"role": "system", "template": "{{ who }}{% for x in items %}{{ x.name }}{% endfor %}"},
            {"role": "user", "template": "{{ user.name }}"}
        ],
        "variables": [{"name": "zeta"}, {"name": "who"}, {"name": "items"}, {"name": "user"}, {"name": "alpha"}]
    }));
    assert_eq!(c.unused_variables(), ["zeta", "alpha"]);
    assert!(greeting().unused_variables() == ["limit", "extra"]);
    // What a template that does not parse uses is unknown: nothing is called unused.
    let broken = content(json!({"template": "{{ who", "variables": [{"name": "other"}]}));
    assert!(broken.unused_variables().is_empty());
}

#[test]
fn every_problem_is_returned_in_field_order() {
    let c = content(json!({
        "description": "bell \u{7}",
        "template": "x",
        "messages": [{"role": "user", "template": "y"}],
        "variables": [{"name": "a", "type": "boolean", "default": "yes", "description": "d".repeat(2001)}],
        "model_defaults": "not an object"
    }));
    assert_eq!(
        locations(&c),
        [
            "description",
            "model_defaults",
            "",
            "variables[0].description",
            "variables[0].default"
        ]
    );
    let p = problems(&c);
    assert_eq!(
        p[2].to_string(),
        "give exactly one of template, messages (a non-empty list)"
    );
    assert_eq!(p[3].message, "at most 2000 characters");

    assert_eq!(locations(&content(json!({}))), [""]);
    assert_eq!(locations(&content(json!({"messages": []}))), [""]);
    let many: Vec<_> = (0..65)
        .map(|_| json!({"role": "user", "template": "x"}))
        .collect();
    let p = problems(&content(json!({"messages": many})));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].to_string(), "messages: at most 64");
    let vars: Vec<_> = (0..129).map(|i| json!({"name": format!("v{i}")})).collect();
    let p = problems(&content(json!({"template": "x", "variables": vars})));
    assert_eq!(p[0].to_string(), "variables: at most 128");
}

#[test]
fn json_that_storage_cannot_hold_is_refused() {
    let c = content(json!({
        "template": "{{ a }}",
        "variables": [{"name": "a", "default": "d".repeat(70_000)}],
        "model_defaults": {"k": 1.7976931348623157e308, "s": "a\u{0}b"}
    }));
    let p = problems(&c);
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "model_defaults: strings must not contain NUL and numbers must be within ±1e300",
            "variables[0].default: at most 65536 bytes of JSON",
        ]
    );
}

#[test]
fn hostile_templates_are_refused_before_they_are_parsed() {
    // Parsing this would overflow the stack of the thread below.
    let deep = format!("ok\n{{{{ who{} }}}}", "|e".repeat(20_000));
    let run = move || {
        let c = content(json!({"template": deep, "variables": [{"name": "who"}]}));
        problems(&c)
    };
    let p = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].location, "template");
    assert_eq!((p[0].line, p[0].column), (Some(2), Some(1)));
    assert!(p[0].message.contains("more than 128"), "{p:?}");

    let c = content(json!({"template": "x".repeat(MAX_TEMPLATE_CHARS + 1)}));
    assert_eq!(
        problems(&c)[0].to_string(),
        "template: at most 262144 characters"
    );
}

#[test]
fn a_further_source_check_runs_between_the_structure_check_and_the_parse() {
    let c = content(json!({
        "messages": [
            {"role": "system", "template": "{{ x"},
            {"role": "user", "template": format!("{{{{ x{} }}}}", "|e".repeat(200))},
            {"role": "user", "template": "big"}
        ],
        "variables": [{"name": "x"}]
    }));
    let mut seen = Vec::new();
    let p = c
        .validate_with(|location, src| {
            seen.push(location.to_string());
            if src == "big" {
                Err("too much".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    // The second source fails the structure check and is not handed on.
    assert_eq!(seen, ["messages[0].template", "messages[2].template"]);
    let shown: Vec<_> = p.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(
        shown,
        [
            "messages[0].template",
            "messages[1].template",
            "messages[2].template"
        ]
    );
    assert_eq!(p[2].to_string(), "messages[2].template: too much");
}
