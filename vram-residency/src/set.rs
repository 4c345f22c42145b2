//! Tensor-parallel shard sets: one model split across devices, sealed together
//! and verified together. One bad shard fails the whole set.

use crate::manager::{SealRequest, VramManager};
use crate::shard::SealedShard;
use crate::verify::VerifyReport;
use crate::{Provenance, VramError};
use vram_validation::{ModelRef, ShardPosition};

/// The shards of one model, in position order.
#[derive(Debug)]
pub struct ShardSet {
    shards: Vec<SealedShard>,
}

impl ShardSet {
    /// The shards, in position order.
    pub fn shards(&self) -> &[SealedShard] {
        &self.shards
    }

    /// Total bytes across all shards.
    pub fn total_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(SealedShard::vram_bytes)
            .fold(0u64, u64::saturating_add)
    }

    /// Gives the shards back (e.g. to scrub them individually).
    pub fn into_shards(self) -> Vec<SealedShard> {
        self.shards
    }
}

impl VramManager {
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
        if parts.is_empty() || parts.len() != devices.len() {
            return Err(VramError::InvalidShardSet {
                reason: format!("{} parts for {} devices", parts.len(), devices.len()),
            });
        }
        let total = u32::try_from(parts.len()).map_err(|_| VramError::InvalidShardSet {
            reason: "too many parts".into(),
        })?;
        // One random id for the whole set, bound into every part's seal.
        let set_id = crate::manager::random_id()?;
        let mut shards = Vec::with_capacity(parts.len());
        for (i, (part, device)) in parts.iter().zip(devices).enumerate() {
            let index = u32::try_from(i).map_err(|_| VramError::InvalidShardSet {
                reason: "too many parts".into(),
            })?;
            let mut request = SealRequest::new(model_ref.clone(), *device);
            request.position = ShardPosition::new(index, total)?;
            request.set_id = Some(set_id);
            // On error, `shards` drops here and releases every earlier part.
            shards.push(self.seal(&request, part)?);
        }
        Ok(ShardSet { shards })
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
        let n = set.shards.len();
        let first_ref = set.shards.first().map(|s| s.model_ref().clone());
        let first_set = set.shards.first().map(SealedShard::set_id);
        for (i, s) in set.shards.iter().enumerate() {
            let pos = s.position();
            let consistent = usize::from(pos.index()) == i
                && usize::from(pos.total()) == n
                && Some(s.model_ref()) == first_ref.as_ref()
                && Some(s.set_id()) == first_set
                && set
                    .shards
                    .first()
                    .is_some_and(|f| Provenance::same_statement(s.provenance(), f.provenance()));
            if !consistent {
                return Err(VramError::InvalidShardSet {
                    reason: format!("shard {i} is not position {i} of {n} of the same model"),
                });
            }
        }
        set.shards.iter().map(|s| self.verify_sealed(s)).collect()
    }
}
