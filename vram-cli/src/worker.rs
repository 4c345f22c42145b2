//! A worker as the `vram` commands build one (device selection, worker
//! secret, audit log, manager) and a model located as `vram seal` locates
//! it (a snapshot directory, or `hf://ORG/NAME[@REV]` in the local Hugging
//! Face cache with the digests its blob names promise), for other binaries
//! that serve sealed models: `vram-embed`. One implementation, so that both
//! binaries treat secrets, logs, devices and caches alike.

use crate::devices::{self, Selection};
use crate::exit::{shown_path, CliError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vram_audit::AuditSink;
use vram_residency::SealSource;
use vram_residency::{
    SealHashing, SealRequest, SealedModel, SealedShard, SnapshotRequest, VramManager, WorkerSecret,
};
use vram_validation::{ModelRef, Sha256Hex};

/// What a worker is built from (the flags `vram seal` takes).
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// `auto`, `mock`, `cuda` or `cuda:N` (as `--device`).
    pub device: String,
    /// The worker secret (as `--secret-file`; `-` for standard input);
    /// else the systemd credential or `$VRAM_SECRET_FILE`; else, without an
    /// audit log, an ephemeral secret (seals then hold for this process only).
    pub secret_file: Option<PathBuf>,
    /// A JSON-lines audit log to open or continue (fail-closed).
    pub audit_log: Option<PathBuf>,
    /// No notes on stderr (a mock fallback is still said).
    pub quiet: bool,
}

/// A manager over the selected device, with its audit log.
pub struct Worker {
    manager: VramManager,
    selection: Selection,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("device_kind", &self.selection.kind())
            .field("device", &self.selection.target)
            .finish_non_exhaustive()
    }
}

/// A model snapshot, located.
#[derive(Debug, Clone)]
pub struct ModelLocation {
    /// The snapshot directory: the model's small files (`config.json`, the
    /// tokenizer, `modules.json`) and its weights (`model.safetensors`, or
    /// the shards `model.safetensors.index.json` names).
    pub dir: PathBuf,
    /// The single-file weights path (`DIR/model.safetensors`), which a
    /// sharded snapshot does not have.
    pub weights: PathBuf,
    /// The reference recorded in the seals, the binding and the audit log
    /// (for the hub: `hf://ORG/NAME@COMMIT`).
    pub model_ref: ModelRef,
    /// The SHA-256 each weights file must have, by name (the hub's blob
    /// names), checked in the sealing pass.
    pub expected_sha256: BTreeMap<String, Sha256Hex>,
    /// The digest each bound small file must have, by name (the hub's blob
    /// names), checked in the one read that hashes it for the binding.
    pub expected_files: BTreeMap<String, vram_hub::Expected>,
}

/// Builds a worker as `vram seal` does.
///
/// # Errors
/// A usage error for a bad device name; an environment error when no device,
/// secret or log can be used; an audit log without a worker secret is refused.
pub fn open(options: &WorkerOptions) -> Result<Worker, CliError> {
    let spec = devices::parse_spec(&options.device)?;
    let selection = devices::select(spec)?;
    selection.announce(options.quiet);
    let secret = match crate::secret::load_if_given(options.secret_file.as_deref())? {
        Some(secret) => secret,
        None if options.audit_log.is_some() => {
            return Err(CliError::env(
                "an audit log needs the worker secret its key derives from: pass \
                 --secret-file PATH (or the systemd credential, or VRAM_SECRET_FILE)",
            ))
        }
        None => {
            if !options.quiet {
                eprintln!(
                    "note: no worker secret given: an ephemeral one seals for this process only"
                );
            }
            WorkerSecret::generate_ephemeral()?
        }
    };
    let audit = match &options.audit_log {
        Some(path) => Some(crate::cmd::open_audit(path, &secret)? as Arc<dyn AuditSink>),
        None => None,
    };
    let manager = crate::cmd::manager(secret, &selection, audit, None, SealHashing::default())?;
    Ok(Worker { manager, selection })
}

impl Worker {
    /// The manager.
    #[must_use]
    pub fn manager(&self) -> &VramManager {
        &self.manager
    }

    /// `cuda` or `mock`.
    #[must_use]
    pub fn device_kind(&self) -> &'static str {
        self.selection.kind()
    }

    /// Seals the located weights on the selected device (every core reads
    /// the file; the expected SHA-256, when there is one, is checked in the
    /// same pass and nothing stays sealed on a mismatch).
    ///
    /// # Errors
    /// As `vram seal`: integrity (exit 1) on a digest mismatch, environment
    /// (exit 3) for I/O and devices.
    pub fn seal(&self, model: &ModelLocation) -> Result<SealedShard, CliError> {
        let file = std::fs::File::open(&model.weights)
            .map_err(|e| crate::exit::io_error(&model.weights, &e))?;
        let mut request = SealRequest::new(model.model_ref.clone(), self.selection.target);
        request.expected_sha256 = model
            .expected_sha256
            .get(vram_hub::SINGLE_WEIGHTS_FILE)
            .cloned();
        Ok(self.manager.seal(&request, SealSource::file(&file))?)
    }

    /// Seals the located snapshot as one model on the selected device
    /// ([`VramManager::seal_model`]): its weights (one file, or the
    /// shards its index names) as one set, each with its expected SHA-256
    /// checked in the sealing pass, and its small files bound on the host.
    ///
    /// # Errors
    /// As `vram seal`: integrity (exit 1) on a digest mismatch, usage (exit
    /// 2) for a directory that is not one model, environment (exit 3) for
    /// I/O and devices.
    pub fn seal_snapshot(&self, model: &ModelLocation) -> Result<SealedModel, CliError> {
        let mut request =
            SnapshotRequest::new(&model.dir, model.model_ref.clone(), self.selection.target);
        request.expected_sha256 = model.expected_sha256.clone();
        request.expected_files = model.expected_files.clone();
        Ok(self.manager.seal_model(&request)?)
    }

    /// Flips bits (`mask`) of one byte of the most recent allocation behind
    /// the seal's back (the mock; CUDA with the `demo-cuda` feature): for
    /// demonstrations and tests of what a corruption does.
    ///
    /// # Errors
    /// When the device offers no corruption path.
    pub fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), CliError> {
        self.selection.corrupt_latest(offset, mask)
    }
}

/// Locates a model as `vram seal` would: `hf://ORG/NAME[@REV]` in the local
/// hub cache (offline; every file with an expected digest is checked, here
/// or in the reads that seal and bind it), or a snapshot directory (a hub
/// cache's `snapshots/COMMIT` is recognised and checked as `hf://` is).
///
/// A directory is taken as it is: what is missing is reported when the
/// snapshot is sealed or read.
///
/// # Errors
/// A usage error for a bad reference; integrity (exit 1) for a corrupt
/// cached file.
pub fn locate(model: &str, quiet: bool) -> Result<ModelLocation, CliError> {
    locate_in_cache(model, quiet, false)
}

/// A resolved hub snapshot, checked ([`crate::cmd::hub::check_snapshot`]),
/// under the reference `hf://ORG/NAME@COMMIT`.
pub(crate) fn hub_location(
    snapshot: vram_hub::Snapshot,
    quiet: bool,
) -> Result<ModelLocation, CliError> {
    let hub = crate::cmd::hub::check_snapshot(snapshot, quiet)?;
    let snapshot = hub.snapshot;
    let model_ref = ModelRef::new(&snapshot.reference())
        .map_err(|e| CliError::usage(format!("{}: {e}", snapshot.reference())))?;
    Ok(ModelLocation {
        weights: snapshot.dir.join(vram_hub::SINGLE_WEIGHTS_FILE),
        dir: snapshot.dir,
        model_ref,
        expected_sha256: hub.expected_sha256,
        expected_files: hub.expected_files,
    })
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
) -> Result<ModelLocation, CliError> {
    let snapshot = if model.starts_with("hf://") {
        Some(crate::cmd::hub::resolve(model, cache_without_links)?)
    } else {
        crate::cmd::hub::snapshot_of_dir(Path::new(model), cache_without_links)?
    };
    if let Some(snapshot) = snapshot {
        return hub_location(snapshot, quiet);
    }
    let dir = Path::new(model);
    let model_ref = ModelRef::new(&dir.to_string_lossy())
        .or_else(|_| ModelRef::new("model"))
        .map_err(|e| CliError::usage(format!("{}: {e}", shown_path(dir))))?;
    Ok(ModelLocation {
        dir: dir.to_path_buf(),
        weights: dir.join(vram_hub::SINGLE_WEIGHTS_FILE),
        model_ref,
        expected_sha256: BTreeMap::new(),
        expected_files: BTreeMap::new(),
    })
}
