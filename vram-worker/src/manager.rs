//! The manager over a worker's devices.

use crate::audit::in_memory_audit_log;
use crate::device_selection::DeviceSelection;
use crate::error::WorkerError;
use std::sync::Arc;
use vram_audit::AuditSink;
use vram_crypto::LeafSize;
use vram_residency::{SealHashing, VramConfig, VramManager};
use vram_secrets::WorkerSecret;

/// The leaf size `vram-serve` and `vram-embed` seal with unless told
/// (`--leaf-size`): 64 KiB on every device, the CUDA default, the mock
/// included. Their requests compute on the sealed weights in place, so a
/// lease is most of what a short request adds: on all-MiniLM-L6-v2 (CPU,
/// mock), a `sampled:1` lease re-reads one leaf, 0.05 ms at 64 KiB against
/// 0.64 ms at the mock's 1 MiB, for a 9-10 ms request.
pub const SERVING_LEAF_SIZE: LeafSize = vram_residency::CUDA_DEFAULT_LEAF_SIZE;

/// A `--leaf-size` value: a byte size (`65536`, `64K`, `1 MiB`; see
/// `vram_validation::parse_byte_size`), a power of two from 4 KiB to 1 GiB.
///
/// # Errors
/// What is wrong with it, for the command line's usage error.
pub fn parse_leaf_size(value: &str) -> Result<LeafSize, String> {
    let bytes = vram_validation::parse_byte_size(value).map_err(|e| e.to_string())?;
    LeafSize::new(bytes).map_err(|e| e.to_string())
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_size_is_a_power_of_two_from_4_kib_to_1_gib() {
        assert_eq!(parse_leaf_size("65536").unwrap().bytes(), 65_536);
        assert_eq!(parse_leaf_size("64K").unwrap().bytes(), 65_536);
        assert_eq!(parse_leaf_size("1 MiB").unwrap().bytes(), 1 << 20);
        assert_eq!(SERVING_LEAF_SIZE.bytes(), 65_536);
        for bad in ["", "0", "65535", "2048", "2GiB", "64 k", "-1", "x"] {
            assert!(parse_leaf_size(bad).is_err(), "{bad:?}");
        }
    }
}
