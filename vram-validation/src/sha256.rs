//! SHA-256 digests written as hex.

use serde::{Deserialize, Serialize};

use crate::escape::escape_char;
use crate::newtype::validated_string;
use crate::{Field, ValidationError};

/// Number of hex digits in a SHA-256 digest.
pub const SHA256_HEX_LEN: usize = 64;

/// A SHA-256 digest as exactly 64 hexadecimal digits.
///
/// Upper-case digits are accepted and normalised to lower case, so two values
/// for the same digest always compare equal and always print the same way.
///
/// ```
/// use vram_validation::Sha256Hex;
/// let d = Sha256Hex::new(&"AB".repeat(32))?;
/// assert_eq!(d.as_str(), "ab".repeat(32));
/// assert_eq!(d.to_bytes(), [0xab; 32]);
/// # Ok::<(), vram_validation::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Validates `s` as a hex SHA-256 digest, normalising it to lower case.
    ///
    /// # Errors
    ///
    /// [`ValidationError::Empty`], [`ValidationError::WrongLength`] (not 64 bytes)
    /// or [`ValidationError::NotHex`] (the first non-hex character).
    pub fn new(s: &str) -> Result<Sha256Hex, ValidationError> {
        if s.is_empty() {
            return Err(ValidationError::Empty {
                field: Field::Sha256,
            });
        }
        if let Some((position, c)) = s.char_indices().find(|&(_, c)| !c.is_ascii_hexdigit()) {
            return Err(ValidationError::NotHex {
                field: Field::Sha256,
                position,
                shown: escape_char(c),
            });
        }
        if s.len() != SHA256_HEX_LEN {
            return Err(ValidationError::WrongLength {
                field: Field::Sha256,
                len: s.len(),
                expected: SHA256_HEX_LEN,
            });
        }
        Ok(Sha256Hex(s.to_ascii_lowercase()))
    }

    /// Builds the hex form of a raw digest.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32]) -> Sha256Hex {
        Sha256Hex(crate::hex::encode(bytes))
    }

    /// The 32 digest bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        // Validated as 64 hex digits when made, so this always decodes.
        crate::hex::decode_lower(&self.0).unwrap_or([0; 32])
    }
}

validated_string!(Sha256Hex);
