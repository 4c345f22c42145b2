//! References to model weights.

use serde::{Deserialize, Serialize};

use crate::escape::{escape_char, escape_for_log};
use crate::newtype::validated_string;
use crate::{Field, ValidationError};

/// The longest [`ModelRef`] accepted, in bytes.
pub const MAX_MODEL_REF_LEN: usize = 512;

/// How many characters of a rejected model ref an error shows.
const SHOWN_CHARS: usize = 80;

/// Where a model's weights come from, as text: 1 to [`MAX_MODEL_REF_LEN`] bytes of
/// printable ASCII (0x20..=0x7E).
///
/// No scheme is required, but these are the conventional forms:
///
/// * `hf://org/repo@rev/file` (or `hf:org/repo@rev/file`) — a file of a model
///   hub repository at a revision; any `scheme://` prefix is accepted,
/// * `file:name` — a file relative to the worker's model directory,
/// * `sha256:<hex>` — content addressed by its SHA-256 digest.
///
/// Because a model ref is often turned into a path, it may not escape its base
/// directory: it is split into segments on `/`, `\` and `:`, and no segment may be
/// `..`; it may not start with `/` or `\`, and neither may the part after the first
/// `:` (so `file:/etc/passwd` and `file:../x` are rejected). Control characters,
/// NUL and anything non-ASCII are rejected.
///
/// ```
/// use vram_validation::ModelRef;
/// let r = ModelRef::new("hf:meta-llama/Llama-3-8B@main/model.safetensors")?;
/// assert_eq!(r.scheme(), Some("hf"));
/// assert!(ModelRef::new("file:../../secret").is_err());
/// assert!(ModelRef::new("/etc/passwd").is_err());
/// assert!(ModelRef::new("hf://org/model@0123abcd/model.safetensors").is_ok());
/// assert!(ModelRef::new("hf:///etc/passwd").is_err());
/// assert!(ModelRef::new("hf://../x").is_err());
/// # Ok::<(), vram_validation::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelRef(String);

impl ModelRef {
    /// Validates `s` as a model ref.
    ///
    /// # Errors
    ///
    /// [`ValidationError::Empty`], [`ValidationError::TooLong`],
    /// [`ValidationError::ForbiddenChar`] (outside 0x20..=0x7E),
    /// [`ValidationError::AbsolutePath`] or [`ValidationError::PathTraversal`].
    pub fn new(s: &str) -> Result<ModelRef, ValidationError> {
        if s.is_empty() {
            return Err(ValidationError::Empty {
                field: Field::ModelRef,
            });
        }
        if s.len() > MAX_MODEL_REF_LEN {
            return Err(ValidationError::TooLong {
                field: Field::ModelRef,
                len: s.len(),
                max: MAX_MODEL_REF_LEN,
            });
        }
        if let Some((position, c)) = s.char_indices().find(|&(_, c)| !is_model_ref_char(c)) {
            return Err(ValidationError::ForbiddenChar {
                field: Field::ModelRef,
                position,
                shown: escape_char(c),
            });
        }
        // `scheme://authority/path` (hf://org/name@rev, s3://bucket/key):
        // the part after `://` is checked as the relative part.
        let after_scheme = match s.split_once("://") {
            Some((scheme, rest)) if is_scheme(scheme) => rest,
            _ => s.split_once(':').map_or(s, |(_, rest)| rest),
        };
        if starts_with_separator(s) || starts_with_separator(after_scheme) {
            return Err(ValidationError::AbsolutePath {
                field: Field::ModelRef,
                shown: escape_for_log(s, SHOWN_CHARS),
            });
        }
        if s.split(['/', '\\', ':']).any(|segment| segment == "..") {
            return Err(ValidationError::PathTraversal {
                field: Field::ModelRef,
                shown: escape_for_log(s, SHOWN_CHARS),
            });
        }
        Ok(ModelRef(s.to_owned()))
    }

    /// The text before the first `:`, if there is one (`hf`, `file`, `sha256`...).
    #[must_use]
    pub fn scheme(&self) -> Option<&str> {
        self.0.split_once(':').map(|(scheme, _)| scheme)
    }
}

/// Whether `c` may appear in a [`ModelRef`] (printable ASCII, 0x20..=0x7E).
#[must_use]
pub fn is_model_ref_char(c: char) -> bool {
    matches!(c, ' '..='~')
}

/// A URI scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn starts_with_separator(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('\\')
}

validated_string!(ModelRef);
