//! [`Worker`]: devices, secret, audit log and manager, put together in one
//! order for every binary.

use crate::audit::open_audit_log;
use crate::device_selection::{DeviceSelection, DeviceSpec};
use crate::error::WorkerError;
use crate::location::ModelLocation;
use crate::manager::{build_manager, ManagerOptions};
use crate::secret::SecretChoice;
use std::path::PathBuf;
use std::sync::Arc;
use vram_audit::AuditSink;
use vram_crypto::LeafSize;
use vram_residency::{SealRequest, SealedModel, SealedShard, SnapshotRequest, VramManager};

/// What a worker is built from.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The devices (`--device`).
    pub device: DeviceSpec,
    /// The worker secret: the operator's, or an ephemeral one by choice.
    pub secret: SecretChoice,
    /// A JSON-lines audit log to open or continue (fail-closed); `None`
    /// keeps the records in memory.
    pub audit_log: Option<PathBuf>,
    /// No notes on stderr (a mock fallback is still said).
    pub quiet: bool,
}

/// A manager over the selected device, with its audit log.
pub struct Worker {
    manager: Arc<VramManager>,
    selection: DeviceSelection,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("device_kind", &self.selection.kind())
            .field("device", &self.selection.target())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Builds a worker: selects the devices (and says so when the mock is
    /// in use), loads the secret, opens the audit log keyed by it, and
    /// builds the manager.
    ///
    /// # Errors
    /// A usage error for a secret on refused standard input; an environment
    /// error when no device, secret or log can be used.
    pub fn open(options: &WorkerOptions) -> Result<Self, WorkerError> {
        Self::open_with_leaf_size(options, None)
    }

    /// [`Worker::open`] with the leaf size its seals cut models into
    /// (`vram seal --leaf-size`); `None` for the manager's default (64 KiB
    /// on CUDA devices, 1 MiB otherwise). A `sampled:K` lease re-reads and
    /// hashes K leaves, so the leaf size sets what a lease costs and how
    /// much of a model it checks.
    ///
    /// # Errors
    /// As [`Worker::open`].
    pub fn open_with_leaf_size(
        options: &WorkerOptions,
        leaf: Option<LeafSize>,
    ) -> Result<Self, WorkerError> {
        let selection = DeviceSelection::select(options.device)?;
        selection.announce(options.quiet);
        let secret = options.secret.load()?;
        let audit = match &options.audit_log {
            Some(path) => Some(open_audit_log(path, &secret)? as Arc<dyn AuditSink>),
            None => None,
        };
        let manager = build_manager(
            secret,
            &selection,
            ManagerOptions {
                audit,
                leaf,
                ..ManagerOptions::default()
            },
        )?;
        Ok(Self {
            manager: Arc::new(manager),
            selection,
        })
    }

    /// The manager.
    #[must_use]
    pub fn manager(&self) -> &VramManager {
        &self.manager
    }

    /// The manager, shared: for engines that keep it for their requests.
    #[must_use]
    pub fn shared_manager(&self) -> Arc<VramManager> {
        Arc::clone(&self.manager)
    }

    /// The devices.
    #[must_use]
    pub fn devices(&self) -> &DeviceSelection {
        &self.selection
    }

    /// `cuda` or `mock`.
    #[must_use]
    pub fn device_kind(&self) -> &'static str {
        self.selection.kind()
    }

    /// Seals the located single-file weights (`model.weights`) on the
    /// selected device (opened with [`vram_hub::open_model_file`]; every
    /// core reads the file; its expected SHA-256
    /// ([`ModelLocation::weights_sha256`]), when there is one, is checked in
    /// the same pass and nothing stays sealed on a mismatch).
    ///
    /// # Errors
    /// [`WorkerError::Seal`], naming the model and the file: integrity
    /// (exit 1) on a digest mismatch, environment (exit 3) for I/O and
    /// devices.
    pub fn seal(&self, model: &ModelLocation) -> Result<SealedShard, WorkerError> {
        // Opened as every model file someone else may write to: no link out of
        // its directory, O_NOFOLLOW|O_NONBLOCK, a regular file by fstat.
        let (dir, name) = match (model.weights.parent(), model.weights.file_name()) {
            (Some(dir), Some(name)) => (dir, name.to_string_lossy().into_owned()),
            _ => {
                return Err(WorkerError::io(
                    &model.weights,
                    &std::io::ErrorKind::NotFound.into(),
                ))
            }
        };
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        // A missing file is the caller's mistake (usage), as it always was;
        // everything else the opener refuses is said as it says it.
        if std::fs::symlink_metadata(&model.weights).is_err() {
            return Err(WorkerError::io(
                &model.weights,
                &std::io::ErrorKind::NotFound.into(),
            ));
        }
        let file = vram_hub::open_model_file(dir, &name, None)?.file;
        let mut request = SealRequest::new(model.model_ref.clone(), self.selection.target());
        // The digest the locator found for this very file, whatever its
        // name or format.
        request.expected_sha256 = model.weights_sha256.clone();
        self.manager
            .seal(&request, vram_residency::SealSource::file(&file))
            .map_err(|source| WorkerError::Seal {
                model: model.model_ref.as_str().to_owned(),
                shown: crate::shown_path(&model.weights),
                source: Box::new(source),
            })
    }

    /// Seals the located snapshot as one model on the selected device
    /// ([`VramManager::seal_model`]): its weights (one file, or the
    /// shards its index names) as one set, each with its expected SHA-256
    /// checked in the sealing pass, and its small files bound on the host.
    ///
    /// # Errors
    /// Integrity (exit 1) on a digest mismatch, usage (exit 2) for a
    /// directory that is not one model, environment (exit 3) for I/O and
    /// devices.
    pub fn seal_snapshot(&self, model: &ModelLocation) -> Result<SealedModel, WorkerError> {
        let mut request =
            SnapshotRequest::new(&model.dir, model.model_ref.clone(), self.selection.target());
        request.expected_sha256 = model.expected_sha256.clone();
        request.expected_files = model.expected_files.clone();
        request.layout = model.layout.clone();
        Ok(self.manager.seal_model(&request)?)
    }

    /// Flips bits (`mask`) of one byte of the most recent allocation behind
    /// the seal's back (the mock; CUDA with the `demo-cuda` feature): for
    /// demonstrations and tests of what a corruption does.
    ///
    /// # Errors
    /// When the device offers no corruption path.
    pub fn corrupt_latest(&self, offset: u64, mask: u8) -> Result<(), WorkerError> {
        self.selection.corrupt_latest(offset, mask)
    }
}
