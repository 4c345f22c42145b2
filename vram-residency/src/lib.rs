#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod detect;
mod error;
mod lease;
mod manager;
mod metrics;
mod model;
mod pipeline;
mod provenance;
mod request;
mod sampling;
mod scrub;
mod seal;
mod set;
mod shard;
mod shared;
mod tensors;
mod trail;
mod verify;

pub use config::{
    SealHashing, VramConfig, VramConfigBuilder, CUDA_DEFAULT_LEAF_SIZE, DEFAULT_STAGING_BYTES,
    MIN_STAGING_BYTES,
};
#[cfg(feature = "mock")]
pub use detect::FALLBACK_MOCK_CAPACITY;
pub use detect::{cuda_devices, detect, detect_cuda, CudaUnavailable, Detected, FORCE_MOCK_ENV};
pub use error::{ErrorClass, VramError};
pub use lease::{
    Lease, LeasePolicy, ParseLeasePolicyError, DEFAULT_LEASE_LEAVES, LEASE_RECORD_INTERVAL,
};
pub use manager::{DeviceCapacity, VramManager};
pub use metrics::MetricsSnapshot;
pub use model::{
    HostFile, ModelLease, ModelTensors, SealedModel, SnapshotRequest, MAX_BOUND_FILE_BYTES,
};
pub use provenance::Provenance;
pub use request::{SealRequest, SealSource};
pub use scrub::{ScrubCallback, ScrubConfig, ScrubStats, Scrubber};
pub use set::ShardSet;
pub use shard::{ModelShardHandle, SealedShard};
pub use shared::{LeaseHandle, SharedLease, SharedModelLease};
pub use tensors::{TensorMemory, TensorView, Tensors, MAX_NAMED_TENSORS};
pub use verify::{HashPath, VerifyPolicy, VerifyReport};

// The types of the crates below that appear in this crate's API (arguments,
// results, error sources), by name, so that a user of the facade can name
// them. Anything else of those crates: depend on the crate itself.
pub use vram_audit::{AuditError, AuditSink, LogOptions};
pub use vram_core::{
    Device, DeviceError, DeviceKind, DeviceMemory, HostBytes, MemoryAccess, PolicyViolation,
};
pub use vram_crypto::{
    CorruptRange, CryptoError, LeafHashes, LeafSize, SealTag, Sha256Digest, TreeDigest,
};
pub use vram_format::{Dtype, GgufArray, GgufHeader, GgufValue};
pub use vram_secrets::{KeyId, SecretsError, WorkerSecret};
pub use vram_validation::{ModelRef, Sha256Hex, ShardId, ShardPosition, ValidationError};
