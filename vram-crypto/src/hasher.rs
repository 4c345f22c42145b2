//! Streaming tree hashing: bytes arrive in chunks of any size.

use crate::digest::{Sha256Digest, Sha256Stream};
use crate::engine::{append_hashes, append_hashes_alongside, hashing_threads, lane_width};
use crate::tree::{LeafHashes, LeafSize, TreeDescriptor};

/// Below this chunk size the plain SHA-256 runs inline instead of on its own thread.
const PLAIN_THREAD_MIN_BYTES: usize = 1024 * 1024;

/// What [`TreeHasher::finish`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeOutput {
    /// Every leaf hash; `leaves.root()` is the tree digest.
    pub leaves: LeafHashes,
    /// Plain SHA-256 of all bytes, when [`TreeHasher::with_plain_sha256`] asked for it.
    pub plain_sha256: Option<Sha256Digest>,
}

/// Computes leaf hashes (and optionally a plain SHA-256) over bytes fed in
/// order, in chunks of any size.
///
/// It buffers at most one partial leaf. Whole leaves inside a chunk are hashed
/// straight from the caller's slice on all cores and SIMD lanes, so chunks of
/// [`TreeHasher::preferred_chunk_len`] bytes or more run at the multi-buffer
/// rate; chunks smaller than a leaf are copied into the partial leaf and each
/// completed leaf is hashed alone (one lane, one core).
#[derive(Debug)]
pub struct TreeHasher {
    leaf: LeafSize,
    pending: Vec<u8>,
    hashes: Vec<Sha256Digest>,
    seen: u64,
    plain: Option<Sha256Stream>,
}

impl TreeHasher {
    /// A hasher for trees of `leaf`-sized leaves.
    #[must_use]
    pub fn new(leaf: LeafSize) -> Self {
        Self {
            leaf,
            pending: Vec::new(),
            hashes: Vec::new(),
            seen: 0,
            plain: None,
        }
    }

    /// Also computes the plain whole-input SHA-256 in the same pass (what
    /// model catalogs publish).
    ///
    /// That is one ring stream, which no amount of cores can split: it caps
    /// the throughput of [`TreeHasher::update`] at one core's ring rate. For
    /// chunks of 1 MiB or more the stream runs on its own thread concurrently
    /// with leaf hashing, which then uses the remaining cores.
    #[must_use]
    pub fn with_plain_sha256(mut self) -> Self {
        self.plain = Some(Sha256Stream::new());
        self
    }

    /// The leaf size of the tree being built.
    #[must_use]
    pub fn leaf_size(&self) -> LeafSize {
        self.leaf
    }

    /// A chunk size that keeps every core and lane busy: one leaf per lane per
    /// core, at least 8 MiB, at most 256 MiB (but always whole leaves).
    #[must_use]
    pub fn preferred_chunk_len(&self) -> usize {
        let leaf = self.leaf.bytes_usize();
        let busy = leaf
            .saturating_mul(lane_width())
            .saturating_mul(hashing_threads());
        let target = busy.clamp(8 << 20, 256 << 20);
        target.div_ceil(leaf).max(1).saturating_mul(leaf)
    }

    /// Number of bytes fed so far.
    #[must_use]
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Feeds the next `chunk` of the input.
    pub fn update(&mut self, chunk: &[u8]) {
        self.seen = self
            .seen
            .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        let Self {
            leaf,
            pending,
            hashes,
            plain,
            ..
        } = self;
        let threads = hashing_threads();
        match plain {
            // The plain stream runs on this thread while the others hash the
            // leaves; this thread joins them when its stream is done.
            Some(stream) if chunk.len() >= PLAIN_THREAD_MIN_BYTES && threads > 1 => {
                feed_leaves(*leaf, pending, hashes, chunk, threads, Some(stream));
            }
            Some(stream) => {
                stream.update(chunk);
                feed_leaves(*leaf, pending, hashes, chunk, threads, None);
            }
            None => feed_leaves(*leaf, pending, hashes, chunk, threads, None),
        }
    }

    /// Hashes the last, partial leaf and returns every leaf hash.
    #[must_use]
    pub fn finish(mut self) -> TreeOutput {
        if !self.pending.is_empty() {
            append_hashes(&[self.pending.as_slice()], 1, &mut self.hashes);
        }
        let descriptor = TreeDescriptor::new(self.leaf, self.seen);
        TreeOutput {
            leaves: LeafHashes::from_parts_unchecked(descriptor, self.hashes),
            plain_sha256: self.plain.map(Sha256Stream::finish),
        }
    }
}

/// Completes the pending leaf from `chunk`, hashes every whole leaf available
/// in one parallel batch (with `plain` fed the whole chunk on this thread
/// meanwhile, when given), and keeps the tail as the new pending leaf.
fn feed_leaves(
    leaf: LeafSize,
    pending: &mut Vec<u8>,
    hashes: &mut Vec<Sha256Digest>,
    chunk: &[u8],
    threads: usize,
    plain: Option<&mut Sha256Stream>,
) {
    let leaf = leaf.bytes_usize();
    let mut rest = chunk;
    if !pending.is_empty() {
        let take = leaf.saturating_sub(pending.len()).min(rest.len());
        let (head, tail) = rest.split_at(take);
        pending.extend_from_slice(head);
        rest = tail;
    }
    let pending_full = pending.len() == leaf;
    let whole = rest
        .len()
        .checked_div(leaf)
        .unwrap_or(0)
        .saturating_mul(leaf);
    let (body, tail) = rest.split_at(whole);
    let mut bodies: Vec<&[u8]> =
        Vec::with_capacity(body.len().checked_div(leaf).unwrap_or(0).saturating_add(1));
    if pending_full {
        bodies.push(pending.as_slice());
    }
    bodies.extend(body.chunks(leaf));
    match plain {
        Some(stream) => {
            append_hashes_alongside(&bodies, threads, || stream.update(chunk), hashes);
        }
        None if !bodies.is_empty() => append_hashes(&bodies, threads, hashes),
        None => {}
    }
    if pending_full {
        pending.clear();
    }
    if pending.is_empty() && !tail.is_empty() {
        pending.reserve_exact(leaf);
    }
    pending.extend_from_slice(tail);
}
