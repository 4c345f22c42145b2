//! diff_leaves and verify_leaves name exactly the corrupt leaves.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
// Helpers outside #[test] functions are test code too.

use vram_crypto::{
    diff_leaves, hash_leaf_run, leaf_hashes, verify_leaves, CorruptRange, CryptoError, LeafSize,
    Sha256Digest,
};

const LEAF: u64 = 4096;

fn data() -> Vec<u8> {
    // 5 leaves, the last one partial.
    (0..(4 * LEAF + 1000) as usize)
        .map(|i| (i % 251) as u8)
        .collect()
}

fn corrupt_at(positions: &[u64]) -> Vec<CorruptRange> {
    let good = data();
    let mut bad = good.clone();
    for &p in positions {
        bad[p as usize] ^= 0x40;
    }
    let l = LeafSize::new(LEAF).unwrap();
    diff_leaves(&leaf_hashes(&good, l), &leaf_hashes(&bad, l)).unwrap()
}

fn range(i: u64) -> CorruptRange {
    CorruptRange {
        leaf_index: i,
        start: i * LEAF,
        end: ((i + 1) * LEAF).min(4 * LEAF + 1000),
    }
}

#[test]
fn pinpoints_first_and_last_byte() {
    assert_eq!(corrupt_at(&[]), vec![]);
    assert_eq!(corrupt_at(&[0]), vec![range(0)]);
    assert_eq!(corrupt_at(&[LEAF - 1]), vec![range(0)]);
    assert_eq!(corrupt_at(&[LEAF]), vec![range(1)]);
    assert_eq!(corrupt_at(&[2 * LEAF + 17]), vec![range(2)]);
    // Last byte of the input, in the partial last leaf.
    assert_eq!(corrupt_at(&[4 * LEAF + 999]), vec![range(4)]);
    assert_eq!(
        range(4),
        CorruptRange {
            leaf_index: 4,
            start: 16384,
            end: 17384
        }
    );
}

#[test]
fn across_a_leaf_boundary_names_both_leaves_unmerged() {
    assert_eq!(corrupt_at(&[LEAF - 1, LEAF]), vec![range(0), range(1)]);
    assert_eq!(
        corrupt_at(&[3 * LEAF - 2, 3 * LEAF + 2, 0]),
        vec![range(0), range(2), range(3)]
    );
}

#[test]
fn descriptor_mismatch_is_an_error() {
    let d = data();
    let a = leaf_hashes(&d, LeafSize::new(LEAF).unwrap());
    let b = leaf_hashes(&d, LeafSize::new(2 * LEAF).unwrap());
    assert_eq!(diff_leaves(&a, &b), Err(CryptoError::DescriptorMismatch));
    let c = leaf_hashes(&d[..d.len() - 1], LeafSize::new(LEAF).unwrap());
    assert_eq!(diff_leaves(&a, &c), Err(CryptoError::DescriptorMismatch));
}

#[test]
fn verify_subset_of_leaves() {
    let l = LeafSize::new(LEAF).unwrap();
    let good = data();
    let expected = leaf_hashes(&good, l);
    let mut bad = good.clone();
    bad[(3 * LEAF + 5) as usize] ^= 1;

    // Sampled verification: rehash single leaves from the (corrupt) copy.
    let indices = [4u64, 3, 0];
    let mut fresh = Vec::new();
    for &i in &indices {
        let r = expected.descriptor().leaf_range(i).unwrap();
        hash_leaf_run(l, &bad[r.start as usize..r.end as usize], &mut fresh);
    }
    assert_eq!(
        verify_leaves(&expected, &indices, &fresh).unwrap(),
        vec![range(3)]
    );
    assert_eq!(
        verify_leaves(&expected, &[4, 0], &[fresh[0], fresh[2]]).unwrap(),
        vec![]
    );
    assert_eq!(verify_leaves(&expected, &[], &[]).unwrap(), vec![]);

    assert_eq!(
        verify_leaves(&expected, &[0, 1], &[fresh[2]]),
        Err(CryptoError::LeafCountMismatch {
            expected: 2,
            actual: 1
        })
    );
    assert_eq!(
        verify_leaves(&expected, &[0, 5], &[fresh[2], Sha256Digest([0; 32])]),
        Err(CryptoError::LeafIndexOutOfRange { index: 5, count: 5 })
    );
    assert_eq!(
        verify_leaves(&expected, &[u64::MAX], &[fresh[2]]),
        Err(CryptoError::LeafIndexOutOfRange {
            index: u64::MAX,
            count: 5
        })
    );
}
