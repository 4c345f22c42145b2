//! Leases that own what they lease, for engines and bindings that cannot
//! hold a borrow: candle's quantized storage must be `'static`, a Python
//! object outlives any Rust stack frame.
//!
//! The guarantee stays the borrowed [`Lease`](crate::Lease)'s: bytes are
//! reached only while the lease is open. A [`SharedModelLease`] (or
//! [`SharedLease`]) is the request's lease; the [`LeaseHandle`]s taken from
//! it are what an engine stores in the tensors it builds. Each access through
//! a handle checks that its lease is still open and holds the shard's memory
//! only for the duration of one closure. Ending the lease (dropping it, or
//! [`SharedModelLease::end`]) makes every later access through every handle
//! fail with [`VramError::LeaseEnded`]: a model kept past its request cannot
//! read the shard. The shard itself (`Arc<SealedShard>`) stays alive while a
//! handle holds it, so no access can ever reach freed device memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vram_core::MemoryAccess;
use vram_validation::escape_for_log;

use crate::{LeasePolicy, SealedModel, SealedShard, Tensors, VerifyReport, VramError};

/// One shard's verified lease, shared by the request's handles.
#[derive(Debug)]
struct LeaseState {
    shard: Arc<SealedShard>,
    verification: VerifyReport,
    open: AtomicBool,
}

impl LeaseState {
    fn check_open(&self) -> Result<(), VramError> {
        if self.open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(VramError::LeaseEnded {
                shard_id: self.shard.shard_id().to_string(),
            })
        }
    }

    fn memory(&self) -> Result<MemoryAccess<'_>, VramError> {
        self.check_open()?;
        self.shard
            .buffer()
            .memory()
            .map_err(|source| VramError::Device {
                device: self.shard.gpu_device(),
                source,
            })
    }
}

/// A `'static`, cloneable handle on one shard's lease: what an engine keeps
/// inside the tensors it builds for a request. Every access checks that the
/// lease is still open.
#[derive(Debug, Clone)]
pub struct LeaseHandle(Arc<LeaseState>);

impl LeaseHandle {
    /// The leased shard.
    #[must_use]
    pub fn shard(&self) -> &SealedShard {
        &self.0.shard
    }

    /// Whether the lease is still open (its bytes may be read).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::Acquire)
    }

    /// Runs `f` on the shard's memory (host bytes on the mock, the device
    /// address on CUDA), held for the duration of `f` only.
    ///
    /// # Errors
    /// [`VramError::LeaseEnded`] once the lease has ended; [`VramError::Device`]
    /// when the backend offers no access to its memory.
    pub fn with_memory<R>(&self, f: impl FnOnce(&MemoryAccess<'_>) -> R) -> Result<R, VramError> {
        let memory = self.0.memory()?;
        Ok(f(&memory))
    }

    /// Runs `f` on the shard's bytes, on a device whose memory is host memory
    /// (the mock), held for the duration of `f` only.
    ///
    /// # Errors
    /// [`VramError::LeaseEnded`] once the lease has ended; [`VramError::Device`]
    /// on a device whose memory the host cannot read directly.
    pub fn with_host_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, VramError> {
        match self.0.memory()? {
            MemoryAccess::Host(bytes) => Ok(f(&bytes)),
            _ => Err(VramError::Device {
                device: self.0.shard.gpu_device(),
                source: vram_core::DeviceError::Unsupported {
                    operation: "host access to device memory (use LeaseHandle::with_memory)",
                },
            }),
        }
    }

    /// Runs `f` on the shard's tensors (as [`Lease::tensors`](crate::Lease::tensors)).
    ///
    /// # Errors
    /// [`VramError::LeaseEnded`] once the lease has ended; as
    /// [`Lease::tensors`](crate::Lease::tensors).
    pub fn with_tensors<R>(&self, f: impl FnOnce(&Tensors<'_>) -> R) -> Result<R, VramError> {
        let table = self.0.shard.tensor_table()?;
        let memory = self.0.memory()?;
        let tensors = Tensors::new(table, memory, self.0.shard.gpu_device());
        Ok(f(&tensors))
    }
}

/// A verified lease on one shard that owns its shard: the `'static`
/// counterpart of [`Lease`](crate::Lease). Dropping it ends it (see the
/// module documentation).
#[derive(Debug)]
pub struct SharedLease {
    handle: LeaseHandle,
}

impl SharedLease {
    /// What was verified before this lease was granted.
    #[must_use]
    pub fn verification(&self) -> &VerifyReport {
        &self.handle.0.verification
    }

    /// A handle on this lease for the tensors a request builds.
    #[must_use]
    pub fn handle(&self) -> LeaseHandle {
        self.handle.clone()
    }

    /// Ends the lease now: every handle's later access fails.
    pub fn end(&self) {
        self.handle.0.open.store(false, Ordering::Release);
    }
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        self.end();
    }
}

/// A verified lease on a whole model that owns the model's shards: the
/// `'static` counterpart of [`ModelLease`](crate::ModelLease). Dropping it
/// ends it (see the module documentation).
#[derive(Debug)]
pub struct SharedModelLease {
    model: Arc<SealedModel>,
    handles: Vec<LeaseHandle>,
    policy: LeasePolicy,
}

impl SharedModelLease {
    /// The leased model.
    #[must_use]
    pub fn model(&self) -> &Arc<SealedModel> {
        &self.model
    }

    /// The policy the lease was asked with.
    #[must_use]
    pub fn policy(&self) -> LeasePolicy {
        self.policy
    }

    /// Each shard's lease handle, in position order.
    #[must_use]
    pub fn handles(&self) -> &[LeaseHandle] {
        &self.handles
    }

    /// Leaves re-read, bytes hashed and time spent verifying, all shards.
    #[must_use]
    pub fn verification_cost(&self) -> (u64, u64, Duration) {
        self.handles.iter().map(|h| &h.0.verification).fold(
            (0, 0, Duration::ZERO),
            |(l, b, t), v| {
                (
                    l.saturating_add(v.leaves_checked),
                    b.saturating_add(v.bytes_checked),
                    t.saturating_add(v.elapsed),
                )
            },
        )
    }

    /// The handle on the lease of the shard that holds tensor `name`.
    ///
    /// # Errors
    /// [`VramError::UnknownTensor`] when no shard holds it; as
    /// [`ModelLease::tensors`](crate::ModelLease::tensors) for a model whose
    /// shards hold no tensor table.
    pub fn handle_of(&self, name: &str) -> Result<&LeaseHandle, VramError> {
        let index: &HashMap<String, usize> = self.model.tensor_index()?;
        index
            .get(name)
            .and_then(|&i| self.handles.get(i))
            .ok_or_else(|| VramError::UnknownTensor {
                shard_id: escape_for_log(self.model.model_ref().as_str(), 200),
                name: escape_for_log(name, 128),
            })
    }

    /// Ends the lease now: every handle's later access fails.
    pub fn end(&self) {
        for h in &self.handles {
            h.0.open.store(false, Ordering::Release);
        }
    }
}

impl Drop for SharedModelLease {
    fn drop(&mut self) {
        self.end();
    }
}

impl crate::VramManager {
    /// Leases a shard it does not borrow (see [`VramManager::lease`](crate::VramManager::lease)
    /// for the verification, the audit and the metrics, which are the same).
    ///
    /// # Errors
    /// As [`VramManager::lease`](crate::VramManager::lease).
    pub fn lease_shared(
        &self,
        shard: &Arc<SealedShard>,
        policy: LeasePolicy,
    ) -> Result<SharedLease, VramError> {
        let verification = self.lease(shard, policy)?.verification().clone();
        Ok(SharedLease {
            handle: LeaseHandle(Arc::new(LeaseState {
                shard: Arc::clone(shard),
                verification,
                open: AtomicBool::new(true),
            })),
        })
    }

    /// Leases a whole model it does not borrow (see
    /// [`VramManager::lease_model`](crate::VramManager::lease_model): the
    /// binding check, the sample drawn over the whole model, the audit).
    ///
    /// # Errors
    /// As [`VramManager::lease_model`](crate::VramManager::lease_model).
    pub fn lease_model_shared(
        &self,
        model: &Arc<SealedModel>,
        policy: LeasePolicy,
    ) -> Result<SharedModelLease, VramError> {
        let lease = self.lease_model(model, policy)?;
        let handles = model
            .shards()
            .iter()
            .zip(lease.verifications())
            .map(|(shard, verification)| {
                LeaseHandle(Arc::new(LeaseState {
                    shard: Arc::clone(shard),
                    verification: verification.clone(),
                    open: AtomicBool::new(true),
                }))
            })
            .collect();
        Ok(SharedModelLease {
            model: Arc::clone(model),
            handles,
            policy,
        })
    }
}
