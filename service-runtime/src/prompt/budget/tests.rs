use serde_json::json;

use super::*;

fn inputs(pairs: &[(&str, serde_json::Value)]) -> Inputs {
    let mut i = Inputs::default();
    for (k, v) in pairs {
        i.insert_value(k, v);
    }
    i
}

fn check(src: &str) -> Result<Report, String> {
    let vars = inputs(&[
        ("name", json!("Ada")),
        ("x", json!("x".repeat(1000))),
        ("n", json!(3)),
        (
            "messages",
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]),
        ),
        ("items", json!(["a", "b", "c"])),
    ]);
    analyse(src, &vars)
}

#[test]
fn ordinary_templates_are_within_bounds() {
    for t in [
        "Hello {{ name }}!",
        "{% for m in messages %}{{ loop.index }}. {{ m.role|upper }}: {{ m.content|trim }}\n{% endfor %}",
        "{% set ns = namespace(sys='') %}{% for m in messages %}{% if m.role == 'system' %}\
         {% set ns.sys = m.content %}{% endif %}{% endfor %}{{ ns.sys }}",
        "{{ items|join(', ') }} {{ items|length }} {{ items|first }} {{ items|map('upper')|join }}",
        "{{ '%s has %d items'|format(name, n) }} {{ '-' * 80 }} {{ '  ' * n }}{{ x|indent(2) }}",
        "{% for i in range(10) %}{{ i * 2 }}{{ '=' * i }}{% endfor %}",
        "{% set full = name ~ ' ' ~ name %}{% set greeting = 'Hi ' ~ full %}{{ greeting }}",
        "{% with a = name|title %}{{ a }}{% endwith %}{{ name if n > 1 else 'none' }}",
        "{% for k, v in {'a': 1}|items %}{{ k }}={{ v }}{% endfor %}{{ messages|selectattr('role', 'eq', 'user')|list|length }}",
        "{% for row in items|batch(2, '') %}{{ row|join('|') }}{% endfor %}{{ x[:10] }}{{ x|replace('x', 'yy') }}",
        "{{ x[::-1] }}{{ x[3::-2] }}{{ x[1:9:2] }}{{ items[-2:] }}",
    ] {
        check(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn amplification_is_refused() {
    for (t, why) in [
        ("{{ x * 100000 }}", "build a value"),
        ("{{ x * n * 100000 }}", "build a value"),
        ("{{ x * name }}", "does not bound"),
        (
            "{% set a = x ~ x %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}\
          {% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}\
          {% set a = a ~ a %}{% set a = a ~ a %}",
            "build a value",
        ),
        (
            "{% for i in range(30) %}{% set x = x ~ x %}{% endfor %}",
            "grow on every pass",
        ),
        (
            "{% set ns = namespace(a=x) %}{% for i in range(30) %}{% set ns.a = ns.a ~ ns.a %}{% endfor %}",
            "grow",
        ),
        (
            "{% for i in range(30) %}{% set x = [x, x] %}{% endfor %}",
            "grow",
        ),
        ("{{ x|replace('', x)|replace('', x) }}", "build a value"),
        ("{{ range(100000)|join(x) }}", "build a value"),
        ("{{ x|indent(1000000) }}", "at most"),
        ("{{ x|indent(50000) }}", "build a value"),
        ("{{ '%99999999s'|format(x) }}", "build a value"),
        ("{{ x|format(1) }}", "string literal"),
        ("{{ items|batch(n * 1000000) }}", "at most"),
        ("{{ x|list|list|list }}", "build a value"),
        (
            "{% for i in range(100000) %}{% set y = x * 1000 %}{% endfor %}",
            "process up to",
        ),
        ("{% macro m() %}{% endmacro %}", "macro"),
        ("{% set a %}{{ x }}{% endset %}", "set block"),
        ("{% filter upper %}{{ x }}{% endfilter %}", "filter block"),
        (
            "{% for a in items recursive %}{{ loop(a) }}{% endfor %}",
            "recursive",
        ),
        ("{% include 'other' %}", "include"),
        (
            "{% autoescape true %}{{ x|replace('x', x) }}{% endautoescape %}",
            "autoescape",
        ),
        ("{{ debug() }}", "calls to `debug`"),
        (
            "{% for i in x %}{{ loop.cycle() }}{% endfor %}",
            "at least one value",
        ),
        ("{{ x[2:5:-1] }}", "takes no stop"),
        ("{{ x[::-9223372036854775807 - 1] }}", "slice step"),
        ("{{ x[::n] }}", "integer literal"),
        ("{{ x|tojson }}", "unknown filter"),
        (
            "{% set ns = namespace() %}{% set ns.me = ns %}",
            "cannot hold a namespace",
        ),
        (
            "{% set ns = namespace() %}{% set ns.me = [ns] %}",
            "cannot hold a namespace",
        ),
    ] {
        let e = check(t).err().unwrap_or_else(|| panic!("accepted: {t}"));
        assert!(e.contains(why), "{t}: {e}");
    }
}

#[test]
fn a_name_set_again_holds_one_value() {
    let again = "{% set a = x ~ 'y' %}".repeat(2000);
    assert!(check(&again).is_ok());
    let distinct: String = (0..9000)
        .map(|i| format!("{{% set a{i} = x ~ x %}}"))
        .collect();
    assert!(check(&distinct).unwrap_err().contains("hold up to"));
    // A loop's scope holds its own copy beside the outer one.
    let t = "{% set a = x ~ x %}{% for i in range(3) %}{% set a = x ~ x %}{% endfor %}";
    assert!(check(t).unwrap().memory >= 4 * 1000);
}

#[test]
fn nesting_that_could_overflow_is_refused() {
    let t = "{% set a = [] %}".to_string() + &"{% set a = [a] %}".repeat(70);
    assert!(check(&t).unwrap_err().contains("deeper than"));
}

#[test]
fn real_sizes_decide_at_render() {
    let small = inputs(&[("x", json!("x"))]);
    let big = inputs(&[("x", json!("x".repeat(2_000_000)))]);
    let t = "{{ x ~ x ~ x }}";
    assert!(analyse(t, &small).is_ok());
    assert!(analyse(t, &big).unwrap_err().contains("build a value"));
}

#[test]
fn items_of_given_lists_are_bounded_one_by_one() {
    // A megabyte of messages: each content is small, so trimming or joining
    // one is small too, whatever the whole.
    let messages: Vec<_> = (0..1000)
        .map(|i| json!({"role": "user", "content": format!("{i}").repeat(200)}))
        .collect();
    let vars = inputs(&[("messages", json!(messages))]);
    let t = "{% for m in messages|selectattr('role', 'eq', 'user') %}{% set line = m.role ~ ': ' ~ m.content|trim %}\
             {{ line|upper }}{{ m['content']|replace('1', 'one') }}{% endfor %}{{ messages|map(attribute='content')|join('\n') }}";
    let r = analyse(t, &vars).unwrap();
    assert!(r.work < MAX_WORK_BYTES, "{r:?}");
    // The same text in one variable is bounded as a whole.
    let one = inputs(&[(
        "messages",
        json!([{"role": "user", "content": "c".repeat(1_000_000)}]),
    )]);
    assert!(analyse("{{ messages[0].content|escape|escape }}", &one).is_err());
}
