//! Models in the local Hugging Face hub cache: `vram seal hf://ORG/NAME[@REV]`
//! and `vram verify-cache hf://ORG/NAME[@REV]`. Offline, always.

use crate::cli::VerifyCacheArgs;
use crate::exit::{shown_path, CliError};
use std::path::PathBuf;
use vram_hub::{CachedFile, Expected, FileCheck, HubCache, HubError, HubRef, Snapshot};
use vram_validation::{OutputLine, Sha256Hex};

/// One weights file of a cached model.
pub(crate) struct HubInput {
    /// How messages and output name it: `hf://ORG/NAME@COMMIT/FILE`.
    pub(crate) shown: PathBuf,
    /// The SHA-256 its blob name promises, checked in the sealing pass.
    pub(crate) expected: Option<Sha256Hex>,
}

fn hub_error(e: HubError) -> CliError {
    let text = format!("hub cache: {e}");
    match e {
        HubError::InvalidReference { .. } | HubError::UnknownRevision { .. } => {
            CliError::usage(text)
        }
        // The cache is damaged: what the user would load is not what the hub
        // published.
        HubError::DanglingLink { .. }
        | HubError::EscapingLink { .. }
        | HubError::NotABlob { .. } => CliError::integrity(text),
        _ => CliError::env(text),
    }
}

/// Resolves `text` (`hf://...`) in the cache the environment names.
pub(crate) fn resolve(text: &str) -> Result<Snapshot, CliError> {
    let reference = HubRef::parse(text).map_err(hub_error)?;
    let cache = HubCache::from_env().map_err(hub_error)?;
    cache.resolve(&reference).map_err(hub_error)
}

fn shown_name(snapshot: &Snapshot, f: &CachedFile) -> PathBuf {
    PathBuf::from(format!("{}/{}", snapshot.reference(), f.name))
}

/// What to run so that a downloader fetches a corrupt file again.
fn repair(snapshot: &Snapshot, f: &CachedFile) -> String {
    format!(
        "rm {} && huggingface-cli download {} {} --revision {}",
        shown_path(&f.path),
        snapshot.repo_id,
        vram_validation::escape_for_log(&f.name, 200),
        snapshot.commit
    )
}

fn corrupt(snapshot: &Snapshot, f: &CachedFile, expected: Expected, actual: &str) -> String {
    format!(
        "{}: corrupt in the cache: its {} is {actual}, its blob is named {}",
        shown_path(&shown_name(snapshot, f)),
        expected.algorithm(),
        expected.to_hex()
    )
}

/// The weights files of a cached model, each with the SHA-256 its blob name
/// promises (checked in the sealing pass, no extra read), and the snapshot
/// they come from. The small files (config, tokenizer: git blob ids) are
/// checked on the host first; one that does not match stops everything
/// before a byte is sealed. Which of the weights files are the model (a
/// single `model.safetensors`, or the shards of its index) is the layout's
/// call (`vram_hub::ModelLayout`), made by the caller.
pub(crate) fn snapshot_inputs(
    text: &str,
    quiet: bool,
) -> Result<(Snapshot, Vec<HubInput>), CliError> {
    let snapshot = resolve(text)?;
    let mut inputs = Vec::new();
    let mut skipped = Vec::new();
    for f in &snapshot.files {
        let weights = f.name.ends_with(".safetensors");
        match f.expected {
            Some(expected @ Expected::GitBlobSha1(_)) => {
                if let Some(FileCheck::Corrupt { actual }) = f.check().map_err(hub_error)? {
                    return Err(CliError::integrity(format!(
                        "{}; nothing was sealed. To fetch it again: {}",
                        corrupt(&snapshot, f, expected, &actual),
                        repair(&snapshot, f)
                    )));
                }
            }
            Some(expected @ Expected::Sha256(_)) if weights => {
                // Never sealed without the check its blob name promises.
                let sha = Sha256Hex::new(&expected.to_hex()).map_err(|e| {
                    CliError::env(format!(
                        "{}: blob name is not a SHA-256 ({e})",
                        shown_path(&shown_name(&snapshot, f))
                    ))
                })?;
                inputs.push(weights_input(&snapshot, f, Some(sha))?);
            }
            None if weights => {
                if !quiet {
                    eprintln!(
                        "vram: note: {} is stored without a blob link: sealed with no expected digest",
                        shown_path(&shown_name(&snapshot, f))
                    );
                }
                inputs.push(weights_input(&snapshot, f, None)?);
            }
            _ => skipped.push(f.name.as_str()),
        }
    }
    if inputs.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no *.safetensors weights in this snapshot",
            snapshot.reference()
        )));
    }
    tracing::debug!(files = ?skipped, "not weights: checked on the host, not sealed in device memory");
    Ok((snapshot, inputs))
}

fn weights_input(
    snapshot: &Snapshot,
    f: &CachedFile,
    expected: Option<Sha256Hex>,
) -> Result<HubInput, CliError> {
    Ok(HubInput {
        shown: shown_name(snapshot, f),
        expected,
    })
}

/// `vram verify-cache hf://ORG/NAME[@REV]`: checks every file of a cached
/// model against its blob name, seals nothing. Exit 1 when one is corrupt.
pub(crate) fn verify_cache(args: &VerifyCacheArgs, quiet: bool) -> Result<(), CliError> {
    let snapshot = resolve(&args.model)?;
    let mut rows = Vec::new();
    let mut bad = 0usize;
    for f in &snapshot.files {
        let bar = crate::progress::bar(f.len, "check", quiet || args.json);
        let outcome = f.check().map_err(hub_error)?;
        bar.finish_and_clear();
        let (status, actual) = match &outcome {
            Some(FileCheck::Intact) => ("ok", None),
            Some(FileCheck::Corrupt { actual }) => ("corrupt", Some(actual.clone())),
            None => ("unchecked", None),
        };
        if status == "corrupt" {
            bad = bad.saturating_add(1);
        }
        if args.json {
            rows.push(serde_json::json!({
                "file": f.name,
                "status": status,
                "bytes": f.len,
                "algorithm": f.expected.map(|e| e.algorithm()),
                "expected": f.expected.map(|e| e.to_hex()),
                "actual": actual,
                "blob": f.path.to_string_lossy(),
            }));
            continue;
        }
        let mut line = OutputLine::new();
        match (&outcome, f.expected) {
            (Some(FileCheck::Corrupt { actual }), Some(expected)) => {
                line.push("CORRUPT  ")
                    .field(&corrupt(&snapshot, f, expected, actual));
                println!("{line}");
                let mut fix = OutputLine::new();
                fix.push("         to fetch it again: ")
                    .field(&repair(&snapshot, f));
                println!("{fix}");
            }
            (None, _) => {
                line.push("unchecked ")
                    .field(&f.name)
                    .push(" (stored without a blob link: no expected digest)");
                println!("{line}");
            }
            _ => {
                line.push("ok       ").field(&f.name);
                println!("{line}");
            }
        }
    }
    let verdict = if bad > 0 {
        Err(CliError::integrity(format!(
            "{}: {bad} corrupt file(s) in the cache",
            snapshot.reference()
        )))
    } else {
        Ok(())
    };
    if args.json {
        let mut v = serde_json::json!({
            "model": snapshot.reference(),
            "intact": bad == 0,
            "files": rows,
        });
        if let (Err(e), Some(obj)) = (&verdict, v.as_object_mut()) {
            obj.insert("error".into(), e.to_json());
        }
        println!("{v:#}");
        return verdict.map_err(CliError::reported_in_json);
    } else {
        println!(
            "{}: {} file(s), {}",
            snapshot.reference(),
            snapshot.files.len(),
            if bad == 0 {
                "all intact".to_owned()
            } else {
                format!("{bad} CORRUPT")
            }
        );
    }
    verdict
}
