//! Shard identifiers.

use serde::{Deserialize, Serialize};

use crate::escape::escape_char;
use crate::newtype::validated_string;
use crate::{Field, ValidationError};

/// The longest [`ShardId`] accepted, in bytes.
pub const MAX_SHARD_ID_LEN: usize = 256;

/// The name of one sealed shard: 1 to [`MAX_SHARD_ID_LEN`] bytes of
/// `[A-Za-z0-9_-]`.
///
/// The grammar is deliberately narrow: a shard id ends up in file names, log
/// lines, metrics labels and the seal message, so it may contain no path
/// separator, no dot, no whitespace, no control character and nothing outside
/// ASCII (which rules out homoglyphs, bidirectional overrides and zero-width
/// characters).
///
/// ```
/// use vram_validation::ShardId;
/// let id = ShardId::new("llama-3-70b_shard-07")?;
/// assert_eq!(id.as_str(), "llama-3-70b_shard-07");
/// assert!(ShardId::new("../etc/passwd").is_err());
/// assert!(ShardId::new("shard\n01").is_err());
/// # Ok::<(), vram_validation::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShardId(String);

impl ShardId {
    /// Validates `s` as a shard id.
    ///
    /// # Errors
    ///
    /// [`ValidationError::Empty`], [`ValidationError::TooLong`] (more than
    /// [`MAX_SHARD_ID_LEN`] bytes) or [`ValidationError::ForbiddenChar`] (the
    /// first character outside `[A-Za-z0-9_-]`).
    pub fn new(s: &str) -> Result<ShardId, ValidationError> {
        if s.is_empty() {
            return Err(ValidationError::Empty {
                field: Field::ShardId,
            });
        }
        if s.len() > MAX_SHARD_ID_LEN {
            return Err(ValidationError::TooLong {
                field: Field::ShardId,
                len: s.len(),
                max: MAX_SHARD_ID_LEN,
            });
        }
        if let Some((position, c)) = s.char_indices().find(|&(_, c)| !is_shard_id_char(c)) {
            return Err(ValidationError::ForbiddenChar {
                field: Field::ShardId,
                position,
                shown: escape_char(c),
            });
        }
        Ok(ShardId(s.to_owned()))
    }
}

/// Whether `c` may appear in a [`ShardId`].
#[must_use]
pub fn is_shard_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

validated_string!(ShardId);
