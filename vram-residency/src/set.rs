//! Tensor-parallel shard sets: one model split across devices, sealed together
//! and verified together. One bad shard fails the whole set. Each part is
//! sealed by [`VramManager::seal`](crate::VramManager::seal) under one of
//! [`SealRequest::for_set`]'s requests, the shards collected into a
//! [`ShardSet`]; [`VramManager::verify_set`](crate::VramManager::verify_set)
//! verifies them. This module owns what makes a set a set.

use crate::request::SealRequest;
use crate::shard::SealedShard;
use crate::{Provenance, VramError};
use vram_validation::{ModelRef, ShardPosition};

/// The shards of one model, in position order.
///
/// Collected from the parts' seals; collecting `Result`s stops at the first
/// failed part and drops (releases, audited) the parts sealed before it:
///
/// ```no_run
/// # use vram_residency::{ModelRef, SealRequest, SealSource, ShardSet, VramError, VramManager};
/// # fn f(manager: &VramManager, parts: [&[u8]; 2]) -> Result<(), VramError> {
/// let model = ModelRef::new("hf://org/model@main")?;
/// let set: ShardSet = SealRequest::for_set(&model, &[0, 1])?
///     .iter()
///     .zip(parts)
///     .map(|(request, part)| manager.seal(request, SealSource::Bytes(part)))
///     .collect::<Result<_, _>>()?;
/// manager.verify_set(&set)?;
/// # Ok(()) }
/// ```
/// A set is checked (positions `0..n` of `n`, one model, one set id) when
/// it is verified.
#[derive(Debug)]
pub struct ShardSet {
    shards: Vec<SealedShard>,
}

impl FromIterator<SealedShard> for ShardSet {
    fn from_iter<I: IntoIterator<Item = SealedShard>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl SealRequest {
    /// The requests for the parts of one tensor-parallel set, part `i` on
    /// `devices[i]`: position `i` of `devices.len()`, all under `model_ref`
    /// and one fresh random set id bound into every part's seal.
    ///
    /// # Errors
    /// [`VramError::InvalidShardSet`] for an empty or too large set;
    /// [`VramError::Crypto`]-class errors when the system RNG fails.
    pub fn for_set(model_ref: &ModelRef, devices: &[u32]) -> Result<Vec<SealRequest>, VramError> {
        part_requests(model_ref, devices.len(), devices)
    }
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
