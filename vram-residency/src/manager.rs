//! `VramManager`: the entry point. Composes validation, crypto, secrets, audit
//! and devices. `Send + Sync`, every operation takes `&self`, and no global lock
//! is held across sealing or verification.

use crate::config::{DeviceSource, VramConfig};
use crate::detect::{cuda_devices, detect};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pipeline::{self, Hashed, SealJob, SealSource};
use crate::request::SealRequest;
use crate::seal::Sealer;
use crate::set::ShardSet;
use crate::shard::{ModelShardHandle, Resident, SealContent, SealedShard};
use crate::trail::AuditTrail;
use crate::verify::{AuditMode, Scope, Verifier, VerifyPolicy, VerifyReport};
use crate::{Provenance, VramError};
use std::io::Read;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use vram_audit::{AuditEvent, AuditSink};
use vram_core::{CapacityError, CapacityTracker, Device, DeviceInfo, DeviceKind};
use vram_crypto::{LeafHashes, LeafSize, Sha256Digest, TreeDescriptor, TreeDigest};
use vram_secrets::KeyId;
use vram_validation::{format_bytes, validate_model_size, ModelRef, ShardId};

/// One managed device and the capacity tracker that guards it.
struct DeviceSlot {
    device: Arc<dyn Device>,
    tracker: Arc<CapacityTracker>,
}

struct Inner {
    devices: Vec<DeviceSlot>,
    /// Signs every seal and checks every tag; binds the worker id.
    sealer: Sealer,
    audit: Arc<AuditTrail>,
    max_model_bytes: u64,
    leaf_size: LeafSize,
    verify_policy: VerifyPolicy,
    staging_bytes: usize,
    seal_hashing: crate::SealHashing,
    metrics: Metrics,
}

/// Seals model bytes into device memory and verifies them.
///
/// Cheap to clone (an `Arc` inside); clones share devices, keys, audit trail
/// and metrics.
#[derive(Clone)]
pub struct VramManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VramManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VramManager")
            .field("devices", &self.inner.devices.len())
            .field("seal_key_id", &self.inner.sealer.key_id().to_string())
            .field("leaf_size", &self.inner.leaf_size.bytes())
            .field("verify_policy", &self.inner.verify_policy)
            .finish_non_exhaustive()
    }
}

/// Capacity figures for one device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DeviceCapacity {
    /// Device index.
    pub device: u32,
    /// Bytes this manager may use on the device (total minus headroom).
    pub total: u64,
    /// Bytes reserved by sealed shards and seals in progress.
    pub used: u64,
    /// Bytes still available to seal.
    pub available: u64,
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

impl VramManager {
    /// Builds a manager from a validated configuration: derives the seal and
    /// audit keys, finds devices, sizes the capacity trackers.
    ///
    /// # Errors
    /// [`VramError::InvalidConfig`] for unusable settings; device errors when a
    /// device cannot be queried; [`VramError::PolicyViolation`] when a device
    /// fails the VRAM-only policy; [`VramError::Audit`] when the
    /// [audit file](crate::VramConfigBuilder::audit_file) cannot be opened
    /// (in use by another writer, not a log of this key, the secret file...).
    pub fn new(config: VramConfig) -> Result<Self, VramError> {
        config.validate()?;
        let devices: Vec<Arc<dyn Device>> = match config.devices {
            DeviceSource::Explicit(d) => d,
            DeviceSource::Detect => {
                let found = detect()?;
                if let Some(reason) = found.fallback_reason() {
                    tracing::warn!(
                        reason = %reason,
                        "NO CUDA DEVICE FOUND: using the MOCK device (host memory). Seals are not in VRAM."
                    );
                }
                found.devices()
            }
            DeviceSource::CudaOnly => cuda_devices()?,
        };
        let sealer = Sealer::new(config.secret.seal_key(), config.worker_id.clone())?;
        let sink: Arc<dyn AuditSink> = match (config.audit, config.audit_file) {
            (Some(a), _) => a,
            (None, Some((path, options))) => {
                let key = vram_audit::AuditKey::from_secret(&config.secret.audit_key());
                let protected = config.secret.protected_paths();
                Arc::new(vram_audit::AuditLog::open_file_protecting(
                    &path,
                    key,
                    &config.worker_id,
                    options,
                    &protected,
                )?)
            }
            (None, None) => {
                tracing::warn!("no audit sink configured: audit records are kept in memory only");
                let key = vram_audit::AuditKey::from_secret(&config.secret.audit_key());
                Arc::new(vram_audit::AuditLog::in_memory(key, &config.worker_id)?)
            }
        };
        let audit = Arc::new(AuditTrail::new(sink));
        let mut slots = Vec::with_capacity(devices.len());
        for (i, device) in devices.into_iter().enumerate() {
            let index = u32::try_from(i).map_err(|_| VramError::InvalidConfig {
                reason: "too many devices".into(),
            })?;
            let info = device.info().clone();
            let attrs = device.attributes().map_err(|source| VramError::Device {
                device: index,
                source,
            })?;
            if let Err(v) = vram_core::check_vram_only(&info, &attrs) {
                // The policy violation is the error to report; a failure to
                // audit it is counted and logged by the trail.
                audit.record_secondary(AuditEvent::PolicyViolation {
                    gpu_device: index,
                    policy: v.policy_name().to_string(),
                    detail: v.to_string(),
                });
                return Err(v.into());
            }
            let mem = device.memory_info().map_err(|source| VramError::Device {
                device: index,
                source,
            })?;
            if mem.total <= config.headroom_bytes {
                return Err(VramError::InvalidConfig {
                    reason: format!(
                        "headroom of {} exceeds device {index}'s {} of memory",
                        format_bytes(config.headroom_bytes),
                        format_bytes(mem.total)
                    ),
                });
            }
            if info.kind == DeviceKind::Mock && config.caller_announces_mock {
                tracing::info!(
                    device = index,
                    "device {index} is the MOCK device (host memory)"
                );
            } else if info.kind == DeviceKind::Mock {
                tracing::warn!(
                    device = index,
                    "device {index} is the MOCK device (host memory), not real VRAM"
                );
            }
            let tracker = CapacityTracker::new(mem.total, config.headroom_bytes);
            slots.push(DeviceSlot { device, tracker });
        }
        if slots.is_empty() {
            return Err(VramError::InvalidConfig {
                reason: "no devices to manage".into(),
            });
        }
        vram_crypto::self_test()?;
        let leaf_size = config.leaf_size.unwrap_or_else(|| {
            if slots
                .iter()
                .all(|s| s.device.info().kind == DeviceKind::Cuda)
            {
                crate::CUDA_DEFAULT_LEAF_SIZE
            } else {
                LeafSize::DEFAULT
            }
        });
        tracing::info!(
            devices = slots.len(),
            seal_key_id = %sealer.key_id(),
            hash_backend = vram_crypto::backend(),
            "vram manager ready"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                devices: slots,
                sealer,
                audit,
                max_model_bytes: config.max_model_bytes,
                leaf_size,
                verify_policy: config.verify_policy,
                staging_bytes: config.staging_bytes,
                seal_hashing: config.seal_hashing,
                metrics: Metrics::default(),
            }),
        })
    }

    fn slot(&self, index: u32) -> Result<&DeviceSlot, VramError> {
        let count = u32::try_from(self.inner.devices.len()).unwrap_or(u32::MAX);
        usize::try_from(index)
            .ok()
            .and_then(|i| self.inner.devices.get(i))
            .ok_or(VramError::UnknownDevice { index, count })
    }

    /// Number of managed devices.
    pub fn device_count(&self) -> u32 {
        u32::try_from(self.inner.devices.len()).unwrap_or(u32::MAX)
    }

    /// The managed device with this index.
    ///
    /// # Errors
    /// [`VramError::UnknownDevice`] for an index out of range.
    pub fn device(&self, index: u32) -> Result<&Arc<dyn Device>, VramError> {
        Ok(&self.slot(index)?.device)
    }

    /// Fingerprint of the seal key (safe to log).
    pub fn seal_key_id(&self) -> KeyId {
        self.inner.sealer.key_id()
    }

    /// The audit sink this manager writes to.
    pub fn audit_sink(&self) -> &Arc<dyn AuditSink> {
        self.inner.audit.sink()
    }

    /// The leaf size of new seals.
    pub fn leaf_size(&self) -> LeafSize {
        self.inner.leaf_size
    }

    /// Capacity figures for a device.
    ///
    /// # Errors
    /// [`VramError::UnknownDevice`] for an index out of range.
    pub fn capacity(&self, gpu_device: u32) -> Result<DeviceCapacity, VramError> {
        let t = &self.slot(gpu_device)?.tracker;
        Ok(DeviceCapacity {
            device: gpu_device,
            total: t.limit(),
            used: t.used(),
            available: t.available(),
        })
    }

    /// Bytes still available to seal on a device (0 for an unknown device).
    pub fn available_vram(&self, gpu_device: u32) -> u64 {
        self.capacity(gpu_device).map_or(0, |c| c.available)
    }

    /// Bytes reserved by shards on a device (0 for an unknown device).
    pub fn used_vram(&self, gpu_device: u32) -> u64 {
        self.capacity(gpu_device).map_or(0, |c| c.used)
    }

    /// Bytes this manager may use on a device (0 for an unknown device).
    pub fn total_vram(&self, gpu_device: u32) -> u64 {
        self.capacity(gpu_device).map_or(0, |c| c.total)
    }

    /// A copy of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = self.inner.metrics.snapshot();
        snapshot.audit_records_lost = self.inner.audit.lost();
        snapshot
    }

    /// Seals `model_bytes` on `gpu_device` under a generated shard id (the
    /// original crate's call).
    ///
    /// # Errors
    /// See [`VramManager::seal`].
    pub fn seal_model(
        &self,
        model_bytes: &[u8],
        gpu_device: u32,
    ) -> Result<SealedShard, VramError> {
        let model_ref = ModelRef::new("inline:bytes")?;
        self.seal(&SealRequest::new(model_ref, gpu_device), model_bytes)
    }

    /// Seals bytes already in host memory.
    ///
    /// Order: validate, reserve capacity, allocate, copy and hash (overlapped),
    /// check the expected digest, sign, audit. Any failure releases everything
    /// (capacity, device memory) and audits the failure (`seal_failed`, and
    /// `vram_deallocated` once `vram_allocated` was recorded).
    ///
    /// A seal is a success only once its records are in the audit log: when
    /// the sink's policy is fail-closed and `vram_allocated` or `vram_sealed`
    /// cannot be written (and flushed, when due), the shard is released and
    /// the error is [`VramError::Audit`], naming the log. Under best effort a
    /// lost record is counted in [`MetricsSnapshot::audit_records_lost`].
    ///
    /// # Errors
    /// Invalid input, insufficient VRAM (retriable), allocation or device
    /// failure, expected-digest mismatch (fatal), audit failure under fail-closed.
    pub fn seal(
        &self,
        request: &SealRequest,
        model_bytes: &[u8],
    ) -> Result<SealedShard, VramError> {
        let len = u64::try_from(model_bytes.len()).unwrap_or(u64::MAX);
        self.seal_with(request, len, |buffer, job| {
            pipeline::fill(buffer, job, SealSource::Slice(model_bytes))
        })
    }

    /// Seals `len` bytes streamed from `reader` through two bounded host staging
    /// buffers: host memory stays O(staging), not O(model). Reading chunk N+1
    /// overlaps copying and hashing chunk N.
    ///
    /// # Errors
    /// As [`VramManager::seal`], plus [`VramError::Io`] for read failures and
    /// [`VramError::LengthMismatch`] when the reader ends early or runs long.
    pub fn seal_reader<R: Read + Send>(
        &self,
        request: &SealRequest,
        reader: R,
        len: u64,
    ) -> Result<SealedShard, VramError> {
        let mut reader = reader;
        self.seal_with(request, len, |buffer, job| {
            pipeline::fill(
                buffer,
                job,
                SealSource::Reader {
                    reader: &mut reader,
                    len,
                },
            )
        })
    }

    /// Seals a regular file, from its start to its length at the time of the
    /// call.
    ///
    /// On a device without its own upload pipeline (the mock), and when no
    /// plain SHA-256 is asked for, every core reads its own range of the file
    /// with positional reads, copies it and hashes it: host memory stays one
    /// staging buffer per core. Otherwise the file is read in order through
    /// the staging buffers, as by [`VramManager::seal_reader`], each chunk
    /// filled by several threads' positional reads. The file's cursor is
    /// neither used nor moved (on Unix). The file must not change while it is
    /// sealed; a change of length is detected.
    ///
    /// # Errors
    /// As [`VramManager::seal_reader`], plus [`VramError::Io`] when `file` is not
    /// a regular file.
    pub fn seal_file(
        &self,
        request: &SealRequest,
        file: &std::fs::File,
    ) -> Result<SealedShard, VramError> {
        self.seal_file_with_progress(request, file, &|_| {})
    }

    /// [`VramManager::seal_file`], calling `progress` with the number of bytes
    /// of each piece read (from several threads at once).
    ///
    /// # Errors
    /// As [`VramManager::seal_file`].
    pub fn seal_file_with_progress(
        &self,
        request: &SealRequest,
        file: &std::fs::File,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<SealedShard, VramError> {
        let meta = file
            .metadata()
            .map_err(|e| VramError::Io { kind: e.kind() })?;
        if !meta.is_file() {
            return Err(VramError::Io {
                kind: std::io::ErrorKind::InvalidInput,
            });
        }
        let len = meta.len();
        self.seal_with(request, len, |buffer, job| {
            pipeline::fill(
                buffer,
                job,
                SealSource::File {
                    file,
                    len,
                    progress,
                },
            )
        })
    }

    fn seal_with(
        &self,
        request: &SealRequest,
        len: u64,
        fill: impl FnOnce(&mut dyn vram_core::DeviceBuffer, &SealJob) -> Result<Hashed, VramError>,
    ) -> Result<SealedShard, VramError> {
        let shard_id = match &request.shard_id {
            Some(id) => id.clone(),
            None => random_shard_id()?,
        };
        let mut allocated = None;
        let result = self.seal_inner(request, &shard_id, len, fill, &mut allocated);
        // On failure, everything seal_inner held (device memory, then the
        // capacity reservation) is released by now.
        if let Err(e) = &result {
            self.inner.metrics.seal_failed();
            tracing::warn!(shard_id = %shard_id, error = %e, "seal failed");
            // The caller gets the seal's own error, which matters more than a
            // failure to audit it; the trail counts and logs such a failure.
            self.inner.audit.record_secondary(AuditEvent::SealFailed {
                shard_id: shard_id.to_string(),
                stage: seal_stage(e).to_string(),
                reason: e.to_string(),
            });
            if let Some(gpu_device) = allocated {
                // Every `vram_allocated` has its `vram_deallocated`.
                self.inner
                    .audit
                    .record_secondary(AuditEvent::VramDeallocated {
                        shard_id: shard_id.to_string(),
                        gpu_device,
                        bytes: len,
                    });
            }
        }
        result
    }

    fn seal_inner(
        &self,
        request: &SealRequest,
        shard_id: &ShardId,
        len: u64,
        fill: impl FnOnce(&mut dyn vram_core::DeviceBuffer, &SealJob) -> Result<Hashed, VramError>,
        allocated: &mut Option<u32>,
    ) -> Result<SealedShard, VramError> {
        let inner = &self.inner;
        let device_index = request.gpu_device;
        validate_model_size(len, inner.max_model_bytes)?;
        let slot = self.slot(device_index)?;
        let info = slot.device.info().clone();

        // Reserve before touching the device: concurrent seals can never
        // over-commit, and the reservation is released on every error path.
        let reservation = slot.tracker.reserve(len).map_err(|e| {
            let (needed, available) = match e {
                CapacityError::Insufficient {
                    needed, available, ..
                } => (needed, available),
                _ => (len, slot.tracker.available()),
            };
            inner
                .audit
                .record_secondary(AuditEvent::VramAllocationFailed {
                    gpu_device: device_index,
                    requested: needed,
                    available,
                    reason: "capacity".into(),
                });
            VramError::InsufficientVram {
                device: device_index,
                needed,
                available,
                needed_h: format_bytes(needed),
                available_h: format_bytes(available),
            }
        })?;

        let mut buffer = slot.device.alloc(len).map_err(|source| {
            let available = slot.device.memory_info().map_or(0, |m| m.free);
            inner
                .audit
                .record_secondary(AuditEvent::VramAllocationFailed {
                    gpu_device: device_index,
                    requested: len,
                    available,
                    reason: source.to_string(),
                });
            VramError::AllocationFailed {
                device: device_index,
                bytes: len,
                source,
            }
        })?;
        let receipt = inner.audit.record(AuditEvent::VramAllocated {
            shard_id: shard_id.to_string(),
            gpu_device: device_index,
            bytes: len,
        })?;
        if receipt.is_written() {
            *allocated = Some(device_index);
        }

        // Whether a plain SHA-256 is wanted is decided once, here.
        let job = SealJob {
            device: device_index,
            leaf: inner.leaf_size,
            staging: inner.staging_bytes,
            want_plain: request.wants_plain_sha256(),
            hashing: inner.seal_hashing,
        };
        let Hashed { leaves, plain } = fill(buffer.as_mut(), &job)?;
        let leaves = LeafHashes::from_parts(TreeDescriptor::new(inner.leaf_size, len), leaves)?;
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
        let sealed_at_ns = now_ns();
        let set_id = match request.set_id {
            Some(id) => id,
            None => crate::sampling::random_id()?,
        };
        let content = SealContent {
            shard_id: shard_id.clone(),
            model_ref: request.model_ref.clone(),
            device: device_index,
            device_kind: info.kind,
            device_uuid: info.uuid,
            worker_id: inner.sealer.worker_id().to_string(),
            set_id,
            provenance: request.provenance.clone(),
            len,
            tree,
            sealed_at_ns,
            position: request.position,
            key_id: inner.sealer.key_id(),
        };
        let tag = inner.sealer.sign(&content.message())?;
        inner.audit.record(AuditEvent::VramSealed {
            shard_id: shard_id.to_string(),
            model_ref: request.model_ref.to_string(),
            gpu_device: device_index,
            device_kind: info.kind.as_str().to_string(),
            vram_bytes: len,
            tree_digest: content.tree.root.to_string(),
            leaf_size: inner.leaf_size.bytes(),
            key_id: content.key_id.to_string(),
            provenance: request.provenance.as_ref().map(Provenance::audit_record),
        })?;
        inner.metrics.seal_ok(len);
        tracing::info!(
            shard_id = %shard_id,
            gpu_device = device_index,
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
                reservation,
                audit: Arc::clone(&inner.audit),
            },
        ))
    }

    /// What verification borrows from this manager for one call.
    pub(crate) fn verifier(&self) -> Verifier<'_> {
        Verifier {
            sealer: &self.inner.sealer,
            audit: &self.inner.audit,
            metrics: &self.inner.metrics,
            staging_bytes: self.inner.staging_bytes,
        }
    }

    /// This manager's device of an index.
    fn device_info(&self, index: u32) -> Result<&DeviceInfo, VramError> {
        self.device(index).map(|d| d.info())
    }

    /// Verifies a shard with the manager's default policy (full unless
    /// configured otherwise).
    ///
    /// # Errors
    /// [`VramError::IntegrityViolation`] (fatal, with the corrupt byte ranges)
    /// when device memory differs from the sealed bytes;
    /// [`VramError::SealInvalid`] when the seal does not verify; device errors.
    /// A failure is fatal for the shard: once its bytes or seal are found wrong
    /// it is [compromised](SealedShard::is_compromised) and every later call
    /// returns [`VramError::Compromised`], even if the bytes read back right
    /// again.
    ///
    /// Every failure except invalid arguments emits a critical audit event:
    /// `seal_verification_failed` when the bytes or the seal are wrong (or the
    /// shard was already compromised),
    /// `verification_incomplete` when they could not be checked (a device read
    /// failed), which proves nothing either way.
    pub fn verify_sealed(&self, shard: &SealedShard) -> Result<VerifyReport, VramError> {
        self.verify_with(shard, self.inner.verify_policy)
    }

    /// Verifies `shard` as `policy` asks and, only if that holds, lends its
    /// memory for computation: the [`Lease`](crate::Lease) is the one way to
    /// a sealed shard's bytes (on the mock) or device address (on CUDA), and
    /// it borrows the shard, so the shard cannot be released while a lease
    /// lives. Call it before each execution; many leases may live at once.
    ///
    /// A compromised shard never gets a lease. A verification that fails
    /// compromises the shard as [`VramManager::verify_sealed`] does. Every
    /// refusal is audited at once (`lease_refused`, critical); granted leases
    /// are counted per shard and recorded at most once per
    /// [`LEASE_RECORD_INTERVAL`](crate::LEASE_RECORD_INTERVAL)
    /// (`leases_granted`) and at release, so a busy server does not flood
    /// the log. The first lease of a shard also reads its tensor table when
    /// it holds a safetensors file ([`Lease::tensors`](crate::Lease::tensors)),
    /// from header leaves checked against the seal.
    ///
    /// # Errors
    /// [`VramError::Compromised`] for a shard found wrong before; as
    /// [`VramManager::verify_with`] for the verification;
    /// [`VramError::Audit`] when a fail-closed log cannot record the tally.
    pub fn lease<'s>(
        &self,
        shard: &'s SealedShard,
        policy: crate::LeasePolicy,
    ) -> Result<crate::Lease<'s>, VramError> {
        crate::lease::grant(&self.verifier(), shard, policy)
    }

    /// Verifies a shard with an explicit policy.
    ///
    /// # Errors
    /// As [`VramManager::verify_sealed`].
    pub fn verify_with(
        &self,
        shard: &SealedShard,
        policy: VerifyPolicy,
    ) -> Result<VerifyReport, VramError> {
        self.verifier()
            .verify(shard, Scope::Policy(policy), AuditMode::Every)
    }

    /// Checks that a handle received back from a client is authentic and
    /// was sealed for this worker: every field must be exactly as sealed
    /// under this manager's seal key, its device index one this manager
    /// has, and its device kind, device UUID and worker id this manager's.
    /// Returns the handle's seal format version: 3 for handles that also
    /// carry a [provenance](ModelShardHandle::provenance), 2 for handles
    /// that name their device kind, device UUID, worker and set. Handles of
    /// format 1 bind none of these and are refused here
    /// ([`VramManager::check_handle_allow_v1`] accepts them).
    ///
    /// # Errors
    /// [`VramError::SealInvalid`] when any field or the signature was altered;
    /// [`VramError::UnknownDevice`] when the handle names a device index this
    /// manager does not have; [`VramError::WrongDevice`] when it names
    /// another kind of device, or another UUID, than this manager's device of
    /// that index; [`VramError::WrongWorker`] when it was sealed by another
    /// worker id; [`VramError::UnboundHandle`] for a v1 handle.
    pub fn check_handle(&self, handle: &ModelShardHandle) -> Result<u8, VramError> {
        self.verifier()
            .check_handle(handle, self.device_info(handle.gpu_device), false)
    }

    /// As [`VramManager::check_handle`], and also accepts handles of seal
    /// format 1 (written before device, worker and set were bound), which
    /// then prove only that the handle was issued under this key for a
    /// device index this manager has: for a caller that still holds such
    /// handles and accepts that they may come from another worker sharing
    /// the secret, or from the mock.
    ///
    /// # Errors
    /// As [`VramManager::check_handle`], without [`VramError::UnboundHandle`].
    pub fn check_handle_allow_v1(&self, handle: &ModelShardHandle) -> Result<u8, VramError> {
        self.verifier()
            .check_handle(handle, self.device_info(handle.gpu_device), true)
    }

    /// Checks the handles of one tensor-parallel set: each as by
    /// [`VramManager::check_handle`], positions `0..n` of `n` in order, one
    /// model reference, one seal version, for v2 and v3 handles one set id,
    /// and for v3 handles one publisher key, statement and model name (the
    /// files may differ): shards of two sealings of the same model never
    /// pass as one set.
    /// Returns the seal format version.
    ///
    /// # Errors
    /// [`VramError::InvalidShardSet`] for a set that is empty, out of order,
    /// mixes models, versions or set ids; as [`VramManager::check_handle`]
    /// (v1 handles included: they name no set).
    pub fn check_handle_set(&self, handles: &[ModelShardHandle]) -> Result<u8, VramError> {
        self.verifier()
            .check_handle_set(handles, |i| self.device_info(i))
    }

    /// Checks a client's handle (as [`VramManager::check_handle`]) and that it
    /// describes `shard`, then verifies `shard` with the default policy.
    ///
    /// # Errors
    /// [`VramError::SealInvalid`] for an altered or foreign handle; as
    /// [`VramManager::verify_sealed`] otherwise.
    pub fn verify_handle(
        &self,
        handle: &ModelShardHandle,
        shard: &SealedShard,
    ) -> Result<VerifyReport, VramError> {
        self.verifier().verify_handle(
            handle,
            self.device_info(handle.gpu_device),
            shard,
            self.inner.verify_policy,
        )
    }

    /// Seals `parts[i]` on `devices[i]` as position `i` of `parts.len()`, all
    /// under one model reference. If any part fails, the parts already sealed
    /// are released and the error is returned.
    ///
    /// # Errors
    /// [`VramError::InvalidShardSet`] when the lengths differ or the set is
    /// empty or too large; any seal error.
    pub fn seal_set(
        &self,
        model_ref: &ModelRef,
        parts: &[&[u8]],
        devices: &[u32],
    ) -> Result<ShardSet, VramError> {
        let requests = crate::set::part_requests(model_ref, parts.len(), devices)?;
        let mut shards = Vec::with_capacity(parts.len());
        for (request, part) in requests.iter().zip(parts) {
            // On error, `shards` drops here and releases every earlier part.
            shards.push(self.seal(request, part)?);
        }
        Ok(ShardSet::new(shards))
    }

    /// Seals a snapshot directory as one model: its weights (a single
    /// `model.safetensors`, or the shards `model.safetensors.index.json`
    /// names, those and only those; see [`vram_hub::ModelLayout`]) on the
    /// request's device as one set (positions `0..n` in file-name order, one
    /// set id), each with [`VramManager::seal_file`] and its expected SHA-256
    /// when the request has one; and its small inference files (config,
    /// tokenizer, sentence-transformers modules, the index) hashed on the
    /// host and bound to the shards' seals by one tag under the seal key.
    ///
    /// The small files are hashed and every weights file opened before any
    /// device work; if any shard fails, those sealed before it are released
    /// (audited), as by [`VramManager::seal_set`].
    ///
    /// # Errors
    /// [`VramError::InvalidModel`] when the directory is not one model (no
    /// weights, a bad index, an expected digest for a file that is not part
    /// of the model); [`VramError::Io`]; any seal error.
    pub fn seal_snapshot(
        &self,
        request: &crate::SnapshotRequest,
    ) -> Result<crate::SealedModel, VramError> {
        let layout = crate::model::layout(&request.dir)?;
        if let Some(extra) = request
            .expected_sha256
            .keys()
            .find(|name| !layout.weights.contains(name))
        {
            return Err(VramError::InvalidModel {
                model: vram_validation::escape_for_log(request.model_ref.as_str(), 200),
                reason: format!(
                    "a SHA-256 is expected for {}, which is not one of its weights files",
                    vram_validation::escape_for_log(extra, 200)
                ),
            });
        }
        if let Some(extra) = request
            .expected_files
            .keys()
            .find(|name| !layout.inference_files.contains(name))
        {
            return Err(VramError::InvalidModel {
                model: vram_validation::escape_for_log(request.model_ref.as_str(), 200),
                reason: format!(
                    "a digest is expected for {}, which is not one of the files it binds",
                    vram_validation::escape_for_log(extra, 200)
                ),
            });
        }
        let files = crate::model::hash_files(
            &request.dir,
            &layout.inference_files,
            &request.expected_files,
        )?;
        let weights = layout
            .weights
            .iter()
            .map(|name| crate::model::open_file(&request.dir, name, None).map(|f| f.file))
            .collect::<Result<Vec<_>, _>>()?;
        let devices = vec![request.gpu_device; weights.len()];
        let requests = crate::set::part_requests(&request.model_ref, weights.len(), &devices)?;
        let mut shards = Vec::with_capacity(weights.len());
        let mut seal_times = Vec::with_capacity(weights.len());
        for ((mut part, file), name) in requests.into_iter().zip(&weights).zip(&layout.weights) {
            part.expected_sha256 = request.expected_sha256.get(name).cloned();
            // Each shard's seal and audit record name its file:
            // `MODEL_REF/FILE` (the binding names the model).
            part.model_ref = ModelRef::new(&format!("{}/{name}", request.model_ref.as_str()))
                .map_err(|e| VramError::InModelFile {
                    file: vram_validation::escape_for_log(name, 200),
                    source: Box::new(e.into()),
                })?;
            let t0 = std::time::Instant::now();
            // On error, `shards` drops here and releases every earlier part.
            let shard = self
                .seal_file(&part, file)
                .map_err(|e| VramError::InModelFile {
                    file: vram_validation::escape_for_log(name, 200),
                    source: Box::new(e),
                })?;
            seal_times.push(t0.elapsed());
            shards.push(shard);
        }
        tracing::info!(
            model = %request.model_ref.as_str(),
            shards = shards.len(),
            files = files.len(),
            "snapshot sealed"
        );
        let key_id = *self.inner.sealer.key_id().as_bytes();
        let model = crate::model::assemble(
            request,
            shards,
            seal_times,
            layout.weights,
            files,
            key_id,
            |b| self.inner.sealer.sign_model(b),
        )?;
        // Which small files were bound, with their bytes: on error the
        // model drops here and every shard is released (audited).
        self.inner.audit.record(AuditEvent::ModelBound {
            model: model.model_ref().to_string(),
            shards: model
                .shards()
                .iter()
                .map(|s| s.shard_id().to_string())
                .collect(),
            files: model
                .files()
                .iter()
                .map(|f| vram_audit::BoundFileRecord {
                    name: f.name.clone(),
                    bytes: f.bytes,
                    sha256: f.sha256.to_string(),
                })
                .collect(),
            key_id: self.inner.sealer.key_id().to_string(),
        })?;
        Ok(model)
    }

    /// Checks a sealed model's binding: its shards and small files are the
    /// ones sealed together, under this manager's key.
    ///
    /// # Errors
    /// [`VramError::ModelBindingInvalid`] when they are not.
    pub fn check_model(&self, model: &crate::SealedModel) -> Result<(), VramError> {
        let key_id = *self.inner.sealer.key_id().as_bytes();
        let tag = model.binding_tag();
        if model.with_binding(key_id, |b| self.inner.sealer.is_authentic_model(b, tag)) {
            Ok(())
        } else {
            Err(VramError::ModelBindingInvalid {
                model: vram_validation::escape_for_log(model.model_ref().as_str(), 200),
            })
        }
    }

    /// A small file of a sealed model (`tokenizer.json`), read from its
    /// snapshot directory and returned only if the binding holds and the
    /// bytes are the ones sealed (length and SHA-256): what an engine builds
    /// its tokenizer and configuration from.
    ///
    /// # Errors
    /// [`VramError::ModelBindingInvalid`]; [`VramError::UnknownModelFile`]
    /// for a file that is not bound; [`VramError::ModelFileChanged`] (fatal)
    /// when the file is no longer what was sealed; [`VramError::Io`].
    pub fn model_file(&self, model: &crate::SealedModel, name: &str) -> Result<Vec<u8>, VramError> {
        let read = self
            .check_model(model)
            .and_then(|()| crate::model::read_bound(model, name));
        if let Err(e) = &read {
            if e.is_fatal() {
                // The refusal is what the caller must see; an audit failure
                // on top of it is counted and logged, not substituted.
                self.inner
                    .audit
                    .record_secondary(AuditEvent::ModelFileRefused {
                        model: model.model_ref().to_string(),
                        file: vram_validation::escape_for_log(name, 200),
                        reason: e.to_string(),
                    });
            }
        }
        read
    }

    /// Leases a whole model: checks its binding, then leases every shard
    /// (see [`VramManager::lease`]). A sample of K leaves is drawn over the
    /// whole model (every leaf of every shard equally likely), at least one
    /// per shard. The first refusal refuses the model (audited as that
    /// shard's refusal).
    ///
    /// # Errors
    /// [`VramError::ModelBindingInvalid`]; as [`VramManager::lease`].
    pub fn lease_model<'m>(
        &self,
        model: &'m crate::SealedModel,
        policy: crate::LeasePolicy,
    ) -> Result<crate::ModelLease<'m>, VramError> {
        self.check_model(model)?;
        let policies = crate::model::shard_policies(model, policy)?;
        let leases = model
            .shards()
            .iter()
            .zip(policies)
            .map(|(shard, p)| self.lease(shard, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::ModelLease::new(model, leases, policy))
    }

    /// Verifies every shard of the set with the default policy; the first
    /// failure fails the set. Also checks that positions run 0..n of n under
    /// one model reference, one set id (shards of two sealings of the same
    /// model are not one set) and one signed statement when they carry a
    /// [provenance](SealedShard::provenance).
    ///
    /// # Errors
    /// [`VramError::InvalidShardSet`] for an inconsistent set; the first
    /// shard's verification error otherwise.
    pub fn verify_set(&self, set: &ShardSet) -> Result<Vec<VerifyReport>, VramError> {
        set.check_consistent()?;
        set.shards().iter().map(|s| self.verify_sealed(s)).collect()
    }
}

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
