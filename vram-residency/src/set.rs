//! Tensor-parallel shard sets: one model split across devices, sealed together
//! and verified together. One bad shard fails the whole set. The manager
//! seals and verifies them ([`VramManager::seal_set`](crate::VramManager::seal_set),
//! [`VramManager::verify_set`](crate::VramManager::verify_set)); this module
//! owns what makes a set a set.

use crate::request::SealRequest;
use crate::shard::SealedShard;
use crate::{Provenance, VramError};
use vram_validation::{ModelRef, ShardPosition};

/// The shards of one model, in position order.
#[derive(Debug)]
pub struct ShardSet {
    shards: Vec<SealedShard>,
}

impl ShardSet {
    pub(crate) fn new(shards: Vec<SealedShard>) -> Self {
        Self { shards }
    }

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

    /// Positions run 0..n of n under one model reference, one set id and one
    /// signed statement.
    pub(crate) fn check_consistent(&self) -> Result<(), VramError> {
        let n = self.shards.len();
        let first_ref = self.shards.first().map(|s| s.model_ref().clone());
        let first_set = self.shards.first().map(SealedShard::set_id);
        for (i, s) in self.shards.iter().enumerate() {
            let pos = s.position();
            let consistent = usize::from(pos.index()) == i
                && usize::from(pos.total()) == n
                && Some(s.model_ref()) == first_ref.as_ref()
                && Some(s.set_id()) == first_set
                && self
                    .shards
                    .first()
                    .is_some_and(|f| Provenance::same_statement(s.provenance(), f.provenance()));
            if !consistent {
                return Err(VramError::InvalidShardSet {
                    reason: format!("shard {i} is not position {i} of {n} of the same model"),
                });
            }
        }
        Ok(())
    }
}

/// The requests for the `parts` parts of one set on `devices`: position `i`
/// of `parts` on `devices[i]`, one model reference, one fresh random set id
/// bound into every part's seal.
pub(crate) fn part_requests(
    model_ref: &ModelRef,
    parts: usize,
    devices: &[u32],
) -> Result<Vec<SealRequest>, VramError> {
    if parts == 0 || parts != devices.len() {
        return Err(VramError::InvalidShardSet {
            reason: format!("{parts} parts for {} devices", devices.len()),
        });
    }
    let total = u32::try_from(parts).map_err(|_| VramError::InvalidShardSet {
        reason: "too many parts".into(),
    })?;
    let set_id = crate::sampling::random_id()?;
    devices
        .iter()
        .enumerate()
        .map(|(i, device)| {
            let index = u32::try_from(i).map_err(|_| VramError::InvalidShardSet {
                reason: "too many parts".into(),
            })?;
            let mut request = SealRequest::new(model_ref.clone(), *device);
            request.position = ShardPosition::new(index, total)?;
            request.set_id = Some(set_id);
            Ok(request)
        })
        .collect()
}
