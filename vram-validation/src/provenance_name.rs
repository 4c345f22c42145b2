//! Names taken from a model publisher's signed statement.

use serde::{Deserialize, Serialize};

use crate::escape::escape_char;
use crate::newtype::validated_string;
use crate::{Field, ValidationError};

/// The longest [`ProvenanceName`] accepted, in bytes (the limit a version 3
/// seal encodes).
pub const MAX_PROVENANCE_NAME_LEN: usize = 4096;

/// A model's or a file's name as a signed model manifest spells it (OpenSSF
/// model_signing: the model's name, a file's path such as
/// `sub/tokenizer.json`, or `.` for a single-file model): 1 to
/// [`MAX_PROVENANCE_NAME_LEN`] bytes of UTF-8 with no control character
/// (C0, DEL, C1) and no bidirectional override or isolate (U+202A..=U+202E,
/// U+2066..=U+2069), which would make a name display as another.
///
/// The name is recorded as the signer wrote it, not used as a path: `..` and
/// leading `/` are not this type's business (they are the signature
/// checker's).
///
/// ```
/// use vram_validation::ProvenanceName;
/// assert_eq!(ProvenanceName::new("sub/tokenizer.json")?.as_str(), "sub/tokenizer.json");
/// assert!(ProvenanceName::new(".").is_ok());
/// assert!(ProvenanceName::new("modèle").is_ok());
/// assert!(ProvenanceName::new("a\nb").is_err());
/// assert!(ProvenanceName::new("").is_err());
/// # Ok::<(), vram_validation::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProvenanceName(String);

impl ProvenanceName {
    /// Validates `s` as a provenance name.
    ///
    /// # Errors
    ///
    /// [`ValidationError::Empty`], [`ValidationError::TooLong`] (more than
    /// [`MAX_PROVENANCE_NAME_LEN`] bytes) or [`ValidationError::ForbiddenChar`]
    /// (the first control or bidirectional-override character).
    pub fn new(s: &str) -> Result<ProvenanceName, ValidationError> {
        if s.is_empty() {
            return Err(ValidationError::Empty {
                field: Field::ProvenanceName,
            });
        }
        if s.len() > MAX_PROVENANCE_NAME_LEN {
            return Err(ValidationError::TooLong {
                field: Field::ProvenanceName,
                len: s.len(),
                max: MAX_PROVENANCE_NAME_LEN,
            });
        }
        if let Some((position, c)) = s.char_indices().find(|&(_, c)| !is_provenance_name_char(c)) {
            return Err(ValidationError::ForbiddenChar {
                field: Field::ProvenanceName,
                position,
                shown: escape_char(c),
            });
        }
        Ok(ProvenanceName(s.to_owned()))
    }
}

/// Whether `c` may appear in a [`ProvenanceName`]: anything but a control
/// character or a bidirectional override or isolate.
#[must_use]
pub fn is_provenance_name_char(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

validated_string!(ProvenanceName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_forbidden_characters() {
        assert!(ProvenanceName::new(&"a".repeat(MAX_PROVENANCE_NAME_LEN)).is_ok());
        assert_eq!(
            ProvenanceName::new(&"a".repeat(MAX_PROVENANCE_NAME_LEN + 1)),
            Err(ValidationError::TooLong {
                field: Field::ProvenanceName,
                len: MAX_PROVENANCE_NAME_LEN + 1,
                max: MAX_PROVENANCE_NAME_LEN,
            })
        );
        for bad in [
            "a\u{0}",
            "a\tb",
            "\u{7f}",
            "x\u{85}",
            "a\u{202E}b",
            "\u{2066}",
        ] {
            assert!(
                matches!(
                    ProvenanceName::new(bad),
                    Err(ValidationError::ForbiddenChar {
                        field: Field::ProvenanceName,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            ProvenanceName::new(""),
            Err(ValidationError::Empty {
                field: Field::ProvenanceName
            })
        );
        let n: ProvenanceName = serde_json::from_str("\"sub/a b.json\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"sub/a b.json\"");
        assert!(serde_json::from_str::<ProvenanceName>("\"a\\u0000\"").is_err());
    }
}
