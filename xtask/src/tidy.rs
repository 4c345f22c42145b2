//! Repository policy, enforced by the plain test run (rust-analyzer's tidy).

use crate::run::root;
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "vram-validation",
    "vram-crypto",
    "vram-secrets",
    "vram-audit",
    "vram-core",
    "vram-mock",
    "vram-residency",
    "vram-hub",
    "vram-signing",
    "vram-cli",
    "xtask",
];

#[test]
fn the_crate_list_is_the_workspace() {
    let ws = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = ws
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    let mut listed: Vec<&str> = members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    listed.sort_unstable();
    let mut ours = CRATES.to_vec();
    ours.sort_unstable();
    assert_eq!(listed, ours, "CRATES must list every workspace member");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Splits a file at its first `#[cfg(test)]` module: what follows is test code.
fn library_part(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn every_crate_has_a_readme_and_opts_into_workspace_lints() {
    for c in CRATES {
        let dir = root().join(c);
        assert!(dir.join("README.md").is_file(), "{c} has no README.md");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if *c == "vram-core" {
            // The CUDA backend's crate keeps its own copy of the table, with
            // unsafe_code relaxed from forbid to deny; every other lint must match.
            let ws = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
            let lints = ws.split("[workspace.lints.rust]").nth(1).unwrap();
            let lints = lints.split("[profile").next().unwrap();
            for line in lints
                .lines()
                .filter(|l| l.contains(" = ") && !l.contains("unsafe_code"))
            {
                assert!(
                    manifest.contains(line),
                    "vram-core lints lack workspace line `{line}`"
                );
            }
            assert!(manifest.contains("unsafe_code = \"deny\""));
        } else {
            assert!(
                manifest.contains("[lints]\nworkspace = true"),
                "{c}/Cargo.toml must opt into [lints] workspace = true"
            );
        }
    }
}

#[test]
fn no_ignored_or_should_panic_tests_and_no_placeholders_in_libraries() {
    // Built from pieces so this file does not flag itself.
    let ignore = concat!("#[", "ignore");
    let should_panic = concat!("#[", "should_panic");
    let placeholders = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("dbg", "!("),
    ];
    let mut files = Vec::new();
    for c in CRATES {
        rust_files(&root().join(c), &mut files);
    }
    rust_files(&root().join("fuzz"), &mut files);
    assert!(files.len() > 5, "tidy found too few files: {}", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        if text.contains(ignore) {
            problems.push(format!(
                "{rel}: an ignored test (tests run everywhere or print why not)"
            ));
        }
        if text.contains(should_panic) {
            problems.push(format!(
                "{rel}: a should-panic test (assert on Err instead)"
            ));
        }
        let is_library = rel.contains("/src/") && !rel.starts_with("xtask/");
        if is_library {
            for p in placeholders {
                if library_part(&text).contains(p) {
                    problems.push(format!("{rel}: `{p}` in library code"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "repository policy violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn unsafe_code_lives_only_in_the_cuda_backend() {
    let mut files = Vec::new();
    for c in CRATES {
        rust_files(&root().join(c).join("src"), &mut files);
    }
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        if rel.starts_with("vram-core/src/cuda") || rel.starts_with("xtask/") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        if text.contains(concat!("unsafe", " {")) || text.contains(concat!("unsafe", " fn")) {
            problems.push(rel);
        }
    }
    assert!(
        problems.is_empty(),
        "unsafe outside vram-core/src/cuda: {problems:?}"
    );
}
