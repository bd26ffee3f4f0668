//! Writes the CRD YAML generated from the Rust types into `manifests/crds/` and the Helm chart.
//!
//! `crdgen` writes the files; `crdgen --check` only compares and exits 1 when they differ.

use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let root = faas_crds::generate::repo_root();
    let mut stale = Vec::new();
    for (relative, content) in faas_crds::generate::files() {
        let path = root.join(&relative);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == content {
            continue;
        }
        if check {
            stale.push(relative.display().to_string());
            continue;
        }
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            eprintln!("crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        if let Err(e) = std::fs::write(&path, content) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", relative.display());
    }
    if !stale.is_empty() {
        eprintln!(
            "crdgen: these files differ from the Rust types; run `cargo run -p faas-crds --bin crdgen`:\n  {}",
            stale.join("\n  ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
