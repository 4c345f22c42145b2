//! An expected SHA-256 in the forms tools print it: plain hex, `sha256:HEX`,
//! a `sha256sum` line, a Git LFS pointer, an OCI descriptor.

use serde::Deserialize;

use crate::escape::escape_for_log;
use crate::{Sha256Hex, ValidationError, SHA256_HEX_LEN};

/// How many characters of a rejected value an error shows.
const SHOWN_CHARS: usize = 80;

/// The first line of a Git LFS pointer file.
const LFS_VERSION_LINE: &str = "version https://git-lfs.github.com/spec/v1";

/// The forms [`ExpectedDigest::parse`] and [`ExpectedDigest::parse_file`]
/// accept, for error messages and help texts.
pub const EXPECTED_DIGEST_FORMS: &str = "64 hex digits (any case); sha256:HEX; a sha256sum line \
(HEX  NAME or HEX *NAME; the name is ignored); an LFS pointer's `oid sha256:HEX` line; an OCI \
descriptor's `\"digest\": \"sha256:HEX\"`; or a file holding a Git LFS pointer, one sha256sum \
line or an OCI descriptor (JSON)";

/// Which form an [`ExpectedDigest`] was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestForm {
    /// 64 hex digits.
    Hex,
    /// `sha256:HEX`, as OCI and Git LFS write digests.
    Prefixed,
    /// A line of `sha256sum` output: `HEX  NAME` or `HEX *NAME`.
    Sha256sumLine,
    /// A Git LFS pointer's `oid sha256:HEX` line, or a whole pointer file.
    LfsPointer,
    /// An OCI descriptor's `"digest": "sha256:HEX"`, or a whole descriptor.
    OciDescriptor,
}

impl DigestForm {
    /// A short name: `hex`, `sha256:`, `sha256sum`, `lfs-pointer`, `oci-descriptor`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            DigestForm::Hex => "hex",
            DigestForm::Prefixed => "sha256:",
            DigestForm::Sha256sumLine => "sha256sum",
            DigestForm::LfsPointer => "lfs-pointer",
            DigestForm::OciDescriptor => "oci-descriptor",
        }
    }
}

/// A SHA-256 a file is expected to have, with the size when the source
/// states one (a Git LFS pointer file, an OCI descriptor).
///
/// ```
/// use vram_validation::{DigestForm, ExpectedDigest};
/// let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// for text in [
///     hex.to_uppercase(),
///     format!("sha256:{hex}"),
///     format!("{hex}  model.safetensors"),
///     format!("oid sha256:{hex}"),
///     format!("\"digest\": \"sha256:{hex}\","),
/// ] {
///     assert_eq!(ExpectedDigest::parse(&text)?.sha256.as_str(), hex);
/// }
/// let pointer = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{hex}\nsize 4\n");
/// let e = ExpectedDigest::parse_file(&pointer)?;
/// assert_eq!((e.form, e.size), (DigestForm::LfsPointer, Some(4)));
/// assert!(ExpectedDigest::parse("md5:abc").is_err());
/// # Ok::<(), vram_validation::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpectedDigest {
    /// The digest, normalised to lower case.
    pub sha256: Sha256Hex,
    /// The file's size in bytes, when the source states it.
    pub size: Option<u64>,
    /// The form it was written in.
    pub form: DigestForm,
}

/// The fields of an OCI descriptor that matter here.
#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
    size: Option<u64>,
}

impl ExpectedDigest {
    /// Parses one value as given on a command line: 64 hex digits, `sha256:HEX`,
    /// a `sha256sum` line, an LFS pointer's `oid sha256:HEX` line or an OCI
    /// descriptor's `"digest": "sha256:HEX"` (a trailing comma allowed).
    /// Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`ValidationError::BadDigest`], naming the accepted forms.
    pub fn parse(s: &str) -> Result<ExpectedDigest, ValidationError> {
        let line = s.trim();
        let bad = |reason: String| bad_digest(s, reason);
        if line.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if let Some(rest) = line.strip_prefix("oid ") {
            let hex = strip_sha256(rest.trim())
                .ok_or_else(|| bad("an LFS pointer's oid must be sha256:HEX".into()))?;
            return found(hex, None, DigestForm::LfsPointer).map_err(|e| bad(e.to_string()));
        }
        if line.starts_with("\"digest\"") {
            return parse_digest_member(line).map_err(bad);
        }
        if let Some(hex) = strip_sha256(line) {
            return found(hex, None, DigestForm::Prefixed).map_err(|e| bad(e.to_string()));
        }
        // sha256sum marks a line whose name it escaped with a leading `\`.
        let unmarked = line.strip_prefix('\\').unwrap_or(line);
        if let (Some(hex), Some(rest)) = (
            unmarked.get(..SHA256_HEX_LEN),
            unmarked.get(SHA256_HEX_LEN..),
        ) {
            if let Some(name) = rest.strip_prefix("  ").or_else(|| rest.strip_prefix(" *")) {
                if name.is_empty() {
                    return Err(bad("the sha256sum line has no file name".into()));
                }
                return found(hex, None, DigestForm::Sha256sumLine).map_err(|e| bad(e.to_string()));
            }
        }
        if line.contains(char::is_whitespace) || line.contains(':') {
            return Err(bad("not a form this tool reads".into()));
        }
        found(line, None, DigestForm::Hex).map_err(|e| bad(e.to_string()))
    }

    /// Parses the contents of a file: a Git LFS pointer file (its `oid` and
    /// `size`), an OCI descriptor (JSON with `digest` and `size`), or a single
    /// line in one of the forms of [`ExpectedDigest::parse`] (such as
    /// `sha256sum` output for exactly one file). Blank lines are ignored.
    ///
    /// # Errors
    ///
    /// [`ValidationError::BadDigest`]: an unknown form, a pointer without
    /// `oid` or `size`, a digest other than SHA-256, or several lines (a
    /// `sha256sum` output for more than one file).
    pub fn parse_file(text: &str) -> Result<ExpectedDigest, ValidationError> {
        let trimmed = text.trim();
        let bad = |reason: String| bad_digest(text, reason);
        if trimmed.starts_with('{') {
            let d: OciDescriptor = serde_json::from_str(trimmed)
                .map_err(|_| bad("not an OCI descriptor: JSON with a \"digest\" string".into()))?;
            let hex = strip_sha256(&d.digest)
                .ok_or_else(|| bad("the descriptor's digest is not sha256:HEX".into()))?;
            return found(hex, d.size, DigestForm::OciDescriptor).map_err(|e| bad(e.to_string()));
        }
        let mut lines = trimmed.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().unwrap_or_default();
        if first == LFS_VERSION_LINE {
            return parse_lfs_pointer(lines).map_err(bad);
        }
        let extra = lines.count();
        if extra > 0 {
            return Err(bad(format!(
                "it has {} lines; one digest (one sha256sum line, for one file) is needed",
                extra.saturating_add(1)
            )));
        }
        ExpectedDigest::parse(first)
    }
}

/// The hex after a case-insensitive `sha256:`.
fn strip_sha256(s: &str) -> Option<&str> {
    let (algo, hex) = s.split_once(':')?;
    algo.eq_ignore_ascii_case("sha256").then_some(hex)
}

fn found(
    hex: &str,
    size: Option<u64>,
    form: DigestForm,
) -> Result<ExpectedDigest, ValidationError> {
    Ok(ExpectedDigest {
        sha256: Sha256Hex::new(hex)?,
        size,
        form,
    })
}

fn bad_digest(input: &str, reason: String) -> ValidationError {
    ValidationError::BadDigest {
        shown: escape_for_log(input, SHOWN_CHARS),
        reason,
    }
}

/// `"digest": "sha256:HEX"`, with an optional trailing comma.
fn parse_digest_member(line: &str) -> Result<ExpectedDigest, String> {
    let value = line
        .strip_prefix("\"digest\"")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix(':'))
        .map(|r| r.trim().trim_end_matches(',').trim_end())
        .and_then(|r| r.strip_prefix('"'))
        .and_then(|r| r.strip_suffix('"'))
        .ok_or("an OCI descriptor line reads \"digest\": \"sha256:HEX\"")?;
    let hex = strip_sha256(value).ok_or("the descriptor's digest is not sha256:HEX")?;
    found(hex, None, DigestForm::OciDescriptor).map_err(|e| e.to_string())
}

/// The lines after `version ...`: `oid sha256:HEX` and `size N` are required.
fn parse_lfs_pointer<'a>(lines: impl Iterator<Item = &'a str>) -> Result<ExpectedDigest, String> {
    let (mut oid, mut size) = (None, None);
    for line in lines {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "oid" => {
                oid = Some(strip_sha256(value).ok_or("the pointer's oid is not sha256:HEX")?);
            }
            "size" => {
                size = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| "the pointer's size is not a number of bytes")?,
                );
            }
            _ => {}
        }
    }
    let oid = oid.ok_or("the LFS pointer has no oid line")?;
    let size = size.ok_or("the LFS pointer has no size line")?;
    found(oid, Some(size), DigestForm::LfsPointer).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(s: &str) -> ExpectedDigest {
        match ExpectedDigest::parse(s) {
            Ok(e) => e,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn ok_file(s: &str) -> ExpectedDigest {
        match ExpectedDigest::parse_file(s) {
            Ok(e) => e,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn single_values() {
        let upper = HEX.to_uppercase();
        let cases = [
            (HEX.to_owned(), DigestForm::Hex),
            (upper.clone(), DigestForm::Hex),
            (format!("  {HEX}\n"), DigestForm::Hex),
            (format!("sha256:{HEX}"), DigestForm::Prefixed),
            (format!("SHA256:{upper}"), DigestForm::Prefixed),
            (format!("{HEX}  model.bin"), DigestForm::Sha256sumLine),
            (format!("{HEX} *model.bin"), DigestForm::Sha256sumLine),
            (
                format!("{HEX}  name with  spaces"),
                DigestForm::Sha256sumLine,
            ),
            (format!("\\{HEX}  a\\nb"), DigestForm::Sha256sumLine),
            (format!("oid sha256:{HEX}"), DigestForm::LfsPointer),
            (
                format!("\"digest\": \"sha256:{HEX}\""),
                DigestForm::OciDescriptor,
            ),
            (
                format!("  \"digest\":\"sha256:{HEX}\",  "),
                DigestForm::OciDescriptor,
            ),
        ];
        for (text, form) in cases {
            let e = ok(&text);
            assert_eq!(e.sha256.as_str(), HEX, "{text:?}");
            assert_eq!((e.form, e.size), (form, None), "{text:?}");
        }
    }

    #[test]
    fn files() {
        let pointer = format!("{LFS_VERSION_LINE}\noid sha256:{HEX}\nsize 12345\n");
        let e = ok_file(&pointer);
        assert_eq!((e.form, e.size), (DigestForm::LfsPointer, Some(12345)));
        let descriptor = format!(
            "{{\n  \"mediaType\": \"application/vnd.oci.image.layer.v1.tar\",\n  \"digest\": \"sha256:{HEX}\",\n  \"size\": 42\n}}\n"
        );
        let e = ok_file(&descriptor);
        assert_eq!((e.form, e.size), (DigestForm::OciDescriptor, Some(42)));
        let e = ok_file(&format!("{HEX}  model.safetensors\n"));
        assert_eq!((e.form, e.size), (DigestForm::Sha256sumLine, None));
        let e = ok_file(&format!("\n{HEX}\n\n"));
        assert_eq!(e.form, DigestForm::Hex);
    }

    #[test]
    fn refusals_name_the_forms() {
        let two = format!("{HEX}  a.bin\n{HEX}  b.bin\n");
        let no_size = format!("{LFS_VERSION_LINE}\noid sha256:{HEX}\n");
        let no_oid = format!("{LFS_VERSION_LINE}\nsize 3\n");
        let bad_size = format!("{LFS_VERSION_LINE}\noid sha256:{HEX}\nsize -1\n");
        let md5_pointer = format!("{LFS_VERSION_LINE}\noid md5:abc\nsize 3\n");
        let sha512 = format!("{{\"digest\": \"sha512:{HEX}\", \"size\": 1}}");
        for file in [
            two.as_str(),
            &no_size,
            &no_oid,
            &bad_size,
            &md5_pointer,
            &sha512,
            "{",
            "",
            "\n\n",
        ] {
            let err = ExpectedDigest::parse_file(file).unwrap_err();
            assert!(err.to_string().contains("Accepted forms"), "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        for value in [
            "",
            "abc",
            &HEX[1..],
            &format!("{HEX}0"),
            &format!("md5:{HEX}"),
            &format!("sha256:{}", &HEX[2..]),
            &format!("{HEX} model.bin"),
            &format!("oid {HEX}"),
            &format!("\"digest\": sha256:{HEX}"),
            &format!("\"digest\": \"sha512:{HEX}\""),
            &format!("{}g", &HEX[1..]),
            "x\n[INFO] forged",
        ] {
            let err = ExpectedDigest::parse(value).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("Accepted forms"), "{text}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
}
