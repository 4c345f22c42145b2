//! The crate's one error type.

/// Everything that can go wrong in `vram-crypto`.
///
/// Errors carry sizes and counts, never key bytes or raw untrusted input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A leaf size was not a power of two between 4 KiB and 1 GiB.
    #[error("invalid leaf size {bytes} bytes: must be a power of two from 4096 (4 KiB) to 1073741824 (1 GiB)")]
    InvalidLeafSize {
        /// The rejected size in bytes.
        bytes: u64,
    },
    /// An HMAC key was shorter than the minimum this crate accepts.
    #[error("HMAC key is {len} bytes, at least {min} are required")]
    KeyTooShort {
        /// Length of the key that was offered.
        len: usize,
        /// Minimum accepted length.
        min: usize,
    },
    /// A seal tag did not verify: the message, the key or the tag differs from the signed one.
    #[error("seal tag does not match the seal message under this key")]
    SealMismatch,
    /// An HMAC tag did not verify.
    #[error("HMAC tag does not match the data under this key")]
    MacMismatch,
    /// Two leaf-hash lists describe different trees (version, leaf size or length differ).
    #[error("tree descriptors differ (format version, leaf size or total length)")]
    DescriptorMismatch,
    /// A list of leaf hashes has the wrong number of entries.
    #[error("expected {expected} leaf hashes, got {actual}")]
    LeafCountMismatch {
        /// Number of entries required.
        expected: u64,
        /// Number of entries supplied.
        actual: u64,
    },
    /// A leaf index lies past the last leaf of the tree.
    #[error("leaf index {index} is out of range: the tree has {count} leaves")]
    LeafIndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// Number of leaves in the tree.
        count: u64,
    },
    /// The power-on known-answer test of a hashing backend disagreed with ring.
    #[error("SHA-256 backend {backend} failed its known-answer self-test; ring is used instead")]
    SelfTestFailed {
        /// Name of the backend that failed.
        backend: &'static str,
    },
    /// A string was not a well-formed lower- or upper-case hex encoding of the expected length.
    #[error("invalid hex: expected {expected} hex digits, got {len} characters (or a non-hex character)")]
    InvalidHex {
        /// Number of hex digits required.
        expected: usize,
        /// Length of the string that was offered.
        len: usize,
    },
    /// A variable-length seal field is longer than a seal accepts: its
    /// 32-bit length prefix, or the provenance names' lower limit.
    #[error("seal field {field} is {len} bytes, more than the {max} a seal accepts")]
    FieldTooLong {
        /// Name of the field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most bytes the field may have.
        max: usize,
    },
}
