//! A host-side index over a leaf list that shows one recorded leaf hash
//! belongs to the list in `O(log n)` hashes.
//!
//! The seal commits to the flat root ([`LeafHashes::root`]): checking that
//! the host's leaf list still produces it hashes the whole list, 32 bytes per
//! leaf (22 µs for 1,387 leaves, 4.8 ms for the 150,000 leaves of a 150 GB
//! model at 1 MiB), which a sampled verification of one leaf would otherwise
//! pay each time. A [`LeafIndex`] is a binary hash tree built over the same
//! list once, when the list is known to match the root (at seal time):
//!
//! ```text
//! level[0]   = leaf hashes
//! level[k+1] = node(level[k][2j], level[k][2j+1]), or level[k][2j] alone
//!              when it has no right sibling (carried up unchanged)
//! node(l, r) = SHA-256(NODE_PREFIX || l || r)
//! ```
//!
//! [`LeafIndex::proves`] recomputes leaf `i`'s path from the recorded hash
//! up to the top with the stored siblings, and compares with the stored top:
//! a change to that leaf's recorded hash, to any sibling on its path or to
//! the top is found (the host memory of the list and of the index changed
//! apart from each other; a consistent change of both would need SHA-256
//! preimages). A change to a leaf hash not on the path is found when that
//! leaf is proved, or by the flat root check that full verifications and
//! every scrubber sweep still run.
//!
//! The index is in no format and never leaves the process: nothing outside
//! compares with it.

use crate::digest::{from_ring, Sha256Digest};
use crate::tree::LeafHashes;

/// Domain tag of an index node: distinct from the leaf and root tags, so a
/// node is never taken for either.
const NODE_PREFIX: &[u8; 1] = b"N";

/// A binary hash tree over a leaf list, kept beside it on the host: one
/// recorded leaf hash shown to belong to the list in `O(log n)` hashes
/// ([`LeafIndex::proves`]); built once from a list known to match its root.
#[derive(Clone, PartialEq, Eq)]
pub struct LeafIndex {
    /// Levels above the leaves, bottom up; the last holds the top alone.
    /// Empty for zero or one leaf.
    levels: Vec<Vec<Sha256Digest>>,
    /// The top: the one node of the last level, or the lone leaf.
    top: Option<Sha256Digest>,
    leaves: usize,
}

impl core::fmt::Debug for LeafIndex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LeafIndex")
            .field("leaves", &self.leaves)
            .field("levels", &self.levels.len())
            .finish_non_exhaustive()
    }
}

fn node(left: &Sha256Digest, right: &Sha256Digest) -> Sha256Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(NODE_PREFIX);
    ctx.update(&left.0);
    ctx.update(&right.0);
    from_ring(ctx.finish())
}

fn parents(level: &[Sha256Digest]) -> Vec<Sha256Digest> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node(left, right),
            [alone] => *alone,
            _ => Sha256Digest([0; 32]),
        })
        .collect()
}

impl LeafIndex {
    /// The index over `leaves`: one hash per pair of nodes at every level,
    /// about one per leaf in all (host memory: about 32 bytes per leaf).
    /// Build it only from a list known to match the root it is trusted for.
    #[must_use]
    pub fn over(leaves: &LeafHashes) -> Self {
        let hashes = leaves.hashes();
        let mut levels: Vec<Vec<Sha256Digest>> = Vec::new();
        let mut below = hashes;
        while below.len() > 1 {
            levels.push(parents(below));
            below = levels.last().map_or(&[], Vec::as_slice);
        }
        Self {
            top: below.first().copied(),
            levels,
            leaves: hashes.len(),
        }
    }

    /// Leaves indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.leaves
    }

    /// True for the index of no leaves.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// Whether leaf `index` of `leaves` (the list this index was built over)
    /// is the hash it was then: its path to the top, recomputed with the
    /// stored siblings, ends at the stored top. False for an index past the
    /// list or a list of another length. `⌈log2 n⌉` hashes.
    #[must_use]
    pub fn proves(&self, leaves: &LeafHashes, index: u64) -> bool {
        let (Some(top), Ok(mut i)) = (self.top, usize::try_from(index)) else {
            return false;
        };
        let Some(mut at) = leaves.hashes().get(i).copied() else {
            return false;
        };
        if leaves.len() != self.leaves {
            return false;
        }
        let mut below = leaves.hashes();
        for above in &self.levels {
            let sibling = i ^ 1;
            if let Some(s) = below.get(sibling) {
                at = if i % 2 == 0 {
                    node(&at, s)
                } else {
                    node(s, &at)
                };
            }
            i /= 2;
            below = above;
        }
        at.ct_eq(&top)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::tree::{LeafSize, TreeDescriptor};

    fn list(n: u64) -> LeafHashes {
        let leaf = LeafSize::new(4096).unwrap();
        let descriptor = TreeDescriptor::new(leaf, n * 4096);
        let hashes = (0..n).map(|i| crate::sha256(&i.to_le_bytes())).collect();
        LeafHashes::from_parts(descriptor, hashes).unwrap()
    }

    fn altered(leaves: &LeafHashes, i: usize) -> LeafHashes {
        let (d, mut hashes) = leaves.clone().into_parts();
        hashes[i].0[7] ^= 0x10;
        LeafHashes::from_parts(d, hashes).unwrap()
    }

    #[test]
    fn every_leaf_of_every_shape_is_proved_and_an_altered_one_is_not() {
        for n in [1u64, 2, 3, 4, 5, 7, 8, 9, 31, 33, 100] {
            let leaves = list(n);
            let index = LeafIndex::over(&leaves);
            assert_eq!(index.len(), n as usize);
            for i in 0..n {
                assert!(index.proves(&leaves, i), "n {n} leaf {i}");
                let changed = altered(&leaves, i as usize);
                assert!(!index.proves(&changed, i), "n {n} altered leaf {i}");
            }
            assert!(!index.proves(&leaves, n), "past the list");
            assert!(!index.proves(&leaves, u64::MAX));
        }
    }

    #[test]
    fn an_altered_sibling_or_top_fails_the_proof_and_other_leaves_stand() {
        let leaves = list(13);
        let index = LeafIndex::over(&leaves);
        // Leaf 4's sibling is leaf 5: changing it fails leaf 4's proof;
        // leaf 12 (the carried-up last leaf, far from both) still proves.
        let changed = altered(&leaves, 5);
        assert!(!index.proves(&changed, 4));
        assert!(index.proves(&changed, 12));
        // A stored node on the path (leaf 0's level-1 sibling, node (2,3)).
        let mut bad = index.clone();
        bad.levels[0][1].0[0] ^= 1;
        assert!(!bad.proves(&leaves, 0));
        assert!(!bad.proves(&leaves, 1));
        assert!(bad.proves(&leaves, 12));
        // The top: no leaf proves.
        let mut bad = index.clone();
        bad.top = Some(Sha256Digest([0; 32]));
        assert!((0..13).all(|i| !bad.proves(&leaves, i)));
        // A list of another length.
        assert!(!index.proves(&list(12), 0));
    }

    #[test]
    fn a_node_is_not_a_leaf_pair_without_its_domain_tag() {
        let (a, b) = (crate::sha256(b"a"), crate::sha256(b"b"));
        let mut untagged = Vec::new();
        untagged.extend_from_slice(&a.0);
        untagged.extend_from_slice(&b.0);
        assert_ne!(node(&a, &b), crate::sha256(&untagged));
        assert_ne!(node(&a, &b), node(&b, &a));
    }

    #[test]
    fn an_empty_list_proves_nothing() {
        let leaves = list(0);
        let index = LeafIndex::over(&leaves);
        assert!(index.is_empty());
        assert!(!index.proves(&leaves, 0));
    }
}
