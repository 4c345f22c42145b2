//! Models in the local Hugging Face hub cache: `vram seal hf://ORG/NAME[@REV]`
//! and `vram verify-cache hf://ORG/NAME[@REV]`. Offline, always.

use crate::cli::VerifyCacheArgs;
use crate::exit::{shown_path, CliError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vram_hub::{CachedFile, Expected, FileCheck, HubCache, HubError, HubRef, Snapshot};
use vram_validation::{OutputLine, Sha256Hex};

/// A cached model, checked as far as it can be before a device is touched,
/// with the digests left to check in the reads that seal and bind it.
pub(crate) struct HubModel {
    /// The snapshot it resolved to.
    pub(crate) snapshot: Snapshot,
    /// The SHA-256 each weights file's blob name promises, by name: checked
    /// in the sealing pass.
    pub(crate) expected_sha256: BTreeMap<String, Sha256Hex>,
    /// The digest each bound small file's blob name promises, by name:
    /// checked in the one read that hashes it for the binding.
    pub(crate) expected_files: BTreeMap<String, Expected>,
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
        | HubError::NotABlob { .. }
        | HubError::NotRegularFile { .. } => CliError::integrity(text),
        HubError::PlainFile { .. } => CliError::integrity(format!(
            "{text}. A cache written without links (copies instead of links into blobs/) \
             is read with --cache-without-links, its files then unchecked"
        )),
        _ => CliError::env(text),
    }
}

/// One GGUF file of a cached repository, `hf://ORG/NAME[@REV]/FILE.gguf`:
/// the cached file, the exact reference (`hf://ORG/NAME@COMMIT/FILE.gguf`)
/// and the SHA-256 its blob's name promises (checked in the sealing pass).
/// `None` for a reference that names no file.
pub(crate) fn gguf_file(
    text: &str,
    without_links: bool,
) -> Result<Option<(CachedFile, String, Option<Sha256Hex>)>, CliError> {
    let reference = HubRef::parse(text).map_err(hub_error)?;
    let Some(name) = reference.file() else {
        return Ok(None);
    };
    if vram_format::split_part(name).is_some_and(|(_, _, count)| count > 1) {
        return Err(CliError::usage(format!(
            "{}: a part of a split GGUF model; its parts are sealed together: seal the repository              (hf://{}) or its snapshot directory",
            vram_validation::escape_for_log(text, 200),
            reference.repo_id()
        )));
    }
    let snapshot = resolve(text, without_links)?;
    let cached = snapshot
        .files
        .iter()
        .find(|f| f.name == name)
        .cloned()
        .ok_or_else(|| {
            CliError::usage(format!(
                "hub cache: {} has no file {}",
                snapshot.reference(),
                vram_validation::escape_for_log(name, 200)
            ))
        })?;
    let expected = match cached.expected {
        Some(Expected::Sha256(sha)) => Some(Sha256Hex::from_bytes(&sha)),
        _ => None,
    };
    Ok(Some((
        cached,
        format!("{}/{name}", snapshot.reference()),
        expected,
    )))
}

/// Resolves `text` (`hf://...`) in the cache the environment names.
pub(crate) fn resolve(text: &str, without_links: bool) -> Result<Snapshot, CliError> {
    let reference = HubRef::parse(text).map_err(hub_error)?;
    let cache = HubCache::from_env().map_err(hub_error)?;
    cache
        .without_links(without_links)
        .resolve(&reference)
        .map_err(hub_error)
}

/// Where a hub snapshot directory (`CACHE/models--ORG--NAME/snapshots/COMMIT`)
/// sits: its cache and `ORG/NAME`, `COMMIT`. `None` for a directory laid out
/// otherwise.
fn hub_dir_parts(dir: &Path) -> Option<(PathBuf, String, String)> {
    let dir = dir.canonicalize().ok()?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let snapshots = dir.parent()?;
    let repo_dir = snapshots.parent()?;
    if name(snapshots)? != "snapshots" {
        return None;
    }
    let repo = name(repo_dir)?.strip_prefix("models--")?.replace("--", "/");
    Some((repo_dir.parent()?.to_path_buf(), repo, name(dir.as_path())?))
}

/// The hub model whose snapshot directory `dir` is
/// (`CACHE/models--ORG--NAME/snapshots/COMMIT`), resolved in that cache:
/// `None` for a directory laid out otherwise.
pub(crate) fn snapshot_of_dir(
    dir: &Path,
    without_links: bool,
) -> Result<Option<Snapshot>, CliError> {
    let Some((cache, repo, commit)) = hub_dir_parts(dir) else {
        return Ok(None);
    };
    let reference = HubRef::parse(&format!("hf://{repo}@{commit}")).map_err(hub_error)?;
    HubCache::at(cache)
        .without_links(without_links)
        .resolve(&reference)
        .map(Some)
        .map_err(hub_error)
}

/// What to run so that a downloader fetches `name` of the hub snapshot at
/// `dir` again; `None` when `dir` is not a hub snapshot.
pub(crate) fn repair_of(dir: &Path, name: &str) -> Option<String> {
    let (_, repo, commit) = hub_dir_parts(dir)?;
    let blob = dir.join(name).canonicalize().ok()?;
    Some(format!(
        "rm {} && huggingface-cli download {repo} {} --revision {commit}",
        shown_path(&blob),
        vram_validation::escape_for_log(name, 200),
    ))
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

/// Checks a resolved snapshot as far as it can be before sealing. Which
/// files are the model is the layout's call (`vram_hub::ModelLayout`: a
/// single `model.safetensors`, or the files its index names, whatever their
/// suffix). A weights file stored in LFS keeps its SHA-256 for the sealing
/// pass; a bound small file keeps its digest for the read that binds it;
/// every other file that has an expected digest (a weights file stored as a
/// git blob, files that are not part of the model) is checked here, and one
/// that does not match stops everything before a byte is sealed.
pub(crate) fn check_snapshot(snapshot: Snapshot, quiet: bool) -> Result<HubModel, CliError> {
    let layout = vram_hub::ModelLayout::of_dir(&snapshot.dir).map_err(|e| match e {
        HubError::Io { .. } => CliError::env(format!("{}: {e}", snapshot.reference())),
        _ => CliError::usage(format!("{}: {e}", snapshot.reference())),
    })?;
    let mut expected_sha256 = BTreeMap::new();
    let mut expected_files = BTreeMap::new();
    for f in &snapshot.files {
        let weights = layout.weights.contains(&f.name);
        let bound = layout.inference_files.contains(&f.name);
        match f.expected {
            Some(expected @ Expected::Sha256(_)) if weights => {
                // Never sealed without the check its blob name promises.
                let sha = Sha256Hex::new(&expected.to_hex()).map_err(|e| {
                    CliError::env(format!(
                        "{}: blob name is not a SHA-256 ({e})",
                        shown_path(&shown_name(&snapshot, f))
                    ))
                })?;
                expected_sha256.insert(f.name.clone(), sha);
            }
            Some(expected) if bound => {
                expected_files.insert(f.name.clone(), expected);
            }
            Some(expected) => {
                if let Some(FileCheck::Corrupt { actual }) = f.check().map_err(hub_error)? {
                    return Err(CliError::integrity(format!(
                        "{}; nothing was sealed. To fetch it again: {}",
                        corrupt(&snapshot, f, expected, &actual),
                        repair(&snapshot, f)
                    )));
                }
            }
            None if (weights || bound) && !quiet => {
                eprintln!(
                    "vram: note: {} is stored without a blob link (--cache-without-links): \
                     taken with no expected digest",
                    shown_path(&shown_name(&snapshot, f))
                );
            }
            None => {}
        }
    }
    Ok(HubModel {
        snapshot,
        expected_sha256,
        expected_files,
    })
}

/// `vram verify-cache hf://ORG/NAME[@REV]`: checks every file of a cached
/// model against its blob name, seals nothing. Exit 1 when one is corrupt.
pub(crate) fn verify_cache(args: &VerifyCacheArgs, quiet: bool) -> Result<(), CliError> {
    let snapshot = resolve(&args.model, args.cache_without_links)?;
    let mut rows = Vec::new();
    let mut bad = 0usize;
    let mut unchecked = 0usize;
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
        if status == "unchecked" {
            unchecked = unchecked.saturating_add(1);
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
            "unchecked": unchecked,
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
            if bad == 0 && unchecked == 0 {
                "all intact".to_owned()
            } else if bad == 0 {
                format!("{unchecked} unchecked (stored without blob links), the rest intact")
            } else {
                format!("{bad} CORRUPT")
            }
        );
    }
    verdict
}
