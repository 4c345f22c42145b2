//! The worker this server runs on: device, worker secret, audit log and
//! manager built by `vram-worker` (as `vram` and `vram-embed` build theirs),
//! and the model located and sealed as `vram seal` does. Everything this
//! crate asks of a worker goes through this module.

use std::path::PathBuf;

use vram_residency::{SealedModel, SealedShard, VramManager};
use vram_worker::{DeviceSpec, SecretChoice, SecretSource, StandardInput, WorkerError};

use crate::ServeError;

pub use vram_worker::ModelLocation;

/// A manager over the selected device, with its audit log.
#[derive(Debug)]
pub struct Worker {
    inner: vram_worker::Worker,
}

/// What a worker is built from (the flags `vram seal` takes).
#[derive(Debug, Clone, Default)]
pub struct WorkerConfig {
    /// `auto`, `mock`, `cuda` or `cuda:N`.
    pub device: String,
    /// The worker secret file; else the systemd credential or
    /// `$VRAM_SECRET_FILE`; else an ephemeral secret.
    pub secret_file: Option<PathBuf>,
    /// A JSON-lines audit log to open or continue (fail-closed).
    pub audit_log: Option<PathBuf>,
    /// No notes on stderr (a mock fallback is still said).
    pub quiet: bool,
    /// The leaf size its seals cut the model into; `None` for the
    /// manager's default for the device.
    pub leaf: Option<vram_residency::LeafSize>,
}

pub(crate) fn worker_error(e: WorkerError) -> ServeError {
    ServeError::Worker {
        code: e.exit_code(),
        reason: e.to_string(),
    }
}

/// Builds the worker: selects the device (a mock fallback is announced on
/// stderr), loads the secret, opens the audit log.
///
/// # Errors
/// [`ServeError::Worker`] with `vram`'s exit code.
pub fn open(config: &WorkerConfig) -> Result<Worker, ServeError> {
    let source = SecretSource {
        file: config.secret_file.clone(),
        standard_input: StandardInput::Refused,
    };
    source.check_standard_input().map_err(worker_error)?;
    let secret = if source.is_configured() {
        SecretChoice::Operator(source)
    } else if config.audit_log.is_some() {
        return Err(worker_error(WorkerError::AuditNeedsSecret));
    } else {
        if !config.quiet {
            tracing::warn!("no worker secret given: an ephemeral one seals for this process only");
        }
        SecretChoice::Ephemeral
    };
    let device = DeviceSpec::parse(&config.device).map_err(worker_error)?;
    let inner = vram_worker::Worker::open_with_leaf_size(
        &vram_worker::WorkerOptions {
            device,
            secret,
            audit_log: config.audit_log.clone(),
            quiet: config.quiet,
        },
        config.leaf,
    )
    .map_err(worker_error)?;
    Ok(Worker { inner })
}

/// Locates a model as `vram seal` does: a snapshot directory, or
/// `hf://ORG/NAME[@REV]` in the local Hugging Face cache (offline).
///
/// # Errors
/// [`ServeError::Worker`]: usage for a bad reference, integrity for a
/// corrupt cached file.
pub fn locate(model: &str, quiet: bool) -> Result<ModelLocation, ServeError> {
    vram_worker::locate(model, quiet).map_err(worker_error)
}

/// One GGUF file of a cached hub repository, `hf://ORG/NAME[@REV]/FILE.gguf`,
/// located as `vram seal` locates it (offline, in the cache the environment
/// names): the blob the snapshot's link resolves to, the exact reference
/// `hf://ORG/NAME@COMMIT/FILE.gguf`, and the SHA-256 the blob's name
/// promises as the file's own ([`ModelLocation::weights_sha256`]), checked
/// in the sealing pass (a file stored as a git blob is checked against its
/// blob id here). `None` for a reference that names no file.
///
/// # Errors
/// [`ServeError::Worker`] for a bad reference or a cache that cannot be
/// read; [`ServeError::Usage`] for a part of a split GGUF model or a file
/// the repository does not have.
pub fn locate_gguf(model: &str) -> Result<Option<ModelLocation>, ServeError> {
    let reference =
        vram_hub::HubRef::parse(model).map_err(|e| worker_error(WorkerError::from(e)))?;
    let Some(name) = reference.file() else {
        return Ok(None);
    };
    let snapshot = vram_worker::hub::resolve(model, false).map_err(worker_error)?;
    if vram_format::split_part(name).is_some_and(|(_, _, count)| count > 1) {
        return ModelLocation::gguf_parts_in_cache(&snapshot, name)
            .map(Some)
            .map_err(worker_error);
    }
    let cached = snapshot
        .files
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            ServeError::Usage(format!(
                "hub cache: {} has no file {}",
                snapshot.reference(),
                crate::shown(name)
            ))
        })?;
    let model_ref = cached_file_ref(model, &snapshot, name)?;
    let mut location = ModelLocation::file(&cached.path, model_ref);
    match cached.expected {
        // The blob's name is the file's SHA-256: `Worker::seal` checks it in
        // the pass that copies and hashes the file.
        Some(vram_hub::Expected::Sha256(sha)) => {
            location.weights_sha256 = Some(vram_validation::Sha256Hex::from_bytes(&sha));
        }
        // A small file stored as a git blob: its blob id is checked here,
        // before anything is sealed.
        Some(expected) => {
            if let Some(vram_hub::FileCheck::Corrupt { actual }) = cached
                .check()
                .map_err(|e| worker_error(WorkerError::from(e)))?
            {
                return Err(worker_error(WorkerError::CorruptCache {
                    message: format!(
                        "{}; nothing was sealed. To fetch it again: {}",
                        vram_worker::hub::corrupt_message(&snapshot, cached, expected, &actual),
                        vram_worker::hub::repair_command(&snapshot, cached)
                    ),
                }));
            }
        }
        None => {}
    }
    Ok(Some(location))
}

/// The reference `hf://ORG/NAME@COMMIT/FILE` of file `name` of the cached
/// repository `snapshot` (`model` as the operator named it, for the error).
fn cached_file_ref(
    model: &str,
    snapshot: &vram_hub::Snapshot,
    name: &str,
) -> Result<vram_residency::ModelRef, ServeError> {
    let shown_ref = format!("{}/{name}", snapshot.reference());
    vram_residency::ModelRef::new(&shown_ref).map_err(|e| {
        ServeError::Usage(format!(
            "{}: not a model reference ({e})",
            crate::shown(model)
        ))
    })
}

impl Worker {
    /// The manager.
    #[must_use]
    pub fn manager(&self) -> &VramManager {
        self.inner.manager()
    }

    /// The manager, shared: what an engine keeps for its requests.
    #[must_use]
    pub fn shared_manager(&self) -> std::sync::Arc<VramManager> {
        self.inner.shared_manager()
    }

    /// `cuda` or `mock`.
    #[must_use]
    pub fn device_kind(&self) -> &'static str {
        self.inner.device_kind()
    }

    /// The index of the device models are sealed on (the CUDA ordinal on
    /// CUDA).
    #[must_use]
    pub fn target(&self) -> u32 {
        self.inner.devices().target()
    }

    /// Seals one weights file (a GGUF model) as one shard, opened as every
    /// model file someone else may write to.
    ///
    /// # Errors
    /// [`ServeError::Worker`] as `vram seal` reports it.
    pub fn seal(&self, location: &ModelLocation) -> Result<SealedShard, ServeError> {
        self.inner.seal(location).map_err(worker_error)
    }

    /// Seals the located snapshot as one model (weights on the device, small
    /// files bound on the host), the expected digests checked in the pass.
    ///
    /// # Errors
    /// [`ServeError::Worker`] as `vram seal` reports it.
    pub fn seal_snapshot(&self, location: &ModelLocation) -> Result<SealedModel, ServeError> {
        self.inner.seal_snapshot(location).map_err(worker_error)
    }

    /// Flips bits (`mask`) of one byte of the most recent device allocation
    /// behind the seal's back (the mock): what demonstrations and tests use
    /// to show a corruption being caught.
    ///
    /// # Errors
    /// When the device offers no corruption path.
    pub fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), ServeError> {
        self.inner
            .corrupt_latest(offset, mask)
            .map_err(worker_error)
    }
}
