//! References to model weights, in the forms operators already write.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::escape::{escape_char, escape_for_log};
use crate::newtype::validated_string;
use crate::{Field, ValidationError};

/// The longest [`ModelRef`] accepted, in bytes (UTF-8), as written (before any
/// percent-decoding). An S3 object key alone may be 1024 bytes.
pub const MAX_MODEL_REF_LEN: usize = 1024;

/// How many characters of a rejected model ref an error shows.
const SHOWN_CHARS: usize = 80;

/// How many rounds of percent-decoding are checked for traversal tricks
/// (`%252e%252e` is `..` to a consumer that decodes twice).
const DECODE_ROUNDS: usize = 3;

/// Where a model's weights come from, as text: 1 to [`MAX_MODEL_REF_LEN`] bytes
/// of UTF-8 without control or invisible formatting characters.
///
/// The forms operators already use are accepted as written, and the value is
/// kept exactly as given (serde, seals and audit records carry it unchanged):
///
/// * URIs `scheme://authority/path`: `hf://org/model`,
///   `hf://org/model@rev/file.safetensors`, `s3://bucket/key`,
///   `gs://bucket/key`, `https://host/path`;
/// * `file:///absolute/path`: a `file` URI with an empty authority is an
///   absolute path on purpose (the operator named the file). This is the only
///   form that may be absolute; `file://host/...` is refused, and so are
///   `file:/etc/passwd` and `hf:///etc/passwd` (an empty authority elsewhere
///   is a path that escapes its base);
/// * `scheme:rest` without `//`: `hf:org/repo@rev/file`, `file:name` (relative
///   to the worker's model directory), `sha256:<hex>`;
/// * OCI references: `ghcr.io/org/model:tag`,
///   `registry.example.com/ns/model@sha256:<64 hex>`;
/// * plain relative names, any script: `models/llama/weights.bin`,
///   `modèle/poids.bin`.
///
/// Because a model ref is often turned into a path or a URL:
///
/// * **Characters.** Control characters (C0 including NUL, DEL, C1), the line
///   and paragraph separators U+2028/U+2029, and invisible formatting
///   characters (bidirectional embeddings, overrides and isolates U+202A..=U+202E,
///   U+2066..=U+2069, the marks U+200E/U+200F/U+061C, zero-width characters
///   U+200B..=U+200D, U+2060..=U+2064, U+FEFF, the soft hyphen U+00AD) are
///   refused: they can hide or reorder what an operator reads.
/// * **Percent-encoding** is understood: every `%` must start a valid escape
///   (`%` and two hex digits), the decoded text must be UTF-8 and obey the
///   character rule, and the rules below apply to the decoded form too (and to
///   a second decoding, for consumers that decode twice). So `%2e%2e`, `%2F`
///   and `%5C` cannot smuggle a `..` segment or a leading separator. A literal
///   `%` must be written `%25`.
/// * **Traversal.** After splitting on `/`, `\` and `:`, no segment may be
///   `..`, also in `file:///` paths.
/// * **Absolute paths.** Apart from `file:///...`, a ref may not start with `/`
///   or `\`, nor may the part after `scheme://` or after the first `:`.
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
/// assert!(ModelRef::new("hf://org/%2e%2e/x").is_err());
/// assert!(ModelRef::new("file:///srv/models/llama.gguf").is_ok());
/// assert!(ModelRef::new("ghcr.io/org/model:v1").is_ok());
/// assert!(ModelRef::new("s3://bucket/modèles/poids.bin").is_ok());
/// assert!(ModelRef::new("model\u{202e}nib.exe").is_err());
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
    /// [`ValidationError::ForbiddenCharIn`] (see the character rule),
    /// [`ValidationError::Malformed`] (a bad percent escape, a `file` URI with
    /// a host, nothing after `scheme://`), [`ValidationError::AbsolutePath`] or
    /// [`ValidationError::PathTraversal`]. Each shows the input escaped.
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
            return Err(ValidationError::ForbiddenCharIn {
                field: Field::ModelRef,
                shown: shown(s),
                position,
                character: escape_char(c),
            });
        }
        match split_uri(s) {
            Some((scheme, rest)) => check_uri(s, scheme, rest)?,
            None => check_relative(s)?,
        }
        Ok(ModelRef(s.to_owned()))
    }

    /// The scheme: the text before the first `:` when it is a URI scheme (a
    /// letter, then letters, digits, `+`, `-` or `.`): `hf`, `s3`, `file`,
    /// `sha256`... `None` for plain names and for OCI references such as
    /// `ghcr.io/org/model:tag`. (An OCI reference with a registry port,
    /// `localhost:5000/model`, reads as scheme `localhost`: the text cannot
    /// tell them apart.)
    #[must_use]
    pub fn scheme(&self) -> Option<&str> {
        self.0
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .filter(|scheme| is_scheme(scheme))
    }
}

/// Whether `c` may appear in a [`ModelRef`] (also after percent-decoding): any
/// character but control characters, U+2028/U+2029 and invisible formatting
/// characters (bidirectional controls, zero-width characters, the soft hyphen).
#[must_use]
pub fn is_model_ref_char(c: char) -> bool {
    !(c.is_control() || is_invisible_format(c))
}

/// Invisible characters that change how text reads or is split without
/// showing themselves.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// A URI scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `scheme://rest` split into `(scheme, rest)`, when `s` has that form.
fn split_uri(s: &str) -> Option<(&str, &str)> {
    s.split_once("://").filter(|(scheme, _)| is_scheme(scheme))
}

fn shown(s: &str) -> String {
    escape_for_log(s, SHOWN_CHARS)
}

fn malformed(s: &str, reason: &'static str) -> ValidationError {
    ValidationError::Malformed {
        field: Field::ModelRef,
        shown: shown(s),
        reason,
    }
}

fn traversal(s: &str) -> ValidationError {
    ValidationError::PathTraversal {
        field: Field::ModelRef,
        shown: shown(s),
    }
}

fn absolute(s: &str) -> ValidationError {
    ValidationError::AbsolutePath {
        field: Field::ModelRef,
        shown: shown(s),
    }
}

/// `scheme://rest`: `file:///absolute/path`, or an authority and a path.
fn check_uri(s: &str, scheme: &str, rest: &str) -> Result<(), ValidationError> {
    let forms = decoded_forms(s, rest)?;
    if scheme.eq_ignore_ascii_case("file") {
        for form in &forms {
            if !form.starts_with('/') {
                return Err(malformed(
                    s,
                    "a file URI names an absolute path with an empty host: file:///path",
                ));
            }
            if form.trim_start_matches(['/', '\\']).is_empty() {
                return Err(malformed(s, "the file URI names no file"));
            }
            if has_dotdot_segment(form) {
                return Err(traversal(s));
            }
        }
        return Ok(());
    }
    if rest.is_empty() {
        return Err(malformed(s, "nothing follows the scheme"));
    }
    for form in &forms {
        if starts_with_separator(form) {
            return Err(absolute(s));
        }
        if has_dotdot_segment(form) {
            return Err(traversal(s));
        }
    }
    Ok(())
}

/// A ref without `scheme://`: a relative name, `scheme:rest` or an OCI reference.
fn check_relative(s: &str) -> Result<(), ValidationError> {
    for form in &decoded_forms(s, s)? {
        let after_colon = form.split_once(':').map_or(form.as_ref(), |(_, rest)| rest);
        if starts_with_separator(form) || starts_with_separator(after_colon) {
            return Err(absolute(s));
        }
        if has_dotdot_segment(form) {
            return Err(traversal(s));
        }
    }
    Ok(())
}

/// `part` as written and as decoded once (strictly: a bad escape is an error)
/// and, where the result still decodes, up to [`DECODE_ROUNDS`] times.
fn decoded_forms<'a>(s: &str, part: &'a str) -> Result<Vec<Cow<'a, str>>, ValidationError> {
    let first = percent_decode(part).map_err(|reason| malformed(s, reason))?;
    if let Some(c) = first.chars().find(|&c| !is_model_ref_char(c)) {
        return Err(ValidationError::Malformed {
            field: Field::ModelRef,
            shown: shown(s),
            reason: if c.is_control() {
                "a percent escape decodes to a control character"
            } else {
                "a percent escape decodes to an invisible formatting character"
            },
        });
    }
    let mut forms = vec![Cow::Borrowed(part)];
    let mut last = first.into_owned();
    for _ in 1..DECODE_ROUNDS {
        let next = match percent_decode(&last) {
            Ok(next) if next != last => next.into_owned(),
            _ => break,
        };
        forms.push(Cow::Owned(std::mem::replace(&mut last, next)));
    }
    forms.push(Cow::Owned(last));
    Ok(forms)
}

/// Decodes `%XX` escapes.
///
/// # Errors
///
/// A `%` not followed by two hex digits, or decoded bytes that are not UTF-8.
fn percent_decode(s: &str) -> Result<Cow<'_, str>, &'static str> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(crate::hex::digit_value);
        let lo = bytes.next().and_then(crate::hex::digit_value);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
            _ => {
                return Err("a \"%\" is not followed by two hex digits (write a literal % as %25)")
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "percent escapes decode to bytes that are not UTF-8")
}

fn starts_with_separator(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('\\')
}

fn has_dotdot_segment(s: &str) -> bool {
    s.split(['/', '\\', ':']).any(|segment| segment == "..")
}

validated_string!(ModelRef);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%2e").as_deref(), Ok("a/b."));
        assert_eq!(percent_decode("plain").as_deref(), Ok("plain"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Ok("é"));
        for bad in ["%", "%2", "%zz", "a%2", "%g0", "%ff"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn double_encoding_is_checked() {
        assert!(ModelRef::new("hf://org/%252e%252e/x").is_err());
        assert!(ModelRef::new("org/%252e%252e/x").is_err());
        assert!(ModelRef::new("hf://org/100%25/x").is_ok());
    }
}
