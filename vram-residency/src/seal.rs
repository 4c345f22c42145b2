//! Making a seal: the one public entry ([`VramManager::seal`]), the seal
//! transaction ([`SealTransaction`]: what a seal in progress holds, and what
//! its `Drop` gives back and audits when it does not complete), and the
//! sealer, the one holder of the seal key, which signs seal messages and
//! checks tags. Every seal the manager makes and every tag it checks (a
//! shard's, a client's handle's) goes through it.

use crate::metrics::Metrics;
use crate::pipeline::{self, Hashed, Input, Route, SealJob};
use crate::request::{SealRequest, SealSource};
use crate::shard::{Resident, SealContent, SealedShard};
use crate::trail::AuditTrail;
use crate::{Provenance, VramError, VramManager};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vram_audit::AuditEvent;
use vram_core::{CapacityError, CapacityTracker, Device, DeviceBuffer, Reservation};
use vram_crypto::{
    sign_model_binding, sign_seal_with, verify_model_binding, verify_seal_with, HmacKey,
    ModelBinding, SealMessage, SealTag,
};
use vram_crypto::{LeafHashes, LeafSize, Sha256Digest, TreeDescriptor, TreeDigest};
use vram_secrets::{KeyId, SecretKey};
use vram_validation::{format_bytes, validate_model_size, ShardId};

/// The seal key (kept so that its bytes zeroize with the manager), the HMAC
/// key built from it once, its fingerprint, and the worker id bound into
/// every seal.
pub(crate) struct Sealer {
    _key: SecretKey,
    mac: HmacKey,
    key_id: KeyId,
    worker_id: String,
}

impl Sealer {
    /// A sealer for `key`, signing as `worker_id`.
    pub(crate) fn new(key: SecretKey, worker_id: String) -> Result<Self, VramError> {
        let mac = HmacKey::new(key.expose_secret())?;
        Ok(Self {
            key_id: key.key_id(),
            _key: key,
            mac,
            worker_id,
        })
    }

    /// The seal key's fingerprint (bound into every seal; safe to log).
    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The worker id bound into every seal (format v2 and later).
    pub(crate) fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Signs a seal message.
    pub(crate) fn sign(&self, message: &SealMessage<'_>) -> Result<SealTag, VramError> {
        Ok(sign_seal_with(&self.mac, message)?)
    }

    /// Whether `tag` authenticates `message` under this key (constant time).
    pub(crate) fn is_authentic(&self, message: &SealMessage<'_>, tag: &SealTag) -> bool {
        verify_seal_with(&self.mac, message, tag).is_ok()
    }

    /// Signs a model binding.
    pub(crate) fn sign_model(&self, binding: &ModelBinding<'_>) -> Result<SealTag, VramError> {
        Ok(sign_model_binding(&self.mac, binding)?)
    }

    /// Whether `tag` authenticates `binding` under this key (constant time).
    pub(crate) fn is_authentic_model(&self, binding: &ModelBinding<'_>, tag: &SealTag) -> bool {
        verify_model_binding(&self.mac, binding, tag).is_ok()
    }
}

/// What a seal borrows from its manager.
pub(crate) struct SealContext<'m> {
    pub(crate) sealer: &'m Sealer,
    pub(crate) audit: &'m Arc<AuditTrail>,
    pub(crate) metrics: &'m Metrics,
    pub(crate) max_model_bytes: u64,
    pub(crate) leaf: LeafSize,
    pub(crate) staging: usize,
}

/// The device a seal goes to, with its capacity tracker and the route chosen
/// for it when the manager was built.
pub(crate) struct SealTarget<'m> {
    pub(crate) index: u32,
    pub(crate) device: &'m Arc<dyn Device>,
    pub(crate) tracker: &'m Arc<CapacityTracker>,
    pub(crate) route: Route,
    /// Whether the device reported it hashes leaves itself.
    pub(crate) hashes_on_device: bool,
}

impl VramManager {
    /// Seals the bytes of one shard, from `source`, as `request` describes.
    ///
    /// Order: validate, reserve capacity, allocate, copy and hash
    /// (overlapped, by the route chosen for the device from its
    /// [capabilities](vram_core::Device::capabilities)), check the expected
    /// digest, sign, audit. Any failure releases everything (device memory,
    /// then capacity) and audits the failure (`seal_failed`, and
    /// `vram_deallocated` once `vram_allocated` was recorded).
    ///
    /// A seal is a success only once its records are in the audit log: when
    /// the sink's policy is fail-closed and `vram_allocated` or `vram_sealed`
    /// cannot be written (and flushed, when due), the shard is released and
    /// the error is [`VramError::Audit`], naming the log. Under best effort a
    /// lost record is counted in
    /// [`MetricsSnapshot::audit_records_lost`](crate::MetricsSnapshot::audit_records_lost).
    ///
    /// This is the one way to seal. Sources that make several shards have
    /// their own typed entry, so that each caller gets the type it asked for
    /// rather than an enum to take apart: a snapshot directory is sealed as
    /// one model by [`VramManager::seal_model`]; a tensor-parallel set is its
    /// parts sealed here under [`SealRequest::for_set`]'s requests and
    /// collected into a [`ShardSet`](crate::ShardSet).
    ///
    /// # Errors
    /// Invalid input, insufficient VRAM (retriable), allocation or device
    /// failure, expected-digest mismatch (fatal), audit failure under
    /// fail-closed; [`VramError::Io`] for read failures (and for a
    /// [`SealSource::File`] that is not a regular file);
    /// [`VramError::LengthMismatch`] when a reader ends early or runs long,
    /// or a file changes length while it is sealed.
    pub fn seal(
        &self,
        request: &SealRequest,
        source: SealSource<'_>,
    ) -> Result<SealedShard, VramError> {
        let (len, input) = input_of(source)?;
        let shard_id = match &request.shard_id {
            Some(id) => id.clone(),
            None => random_shard_id()?,
        };
        let mut tx = SealTransaction::begin(self.seal_context(), shard_id, len);
        let sealed = tx.run(request, self.seal_target(request.gpu_device), input);
        if let Err(e) = &sealed {
            tx.fail(e);
        }
        // An unfinished transaction releases and audits as it drops, here.
        sealed
    }
}

/// What the pipeline reads, and how many bytes: a file's length as it is now.
fn input_of(source: SealSource<'_>) -> Result<(u64, Input<'_>), VramError> {
    static NO_PROGRESS: fn(u64) = |_| {};
    Ok(match source {
        SealSource::Bytes(bytes) => (
            u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            Input::Slice(bytes),
        ),
        SealSource::File { file, progress } => {
            let meta = file
                .metadata()
                .map_err(|e| VramError::Io { kind: e.kind() })?;
            if !meta.is_file() {
                return Err(VramError::Io {
                    kind: std::io::ErrorKind::InvalidInput,
                });
            }
            let len = meta.len();
            let progress: &(dyn Fn(u64) + Sync) = match progress {
                Some(p) => p,
                None => &NO_PROGRESS,
            };
            (
                len,
                Input::File {
                    file,
                    len,
                    progress,
                },
            )
        }
        SealSource::Reader { reader, len } => (len, Input::Reader { reader, len }),
    })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn random_shard_id() -> Result<ShardId, VramError> {
    let bytes = crate::sampling::random_id()?;
    let hex = vram_validation::hex::encode(&bytes);
    Ok(ShardId::new(&format!("shard-{hex}"))?)
}

/// One seal in progress and everything it holds: the capacity reservation,
/// the device memory, and the audit record it owes.
///
/// Until [`SealTransaction::run`] hands its shard out, dropping it (on any
/// error, or a panic) frees the device memory, then releases the
/// reservation, then audits the failure: `seal_failed` with the stage and
/// reason [`SealTransaction::fail`] noted, and `vram_deallocated` when
/// `vram_allocated` reached the log. Every error path is this one path.
pub(crate) struct SealTransaction<'m> {
    ctx: SealContext<'m>,
    shard_id: ShardId,
    len: u64,
    // Field order: device memory is freed before the reservation that
    // accounts for it is released (as in `SealedShard`).
    buffer: Option<Box<dyn DeviceBuffer>>,
    reservation: Option<Reservation>,
    /// The device whose `vram_allocated` reached the log.
    allocated_on: Option<u32>,
    /// The failure's stage and reason, once noted.
    failure: Option<(&'static str, String)>,
    /// Whether the shard was handed out (nothing to undo).
    committed: bool,
}

impl<'m> SealTransaction<'m> {
    /// A transaction for `len` bytes under `shard_id`, holding nothing yet.
    pub(crate) fn begin(ctx: SealContext<'m>, shard_id: ShardId, len: u64) -> Self {
        Self {
            ctx,
            shard_id,
            len,
            buffer: None,
            reservation: None,
            allocated_on: None,
            failure: None,
            committed: false,
        }
    }

    /// Notes why the seal failed, for the record its drop writes.
    pub(crate) fn fail(&mut self, e: &VramError) {
        self.failure = Some((seal_stage(e), e.to_string()));
    }

    /// Validates, reserves, allocates, fills by the target's route, checks,
    /// signs and audits; on success the shard takes over the memory and the
    /// reservation.
    pub(crate) fn run(
        &mut self,
        request: &SealRequest,
        target: Result<SealTarget<'_>, VramError>,
        input: Input<'_>,
    ) -> Result<SealedShard, VramError> {
        let len = self.len;
        validate_model_size(len, self.ctx.max_model_bytes)?;
        let target = target?;
        // Whether a plain SHA-256 is wanted is decided once, here; the
        // route was decided for the device when the manager was built.
        let job = SealJob {
            device: target.index,
            leaf: self.ctx.leaf,
            staging: self.ctx.staging,
            want_plain: request.wants_plain_sha256(),
            route: target.route,
        };
        let buffer = self.acquire(&target)?;
        let Hashed { leaves, plain } = pipeline::fill(buffer, &job, input)?;
        let leaves = LeafHashes::from_parts(TreeDescriptor::new(self.ctx.leaf, len), leaves)?;
        if let Some(expected) = &request.expected_sha256 {
            let expected_digest = Sha256Digest(expected.to_bytes());
            let matches = plain.as_ref().is_some_and(|p| p.ct_eq(&expected_digest));
            if !matches {
                return Err(VramError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: plain.map(|p| p.to_string()).unwrap_or_default(),
                });
            }
        }
        let tree: TreeDigest = leaves.root();
        let set_id = match request.set_id {
            Some(id) => id,
            None => crate::sampling::random_id()?,
        };
        let info = target.device.info();
        let sealer = self.ctx.sealer;
        let content = SealContent {
            shard_id: self.shard_id.clone(),
            model_ref: request.model_ref.clone(),
            device: target.index,
            device_kind: info.kind,
            device_uuid: info.uuid,
            worker_id: sealer.worker_id().to_string(),
            set_id,
            provenance: request.provenance.clone(),
            len,
            tree,
            sealed_at_ns: now_ns(),
            position: request.position,
            key_id: sealer.key_id(),
        };
        let tag = sealer.sign(&content.message())?;
        self.ctx.audit.record(AuditEvent::VramSealed {
            shard_id: self.shard_id.to_string(),
            model_ref: request.model_ref.to_string(),
            gpu_device: target.index,
            device_kind: info.kind.as_str().to_string(),
            vram_bytes: len,
            tree_digest: content.tree.root.to_string(),
            leaf_size: self.ctx.leaf.bytes(),
            key_id: content.key_id.to_string(),
            provenance: request.provenance.as_ref().map(Provenance::audit_record),
        })?;
        let (Some(buffer), Some(reservation)) = (self.buffer.take(), self.reservation.take())
        else {
            return Err(VramError::Internal {
                reason: "a seal lost its device memory before it completed",
            });
        };
        self.committed = true;
        self.ctx.metrics.seal_ok(len);
        tracing::info!(
            shard_id = %self.shard_id,
            gpu_device = target.index,
            bytes = len,
            tree_digest = %content.tree.root,
            "sealed"
        );
        Ok(SealedShard::new(
            content,
            tag,
            Resident {
                leaves,
                plain_sha256: plain,
                buffer,
                hashes_on_device: target.hashes_on_device,
                reservation,
                audit: Arc::clone(self.ctx.audit),
            },
        ))
    }

    /// Reserves capacity (before touching the device: concurrent seals can
    /// never over-commit), allocates the device memory and records
    /// `vram_allocated`; the transaction holds both from then on.
    fn acquire(&mut self, target: &SealTarget<'_>) -> Result<&mut dyn DeviceBuffer, VramError> {
        let (len, index, audit) = (self.len, target.index, self.ctx.audit);
        let reservation = target.tracker.reserve(len).map_err(|e| {
            let (needed, available) = match e {
                CapacityError::Insufficient {
                    needed, available, ..
                } => (needed, available),
                _ => (len, target.tracker.available()),
            };
            audit.record_secondary(AuditEvent::VramAllocationFailed {
                gpu_device: index,
                requested: needed,
                available,
                reason: "capacity".into(),
            });
            VramError::InsufficientVram {
                device: index,
                needed,
                available,
                needed_h: format_bytes(needed),
                available_h: format_bytes(available),
            }
        })?;
        self.reservation = Some(reservation);
        let buffer = target.device.alloc(len).map_err(|source| {
            let available = target.device.memory_info().map_or(0, |m| m.free);
            audit.record_secondary(AuditEvent::VramAllocationFailed {
                gpu_device: index,
                requested: len,
                available,
                reason: source.to_string(),
            });
            VramError::AllocationFailed {
                device: index,
                bytes: len,
                source,
            }
        })?;
        let buffer = self.buffer.insert(buffer);
        let receipt = audit.record(AuditEvent::VramAllocated {
            shard_id: self.shard_id.to_string(),
            gpu_device: index,
            bytes: len,
        })?;
        if receipt.is_written() {
            self.allocated_on = Some(index);
        }
        Ok(buffer.as_mut())
    }
}

impl Drop for SealTransaction<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Device memory first, then the capacity that accounts for it.
        drop(self.buffer.take());
        drop(self.reservation.take());
        let (stage, reason) = self.failure.take().unwrap_or((
            "seal",
            "the seal was interrupted before it completed".into(),
        ));
        self.ctx.metrics.seal_failed();
        tracing::warn!(shard_id = %self.shard_id, error = %reason, "seal failed");
        // The caller gets the seal's own error, which matters more than a
        // failure to audit it; the trail counts and logs such a failure.
        self.ctx.audit.record_secondary(AuditEvent::SealFailed {
            shard_id: self.shard_id.to_string(),
            stage: stage.to_string(),
            reason,
        });
        if let Some(gpu_device) = self.allocated_on {
            // Every `vram_allocated` has its `vram_deallocated`.
            self.ctx
                .audit
                .record_secondary(AuditEvent::VramDeallocated {
                    shard_id: self.shard_id.to_string(),
                    gpu_device,
                    bytes: self.len,
                });
        }
    }
}

/// The stage of a seal an error comes from, for its `seal_failed` record.
fn seal_stage(e: &VramError) -> &'static str {
    match e {
        VramError::InvalidInput(_) | VramError::UnknownDevice { .. } => "validate",
        VramError::InsufficientVram { .. } => "reserve",
        VramError::AllocationFailed { .. } => "allocate",
        VramError::Io { .. } | VramError::LengthMismatch { .. } | VramError::Device { .. } => {
            "copy"
        }
        VramError::DigestMismatch { .. } => "expected_digest",
        VramError::UploadMismatch { .. } => "upload_check",
        VramError::Crypto(_) => "sign",
        VramError::Internal { .. } => "hash",
        _ => "seal",
    }
}

#[cfg(test)]
mod tests {
    use super::SealTransaction;
    use crate::{VramConfig, VramManager};
    use std::sync::Arc;
    use vram_audit::{AuditKey, AuditLog, AuditSink};
    use vram_core::Device;
    use vram_mock::MockDevice;
    use vram_secrets::WorkerSecret;
    use vram_validation::ShardId;

    /// A seal that stops half-way without an error to note (a panic in a
    /// fill, say) still gives everything back and owes its records: the
    /// transaction's drop frees the memory, releases the capacity and audits
    /// `seal_failed` and `vram_deallocated`.
    #[test]
    fn a_transaction_dropped_half_way_releases_and_audits() {
        let device = MockDevice::new(0, 64 << 20);
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![5u8; 32])).unwrap();
        let audit =
            Arc::new(AuditLog::in_memory(AuditKey::from_secret(&secret.audit_key()), "t").unwrap());
        let sink: Arc<dyn AuditSink> = audit.clone();
        let dynamic: Arc<dyn Device> = device.clone();
        let m = VramManager::new(
            VramConfig::builder(secret)
                .device(dynamic)
                .audit(sink)
                .build(),
        )
        .unwrap();
        let id = ShardId::new("shard-half-way").unwrap();
        let mut tx = SealTransaction::begin(m.seal_context(), id, 3 << 20);
        let target = m.seal_target(0).unwrap();
        tx.acquire(&target).unwrap();
        assert_eq!(device.live_allocations(), 1);
        assert_eq!(m.used_vram(0), 3 << 20);
        drop(tx);
        assert_eq!(device.live_allocations(), 0, "device memory kept");
        assert_eq!(m.used_vram(0), 0, "capacity kept");
        let lines = audit.lines();
        let of = |kind: &str| {
            lines
                .iter()
                .filter(|l| l.contains(&format!("\"type\":\"{kind}\"")) && l.contains("half-way"))
                .count()
        };
        assert_eq!(of("vram_allocated"), 1);
        assert_eq!(of("seal_failed"), 1);
        assert_eq!(of("vram_deallocated"), 1);
        assert!(lines
            .iter()
            .any(|l| l.contains("seal_failed") && l.contains("interrupted")));
        assert_eq!(m.metrics().seal_failures, 1);
    }
}
