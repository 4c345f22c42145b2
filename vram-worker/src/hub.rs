//! Models in the local Hugging Face hub cache (`hf://ORG/NAME[@REV]`, or a
//! cache's `snapshots/COMMIT` directory), offline: resolved, and checked as
//! far as they can be before a device is touched.

use crate::error::{hub_path, shown_path, WorkerError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vram_hub::{CachedFile, Expected, FileCheck, HubCache, HubRef, Snapshot};
use vram_validation::Sha256Hex;

/// A cached model, checked as far as it can be before a device is touched,
/// with the digests left to check in the reads that seal and bind it.
#[derive(Debug)]
pub struct HubModel {
    /// The snapshot it resolved to.
    pub snapshot: Snapshot,
    /// The SHA-256 each weights file's blob name promises, by name: checked
    /// in the sealing pass.
    pub expected_sha256: BTreeMap<String, Sha256Hex>,
    /// The digest each bound small file's blob name promises, by name:
    /// checked in the one read that hashes it for the binding.
    pub expected_files: BTreeMap<String, Expected>,
}

/// Resolves `text` (`hf://...`) in the cache the environment names
/// (`$HF_HUB_CACHE`, `$HF_HOME`, as `huggingface_hub` finds it).
///
/// # Errors
/// [`WorkerError::Hub`]: a bad reference or revision (usage), a damaged
/// cache (integrity), no cache (environment).
pub fn resolve(text: &str, without_links: bool) -> Result<Snapshot, WorkerError> {
    let reference = HubRef::parse(text)?;
    let cache = HubCache::from_env()?;
    Ok(cache.without_links(without_links).resolve(&reference)?)
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
///
/// # Errors
/// As [`resolve`].
pub fn snapshot_of_dir(dir: &Path, without_links: bool) -> Result<Option<Snapshot>, WorkerError> {
    let Some((cache, repo, commit)) = hub_dir_parts(dir) else {
        return Ok(None);
    };
    let reference = HubRef::parse(&format!("hf://{repo}@{commit}"))?;
    Ok(Some(
        HubCache::at(cache)
            .without_links(without_links)
            .resolve(&reference)?,
    ))
}

/// What to run so that a downloader fetches `name` of the hub snapshot at
/// `dir` again; `None` when `dir` is not a hub snapshot.
#[must_use]
pub fn repair_of(dir: &Path, name: &str) -> Option<String> {
    let (_, repo, commit) = hub_dir_parts(dir)?;
    let blob = dir.join(name).canonicalize().ok()?;
    Some(format!(
        "rm {} && huggingface-cli download {repo} {} --revision {commit}",
        shown_path(&blob),
        vram_validation::escape_for_log(name, 200),
    ))
}

/// What to run so that a downloader fetches a corrupt cached file again.
#[must_use]
pub fn repair_command(snapshot: &Snapshot, f: &CachedFile) -> String {
    format!(
        "rm {} && huggingface-cli download {} {} --revision {}",
        shown_path(&f.path),
        snapshot.repo_id,
        vram_validation::escape_for_log(&f.name, 200),
        snapshot.commit
    )
}

/// `hf://ORG/NAME@COMMIT/FILE: corrupt in the cache: its ALG is ACTUAL, its
/// blob is named EXPECTED`.
#[must_use]
pub fn corrupt_message(
    snapshot: &Snapshot,
    f: &CachedFile,
    expected: Expected,
    actual: &str,
) -> String {
    format!(
        "{}: corrupt in the cache: its {} is {actual}, its blob is named {}",
        shown_path(&hub_path(&snapshot.reference(), &f.name)),
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
/// that does not match stops everything before a byte is sealed. A model
/// file without a blob link is noted on stderr unless `quiet`.
///
/// # Errors
/// [`WorkerError::Layout`] for a directory that is not one model,
/// [`WorkerError::CorruptCache`] (integrity) for a corrupt file, with the
/// command that fetches it again.
pub fn check_snapshot(snapshot: Snapshot, quiet: bool) -> Result<HubModel, WorkerError> {
    let layout =
        vram_hub::ModelLayout::of_dir(&snapshot.dir).map_err(|source| WorkerError::Layout {
            model: snapshot.reference(),
            source,
        })?;
    let mut expected_sha256 = BTreeMap::new();
    let mut expected_files = BTreeMap::new();
    for f in &snapshot.files {
        let weights = layout.weights.contains(&f.name);
        let bound = layout.inference_files.contains(&f.name);
        match f.expected {
            Some(expected @ Expected::Sha256(_)) if weights => {
                // Never sealed without the check its blob name promises.
                let sha = Sha256Hex::new(&expected.to_hex()).map_err(|source| {
                    WorkerError::BadBlobName {
                        shown: shown_path(&hub_path(&snapshot.reference(), &f.name)),
                        source,
                    }
                })?;
                expected_sha256.insert(f.name.clone(), sha);
            }
            Some(expected) if bound => {
                expected_files.insert(f.name.clone(), expected);
            }
            Some(expected) => {
                if let Some(FileCheck::Corrupt { actual }) = f.check()? {
                    return Err(WorkerError::CorruptCache {
                        message: format!(
                            "{}; nothing was sealed. To fetch it again: {}",
                            corrupt_message(&snapshot, f, expected, &actual),
                            repair_command(&snapshot, f)
                        ),
                    });
                }
            }
            None if (weights || bound) && !quiet => note_unlinked(&snapshot, f),
            None => {}
        }
    }
    Ok(HubModel {
        snapshot,
        expected_sha256,
        expected_files,
    })
}

// The operator's terminal: a file taken without its digest is said where the
// command's other notes are.
#[allow(clippy::print_stderr)]
fn note_unlinked(snapshot: &Snapshot, f: &CachedFile) {
    eprintln!(
        "vram: note: {} is stored without a blob link (--cache-without-links): \
         taken with no expected digest",
        shown_path(&hub_path(&snapshot.reference(), &f.name))
    );
}
