//! The manager over a worker's devices.

use crate::audit::in_memory_audit_log;
use crate::device_selection::DeviceSelection;
use crate::error::WorkerError;
use std::sync::Arc;
use vram_audit::AuditSink;
use vram_crypto::LeafSize;
use vram_residency::{SealHashing, VramConfig, VramManager};
use vram_secrets::WorkerSecret;

/// What a manager is built from besides its secret and devices.
#[derive(Default)]
pub struct ManagerOptions {
    /// Where its audit records go; `None` keeps them in memory (lost at
    /// exit), without the facade's own warning: the caller says it.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// The leaf size; `None` for the manager's default for the devices
    /// (64 KiB on CUDA devices, 1 MiB otherwise).
    pub leaf: Option<LeafSize>,
    /// Where seals hash.
    pub hashing: SealHashing,
}

impl std::fmt::Debug for ManagerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerOptions")
            .field("audit", &self.audit.is_some())
            .field("leaf", &self.leaf)
            .field("hashing", &self.hashing)
            .finish()
    }
}

/// A manager over the selected devices, under this worker's id. The mock,
/// when in use, is said by [`DeviceSelection::announce`], not by the
/// manager.
///
/// # Errors
/// [`WorkerError::AuditMemory`] when no log is given and the in-memory one
/// cannot be set up; [`WorkerError::Facade`] when the manager refuses the
/// devices.
pub fn build_manager(
    secret: WorkerSecret,
    selection: &DeviceSelection,
    options: ManagerOptions,
) -> Result<VramManager, WorkerError> {
    let audit: Arc<dyn AuditSink> = match options.audit {
        Some(a) => a,
        None => in_memory_audit_log(&secret)?,
    };
    let builder = VramConfig::builder(secret)
        .devices(selection.devices().to_vec())
        .worker_id(crate::audit::worker_id())
        .seal_hashing(options.hashing)
        .audit(audit)
        .caller_announces_mock(true);
    let builder = match options.leaf {
        Some(leaf) => builder.leaf_size(leaf),
        None => builder,
    };
    Ok(VramManager::new(builder.build())?)
}
