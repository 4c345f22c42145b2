//! Manager configuration, built with [`VramConfig::builder`] and checked once at
//! [`VramManager::new`](crate::VramManager::new) so that bad settings fail fast.

use crate::{VerifyPolicy, VramError};
use std::fmt;
use std::sync::Arc;
use vram_audit::AuditSink;
use vram_core::Device;
use vram_crypto::LeafSize;
use vram_secrets::WorkerSecret;
use vram_validation::DEFAULT_MAX_MODEL_BYTES;

/// Everything a [`VramManager`](crate::VramManager) needs. `Debug` never shows
/// the worker secret.
pub struct VramConfig {
    pub(crate) secret: WorkerSecret,
    pub(crate) devices: Vec<Arc<dyn Device>>,
    pub(crate) max_model_bytes: u64,
    pub(crate) headroom_bytes: u64,
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
    pub(crate) worker_id: String,
    pub(crate) leaf_size: Option<LeafSize>,
    pub(crate) verify_policy: VerifyPolicy,
    pub(crate) staging_bytes: usize,
    pub(crate) seal_hashing: SealHashing,
    pub(crate) caller_announces_mock: bool,
}

/// Leaf size of a manager whose devices are all CUDA devices, unless one is
/// configured: 64 KiB.
///
/// Measured on an NVIDIA H200 (`vram bench --device cuda:0`, 4 GiB buffer):
/// the leaf kernel runs one thread per leaf, so 1 MiB leaves leave most of the
/// GPU idle (33 GB/s on device; 8 GB/s on 1 GiB, only 1,024 threads), while
/// 64 KiB leaves hash at 122-173 GB/s and 4 KiB leaves at 55-117 GB/s (more,
/// shorter threads and 16 times the hashes to copy back). 64 KiB leaves also
/// make a sampled verification of K leaves read 16 times fewer bytes than
/// 1 MiB leaves do. Their cost is host memory for the leaf list and its
/// index (what a sampled check proves a leaf's hash with): about 64 bytes per
/// 64 KiB, 146 MiB for a 150 GB model.
pub const CUDA_DEFAULT_LEAF_SIZE: LeafSize = match LeafSize::from_log2(16) {
    Some(l) => l,
    None => LeafSize::DEFAULT,
};

/// Where a seal hashes the leaves of the bytes it uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SealHashing {
    /// On the host's cores, from the source bytes, while they are uploaded
    /// (the default). The seal commits to exactly the bytes the caller
    /// supplied, so the first verification catches any byte that did not
    /// reach the device intact.
    #[default]
    Host,
    /// On the device, after the upload, with the kernel that full
    /// verification uses: the host only moves bytes, so a seal approaches the
    /// host-to-device copy rate instead of the host's hashing rate. The seal
    /// commits to the bytes that landed on the device; `cross_check` leaves,
    /// chosen at random, are hashed on the host from the source as well, and a
    /// difference fails the seal ([`VramError::UploadMismatch`]). A corruption
    /// in transit that touches none of them is sealed as if it were the model:
    /// use it where an expected digest (`expected_sha256`, or a tree digest
    /// compared after the seal) backs it, or where the copy rate matters more.
    ///
    /// Applies to seals from memory and from files without a plain SHA-256;
    /// streamed readers, and devices that cannot hash (the mock unless built
    /// with on-device hashing, CUDA without NVRTC), hash on the host.
    OnDevice {
        /// Leaves hashed on both sides (all of them when the shard has fewer).
        cross_check: u32,
    },
}

impl SealHashing {
    /// On the device, with 64 cross-checked leaves.
    pub const ON_DEVICE: SealHashing = SealHashing::OnDevice { cross_check: 64 };
}

impl fmt::Debug for VramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VramConfig")
            .field("seal_key_id", &self.secret.seal_key().key_id())
            .field("devices", &self.devices.len())
            .field("max_model_bytes", &self.max_model_bytes)
            .field("headroom_bytes", &self.headroom_bytes)
            .field("audit", &self.audit.as_ref().map(|_| "configured"))
            .field("worker_id", &self.worker_id)
            .field("leaf_size", &self.leaf_size.map(LeafSize::bytes))
            .field("verify_policy", &self.verify_policy)
            .field("staging_bytes", &self.staging_bytes)
            .field("seal_hashing", &self.seal_hashing)
            .field("caller_announces_mock", &self.caller_announces_mock)
            .finish()
    }
}

/// Default host staging buffer for streamed seals and verification reads (per
/// buffer; two are in flight). Large enough to amortise per-chunk overhead and
/// keep every core busy, small next to any model.
pub const DEFAULT_STAGING_BYTES: usize = 16 << 20;

/// Smallest accepted staging buffer.
pub const MIN_STAGING_BYTES: usize = 64 << 10;

impl VramConfig {
    /// Starts a configuration from the worker secret (seal and audit keys are
    /// derived from it with distinct HKDF labels).
    pub fn builder(secret: WorkerSecret) -> VramConfigBuilder {
        VramConfigBuilder {
            config: Self {
                secret,
                devices: Vec::new(),
                max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
                headroom_bytes: 0,
                audit: None,
                worker_id: "worker".to_string(),
                leaf_size: None,
                verify_policy: VerifyPolicy::Full,
                staging_bytes: DEFAULT_STAGING_BYTES,
                seal_hashing: SealHashing::Host,
                caller_announces_mock: false,
            },
        }
    }

    pub(crate) fn validate(&self) -> Result<(), VramError> {
        if self.max_model_bytes == 0 {
            return Err(VramError::InvalidConfig {
                reason: "max_model_bytes must be greater than zero".into(),
            });
        }
        let id_ok = !self.worker_id.is_empty()
            && self.worker_id.len() <= 128
            && self
                .worker_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !id_ok {
            return Err(VramError::InvalidConfig {
                reason: "worker_id must be 1-128 characters of [A-Za-z0-9._-]".into(),
            });
        }
        if self.staging_bytes < MIN_STAGING_BYTES {
            return Err(VramError::InvalidConfig {
                reason: format!(
                    "staging buffer of {} bytes is below the minimum of {MIN_STAGING_BYTES}",
                    self.staging_bytes
                ),
            });
        }
        if let VerifyPolicy::Sampled { leaves: 0 } = self.verify_policy {
            return Err(VramError::InvalidConfig {
                reason: "sampled verification needs at least one leaf per call".into(),
            });
        }
        if let VerifyPolicy::Scrub { .. } = self.verify_policy {
            return Err(VramError::InvalidConfig {
                reason: "scrub is the background scrubber's policy, not a default for verify_sealed: use full or sampled:K".into(),
            });
        }
        if self.devices.is_empty() {
            return Err(VramError::InvalidConfig {
                reason: "no device given: pass the devices to use (a worker finds and \
                         announces them with vram-worker's device selection)"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Builder for [`VramConfig`].
#[derive(Debug)]
pub struct VramConfigBuilder {
    config: VramConfig,
}

impl VramConfigBuilder {
    /// Use these devices (device index = position in the list). Required:
    /// the manager does not look for devices itself (finding them, and
    /// saying loudly when the mock stands in for a GPU, is the worker's job:
    /// `vram-worker`'s device selection, over [`crate::detect()`]).
    pub fn devices(mut self, devices: Vec<Arc<dyn Device>>) -> Self {
        self.config.devices = devices;
        self
    }

    /// Use one device.
    pub fn device(self, device: Arc<dyn Device>) -> Self {
        self.devices(vec![device])
    }

    /// Largest model accepted, in bytes (default 100 GiB).
    pub fn max_model_bytes(mut self, bytes: u64) -> Self {
        self.config.max_model_bytes = bytes;
        self
    }

    /// VRAM kept free on every device for activations and the runtime.
    pub fn headroom_bytes(mut self, bytes: u64) -> Self {
        self.config.headroom_bytes = bytes;
        self
    }

    /// Where audit records go. Without one, an in-memory log is used (and the
    /// manager says so in a warning): fine for tests, not for an auditor. A
    /// worker's file log (fail-closed, one writer, never the secret's own
    /// file) is opened by `vram-worker` and given here.
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.config.audit = Some(sink);
        self
    }

    /// Worker identity written to audit records (`[A-Za-z0-9._-]`, 1-128 chars).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = id.into();
        self
    }

    /// Leaf size of the chunk-tree digest (default: [`LeafSize::DEFAULT`],
    /// or [`CUDA_DEFAULT_LEAF_SIZE`] when every device is a CUDA device).
    pub fn leaf_size(mut self, leaf: LeafSize) -> Self {
        self.config.leaf_size = Some(leaf);
        self
    }

    /// Where seals hash the bytes they upload (default [`SealHashing::Host`]).
    pub fn seal_hashing(mut self, hashing: SealHashing) -> Self {
        self.config.seal_hashing = hashing;
        self
    }

    /// Policy used by [`VramManager::verify_sealed`](crate::VramManager::verify_sealed).
    pub fn verify_policy(mut self, policy: VerifyPolicy) -> Self {
        self.config.verify_policy = policy;
        self
    }

    /// Size of each of the two host staging buffers used when streaming.
    pub fn staging_bytes(mut self, bytes: usize) -> Self {
        self.config.staging_bytes = bytes;
        self
    }

    /// The caller tells its user, once and loudly, that a device is the mock
    /// (as the `vram` command does, even with `--quiet`): the manager then
    /// logs its own notice at `info` rather than `warn`, so the user is not
    /// told twice. Default: false (the manager warns).
    pub fn caller_announces_mock(mut self, yes: bool) -> Self {
        self.config.caller_announces_mock = yes;
        self
    }

    /// The finished configuration (validated by [`VramManager::new`](crate::VramManager::new)).
    pub fn build(self) -> VramConfig {
        self.config
    }
}
