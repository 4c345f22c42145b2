//! Differential tests: the multi-buffer, multi-core paths against ring and a
//! plain sequential reference implementation.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Helpers outside #[test] functions are test code too.

use proptest::prelude::*;
use vram_crypto::{
    hash_leaf_run, leaf_hashes, sha256, tree_digest, LeafSize, Sha256Digest, TreeHasher,
    LEAF_PREFIX, ROOT_PREFIX,
};

fn ring_prefixed(prefix: &[u8], body: &[u8]) -> [u8; 32] {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    c.update(prefix);
    c.update(body);
    c.finish().as_ref().try_into().unwrap()
}

/// The tree, written out the slow obvious way from docs/formats.md.
fn reference_tree(data: &[u8], leaf: usize) -> (Vec<[u8; 32]>, [u8; 32]) {
    let leaves: Vec<[u8; 32]> = data
        .chunks(leaf)
        .map(|c| ring_prefixed(LEAF_PREFIX, c))
        .collect();
    let mut m = ROOT_PREFIX.to_vec();
    m.push(1);
    m.push(1);
    m.push(leaf.trailing_zeros() as u8);
    m.extend_from_slice(&(data.len() as u64).to_be_bytes());
    m.extend_from_slice(&(leaves.len() as u64).to_be_bytes());
    for l in &leaves {
        m.extend_from_slice(l);
    }
    (leaves, ring_prefixed(&[], &m))
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
        .collect()
}

#[test]
fn tape_matches_ring_around_block_boundaries() {
    let lanes = tape_sha256::lane_width();
    let lens: Vec<usize> = (0..=130)
        .chain(4095..=4097)
        .chain([8191, 8192, 8193, 65535, 65536, 65537])
        .collect();
    for prefix in [&[][..], LEAF_PREFIX, b"x", &[7u8; 55]] {
        for &n in &lens {
            // A full batch of equal lengths, plus one more to spill a lane group.
            let inputs: Vec<Vec<u8>> = (0..=lanes as u8).map(|s| bytes(n, s)).collect();
            let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let mut out = vec![[0u8; 32]; refs.len()];
            tape_sha256::hash_many_prefixed(prefix, &refs, &mut out);
            for (r, o) in refs.iter().zip(&out) {
                assert_eq!(
                    ring_prefixed(prefix, r),
                    *o,
                    "prefix len {}, body len {n}",
                    prefix.len()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tape_matches_ring_on_random_batches(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
        prefix in prop::collection::vec(any::<u8>(), 0..130),
    ) {
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let mut out = vec![[0u8; 32]; refs.len()];
        tape_sha256::hash_many_prefixed(&prefix, &refs, &mut out);
        for (r, o) in refs.iter().zip(&out) {
            prop_assert_eq!(ring_prefixed(&prefix, r), *o);
        }
    }

    #[test]
    fn leaf_hashes_match_reference(len in 0usize..200_000, seed in any::<u8>(), log2 in 12u8..=16) {
        let data = bytes(len, seed);
        let leaf = LeafSize::new(1 << log2).unwrap();
        let (leaves, root) = reference_tree(&data, 1 << log2);
        let got = leaf_hashes(&data, leaf);
        let got_raw: Vec<[u8; 32]> = got.hashes().iter().map(|h| h.0).collect();
        prop_assert_eq!(got_raw, leaves);
        prop_assert_eq!(got.root().root.0, root);
        prop_assert_eq!(tree_digest(&data, leaf), got.root());
    }

    #[test]
    fn tree_hasher_any_split_matches_one_shot(
        len in 0usize..100_000,
        seed in any::<u8>(),
        cuts in prop::collection::vec(0usize..100_000, 0..12),
        log2 in 12u8..=14,
    ) {
        let data = bytes(len, seed);
        let leaf = LeafSize::new(1 << log2).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (len + 1)).collect();
        cuts.push(0);
        cuts.push(len);
        cuts.sort_unstable();
        let mut h = TreeHasher::new(leaf).with_plain_sha256();
        for w in cuts.windows(2) {
            h.update(&data[w[0]..w[1]]);
        }
        prop_assert_eq!(h.bytes_seen(), len as u64);
        let out = h.finish();
        prop_assert_eq!(&out.leaves, &leaf_hashes(&data, leaf));
        prop_assert_eq!(out.plain_sha256, Some(sha256(&data)));
    }

    #[test]
    fn hash_leaf_run_appends_the_leaves_of_a_run(len in 0usize..60_000, first in 0usize..8, seed in any::<u8>()) {
        let leaf = LeafSize::MIN;
        let data = bytes(len, seed);
        let all = leaf_hashes(&data, leaf);
        let start = (first * 4096).min(len / 4096 * 4096);
        let mut out = vec![Sha256Digest([9; 32])];
        hash_leaf_run(leaf, &data[start..], &mut out);
        prop_assert_eq!(out[0], Sha256Digest([9; 32]));
        prop_assert_eq!(&out[1..], &all.hashes()[start / 4096..]);
    }
}

/// Large enough to take the multi-threaded path with several lane groups
/// per thread and a partial last leaf, in one and in many updates, with and
/// without the plain stream (which runs on its own thread above 1 MiB).
#[test]
fn parallel_paths_match_reference_on_megabytes() {
    let data = bytes(9 * 1024 * 1024 + 12_345, 3);
    for log2 in [12u8, 16, 20] {
        let leaf = LeafSize::new(1 << log2).unwrap();
        let (leaves, root) = reference_tree(&data, 1 << log2);
        let got = leaf_hashes(&data, leaf);
        assert_eq!(
            got.hashes().iter().map(|h| h.0).collect::<Vec<_>>(),
            leaves,
            "leaf 2^{log2}"
        );
        assert_eq!(got.root().root.0, root);
        for chunk in [data.len(), 3 << 20, (1 << 20) + 1, 777_777] {
            let mut h = TreeHasher::new(leaf).with_plain_sha256();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            let out = h.finish();
            assert_eq!(out.leaves, got, "leaf 2^{log2}, chunk {chunk}");
            assert_eq!(out.plain_sha256, Some(sha256(&data)));
        }
    }
    let chunk = TreeHasher::new(LeafSize::DEFAULT).preferred_chunk_len();
    assert!(chunk >= 8 << 20 && chunk.is_multiple_of(1 << 20), "{chunk}");
}

#[test]
fn different_data_gives_different_digests() {
    let a = bytes(50_000, 1);
    let mut b = a.clone();
    b[49_999] ^= 1;
    assert_ne!(
        tree_digest(&a, LeafSize::MIN),
        tree_digest(&b, LeafSize::MIN)
    );
    // Same bytes, different leaf size or length: different roots.
    assert_ne!(
        tree_digest(&a, LeafSize::MIN).root,
        tree_digest(&a, LeafSize::new(8192).unwrap()).root
    );
    assert_ne!(
        tree_digest(&a, LeafSize::MIN).root,
        tree_digest(&a[..49_999], LeafSize::MIN).root
    );
    // Reordered leaves: different root although the set of leaf hashes is the same.
    let mut orig = vec![0x11u8; 4096];
    orig.extend_from_slice(&[0x22; 4096]);
    let mut swapped = vec![0x22u8; 4096];
    swapped.extend_from_slice(&[0x11; 4096]);
    let (lo, ls) = (
        leaf_hashes(&orig, LeafSize::MIN),
        leaf_hashes(&swapped, LeafSize::MIN),
    );
    assert_eq!(
        (lo.hashes()[0], lo.hashes()[1]),
        (ls.hashes()[1], ls.hashes()[0])
    );
    assert_ne!(
        tree_digest(&swapped, LeafSize::MIN),
        tree_digest(&orig, LeafSize::MIN)
    );
}
