//! Comparing leaf hashes: which byte ranges are corrupt.

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::tree::{LeafHashes, TreeDescriptor};
use crate::CryptoError;

/// One leaf whose bytes no longer hash to the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CorruptRange {
    /// Index of the corrupt leaf.
    pub leaf_index: u64,
    /// First byte of the leaf (inclusive).
    pub start: u64,
    /// End of the leaf (exclusive).
    pub end: u64,
}

fn range_of(d: &TreeDescriptor, index: u64) -> Result<CorruptRange, CryptoError> {
    let r = d
        .leaf_range(index)
        .ok_or(CryptoError::LeafIndexOutOfRange {
            index,
            count: d.leaf_count(),
        })?;
    Ok(CorruptRange {
        leaf_index: index,
        start: r.start,
        end: r.end,
    })
}

/// Compares two complete leaf lists and names every leaf that differs.
///
/// The result holds one entry per corrupt leaf, in ascending order; adjacent
/// corrupt leaves are *not* merged, so the count of entries is the count of
/// corrupt leaves. Each comparison is constant-time.
///
/// # Errors
///
/// [`CryptoError::DescriptorMismatch`] when the two lists describe different
/// trees (version, leaf size or length).
pub fn diff_leaves(
    expected: &LeafHashes,
    actual: &LeafHashes,
) -> Result<Vec<CorruptRange>, CryptoError> {
    if expected.descriptor() != actual.descriptor() {
        return Err(CryptoError::DescriptorMismatch);
    }
    let d = expected.descriptor();
    let mut out = Vec::new();
    for ((e, a), i) in expected.hashes().iter().zip(actual.hashes()).zip(0u64..) {
        if !e.ct_eq(a) {
            out.push(range_of(d, i)?);
        }
    }
    Ok(out)
}

/// Checks a subset of leaves: `recomputed[j]` is the fresh hash of leaf
/// `indices[j]`. Returns the corrupt ones, in the order of `indices`, one
/// entry per corrupt leaf. Each comparison is constant-time.
///
/// # Errors
///
/// [`CryptoError::LeafCountMismatch`] when `indices` and `recomputed` differ
/// in length; [`CryptoError::LeafIndexOutOfRange`] for an index past the last
/// leaf (checked before anything is compared).
pub fn verify_leaves(
    expected: &LeafHashes,
    indices: &[u64],
    recomputed: &[Sha256Digest],
) -> Result<Vec<CorruptRange>, CryptoError> {
    if indices.len() != recomputed.len() {
        return Err(CryptoError::LeafCountMismatch {
            expected: u64::try_from(indices.len()).unwrap_or(u64::MAX),
            actual: u64::try_from(recomputed.len()).unwrap_or(u64::MAX),
        });
    }
    let count = expected.descriptor().leaf_count();
    let mut wanted = Vec::with_capacity(indices.len());
    for &index in indices {
        let e = expected
            .get(index)
            .ok_or(CryptoError::LeafIndexOutOfRange { index, count })?;
        wanted.push(e);
    }
    let mut out = Vec::new();
    for ((e, r), &index) in wanted.into_iter().zip(recomputed).zip(indices) {
        if !e.ct_eq(r) {
            out.push(range_of(expected.descriptor(), index)?);
        }
    }
    Ok(out)
}
