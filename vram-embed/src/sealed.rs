//! Weights in sealed memory: a verified lease per request.
//!
//! [`SealedWeights`] holds a manager and the model a snapshot was sealed as
//! (its weights, one file or several shards, in device memory; its small
//! files bound on the host). Each request's [`TensorSource`] is a
//! [`LeasedWeights`]: the views of the tensors of a lease on the whole model
//! obtained for that request under the chosen [`LeasePolicy`] (the
//! verification runs first; a refused lease ends serving), which the model's
//! tensors are built from; they borrow the lease, and both are dropped with
//! the request.

use std::sync::Arc;

use vram_residency::{
    LeasePolicy, ModelLease, ModelTensors, SealedModel, SealedShard, TensorView, VramError,
    VramManager,
};

use crate::{EmbedError, LeaseCost, ModelSnapshot, TensorSource, WeightsProvider};

/// A model sealed in device memory, served through verified leases.
#[derive(Debug)]
pub struct SealedWeights {
    manager: VramManager,
    model: SealedModel,
    policy: LeasePolicy,
}

impl SealedWeights {
    /// The model sealed by `manager`, leased under `policy`.
    #[must_use]
    pub fn new(manager: VramManager, model: SealedModel, policy: LeasePolicy) -> Self {
        Self {
            manager,
            model,
            policy,
        }
    }

    /// The sealed model.
    #[must_use]
    pub fn model(&self) -> &SealedModel {
        &self.model
    }

    /// The model's shards, shared: what a [`Scrubber`](vram_residency::Scrubber)
    /// watches (it holds them weakly, so a release is not held up).
    #[must_use]
    pub fn shared_shards(&self) -> &[Arc<SealedShard>] {
        self.model.shards()
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

    /// The snapshot's small files (config, tokenizer, pooling), each read
    /// only as it was bound to the seal ([`ModelSnapshot::open_sealed`]).
    ///
    /// # Errors
    /// As [`ModelSnapshot::open_sealed`].
    pub fn snapshot(&self) -> Result<ModelSnapshot, EmbedError> {
        ModelSnapshot::open_sealed(&self.manager, &self.model)
    }

    /// Releases the model and says whether its release reached the audit log.
    ///
    /// # Errors
    /// [`EmbedError::Lease`] when a fail-closed log could not record it.
    pub fn release(self) -> Result<(), EmbedError> {
        self.model.release().map_err(lease_error)
    }
}

/// One request's weights: the tensors of a granted lease on the model.
/// Borrows the lease, so nothing computed from it outlives the lease (the
/// compiler keeps that rule, see [`vram_residency::ModelLease::tensors`]).
#[derive(Debug)]
pub struct LeasedWeights<'l> {
    lease: &'l ModelLease<'l>,
    tensors: ModelTensors<'l>,
}

impl<'l> LeasedWeights<'l> {
    /// The tensors of `lease`.
    ///
    /// # Errors
    /// [`EmbedError::Lease`] when the model holds no usable safetensors
    /// files.
    pub fn new(lease: &'l ModelLease<'_>) -> Result<Self, EmbedError> {
        let tensors = lease.tensors().map_err(lease_error)?;
        Ok(Self { lease, tensors })
    }

    /// Obtains a lease on `model` under `policy`, runs `f` on its weights
    /// and drops the lease when `f` returns.
    ///
    /// # Errors
    /// [`EmbedError::Lease`] when the lease is refused (the verification
    /// failed, naming the corrupt tensors, or could not run; a shard was
    /// compromised before; the model's binding does not hold) or the model
    /// holds no usable safetensors files.
    pub fn with_lease<R>(
        manager: &VramManager,
        model: &SealedModel,
        policy: LeasePolicy,
        f: impl FnOnce(&LeasedWeights<'_>) -> R,
    ) -> Result<R, EmbedError> {
        let lease = manager.lease_model(model, policy).map_err(lease_error)?;
        let weights = LeasedWeights::new(&lease)?;
        Ok(f(&weights))
    }

    /// The lease (what was verified before it was granted).
    #[must_use]
    pub fn lease(&self) -> &ModelLease<'l> {
        self.lease
    }
}

impl TensorSource for LeasedWeights<'_> {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        self.tensors.get(name).map_err(|e| match e {
            VramError::UnknownTensor { .. } => EmbedError::missing(name),
            other => lease_error(other),
        })
    }

    fn lease_cost(&self) -> Option<LeaseCost> {
        let (leaves_checked, bytes_checked, elapsed) = self.lease.verification_cost();
        // What ran: one shard's policy as it ran (a `recent:` lease ran full
        // or sampled), else the policy asked of the whole model.
        let policy = match self.lease.leases() {
            [one] => one.verification().policy.to_string(),
            _ => self.lease.policy().to_string(),
        };
        Some(LeaseCost {
            policy,
            leaves_checked,
            bytes_checked,
            verify_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        })
    }
}

impl WeightsProvider for SealedWeights {
    fn with_weights<R>(
        &self,
        f: impl FnOnce(&(dyn TensorSource + Sync)) -> R,
    ) -> Result<R, EmbedError> {
        LeasedWeights::with_lease(&self.manager, &self.model, self.policy, |w| f(w))
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
            VramError::NotSafetensors { .. }
                | VramError::UnknownTensor { .. }
                | VramError::InvalidModel { .. }
        );
    EmbedError::Lease {
        reason: e.to_string(),
        integrity,
    }
}
