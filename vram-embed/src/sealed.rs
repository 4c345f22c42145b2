//! Weights in sealed memory: a verified lease per request.
//!
//! [`SealedWeights`] holds a manager and the model a snapshot was sealed as
//! (its weights, one file or several shards, in device memory; its small
//! files bound on the host). Each request's [`TensorSource`] is a
//! [`LeasedWeights`]: a lease on the whole model obtained for that request
//! under the chosen [`LeasePolicy`] (the verification runs first; a refused
//! lease ends serving), and the views of its tensors, which the model's
//! tensors are built from and which are dropped with the request.

use std::sync::Arc;

use vram_residency::{
    LeasePolicy, ModelLease, ModelTensors, SealedModel, SealedShard, VramError, VramManager,
};

use crate::error::shown;
use crate::{
    Dtype, EmbedError, LeaseCost, ModelSnapshot, TensorSource, TensorView, WeightsProvider,
};

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

/// One request's weights: a granted lease on the model and its tensors.
#[derive(Debug)]
pub struct LeasedWeights<'s> {
    lease: ModelLease<'s>,
    tensors: ModelTensors<'s>,
}

impl<'s> LeasedWeights<'s> {
    /// Obtains a lease on `model` under `policy` and its tensors.
    ///
    /// # Errors
    /// [`EmbedError::Lease`] when the lease is refused (the verification
    /// failed, naming the corrupt tensors, or could not run; a shard was
    /// compromised before; the model's binding does not hold) or the model
    /// holds no usable safetensors files.
    pub fn acquire(
        manager: &VramManager,
        model: &'s SealedModel,
        policy: LeasePolicy,
    ) -> Result<Self, EmbedError> {
        let lease = manager.lease_model(model, policy).map_err(lease_error)?;
        let tensors = lease.tensors().map_err(lease_error)?;
        Ok(Self { lease, tensors })
    }

    /// The lease (what was verified before it was granted).
    #[must_use]
    pub fn lease(&self) -> &ModelLease<'s> {
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
    type Source<'a> = LeasedWeights<'a>;

    fn acquire(&self) -> Result<Self::Source<'_>, EmbedError> {
        LeasedWeights::acquire(&self.manager, &self.model, self.policy)
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
