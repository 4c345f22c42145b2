//! The chunk-tree digest: leaf size, descriptor, leaf hashes and root.
//!
//! The construction is a flat two-level tree in the spirit of fs-verity:
//!
//! ```text
//! leaf[i] = SHA-256(LEAF_PREFIX || bytes[i*L .. min((i+1)*L, n)])
//! root    = SHA-256(ROOT_PREFIX || descriptor.encode() || leaf[0] || leaf[1] || ...)
//! ```
//!
//! Leaf hashes do not contain their index; the root binds the order. See
//! `docs/formats.md` for the byte-level definition and test vectors.

use core::fmt;
use core::ops::Range;

use serde::{Deserialize, Serialize};

use crate::digest::{from_ring, Sha256Digest};
use crate::CryptoError;

/// Version of the tree construction, the first byte of the descriptor encoding.
pub const TREE_FORMAT_VERSION: u8 = 1;

/// Algorithm byte in the descriptor encoding: 1 = SHA-256.
pub const TREE_ALGORITHM_SHA256: u8 = 1;

/// Length of [`TreeDescriptor::encode`]'s output.
pub const DESCRIPTOR_LEN: usize = 19;

/// Pads an ASCII tag with zero bytes to one 64-byte SHA-256 block.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // const-evaluated: an overflow is a compile error
const fn block_tag(tag: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < tag.len() {
        out[i] = tag[i];
        i += 1;
    }
    out
}

const LEAF_TAG: [u8; 64] = block_tag(b"vram-residency tree v1 leaf");
const ROOT_TAG: [u8; 64] = block_tag(b"vram-residency tree v1 root");

/// Domain tag hashed before every leaf's bytes: the ASCII text
/// `vram-residency tree v1 leaf` padded with zero bytes to 64 bytes.
///
/// It fills exactly one SHA-256 block, so leaf data starts on a block
/// boundary and an on-device hasher can start every leaf from one
/// precomputed midstate.
pub const LEAF_PREFIX: &[u8] = &LEAF_TAG;

/// Domain tag that starts the root hash: the ASCII text
/// `vram-residency tree v1 root` padded with zero bytes to 64 bytes.
pub const ROOT_PREFIX: &[u8] = &ROOT_TAG;

/// Size of one leaf: a power of two from 4 KiB to 1 GiB.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct LeafSize {
    log2: u8,
}

impl LeafSize {
    /// Smallest accepted leaf, 4 KiB.
    pub const MIN: LeafSize = LeafSize { log2: 12 };
    /// Largest accepted leaf, 1 GiB.
    pub const MAX: LeafSize = LeafSize { log2: 30 };
    /// The default leaf size, 1 MiB.
    ///
    /// Chosen by benchmark (`cargo bench -p vram-crypto`, `examples/throughput.rs`):
    /// from 1 MiB up, the tree digest runs at the multi-buffer limit, while a
    /// sampled verification of k leaves costs k MiB of reading and hashing, a
    /// quarter of what 4 MiB leaves would cost. The leaf list stays small
    /// (32 bytes per MiB: 3.2 MB for a 100 GB model).
    pub const DEFAULT: LeafSize = LeafSize { log2: 20 };

    /// Validates a leaf size in bytes.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidLeafSize`] unless `bytes` is a power of two in
    /// 4096 ..= 1073741824.
    pub fn new(bytes: u64) -> Result<Self, CryptoError> {
        if !bytes.is_power_of_two() {
            return Err(CryptoError::InvalidLeafSize { bytes });
        }
        let log2 = u8::try_from(bytes.trailing_zeros())
            .map_err(|_| CryptoError::InvalidLeafSize { bytes })?;
        if !(Self::MIN.log2..=Self::MAX.log2).contains(&log2) {
            return Err(CryptoError::InvalidLeafSize { bytes });
        }
        Ok(Self { log2 })
    }

    /// The leaf size of `2^log2` bytes, in a `const` context; `None` outside
    /// [`LeafSize::MIN`] ..= [`LeafSize::MAX`].
    #[must_use]
    pub const fn from_log2(log2: u8) -> Option<Self> {
        if log2 >= Self::MIN.log2 && log2 <= Self::MAX.log2 {
            Some(Self { log2 })
        } else {
            None
        }
    }

    /// The leaf size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        1u64 << self.log2
    }

    /// The leaf size as a power of two.
    #[must_use]
    pub const fn log2(self) -> u8 {
        self.log2
    }

    /// The leaf size in bytes as a `usize` (every valid leaf fits: at most 1 GiB).
    pub(crate) fn bytes_usize(self) -> usize {
        usize::try_from(self.bytes()).unwrap_or(usize::MAX)
    }
}

impl Default for LeafSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u64> for LeafSize {
    type Error = CryptoError;
    fn try_from(bytes: u64) -> Result<Self, Self::Error> {
        Self::new(bytes)
    }
}

impl From<LeafSize> for u64 {
    fn from(l: LeafSize) -> u64 {
        l.bytes()
    }
}

impl fmt::Display for LeafSize {
    /// "4 KiB", "1 MiB", "1 GiB".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.log2 {
            30.. => write!(f, "{} GiB", self.bytes() >> 30),
            20.. => write!(f, "{} MiB", self.bytes() >> 20),
            _ => write!(f, "{} KiB", self.bytes() >> 10),
        }
    }
}

impl fmt::Debug for LeafSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeafSize({self})")
    }
}

/// What a tree covers: format version, leaf size and total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TreeDescriptor {
    /// Construction version; [`TREE_FORMAT_VERSION`] for trees this crate builds.
    pub version: u8,
    /// Size of every leaf but the last.
    pub leaf_size: LeafSize,
    /// Number of bytes covered.
    pub total_len: u64,
}

impl TreeDescriptor {
    /// A descriptor of the current format version.
    #[must_use]
    pub const fn new(leaf_size: LeafSize, total_len: u64) -> Self {
        Self {
            version: TREE_FORMAT_VERSION,
            leaf_size,
            total_len,
        }
    }

    /// Number of leaves: `ceil(total_len / leaf_size)`, 0 for empty input.
    #[must_use]
    pub const fn leaf_count(&self) -> u64 {
        self.total_len.div_ceil(self.leaf_size.bytes())
    }

    /// Byte range of leaf `i`, or `None` past the last leaf. Only the last
    /// leaf may be shorter than the leaf size.
    #[must_use]
    pub fn leaf_range(&self, i: u64) -> Option<Range<u64>> {
        if i >= self.leaf_count() {
            return None;
        }
        let start = i.checked_mul(self.leaf_size.bytes())?;
        let end = start
            .saturating_add(self.leaf_size.bytes())
            .min(self.total_len);
        Some(start..end)
    }

    /// Canonical 19-byte encoding hashed into the root and into seals:
    /// `version (u8) || algorithm (u8, 1 = SHA-256) || log2(leaf size) (u8) ||
    /// total_len (u64 BE) || leaf_count (u64 BE)`.
    #[must_use]
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut out = [0u8; DESCRIPTOR_LEN];
        let mut w = out.iter_mut();
        let fields = [self.version, TREE_ALGORITHM_SHA256, self.leaf_size.log2()]
            .into_iter()
            .chain(self.total_len.to_be_bytes())
            .chain(self.leaf_count().to_be_bytes());
        for (slot, byte) in w.by_ref().zip(fields) {
            *slot = byte;
        }
        out
    }
}

/// The root of a tree together with what it covers.
///
/// `Display` prints the root as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TreeDigest {
    /// Version, leaf size and length of the tree.
    pub descriptor: TreeDescriptor,
    /// The root hash.
    pub root: Sha256Digest,
}

impl fmt::Display for TreeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.root, f)
    }
}

/// Every leaf hash of a tree, in order, with its descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LeafHashesRepr")]
pub struct LeafHashes {
    descriptor: TreeDescriptor,
    hashes: Vec<Sha256Digest>,
}

#[derive(Deserialize)]
pub(crate) struct LeafHashesRepr {
    descriptor: TreeDescriptor,
    hashes: Vec<Sha256Digest>,
}

impl TryFrom<LeafHashesRepr> for LeafHashes {
    type Error = CryptoError;
    fn try_from(r: LeafHashesRepr) -> Result<Self, CryptoError> {
        Self::from_parts(r.descriptor, r.hashes)
    }
}

impl LeafHashes {
    /// Joins a descriptor and its leaf hashes.
    ///
    /// # Errors
    ///
    /// [`CryptoError::LeafCountMismatch`] unless there is exactly one hash per
    /// leaf of `descriptor`.
    pub fn from_parts(
        descriptor: TreeDescriptor,
        hashes: Vec<Sha256Digest>,
    ) -> Result<Self, CryptoError> {
        let actual = u64::try_from(hashes.len()).unwrap_or(u64::MAX);
        if actual != descriptor.leaf_count() {
            return Err(CryptoError::LeafCountMismatch {
                expected: descriptor.leaf_count(),
                actual,
            });
        }
        Ok(Self { descriptor, hashes })
    }

    /// The tree these leaves belong to.
    #[must_use]
    pub fn descriptor(&self) -> &TreeDescriptor {
        &self.descriptor
    }

    /// All leaf hashes, in order.
    #[must_use]
    pub fn hashes(&self) -> &[Sha256Digest] {
        &self.hashes
    }

    /// Hash of leaf `i`, if there is one.
    #[must_use]
    pub fn get(&self, i: u64) -> Option<&Sha256Digest> {
        self.hashes.get(usize::try_from(i).ok()?)
    }

    /// Number of leaves.
    #[must_use]
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True for the tree of empty input.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Joins parts the caller built consistently (one hash per leaf).
    pub(crate) fn from_parts_unchecked(
        descriptor: TreeDescriptor,
        hashes: Vec<Sha256Digest>,
    ) -> Self {
        debug_assert_eq!(hashes.len() as u64, descriptor.leaf_count());
        Self { descriptor, hashes }
    }

    /// Takes the parts apart again.
    #[must_use]
    pub fn into_parts(self) -> (TreeDescriptor, Vec<Sha256Digest>) {
        (self.descriptor, self.hashes)
    }

    /// The root: `SHA-256(ROOT_PREFIX || descriptor.encode() || leaf hashes)`.
    #[must_use]
    pub fn root(&self) -> TreeDigest {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(ROOT_PREFIX);
        ctx.update(&self.descriptor.encode());
        // Feed the hashes in 4 KiB runs rather than 32 bytes per call.
        let mut buf = [0u8; 4096];
        for run in self.hashes.chunks(128) {
            let mut used = 0usize;
            for (slot, h) in buf.chunks_exact_mut(32).zip(run) {
                slot.copy_from_slice(&h.0);
                used = used.saturating_add(32);
            }
            ctx.update(buf.get(..used).unwrap_or(&[]));
        }
        TreeDigest {
            descriptor: self.descriptor,
            root: from_ring(ctx.finish()),
        }
    }
}
