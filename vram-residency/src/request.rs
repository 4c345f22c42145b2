//! What a caller asks to seal, beyond the bytes.

use crate::Provenance;
use vram_validation::{ModelRef, Sha256Hex, ShardId, ShardPosition};

/// What to seal, beyond the bytes.
#[derive(Debug, Clone)]
pub struct SealRequest {
    /// Shard identifier; `None` generates an opaque random 128-bit id.
    pub shard_id: Option<ShardId>,
    /// Where the model came from.
    pub model_ref: ModelRef,
    /// Target device index.
    pub gpu_device: u32,
    /// Position in a tensor-parallel set.
    pub position: ShardPosition,
    /// Plain SHA-256 published by a model catalog; checked in the same pass.
    pub expected_sha256: Option<Sha256Hex>,
    /// Also compute the plain SHA-256 when none is expected (for reporting).
    pub compute_sha256: bool,
    /// The tensor-parallel set this shard belongs to; `None` draws a fresh
    /// random id (a set of one). [`VramManager::seal_set`](crate::VramManager::seal_set) gives every part
    /// one id; shards sealed apart (by several processes) share a set by
    /// passing the same id.
    pub set_id: Option<[u8; 16]>,
    /// Which signed model, and which file of it, the caller checked these
    /// bytes against before sealing (a publisher's signature it verified).
    /// `Some` binds it into the seal (format version 3) and the shard's
    /// handle; `None` (the default) seals as version 2.
    pub provenance: Option<Provenance>,
}

impl SealRequest {
    /// A request for `model_ref` on `gpu_device`, single shard, generated id.
    pub fn new(model_ref: ModelRef, gpu_device: u32) -> Self {
        Self {
            shard_id: None,
            model_ref,
            gpu_device,
            position: ShardPosition::SINGLE,
            expected_sha256: None,
            compute_sha256: false,
            set_id: None,
            provenance: None,
        }
    }

    /// Whether the seal computes a plain whole-model SHA-256 (asked for, or
    /// needed to check the expected one): decided here, once per seal.
    pub(crate) fn wants_plain_sha256(&self) -> bool {
        self.expected_sha256.is_some() || self.compute_sha256
    }
}
