//! Weights in sealed memory: a verified lease per request.
//!
//! [`SealedWeights`] holds a manager and the shard the model's
//! `model.safetensors` was sealed into. Each request's [`TensorSource`] is a
//! [`LeasedWeights`]: a lease obtained for that request under the chosen
//! [`LeasePolicy`] (the verification runs first; a refused lease ends
//! serving), and the views of its tensors, which the model's tensors are
//! built from and which are dropped with the request.

use std::sync::Arc;

use vram_residency::{Lease, LeasePolicy, SealedShard, Tensors, VramError, VramManager};

use crate::error::shown;
use crate::{Dtype, EmbedError, LeaseCost, TensorSource, TensorView, WeightsProvider};

/// A model sealed in device memory, served through verified leases.
#[derive(Debug)]
pub struct SealedWeights {
    manager: VramManager,
    shard: Arc<SealedShard>,
    policy: LeasePolicy,
}

impl SealedWeights {
    /// Weights sealed as `shard` by `manager`, leased under `policy`.
    #[must_use]
    pub fn new(manager: VramManager, shard: SealedShard, policy: LeasePolicy) -> Self {
        Self {
            manager,
            shard: Arc::new(shard),
            policy,
        }
    }

    /// The sealed shard.
    #[must_use]
    pub fn shard(&self) -> &SealedShard {
        &self.shard
    }

    /// The sealed shard, shared: what a [`Scrubber`](vram_residency::Scrubber)
    /// watches (it holds it weakly, so a release is not held up).
    #[must_use]
    pub fn shared_shard(&self) -> &Arc<SealedShard> {
        &self.shard
    }

    /// The manager it was sealed with.
    #[must_use]
    pub fn manager(&self) -> &VramManager {
        &self.manager
    }

    /// The lease policy.
    #[must_use]
    pub fn policy(&self) -> LeasePolicy {
        self.policy
    }

    /// Releases the shard and says whether its release reached the audit log.
    ///
    /// # Errors
    /// [`EmbedError::Lease`] when a fail-closed log could not record it.
    pub fn release(self) -> Result<(), EmbedError> {
        match Arc::try_unwrap(self.shard) {
            Ok(shard) => shard.release().map_err(lease_error),
            // Someone else holds it strongly: it is released (and audited)
            // when they drop it.
            Err(_) => Ok(()),
        }
    }
}

/// One request's weights: a granted lease and its shard's tensors.
#[derive(Debug)]
pub struct LeasedWeights<'s> {
    lease: Lease<'s>,
    tensors: Tensors<'s>,
}

impl<'s> LeasedWeights<'s> {
    /// Obtains a lease on `shard` under `policy` and its tensors.
    ///
    /// # Errors
    /// [`EmbedError::Lease`] when the lease is refused (the verification
    /// failed, naming the corrupt tensors, or could not run; the shard was
    /// compromised before) or the shard holds no usable safetensors file.
    pub fn acquire(
        manager: &VramManager,
        shard: &'s SealedShard,
        policy: LeasePolicy,
    ) -> Result<Self, EmbedError> {
        let lease = manager.lease(shard, policy).map_err(lease_error)?;
        let tensors = lease.tensors().map_err(lease_error)?;
        Ok(Self { lease, tensors })
    }

    /// The lease (what was verified before it was granted).
    #[must_use]
    pub fn lease(&self) -> &Lease<'s> {
        &self.lease
    }
}

impl TensorSource for LeasedWeights<'_> {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        let t = self.tensors.get(name).map_err(|e| match e {
            VramError::UnknownTensor { .. } => EmbedError::missing(name),
            other => lease_error(other),
        })?;
        let dtype = Dtype::from_name(t.dtype()).ok_or_else(|| EmbedError::UnsupportedDtype {
            name: shown(name),
            dtype: shown(t.dtype()),
        })?;
        let shape = t
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| EmbedError::TensorSize {
                name: shown(name),
                expected: u64::MAX,
                found: 0,
            })?;
        let bytes = t.host_bytes().ok_or_else(|| EmbedError::Lease {
            reason: "the weights are in device memory, and this build computes on the CPU \
                     (serve from the mock, or a build with candle's CUDA backend)"
                .into(),
            integrity: false,
        })?;
        Ok(TensorView::host(dtype, shape, bytes))
    }

    fn lease_cost(&self) -> Option<LeaseCost> {
        let v = self.lease.verification();
        Some(LeaseCost {
            policy: v.policy.to_string(),
            leaves_checked: v.leaves_checked,
            bytes_checked: v.bytes_checked,
            verify_us: u64::try_from(v.elapsed.as_micros()).unwrap_or(u64::MAX),
        })
    }
}

impl WeightsProvider for SealedWeights {
    type Source<'a> = LeasedWeights<'a>;

    fn acquire(&self) -> Result<Self::Source<'_>, EmbedError> {
        LeasedWeights::acquire(&self.manager, &self.shard, self.policy)
    }
}

/// A refused lease or a sealing failure, as this crate reports it: an
/// integrity failure (the bytes or seal are wrong, the shard is compromised,
/// the file holds no usable tensors) ends serving with exit 1; anything else
/// (a device or the audit log) with exit 3.
pub(crate) fn lease_error(e: VramError) -> EmbedError {
    let integrity = e.is_fatal()
        || matches!(
            e,
            VramError::NotSafetensors { .. } | VramError::UnknownTensor { .. }
        );
    EmbedError::Lease {
        reason: e.to_string(),
        integrity,
    }
}
