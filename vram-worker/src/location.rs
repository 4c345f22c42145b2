//! Where a model is: a snapshot directory, or `hf://ORG/NAME[@REV]` in the
//! local hub cache (a cache's `snapshots/COMMIT` directory is recognised as
//! such), with the digests the cache's blob names promise.

use crate::error::{shown_path, WorkerError};
use crate::hub;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vram_validation::{ModelRef, Sha256Hex};

/// A model snapshot, located.
#[derive(Debug, Clone)]
pub struct ModelLocation {
    /// The snapshot directory: the model's small files (`config.json`, the
    /// tokenizer, `modules.json`) and its weights (`model.safetensors`, or
    /// the shards `model.safetensors.index.json` names).
    pub dir: PathBuf,
    /// The single-file weights path (`DIR/model.safetensors`, which a
    /// sharded snapshot does not have, or one GGUF file).
    pub weights: PathBuf,
    /// The SHA-256 the file `weights` names must have, when the locator
    /// knows it (a hub blob stored in LFS is named by it): checked in the
    /// pass that seals it ([`crate::Worker::seal`]). `None` for a path
    /// taken as it is.
    pub weights_sha256: Option<Sha256Hex>,
    /// The reference recorded in the seals, the binding and the audit log
    /// (for the hub: `hf://ORG/NAME@COMMIT`).
    pub model_ref: ModelRef,
    /// The SHA-256 each weights file of the snapshot must have, by its
    /// name in `dir` (the hub's blob names), checked in the sealing pass of
    /// [`crate::Worker::seal_snapshot`].
    pub expected_sha256: BTreeMap<String, Sha256Hex>,
    /// The digest each bound small file must have, by name (the hub's blob
    /// names), checked in the one read that hashes it for the binding.
    pub expected_files: BTreeMap<String, vram_hub::Expected>,
    /// Which files of `dir` are the model when it holds more than one
    /// ([`ModelLocation::gguf_parts`]); `None`: the directory's layout.
    pub layout: Option<vram_hub::ModelLayout>,
}

impl ModelLocation {
    /// The split GGUF model whose part `part` names (a file of its
    /// directory, `NAME-0000i-of-0000N.gguf`), all its parts and only them,
    /// whatever else the directory holds, under `model_ref`, with no
    /// expected digests.
    ///
    /// # Errors
    /// A usage error naming a missing or extra part, or a name that is no
    /// part.
    pub fn gguf_parts(part: &Path, model_ref: ModelRef) -> Result<Self, WorkerError> {
        let mut location = Self::file(part, model_ref);
        let name = part
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let layout =
            vram_hub::ModelLayout::of_gguf_parts(&location.dir, &name).map_err(|source| {
                WorkerError::Layout {
                    model: shown_path(part),
                    source,
                }
            })?;
        location.layout = Some(layout);
        Ok(location)
    }

    /// The split GGUF model of the cached repository `snapshot` whose part
    /// `name` names (`hf://ORG/NAME[@REV]/PART.gguf`): all its parts, found
    /// beside it whatever other models the repository holds, each with the
    /// SHA-256 its blob's name promises (checked in the pass that seals
    /// it), under the reference `hf://ORG/NAME@COMMIT/PART` of the part
    /// named. A part kept as a git blob, or without a digest, is sealed
    /// unchecked, and said so (a warning).
    ///
    /// # Errors
    /// As [`ModelLocation::gguf_parts`]; [`WorkerError::ModelRef`] for a
    /// reference that is no model reference.
    pub fn gguf_parts_in_cache(
        snapshot: &vram_hub::Snapshot,
        name: &str,
    ) -> Result<Self, WorkerError> {
        let reference = format!("{}/{name}", snapshot.reference());
        let model_ref = ModelRef::new(&reference).map_err(|source| WorkerError::ModelRef {
            shown: reference.clone(),
            source,
        })?;
        let mut location = Self::gguf_parts(&snapshot.dir.join(name), model_ref)?;
        let parts = location
            .layout
            .as_ref()
            .map(|l| l.weights.clone())
            .unwrap_or_default();
        for part in parts {
            let cached = snapshot.files.iter().find(|f| f.name == part);
            match cached.and_then(|f| f.expected.as_ref()) {
                Some(vram_hub::Expected::Sha256(sha)) => {
                    location
                        .expected_sha256
                        .insert(part, Sha256Hex::from_bytes(sha));
                }
                _ => {
                    tracing::warn!(
                        part = %vram_validation::escape_for_log(&part, 200),
                        "a cached part without a SHA-256 blob name: sealed unchecked"
                    );
                }
            }
        }
        Ok(location)
    }

    /// A snapshot directory taken as it is, under `model_ref`, with no
    /// expected digests.
    #[must_use]
    pub fn directory(dir: &Path, model_ref: ModelRef) -> Self {
        Self {
            dir: dir.to_path_buf(),
            weights: dir.join(vram_hub::SINGLE_WEIGHTS_FILE),
            weights_sha256: None,
            model_ref,
            expected_sha256: BTreeMap::new(),
            expected_files: BTreeMap::new(),
            layout: None,
        }
    }

    /// One weights file (`file`, in the directory that holds it) taken as it
    /// is, under `model_ref`, with no expected digest.
    #[must_use]
    pub fn file(file: &Path, model_ref: ModelRef) -> Self {
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            dir,
            weights: file.to_path_buf(),
            weights_sha256: None,
            model_ref,
            expected_sha256: BTreeMap::new(),
            expected_files: BTreeMap::new(),
            layout: None,
        }
    }

    /// A resolved hub snapshot, checked ([`hub::check_snapshot`]), under the
    /// reference `hf://ORG/NAME@COMMIT`.
    ///
    /// # Errors
    /// As [`hub::check_snapshot`].
    pub fn of_hub_snapshot(snapshot: vram_hub::Snapshot, quiet: bool) -> Result<Self, WorkerError> {
        let hub = hub::check_snapshot(snapshot, quiet)?;
        let snapshot = hub.snapshot;
        let reference = snapshot.reference();
        let model_ref = ModelRef::new(&reference).map_err(|source| WorkerError::ModelRef {
            shown: reference.clone(),
            source,
        })?;
        // The digest of the file `weights` names, under that file's own
        // name; a sharded snapshot has none (its shards are in the map).
        let weights_sha256 = hub
            .expected_sha256
            .get(vram_hub::SINGLE_WEIGHTS_FILE)
            .cloned();
        Ok(Self {
            weights: snapshot.dir.join(vram_hub::SINGLE_WEIGHTS_FILE),
            weights_sha256,
            dir: snapshot.dir,
            model_ref,
            expected_sha256: hub.expected_sha256,
            expected_files: hub.expected_files,
            layout: None,
        })
    }
}

/// The form of a model argument: `hf://` in the hub cache, or a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelArg<'a> {
    /// `hf://ORG/NAME[@REV]`.
    Hub(&'a str),
    /// A directory (or file).
    Path(&'a Path),
}

impl<'a> ModelArg<'a> {
    /// `hf://...` is the hub; anything else a path.
    #[must_use]
    pub fn of(model: &'a str) -> Self {
        if model.starts_with("hf://") {
            Self::Hub(model)
        } else {
            Self::Path(Path::new(model))
        }
    }
}

/// Locates a model: `hf://ORG/NAME[@REV]` in the local hub cache (offline;
/// every file with an expected digest is checked, here or in the reads that
/// seal and bind it), or a snapshot directory (a hub cache's
/// `snapshots/COMMIT` is recognised and checked as `hf://` is).
///
/// A directory is taken as it is: what is missing is reported when the
/// snapshot is sealed or read.
///
/// # Errors
/// A usage error for a bad reference; integrity (exit 1) for a corrupt
/// cached file.
pub fn locate(model: &str, quiet: bool) -> Result<ModelLocation, WorkerError> {
    locate_in_cache(model, quiet, false)
}

/// [`locate`], saying whether the hub cache was written without links
/// (`--cache-without-links`: its plain files taken unchecked); otherwise a
/// plain file in a snapshot is refused.
///
/// # Errors
/// As [`locate`].
pub fn locate_in_cache(
    model: &str,
    quiet: bool,
    cache_without_links: bool,
) -> Result<ModelLocation, WorkerError> {
    let snapshot = match ModelArg::of(model) {
        ModelArg::Hub(text) => Some(hub::resolve(text, cache_without_links)?),
        ModelArg::Path(dir) => hub::snapshot_of_dir(dir, cache_without_links)?,
    };
    if let Some(snapshot) = snapshot {
        return ModelLocation::of_hub_snapshot(snapshot, quiet);
    }
    let dir = Path::new(model);
    let model_ref = ModelRef::new(&dir.to_string_lossy())
        .or_else(|_| ModelRef::new("model"))
        .map_err(|source| WorkerError::ModelRef {
            shown: shown_path(dir),
            source,
        })?;
    Ok(ModelLocation::directory(dir, model_ref))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_arguments_are_hub_references_or_paths() {
        assert_eq!(
            ModelArg::of("hf://org/name@main"),
            ModelArg::Hub("hf://org/name@main")
        );
        assert_eq!(
            ModelArg::of("./hf://x"),
            ModelArg::Path(Path::new("./hf://x"))
        );
        assert_eq!(
            ModelArg::of("models/minilm"),
            ModelArg::Path(Path::new("models/minilm"))
        );
    }

    #[test]
    fn a_plain_directory_is_taken_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let shown = dir.path().to_str().unwrap();
        let loc = locate(shown, true).unwrap();
        assert_eq!(loc.dir, dir.path());
        assert_eq!(loc.weights, dir.path().join("model.safetensors"));
        // The path when it makes a model reference, else `model`.
        let want =
            ModelRef::new(shown).map_or_else(|_| "model".to_owned(), |r| r.as_str().to_owned());
        assert_eq!(loc.model_ref.as_str(), want);
        assert!(loc.expected_sha256.is_empty() && loc.expected_files.is_empty());
        assert_eq!(
            loc.weights_sha256, None,
            "a plain path has no expected digest"
        );
    }

    #[test]
    fn bad_hub_references_are_usage_errors() {
        for bad in [
            "hf://",
            "hf://a/b/c",
            "hf://org/../x",
            "hf://org/name@..",
            "hf://a b",
        ] {
            let e = locate(bad, true).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(e.to_string().starts_with("hub cache: "), "{e}");
        }
    }

    #[test]
    fn a_hub_snapshot_directory_is_checked_as_hf_is() {
        // CACHE/models--org--name/snapshots/COMMIT with a file whose blob
        // name is not its SHA-256: refused as a corrupt cache.
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--org--name");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        let fake = "ab".repeat(32);
        std::fs::write(repo.join("blobs").join(&fake), b"not what the name says").unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{fake}"), snap.join("extra.bin")).unwrap();
        // The weights, linked to a blob named by their SHA-256 (kept for
        // the sealing pass, not read here).
        let weights = b"weights";
        let sha = vram_validation::hex::encode(&vram_crypto::sha256(weights).0);
        std::fs::write(repo.join("blobs").join(&sha), weights).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{sha}"), snap.join("model.safetensors"))
            .unwrap();
        let e = locate(snap.to_str().unwrap(), true).unwrap_err();
        assert_eq!(e.exit_code(), 1, "{e}");
        let text = e.to_string();
        assert!(text.contains("corrupt in the cache"), "{text}");
        assert!(
            text.contains("huggingface-cli download org/name extra.bin"),
            "{text}"
        );
    }
}
