//! A sealed shard: model bytes resident on a device, with the seal that says
//! what they must be. Read-only; dropping it frees the device memory, releases
//! the capacity reservation and audits the deallocation.

use crate::trail::AuditTrail;
use crate::Provenance;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vram_audit::AuditEvent;
use vram_core::{DeviceBuffer, DeviceKind, Reservation};
use vram_crypto::{LeafHashes, SealBinding, SealMessage, SealTag, Sha256Digest, TreeDigest};
use vram_secrets::KeyId;
use vram_validation::{ModelRef, ShardId, ShardPosition};

/// Model bytes sealed in device memory.
///
/// Obtained from [`VramManager::seal_model`](crate::VramManager::seal_model) and
/// friends; verified with [`VramManager::verify_sealed`](crate::VramManager::verify_sealed).
/// `Debug` and the serializable [`ModelShardHandle`] never show device addresses.
pub struct SealedShard {
    pub(crate) shard_id: ShardId,
    pub(crate) model_ref: ModelRef,
    pub(crate) device: u32,
    pub(crate) device_kind: DeviceKind,
    /// The device's UUID when its backend reports one (bound by the seal).
    pub(crate) device_uuid: Option<[u8; 16]>,
    /// The worker that sealed (bound by the seal).
    pub(crate) worker_id: String,
    /// The tensor-parallel set sealed together (bound by the seal).
    pub(crate) set_id: [u8; 16],
    /// Which signed model the bytes were checked against, when the caller
    /// said (bound by the seal, which is then format v3).
    pub(crate) provenance: Option<Provenance>,
    pub(crate) len: u64,
    pub(crate) tree: TreeDigest,
    pub(crate) leaves: LeafHashes,
    pub(crate) plain_sha256: Option<Sha256Digest>,
    pub(crate) sealed_at_ns: u64,
    pub(crate) position: ShardPosition,
    pub(crate) key_id: KeyId,
    pub(crate) tag: SealTag,
    /// Set by the first verification that finds the bytes or the seal wrong;
    /// never cleared.
    pub(crate) compromised: AtomicBool,
    // Field order matters: the buffer (device memory) is freed before the
    // reservation is released, so capacity is never handed out twice.
    pub(crate) buffer: Box<dyn DeviceBuffer>,
    pub(crate) _reservation: Reservation,
    pub(crate) audit: Arc<AuditTrail>,
    /// Set once the deallocation was audited (by [`SealedShard::release`]).
    pub(crate) released: bool,
}

impl SealedShard {
    /// The shard's identifier.
    pub fn shard_id(&self) -> &ShardId {
        &self.shard_id
    }
    /// Where the model came from.
    pub fn model_ref(&self) -> &ModelRef {
        &self.model_ref
    }
    /// Index of the device holding the bytes.
    pub fn gpu_device(&self) -> u32 {
        self.device
    }
    /// Kind of the device holding the bytes (a mock is never real VRAM).
    pub fn device_kind(&self) -> DeviceKind {
        self.device_kind
    }
    /// The device's UUID, when its backend reports one (CUDA; never the mock).
    pub fn device_uuid(&self) -> Option<[u8; 16]> {
        self.device_uuid
    }
    /// The worker that sealed the shard.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }
    /// The random id shared by the shards sealed together as one set.
    pub fn set_id(&self) -> [u8; 16] {
        self.set_id
    }
    /// Which signed model, and which file of it, the bytes were checked
    /// against before sealing; `None` when the request named none.
    pub fn provenance(&self) -> Option<&Provenance> {
        self.provenance.as_ref()
    }
    /// The seal format version: 3 for a shard with a
    /// [provenance](SealedShard::provenance), else 2.
    pub fn seal_version(&self) -> u8 {
        self.seal_message().version()
    }
    /// Bytes resident in device memory.
    pub fn vram_bytes(&self) -> u64 {
        self.len
    }
    /// The chunk-tree digest the seal commits to.
    pub fn tree_digest(&self) -> &TreeDigest {
        &self.tree
    }
    /// The per-leaf hashes recorded at seal time.
    pub fn leaf_hashes(&self) -> &LeafHashes {
        &self.leaves
    }
    /// Plain whole-model SHA-256, when it was computed at seal time.
    pub fn plain_sha256(&self) -> Option<&Sha256Digest> {
        self.plain_sha256.as_ref()
    }
    /// When the seal was made, in nanoseconds since the Unix epoch (UTC).
    pub fn sealed_at_ns(&self) -> u64 {
        self.sealed_at_ns
    }
    /// Position in a tensor-parallel set (0 of 1 for a lone shard).
    pub fn position(&self) -> ShardPosition {
        self.position
    }
    /// Fingerprint of the seal key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    /// The HMAC-SHA256 seal tag.
    pub fn seal_tag(&self) -> &SealTag {
        &self.tag
    }

    /// Whether a verification found this shard's bytes or seal wrong. A
    /// compromised shard never verifies again, even if its bytes later read
    /// back right (a tamperer may restore them): release it and seal the model
    /// again. A verification that could not complete (a device read error)
    /// does not compromise a shard.
    pub fn is_compromised(&self) -> bool {
        self.compromised.load(Ordering::Acquire)
    }

    /// `Err(VramError::Compromised)` for a compromised shard: checked before
    /// any verification reads the device.
    pub(crate) fn ensure_not_compromised(&self) -> Result<(), crate::VramError> {
        if self.is_compromised() {
            Err(crate::VramError::Compromised {
                shard_id: self.shard_id.to_string(),
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn mark_compromised(&self) {
        self.compromised.store(true, Ordering::Release);
    }

    /// The canonical message the tag authenticates.
    pub(crate) fn seal_message(&self) -> SealMessage<'_> {
        SealMessage {
            shard_id: self.shard_id.as_str(),
            model_ref: self.model_ref.as_str(),
            device_index: self.device,
            byte_len: self.len,
            tree: &self.tree,
            sealed_at_ns: self.sealed_at_ns,
            shard_index: self.position.index(),
            shard_total: self.position.total(),
            key_id: *self.key_id.as_bytes(),
            binding: Some(SealBinding {
                device_kind: crate::manager::seal_device_kind(self.device_kind),
                device_uuid: self.device_uuid,
                worker_id: &self.worker_id,
                set_id: self.set_id,
                provenance: self.provenance.as_ref().map(Provenance::as_seal),
            }),
        }
    }

    /// A serializable view for API responses. An altered handle fails
    /// [`VramManager::verify_handle`](crate::VramManager::verify_handle).
    pub fn handle(&self) -> ModelShardHandle {
        ModelShardHandle {
            shard_id: self.shard_id.to_string(),
            gpu_device: self.device,
            vram_bytes: self.len,
            digest: self.tree.root.to_string(),
            leaf_size: self.tree.descriptor.leaf_size.bytes(),
            sealed_at: self.sealed_at_ns,
            model_ref: self.model_ref.to_string(),
            shard_index: self.position.index(),
            shard_total: self.position.total(),
            key_id: self.key_id.to_string(),
            signature: self.tag.to_string(),
            seal_version: self.seal_version(),
            device_kind: Some(self.device_kind.as_str().to_string()),
            device_uuid: self.device_uuid.map(|u| vram_validation::hex::encode(&u)),
            worker_id: Some(self.worker_id.clone()),
            set_id: Some(vram_validation::hex::encode(&self.set_id)),
            provenance: self.provenance.clone(),
        }
    }

    pub(crate) fn buffer(&self) -> &dyn DeviceBuffer {
        self.buffer.as_ref()
    }
}

impl fmt::Debug for SealedShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedShard")
            .field("shard_id", &self.shard_id.as_str())
            .field("model_ref", &self.model_ref.as_str())
            .field("gpu_device", &self.device)
            .field("device_kind", &self.device_kind.as_str())
            .field("vram_bytes", &self.len)
            .field("tree_digest", &self.tree.root.to_string())
            .field("leaf_size", &self.tree.descriptor.leaf_size.bytes())
            .field("sealed_at_ns", &self.sealed_at_ns)
            .field("position", &(self.position.index(), self.position.total()))
            .field("key_id", &self.key_id.to_string())
            .field("worker_id", &self.worker_id)
            .field("set_id", &vram_validation::hex::encode(&self.set_id))
            .field("provenance", &self.provenance)
            .field("compromised", &self.is_compromised())
            .finish_non_exhaustive()
    }
}

impl SealedShard {
    fn deallocated_event(&self) -> AuditEvent {
        AuditEvent::VramDeallocated {
            shard_id: self.shard_id.to_string(),
            gpu_device: self.device,
            bytes: self.len,
        }
    }

    /// Releases the shard (as dropping it does) and says whether its
    /// `vram_deallocated` record reached the audit log. The device memory and
    /// the capacity reservation are released either way.
    ///
    /// # Errors
    /// [`VramError::Audit`](crate::VramError::Audit) when the record could not
    /// be written under a fail-closed policy: a process that must end with
    /// every record durable reports it instead of exiting successfully.
    pub fn release(mut self) -> Result<(), crate::VramError> {
        let result = self.audit.record(self.deallocated_event());
        self.released = true;
        result.map(|_| ()).map_err(Into::into)
    }
}

impl Drop for SealedShard {
    fn drop(&mut self) {
        // Auditing a deallocation must never panic; a failure is counted and
        // logged by the trail ([`SealedShard::release`] returns it instead).
        if !self.released {
            self.audit.record_secondary(self.deallocated_event());
        }
        tracing::debug!(shard_id = %self.shard_id, bytes = self.len, "shard released");
        // Fields drop after this, in declaration order: the buffer (device
        // memory) first, then the capacity reservation.
    }
}

/// What an API may hand to clients and receive back: every sealed field and the
/// tag, no device address. Every field is covered by the tag, so a client
/// cannot change any of them unnoticed. Verify it with
/// [`VramManager::verify_handle`](crate::VramManager::verify_handle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShardHandle {
    /// Shard identifier.
    pub shard_id: String,
    /// Device index.
    pub gpu_device: u32,
    /// Bytes resident.
    pub vram_bytes: u64,
    /// Chunk-tree root, lower-case hex.
    pub digest: String,
    /// Leaf size of the tree, bytes.
    pub leaf_size: u64,
    /// Seal time, nanoseconds since the Unix epoch.
    ///
    /// Serialized as a decimal string (`"1764512345678901234"`): today's times
    /// are above 2^53, where JSON tools that read numbers as f64 (jq,
    /// JavaScript) round them, and a rounded time no longer matches the
    /// signature. A JSON integer is still read, for handles written before.
    #[serde(with = "sealed_at_ns")]
    pub sealed_at: u64,
    /// Model reference.
    pub model_ref: String,
    /// Position in a tensor-parallel set.
    pub shard_index: u16,
    /// Size of the tensor-parallel set.
    pub shard_total: u16,
    /// Seal key fingerprint.
    pub key_id: String,
    /// HMAC-SHA256 seal tag, lower-case hex.
    pub signature: String,
    /// Seal format version: 3 for a seal with a provenance, 2 without, or
    /// 1 for handles written before version 2 (which lack the five fields
    /// below; a missing version reads as 1).
    #[serde(default = "seal_v1")]
    pub seal_version: u8,
    /// `mock` or `cuda` (v2; `None` in v1 handles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_kind: Option<String>,
    /// The device's UUID, 32 lower-case hex digits (v2, when the backend
    /// reports one: CUDA, never the mock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_uuid: Option<String>,
    /// The worker that sealed (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Random id of the set sealed together, 32 lower-case hex digits (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_id: Option<String>,
    /// Which signed model and file the bytes were checked against (v3
    /// only; absent from the JSON of v1 and v2 handles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

fn seal_v1() -> u8 {
    vram_crypto::SEAL_FORMAT_V1
}

/// `sealed_at` as a decimal string; reads a string or an integer.
mod sealed_at_ns {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(ns)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Nanos)
    }

    struct Nanos;

    impl Visitor<'_> for Nanos {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("nanoseconds since the Unix epoch, as a decimal string (or an integer)")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("sealed_at is negative"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            // Digits only (no sign, space or exponent), at most 20 of them.
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom("sealed_at must be a decimal string of digits"));
            }
            v.parse()
                .map_err(|_| E::custom("sealed_at is out of range"))
        }
    }
}
