//! `VramManager`: the entry point. Composes validation, crypto, secrets, audit
//! and devices. `Send + Sync`, every operation takes `&self`, and no global lock
//! is held across sealing or verification.
//!
//! This file builds the manager (devices, their seal routes, keys, audit) and
//! lends (verification, leases, handle checks), with the accessors. Sealing
//! is in `seal.rs`, the model methods in `model.rs`.

use crate::config::VramConfig;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pipeline::Route;
use crate::seal::{SealContext, SealTarget, Sealer};
use crate::set::ShardSet;
use crate::shard::{ModelShardHandle, SealedShard};
use crate::trail::AuditTrail;
use crate::verify::{AuditMode, Scope, Verifier, VerifyPolicy, VerifyReport};
use crate::VramError;
use std::sync::Arc;
use vram_audit::{AuditEvent, AuditSink};
use vram_core::{CapacityTracker, Device, DeviceCapabilities, DeviceInfo, DeviceKind};
use vram_crypto::LeafSize;
use vram_secrets::KeyId;
use vram_validation::format_bytes;

/// One managed device and the capacity tracker that guards it.
struct DeviceSlot {
    device: Arc<dyn Device>,
    tracker: Arc<CapacityTracker>,
    /// How seals reach this device, chosen once from its capabilities.
    route: Route,
    /// What the device reported it can do.
    caps: DeviceCapabilities,
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

impl VramManager {
    /// Builds a manager from a validated configuration: derives the seal and
    /// audit keys, finds devices, sizes the capacity trackers.
    ///
    /// # Errors
    /// [`VramError::InvalidConfig`] for unusable settings; device errors when a
    /// device cannot be queried; [`VramError::PolicyViolation`] when a device
    /// fails the VRAM-only policy; [`VramError::Audit`] when the in-memory
    /// audit log (used when no sink is given) cannot be set up.
    pub fn new(config: VramConfig) -> Result<Self, VramError> {
        config.validate()?;
        let devices = config.devices;
        let sealer = Sealer::new(config.secret.seal_key(), config.worker_id.clone())?;
        let sink: Arc<dyn AuditSink> = match config.audit {
            Some(a) => a,
            None => {
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
            let caps = device.capabilities();
            let route = Route::choose(caps, config.seal_hashing);
            if matches!(config.seal_hashing, crate::SealHashing::OnDevice { .. })
                && !caps.hash_on_device
            {
                tracing::warn!(
                    device = index,
                    "device {index} cannot hash: its seals hash on the host"
                );
            }
            tracing::debug!(device = index, ?caps, ?route, "seal route chosen");
            slots.push(DeviceSlot {
                device,
                tracker,
                route,
                caps,
            });
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

    /// What a seal borrows from this manager.
    pub(crate) fn seal_context(&self) -> SealContext<'_> {
        SealContext {
            sealer: &self.inner.sealer,
            audit: &self.inner.audit,
            metrics: &self.inner.metrics,
            max_model_bytes: self.inner.max_model_bytes,
            leaf: self.inner.leaf_size,
            staging: self.inner.staging_bytes,
        }
    }

    /// The device of that index as a seal's target, with its route.
    pub(crate) fn seal_target(&self, index: u32) -> Result<SealTarget<'_>, VramError> {
        let slot = self.slot(index)?;
        Ok(SealTarget {
            index,
            device: &slot.device,
            tracker: &slot.tracker,
            route: slot.route,
            hashes_on_device: slot.caps.hash_on_device,
        })
    }

    /// The seal key's holder (signs model bindings too).
    pub(crate) fn sealer(&self) -> &Sealer {
        &self.inner.sealer
    }

    /// The audit trail every record goes through.
    pub(crate) fn trail(&self) -> &AuditTrail {
        &self.inner.audit
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
