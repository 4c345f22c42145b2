//! The chunk-tree digest: one-shot and streaming agree, and a changed byte is
//! found in exactly its own leaf.
//!
//! Input layout: byte 0 picks the leaf size (4 KiB to 64 KiB), bytes 1..4 the
//! data length (up to six leaves plus a partial one), byte 4 how many chunk
//! lengths follow, then the chunk lengths (two bytes each, scaled up to two
//! leaves), then a byte position and XOR mask for the corruption check. What
//! is left is the data pattern, repeated to the chosen length (with the
//! position mixed in, so that leaves differ).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vram_crypto::{
    diff_leaves, hash_leaf_run, leaf_hashes, sha256, tree_digest, verify_leaves, CryptoError,
    LeafSize, TreeHasher,
};

struct Input<'a> {
    rest: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u24(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), 0])
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut input = Input { rest: bytes };
    let leaf = LeafSize::new(1u64 << (12 + input.byte() % 5)).unwrap();
    let leaf_bytes = usize::try_from(leaf.bytes()).unwrap();
    let len = usize::try_from(input.u24()).unwrap() % (6 * leaf_bytes + leaf_bytes / 2 + 1);
    let chunk_count = usize::from(input.byte() % 16);
    let chunks: Vec<usize> = (0..chunk_count)
        .map(|_| usize::from(input.u16()) * (2 * leaf_bytes) / usize::from(u16::MAX))
        .collect();
    let flip_at = usize::try_from(input.u24()).unwrap();
    let flip_mask = input.byte() | 1;
    let pattern = if input.rest.is_empty() {
        &[0u8][..]
    } else {
        input.rest
    };
    let data: Vec<u8> = (0..len)
        .map(|i| pattern[i % pattern.len()] ^ (i / pattern.len()) as u8)
        .collect();

    // One shot.
    let digest = tree_digest(&data, leaf);
    let leaves = leaf_hashes(&data, leaf);
    assert_eq!(leaves.root(), digest);
    assert_eq!(digest.descriptor.total_len, len as u64);
    assert_eq!(
        leaves.descriptor().leaf_count(),
        len.div_ceil(leaf_bytes) as u64
    );
    let mut run = Vec::new();
    hash_leaf_run(leaf, &data, &mut run);
    assert_eq!(run.as_slice(), leaves.hashes());

    // Streaming, in the chunk lengths the input chose (then the rest at once).
    let mut hasher = TreeHasher::new(leaf).with_plain_sha256();
    let mut fed = 0;
    for c in &chunks {
        let end = (fed + c).min(len);
        hasher.update(&data[fed..end]);
        fed = end;
    }
    hasher.update(&data[fed..]);
    assert_eq!(hasher.bytes_seen(), len as u64);
    let out = hasher.finish();
    assert_eq!(
        out.leaves, leaves,
        "streaming differs with chunks {chunks:?}"
    );
    assert_eq!(out.leaves.root(), digest);
    assert_eq!(out.plain_sha256, Some(sha256(&data)));

    // Identical trees have no corrupt leaves; other leaf sizes are refused.
    assert_eq!(diff_leaves(&leaves, &out.leaves).unwrap(), []);
    let other = LeafSize::new(if leaf_bytes == 4096 { 8192 } else { 4096 }).unwrap();
    assert!(matches!(
        diff_leaves(&leaves, &leaf_hashes(&data, other)),
        Err(CryptoError::DescriptorMismatch)
    ));

    // One changed byte: exactly its leaf is corrupt.
    if len > 0 {
        let at = flip_at % len;
        let mut bad = data.clone();
        bad[at] ^= flip_mask;
        let bad_leaves = leaf_hashes(&bad, leaf);
        assert_ne!(bad_leaves.root(), digest);
        let corrupt = diff_leaves(&leaves, &bad_leaves).unwrap();
        assert_eq!(corrupt.len(), 1, "{corrupt:?}");
        let index = (at / leaf_bytes) as u64;
        let r = corrupt[0];
        assert_eq!(r.leaf_index, index);
        assert_eq!(r.start, index * leaf.bytes());
        assert_eq!(r.end, (r.start + leaf.bytes()).min(len as u64));
        assert!(r.start <= at as u64 && (at as u64) < r.end);
        let recomputed = [bad_leaves.hashes()[index as usize]];
        assert_eq!(verify_leaves(&leaves, &[index], &recomputed).unwrap(), [r]);
        assert_eq!(
            verify_leaves(&leaves, &[index], &[leaves.hashes()[index as usize]]).unwrap(),
            []
        );
    }
    let past = leaves.descriptor().leaf_count();
    assert!(matches!(
        verify_leaves(&leaves, &[past], &[sha256(b"")]),
        Err(CryptoError::LeafIndexOutOfRange { .. })
    ));
});
