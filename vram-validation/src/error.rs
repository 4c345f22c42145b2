//! The crate's one error type.

use std::fmt;

use crate::size::format_bytes;

/// Which input a [`ValidationError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// A [`ShardId`](crate::ShardId).
    ShardId,
    /// A [`ModelRef`](crate::ModelRef).
    ModelRef,
    /// A [`Sha256Hex`](crate::Sha256Hex) digest.
    Sha256,
    /// A byte size (model size or a parsed size string).
    Size,
    /// A device index.
    DeviceIndex,
    /// A [`ShardPosition`](crate::ShardPosition).
    ShardPosition,
    /// A [`ProvenanceName`](crate::ProvenanceName).
    ProvenanceName,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::ShardId => "shard id",
            Field::ModelRef => "model ref",
            Field::Sha256 => "sha256 digest",
            Field::Size => "size",
            Field::DeviceIndex => "device index",
            Field::ShardPosition => "shard position",
            Field::ProvenanceName => "provenance name",
        })
    }
}

/// An input broke a rule of this crate.
///
/// Every variant names the field and the rule. Untrusted input only ever appears
/// after [`escape_for_log`](crate::escape_for_log), so the text of an error is one
/// line of printable ASCII (plus `…` when input was truncated) whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The input was empty.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: Field,
    },
    /// The input was longer than allowed.
    #[error("{field} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// The field.
        field: Field,
        /// The length of the input in bytes.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The input contains a character its grammar does not allow.
    #[error("{field} contains the forbidden character \"{shown}\" at byte {position}")]
    ForbiddenChar {
        /// The field.
        field: Field,
        /// Byte offset of the character in the input.
        position: usize,
        /// The character, escaped.
        shown: String,
    },
    /// The input contains a character its grammar does not allow; the input
    /// is shown too (escaped and truncated).
    #[error(
        "{field} \"{shown}\" contains the forbidden character \"{character}\" at byte {position}"
    )]
    ForbiddenCharIn {
        /// The field.
        field: Field,
        /// The input, escaped and truncated.
        shown: String,
        /// Byte offset of the character in the input.
        position: usize,
        /// The character, escaped.
        character: String,
    },
    /// The input does not follow its syntax (a bad percent escape, a `file`
    /// URI with a host...).
    #[error("{field} \"{shown}\" is malformed: {reason}")]
    Malformed {
        /// The field.
        field: Field,
        /// The input, escaped and truncated.
        shown: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A model ref contains a `..` path segment.
    #[error("{field} \"{shown}\" contains a \"..\" path segment")]
    PathTraversal {
        /// The field.
        field: Field,
        /// The input, escaped and truncated.
        shown: String,
    },
    /// A model ref is an absolute path (starts with `/` or `\`, also after a
    /// scheme); only `file:///...` may be absolute.
    #[error("{field} \"{shown}\" is an absolute path; use a relative name (or file:///path for a local file)")]
    AbsolutePath {
        /// The field.
        field: Field,
        /// The input, escaped and truncated.
        shown: String,
    },
    /// A digest contains a character that is not a hexadecimal digit.
    #[error("{field} has the non-hex character \"{shown}\" at byte {position}")]
    NotHex {
        /// The field.
        field: Field,
        /// Byte offset of the character in the input.
        position: usize,
        /// The character, escaped.
        shown: String,
    },
    /// A digest has the wrong number of characters.
    #[error("{field} has {len} hex digits; expected exactly {expected} hex digits")]
    WrongLength {
        /// The field.
        field: Field,
        /// The hex digits given (the input is checked to be hex first).
        len: usize,
        /// The length required.
        expected: usize,
    },
    /// An expected digest is in none of the accepted forms
    /// ([`ExpectedDigest`](crate::ExpectedDigest)).
    #[error("expected digest \"{shown}\" is not usable: {reason}. Accepted forms: {forms}", forms = crate::EXPECTED_DIGEST_FORMS)]
    BadDigest {
        /// The input, escaped and truncated.
        shown: String,
        /// What is wrong with it (no raw input).
        reason: String,
    },
    /// A size is above its limit.
    #[error(
        "size {} ({bytes} bytes) exceeds the limit of {} ({max} bytes)",
        format_bytes(*.bytes),
        format_bytes(*.max)
    )]
    TooLarge {
        /// The size given.
        bytes: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// A value that must be non-zero was zero.
    #[error("{field} is zero; it must be at least 1")]
    Zero {
        /// The field.
        field: Field,
    },
    /// A device index was requested but there are no devices.
    #[error("device index {index} requested, but no devices are available")]
    NoDevices {
        /// The index requested.
        index: u32,
    },
    /// A device index is not below the number of devices.
    #[error("device index {index} is out of range: {device_count} devices (valid: 0..={})", .device_count.saturating_sub(1))]
    DeviceIndexOutOfRange {
        /// The index requested.
        index: u32,
        /// How many devices there are.
        device_count: u32,
    },
    /// A shard count is zero or above [`MAX_SHARDS`](crate::MAX_SHARDS).
    #[error("shard total {total} is out of range 1..={max}")]
    ShardTotalOutOfRange {
        /// The total given.
        total: u32,
        /// The largest total allowed.
        max: u32,
    },
    /// A shard index is not below the shard total.
    #[error("shard index {index} is out of range for {total} shards (valid: 0..={})", .total.saturating_sub(1))]
    ShardIndexOutOfRange {
        /// The index given.
        index: u32,
        /// The total number of shards.
        total: u32,
    },
    /// A byte-size string could not be parsed.
    #[error("size \"{shown}\" is not valid: {reason}")]
    BadSize {
        /// The input, escaped and truncated.
        shown: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ValidationError {
    /// The field this error is about.
    #[must_use]
    pub fn field(&self) -> Field {
        match self {
            ValidationError::Empty { field }
            | ValidationError::TooLong { field, .. }
            | ValidationError::ForbiddenChar { field, .. }
            | ValidationError::ForbiddenCharIn { field, .. }
            | ValidationError::Malformed { field, .. }
            | ValidationError::PathTraversal { field, .. }
            | ValidationError::AbsolutePath { field, .. }
            | ValidationError::NotHex { field, .. }
            | ValidationError::WrongLength { field, .. }
            | ValidationError::Zero { field } => *field,
            ValidationError::TooLarge { .. } | ValidationError::BadSize { .. } => Field::Size,
            ValidationError::BadDigest { .. } => Field::Sha256,
            ValidationError::NoDevices { .. } | ValidationError::DeviceIndexOutOfRange { .. } => {
                Field::DeviceIndex
            }
            ValidationError::ShardTotalOutOfRange { .. }
            | ValidationError::ShardIndexOutOfRange { .. } => Field::ShardPosition,
        }
    }
}
