//! The runtime's layers depend one way: platform ← shared ← each component ← app. A
//! component never imports another; they talk over HTTP or NATS with payloads from
//! faas-model. This reads the sources and fails on an import that breaks the rule.

use std::path::{Path, PathBuf};

use faas_runtime::app::COMPONENTS;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The top-level modules a file names through `crate::`, including `crate::{a, b::c}`.
fn crate_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                out.push(module_name(part.trim()));
            }
        } else {
            out.push(module_name(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn module_name(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The module directory of each served component.
fn component_modules() -> Vec<String> {
    COMPONENTS
        .iter()
        .map(|c| c.name().replace('-', "_"))
        .collect()
}

/// Every file under `dir` and the modules it may not import, as `file: crate::x` lines.
fn violations(dir: &str, forbidden: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&src().join(dir)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for m in crate_modules(&text) {
            if forbidden.contains(&m) {
                let shown = file.strip_prefix(src()).unwrap().display().to_string();
                found.push(format!("{shown}: crate::{m}"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_platform_knows_no_component() {
    let mut forbidden = component_modules();
    forbidden.extend(["shared".to_string(), "app".to_string()]);
    let found = violations("platform", &forbidden);
    assert!(found.is_empty(), "the platform imports: {found:#?}");
}

#[test]
fn the_shared_layer_knows_no_component() {
    let mut forbidden = component_modules();
    forbidden.push("app".to_string());
    let found = violations("shared", &forbidden);
    assert!(found.is_empty(), "the shared layer imports: {found:#?}");
}

#[test]
fn components_never_import_one_another() {
    let all = component_modules();
    for own in &all {
        assert!(
            src().join(own).is_dir(),
            "the component {own} has a directory of its own"
        );
        let mut forbidden: Vec<String> = all.iter().filter(|m| *m != own).cloned().collect();
        forbidden.push("app".to_string());
        let found = violations(own, &forbidden);
        assert!(found.is_empty(), "{own} imports: {found:#?}");
    }
}

#[test]
fn the_check_sees_imports_in_every_form() {
    let text =
        "use crate::gateway::x;\nuse crate::{platform::Y, llmops};\nlet a = crate::cache::f();";
    assert_eq!(
        crate_modules(text),
        vec!["gateway", "platform", "llmops", "cache"]
    );
}
