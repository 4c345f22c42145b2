//! A sealed shard: model bytes resident on a device, with the seal that says
//! what they must be. Read-only; dropping it frees the device memory, releases
//! the capacity reservation and audits the deallocation.

use crate::trail::AuditTrail;
use crate::Provenance;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use vram_audit::AuditEvent;
use vram_core::{DeviceBuffer, DeviceKind, Reservation};
use vram_crypto::{
    LeafHashes, LeafIndex, LeafSize, SealBinding, SealDeviceKind, SealMessage, SealTag,
    Sha256Digest, TreeDescriptor, TreeDigest, TREE_FORMAT_VERSION,
};
use vram_secrets::KeyId;
use vram_validation::{ModelRef, ShardId, ShardPosition};

/// Everything a seal's tag covers, in the shard's own types: built once, by
/// the manager's seal path, and turned into the signed message
/// ([`SealContent::message`]) and the client's handle
/// ([`SealContent::handle`]) here only.
#[derive(Clone)]
pub(crate) struct SealContent {
    pub(crate) shard_id: ShardId,
    pub(crate) model_ref: ModelRef,
    pub(crate) device: u32,
    pub(crate) device_kind: DeviceKind,
    /// The device's UUID when its backend reports one.
    pub(crate) device_uuid: Option<[u8; 16]>,
    /// The worker that sealed.
    pub(crate) worker_id: String,
    /// The tensor-parallel set sealed together.
    pub(crate) set_id: [u8; 16],
    /// Which signed model the bytes were checked against, when the caller
    /// said (the seal is then format v3).
    pub(crate) provenance: Option<Provenance>,
    pub(crate) len: u64,
    pub(crate) tree: TreeDigest,
    pub(crate) sealed_at_ns: u64,
    pub(crate) position: ShardPosition,
    pub(crate) key_id: KeyId,
}

impl SealContent {
    /// The canonical message the tag authenticates.
    pub(crate) fn message(&self) -> SealMessage<'_> {
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
                device_kind: seal_device_kind(self.device_kind),
                device_uuid: self.device_uuid,
                worker_id: &self.worker_id,
                set_id: self.set_id,
                provenance: self.provenance.as_ref().map(Provenance::as_seal),
            }),
        }
    }

    /// The handle a client gets: these fields and `tag`, as strings.
    pub(crate) fn handle(&self, tag: &SealTag) -> ModelShardHandle {
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
            signature: tag.to_string(),
            seal_version: self.message().version(),
            device_kind: Some(self.device_kind.as_str().to_string()),
            device_uuid: self.device_uuid.map(|u| vram_validation::hex::encode(&u)),
            worker_id: Some(self.worker_id.clone()),
            set_id: Some(vram_validation::hex::encode(&self.set_id)),
            provenance: self.provenance.clone(),
        }
    }
}

/// What a sealed shard holds besides its seal: the leaf hashes, the plain
/// digest, and the device memory with its capacity reservation.
pub(crate) struct Resident {
    pub(crate) leaves: LeafHashes,
    pub(crate) plain_sha256: Option<Sha256Digest>,
    pub(crate) buffer: Box<dyn DeviceBuffer>,
    /// Whether the device reported it hashes leaves itself
    /// (`DeviceCapabilities::hash_on_device`).
    pub(crate) hashes_on_device: bool,
    pub(crate) reservation: Reservation,
    pub(crate) audit: Arc<AuditTrail>,
}

/// Model bytes sealed in device memory.
///
/// Obtained from [`VramManager::seal`](crate::VramManager::seal) and
/// friends; verified with [`VramManager::verify_sealed`](crate::VramManager::verify_sealed).
/// `Debug` and the serializable [`ModelShardHandle`] never show device addresses.
pub struct SealedShard {
    /// What the tag covers.
    pub(crate) content: SealContent,
    pub(crate) tag: SealTag,
    pub(crate) leaves: LeafHashes,
    /// A hash tree over `leaves`, built from them at birth (when they match
    /// the sealed root): what a sampled check proves one leaf's recorded
    /// hash with, in `O(log n)` hashes instead of the root's `O(n)`.
    pub(crate) index: LeafIndex,
    plain_sha256: Option<Sha256Digest>,
    /// Set by the first verification that finds the bytes or the seal wrong;
    /// never cleared.
    compromised: AtomicBool,
    /// When every leaf was last verified: nanoseconds after [`clock_base`],
    /// plus one (0: never).
    last_full: AtomicU64,
    /// Leases granted since the last `leases_granted` record.
    leases: Mutex<LeaseTally>,
    /// The tensor table, read from the shard's memory at the first lease
    /// that asks for it: `Err` with the reason when it holds no usable
    /// safetensors file.
    tensors: OnceLock<Result<crate::tensors::TensorTable, String>>,
    /// Whether the device hashes leaves itself, as it reported when the
    /// shard was sealed: verification asks it only then.
    hashes_on_device: bool,
    // Field order matters: the buffer (device memory) is freed before the
    // reservation is released, so capacity is never handed out twice.
    buffer: Box<dyn DeviceBuffer>,
    _reservation: Reservation,
    audit: Arc<AuditTrail>,
    /// Set once the deallocation was audited (by [`SealedShard::release`]).
    released: bool,
}

impl SealedShard {
    /// The one way to make a shard: its seal (`content` and the `tag` the
    /// sealer made over [`SealContent::message`]) and the resident bytes.
    pub(crate) fn new(content: SealContent, tag: SealTag, resident: Resident) -> Self {
        let Resident {
            leaves,
            plain_sha256,
            buffer,
            hashes_on_device,
            reservation,
            audit,
        } = resident;
        // Fix the clock base no later than the shard's birth, so every
        // verification time noted for it is at or after the base.
        let _ = clock_base();
        let index = LeafIndex::over(&leaves);
        Self {
            content,
            tag,
            leaves,
            index,
            plain_sha256,
            compromised: AtomicBool::new(false),
            last_full: AtomicU64::new(0),
            leases: Mutex::new(LeaseTally::default()),
            tensors: OnceLock::new(),
            hashes_on_device,
            buffer,
            _reservation: reservation,
            audit,
            released: false,
        }
    }
}

impl SealedShard {
    /// The shard's identifier.
    pub fn shard_id(&self) -> &ShardId {
        &self.content.shard_id
    }
    /// Where the model came from.
    pub fn model_ref(&self) -> &ModelRef {
        &self.content.model_ref
    }
    /// Index of the device holding the bytes.
    pub fn gpu_device(&self) -> u32 {
        self.content.device
    }
    /// Kind of the device holding the bytes (a mock is never real VRAM).
    pub fn device_kind(&self) -> DeviceKind {
        self.content.device_kind
    }
    /// The device's UUID, when its backend reports one (CUDA; never the mock).
    pub fn device_uuid(&self) -> Option<[u8; 16]> {
        self.content.device_uuid
    }
    /// The worker that sealed the shard.
    pub fn worker_id(&self) -> &str {
        &self.content.worker_id
    }
    /// The random id shared by the shards sealed together as one set.
    pub fn set_id(&self) -> [u8; 16] {
        self.content.set_id
    }
    /// Which signed model, and which file of it, the bytes were checked
    /// against before sealing; `None` when the request named none.
    pub fn provenance(&self) -> Option<&Provenance> {
        self.content.provenance.as_ref()
    }
    /// The seal format version: 3 for a shard with a
    /// [provenance](SealedShard::provenance), else 2.
    pub fn seal_version(&self) -> u8 {
        self.content.message().version()
    }
    /// Bytes resident in device memory.
    pub fn vram_bytes(&self) -> u64 {
        self.content.len
    }
    /// The chunk-tree digest the seal commits to.
    pub fn tree_digest(&self) -> &TreeDigest {
        &self.content.tree
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
        self.content.sealed_at_ns
    }
    /// Position in a tensor-parallel set (0 of 1 for a lone shard).
    pub fn position(&self) -> ShardPosition {
        self.content.position
    }
    /// Fingerprint of the seal key.
    pub fn key_id(&self) -> KeyId {
        self.content.key_id
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
                shard_id: self.content.shard_id.to_string(),
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn mark_compromised(&self) {
        self.compromised.store(true, Ordering::Release);
    }

    /// A serializable view for API responses. An altered handle fails
    /// [`VramManager::verify_handle`](crate::VramManager::verify_handle).
    pub fn handle(&self) -> ModelShardHandle {
        self.content.handle(&self.tag)
    }

    pub(crate) fn buffer(&self) -> &dyn DeviceBuffer {
        self.buffer.as_ref()
    }

    /// Whether the shard's device hashes leaves itself.
    pub(crate) fn hashes_on_device(&self) -> bool {
        self.hashes_on_device
    }

    /// Notes that every leaf was verified at or after `at`.
    pub(crate) fn note_full_verification(&self, at: Instant) {
        let ns = at.saturating_duration_since(clock_base()).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX).saturating_add(1);
        self.last_full.fetch_max(ns, Ordering::AcqRel);
    }

    /// How long ago every leaf was last verified, if ever.
    pub(crate) fn since_full_verification(&self) -> Option<Duration> {
        let ns = self.last_full.load(Ordering::Acquire).checked_sub(1)?;
        let at = clock_base().checked_add(Duration::from_nanos(ns))?;
        Some(Instant::now().saturating_duration_since(at))
    }

    /// The tensor table, once it has been read (see [`SealedShard::set_tensor_table`]).
    pub(crate) fn tensor_table(&self) -> Result<&crate::tensors::TensorTable, crate::VramError> {
        match self.tensors.get() {
            Some(Ok(table)) => Ok(table),
            Some(Err(reason)) => Err(crate::VramError::NotSafetensors {
                shard_id: self.content.shard_id.to_string(),
                reason: reason.clone(),
            }),
            None => Err(crate::VramError::NotSafetensors {
                shard_id: self.content.shard_id.to_string(),
                reason: "its tensor table has not been read (ask the manager for a lease)".into(),
            }),
        }
    }

    /// The tensors `ranges` touch, named for an error and its audit record
    /// (empty when the shard's tensor table is not known).
    pub(crate) fn corrupt_tensors(&self, ranges: &[vram_crypto::CorruptRange]) -> Vec<String> {
        match self.tensors.get() {
            Some(Ok(table)) => table.describe(ranges),
            _ => Vec::new(),
        }
    }

    /// Whether the tensor table has been read (or found missing).
    pub(crate) fn has_tensor_table(&self) -> bool {
        self.tensors.get().is_some()
    }

    /// Keeps the table read from the shard's verified header (the first
    /// one, if two threads race).
    pub(crate) fn set_tensor_table(&self, table: Result<crate::tensors::TensorTable, String>) {
        let _ = self.tensors.set(table);
    }

    /// Counts a granted lease; returns the tally to record when `interval`
    /// has passed since the last record (or since the shard was sealed).
    pub(crate) fn count_lease(
        &self,
        report: &crate::VerifyReport,
        interval: Duration,
    ) -> Option<LeaseTally> {
        let mut tally = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        tally.count = tally.count.saturating_add(1);
        tally.leaves = tally.leaves.saturating_add(report.leaves_checked);
        tally.bytes = tally.bytes.saturating_add(report.bytes_checked);
        let ns = u64::try_from(report.elapsed.as_nanos()).unwrap_or(u64::MAX);
        tally.verify_ns = tally.verify_ns.saturating_add(ns);
        let since = *tally.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= interval {
            let taken = std::mem::take(&mut *tally);
            tally.since = Some(Instant::now());
            return Some(taken);
        }
        None
    }

    /// The record of a tally of granted leases.
    pub(crate) fn leases_event(&self, tally: &LeaseTally) -> AuditEvent {
        AuditEvent::LeasesGranted {
            shard_id: self.content.shard_id.to_string(),
            gpu_device: self.content.device,
            count: tally.count,
            leaves_checked: tally.leaves,
            bytes_checked: tally.bytes,
            verify_ns: tally.verify_ns,
        }
    }

    /// The leases granted and not yet recorded, taken (for the release).
    fn take_leases(&self) -> Option<LeaseTally> {
        let mut tally = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        (tally.count > 0).then(|| std::mem::take(&mut *tally))
    }
}

/// Leases granted on a shard and not yet recorded.
#[derive(Debug, Default)]
pub(crate) struct LeaseTally {
    pub(crate) count: u64,
    pub(crate) leaves: u64,
    pub(crate) bytes: u64,
    pub(crate) verify_ns: u64,
    /// Start of the interval (the first lease after the last record).
    since: Option<Instant>,
}

/// The process's base for monotonic timestamps kept as integers.
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl fmt::Debug for SealedShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.content;
        f.debug_struct("SealedShard")
            .field("shard_id", &c.shard_id.as_str())
            .field("model_ref", &c.model_ref.as_str())
            .field("gpu_device", &c.device)
            .field("device_kind", &c.device_kind.as_str())
            .field("vram_bytes", &c.len)
            .field("tree_digest", &c.tree.root.to_string())
            .field("leaf_size", &c.tree.descriptor.leaf_size.bytes())
            .field("sealed_at_ns", &c.sealed_at_ns)
            .field("position", &(c.position.index(), c.position.total()))
            .field("key_id", &c.key_id.to_string())
            .field("worker_id", &c.worker_id)
            .field("set_id", &vram_validation::hex::encode(&c.set_id))
            .field("provenance", &c.provenance)
            .field("compromised", &self.is_compromised())
            .finish_non_exhaustive()
    }
}

impl SealedShard {
    fn deallocated_event(&self) -> AuditEvent {
        AuditEvent::VramDeallocated {
            shard_id: self.content.shard_id.to_string(),
            gpu_device: self.content.device,
            bytes: self.content.len,
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
        if let Some(tally) = self.take_leases() {
            self.audit.record_secondary(self.leases_event(&tally));
        }
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
            if let Some(tally) = self.take_leases() {
                self.audit.record_secondary(self.leases_event(&tally));
            }
            self.audit.record_secondary(self.deallocated_event());
        }
        tracing::debug!(
            shard_id = %self.content.shard_id,
            bytes = self.content.len,
            "shard released"
        );
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

/// The device kind as a seal encodes it.
pub(crate) fn seal_device_kind(kind: DeviceKind) -> SealDeviceKind {
    match kind {
        DeviceKind::Cuda => SealDeviceKind::Cuda,
        // A kind added later is never sealed as CUDA memory by default.
        _ => SealDeviceKind::Mock,
    }
}

impl ModelShardHandle {
    /// The handle read back: its digest, tag and v2/v3 fields parsed in their
    /// one canonical spelling (lower-case hex, as [`SealedShard::handle`]
    /// writes them; a handle is compared as a whole elsewhere, and two
    /// spellings of one seal must not both pass). `None` for anything a
    /// shard's handle never is.
    pub(crate) fn read_back(&self) -> Option<ReadHandle<'_>> {
        let leaf_size = LeafSize::new(self.leaf_size).ok()?;
        let root: Sha256Digest = self.digest.parse().ok()?;
        let tag: SealTag = self.signature.parse().ok()?;
        if root.to_string() != self.digest || tag.to_string() != self.signature {
            return None;
        }
        Some(ReadHandle {
            handle: self,
            tree: TreeDigest {
                descriptor: TreeDescriptor {
                    version: TREE_FORMAT_VERSION,
                    leaf_size,
                    total_len: self.vram_bytes,
                },
                root,
            },
            tag,
            binding: self.binding()?,
        })
    }

    /// The v2 (and v3) fields as a seal binding: `Some(None)` for a
    /// well-formed v1 handle (none of them present), `Some(Some(_))` for a
    /// well-formed v2 handle (no provenance) or v3 handle (with one), `None`
    /// for anything else (an unknown version, a v1 handle carrying v2 fields,
    /// a v2 handle carrying a provenance, a v3 handle without one, a missing
    /// or non-canonical field).
    fn binding(&self) -> Option<Option<SealBinding<'_>>> {
        let provenance = self.provenance.as_ref().map(Provenance::as_seal);
        match (self.seal_version, provenance) {
            (vram_crypto::SEAL_FORMAT_V1, None) => {
                let bare = self.device_kind.is_none()
                    && self.device_uuid.is_none()
                    && self.worker_id.is_none()
                    && self.set_id.is_none();
                bare.then_some(None)
            }
            (vram_crypto::SEAL_FORMAT_V2, None) | (vram_crypto::SEAL_FORMAT_V3, Some(_)) => {
                let device_kind = SealDeviceKind::from_name(self.device_kind.as_deref()?)?;
                let device_uuid = match self.device_uuid.as_deref() {
                    Some(u) => Some(vram_validation::hex::decode_lower(u)?),
                    None => None,
                };
                Some(Some(SealBinding {
                    device_kind,
                    device_uuid,
                    worker_id: self.worker_id.as_deref()?,
                    set_id: vram_validation::hex::decode_lower(self.set_id.as_deref()?)?,
                    provenance,
                }))
            }
            _ => None,
        }
    }
}

/// A [`ModelShardHandle`] read back ([`ModelShardHandle::read_back`]).
pub(crate) struct ReadHandle<'h> {
    handle: &'h ModelShardHandle,
    tree: TreeDigest,
    /// The handle's tag.
    pub(crate) tag: SealTag,
    /// The handle's v2/v3 fields (`None` for a v1 handle).
    pub(crate) binding: Option<SealBinding<'h>>,
}

impl ReadHandle<'_> {
    /// The message the handle's tag covers, under the seal key `key_id`.
    pub(crate) fn message(&self, key_id: KeyId) -> SealMessage<'_> {
        let h = self.handle;
        SealMessage {
            shard_id: &h.shard_id,
            model_ref: &h.model_ref,
            device_index: h.gpu_device,
            byte_len: h.vram_bytes,
            tree: &self.tree,
            sealed_at_ns: h.sealed_at,
            shard_index: h.shard_index,
            shard_total: h.shard_total,
            key_id: *key_id.as_bytes(),
            binding: self.binding,
        }
    }
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
