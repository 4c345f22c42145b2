//! Which GGUF files of a directory form one model: a single `NAME.gguf`, or
//! the parts of a split model, `NAME-00001-of-00003.gguf` to
//! `NAME-00003-of-00003.gguf` (llama.cpp's `gguf-split` naming, whose
//! headers carry `split.no` and `split.count`), all present, none extra.

use vram_validation::escape_for_log;

use crate::FormatError;

/// Most parts a split model may have.
pub const MAX_SPLIT_PARTS: u32 = 9999;

/// The parts of a split file name: `(NAME, part, count)` for
/// `NAME-00002-of-00003.gguf` (part counting from 1); `None` for a name
/// that is not a part.
#[must_use]
pub fn split_part(name: &str) -> Option<(&str, u32, u32)> {
    let stem = strip_gguf(name)?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (base, part) = rest.rsplit_once('-')?;
    let number = |s: &str| {
        (s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    Some((base, number(part)?, number(count)?))
}

fn strip_gguf(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(5)?;
    let (stem, ext) = (name.get(..cut)?, name.get(cut..)?);
    ext.eq_ignore_ascii_case(".gguf").then_some(stem)
}

/// Whether `name` is a GGUF file name (`*.gguf`, any case).
#[must_use]
pub fn is_gguf_name(name: &str) -> bool {
    strip_gguf(name).is_some_and(|s| !s.is_empty())
}

/// The one GGUF model among `names` (the files of a directory), as the
/// files to seal in order: `Ok(None)` when there is no GGUF file, the one
/// file, or a split model's parts in part order.
///
/// # Errors
///
/// [`FormatError::Layout`] when the GGUF files form more than one model, a
/// part is missing (named), a part is extra (named: a number past the
/// count, or a count that differs from the others'), or the count is 0 or
/// over [`MAX_SPLIT_PARTS`].
pub fn gguf_model_files(names: &[String]) -> Result<Option<Vec<String>>, FormatError> {
    let bad = |reason: String| FormatError::Layout { reason };
    let gguf: Vec<&String> = names.iter().filter(|n| is_gguf_name(n)).collect();
    let Some(first) = gguf.first() else {
        return Ok(None);
    };
    let model = |n: &str| split_part(n).map_or_else(|| n.to_owned(), |(b, _, _)| b.to_owned());
    let first_model = model(first);
    let mut models: Vec<String> = gguf.iter().map(|n| model(n)).collect();
    models.sort();
    models.dedup();
    if models.len() > 1 {
        let shown: Vec<String> = models
            .iter()
            .take(8)
            .map(|m| escape_for_log(m, 80))
            .collect();
        return Err(bad(format!(
            "holds {} GGUF models ({}): seal one file, or a directory holding one model",
            models.len(),
            shown.join(", ")
        )));
    }
    let Some((base, _, count)) = split_part(first) else {
        return Ok(Some(vec![(*first).clone()]));
    };
    if count == 0 || count > MAX_SPLIT_PARTS {
        return Err(bad(format!(
            "{} counts {count} parts (1 to {MAX_SPLIT_PARTS})",
            escape_for_log(first, 80)
        )));
    }
    let mut parts: Vec<(u32, &String)> = Vec::with_capacity(gguf.len());
    for n in &gguf {
        match split_part(n) {
            Some((_, part, c)) if c == count && (1..=count).contains(&part) => {
                parts.push((part, n))
            }
            _ => {
                return Err(bad(format!(
                    "{} is not one of the {count} parts of {}",
                    escape_for_log(n, 80),
                    escape_for_log(&first_model, 80)
                )))
            }
        }
    }
    parts.sort();
    for want in 1..=count {
        if parts
            .get(usize::try_from(want.saturating_sub(1)).unwrap_or(usize::MAX))
            .map(|p| p.0)
            != Some(want)
        {
            return Err(bad(format!(
                "part {} is missing",
                escape_for_log(&format!("{base}-{want:05}-of-{count:05}.gguf"), 120)
            )));
        }
    }
    Ok(Some(parts.into_iter().map(|(_, n)| n.clone()).collect()))
}

/// The parts of the split model `part` belongs to, among `names` (the
/// files of its directory, which may hold other models: a hub repository's
/// other quantizations), in part order: what `llama-server -m PART` loads.
/// `part` itself must be a part (`NAME-0000i-of-0000N.gguf`) and listed.
///
/// # Errors
///
/// [`FormatError::Layout`] when `part` is not a part name or not among
/// `names`, or its model's parts are not all there, or one is extra (named),
/// as [`gguf_model_files`] says.
pub fn gguf_parts_of(names: &[String], part: &str) -> Result<Vec<String>, FormatError> {
    let bad = |reason: String| FormatError::Layout { reason };
    let Some((base, _, _)) = split_part(part) else {
        return Err(bad(format!(
            "{} is not a part of a split model (NAME-00001-of-00003.gguf)",
            escape_for_log(part, 80)
        )));
    };
    if !names.iter().any(|n| n == part) {
        return Err(bad(format!("{} is not there", escape_for_log(part, 80))));
    }
    let same: Vec<String> = names
        .iter()
        .filter(|n| split_part(n).is_some_and(|(b, _, _)| b == base))
        .cloned()
        .collect();
    gguf_model_files(&same)?
        .ok_or_else(|| bad(format!("{} is not there", escape_for_log(part, 80))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn split_names_parse() {
        assert_eq!(split_part("m-00002-of-00003.gguf"), Some(("m", 2, 3)));
        assert_eq!(split_part("a-b-00001-of-00001.GGUF"), Some(("a-b", 1, 1)));
        assert_eq!(split_part("m-2-of-3.gguf"), None);
        assert_eq!(split_part("m.gguf"), None);
        assert_eq!(split_part("m-00001-of-00002.bin"), None);
        assert!(is_gguf_name("x.GGUF") && !is_gguf_name(".gguf") && !is_gguf_name("gguf"));
    }

    #[test]
    fn one_model_is_found_and_others_refused_by_name() {
        assert_eq!(gguf_model_files(&names(&["config.json"])), Ok(None));
        assert_eq!(
            gguf_model_files(&names(&["a.gguf", "README.md"])),
            Ok(Some(names(&["a.gguf"])))
        );
        assert_eq!(
            gguf_model_files(&names(&["m-00002-of-00002.gguf", "m-00001-of-00002.gguf"])),
            Ok(Some(names(&[
                "m-00001-of-00002.gguf",
                "m-00002-of-00002.gguf"
            ])))
        );
        let e = |list: &[&str]| gguf_model_files(&names(list)).unwrap_err().to_string();
        assert!(e(&["a.gguf", "b.gguf"]).contains("holds 2 GGUF models (a.gguf, b.gguf)"));
        assert!(e(&["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"])
            .contains("part m-00002-of-00003.gguf is missing"));
        assert!(e(&[
            "m-00001-of-00002.gguf",
            "m-00002-of-00002.gguf",
            "m-00003-of-00002.gguf"
        ])
        .contains("m-00003-of-00002.gguf is not one of the 2 parts of m"));
        assert!(e(&["m-00001-of-00002.gguf", "m-00002-of-00003.gguf"])
            .contains("m-00002-of-00003.gguf is not one of the 2 parts"));
        assert!(e(&["m-00000-of-00000.gguf"]).contains("counts 0 parts"));
        assert!(e(&["m\u{1b}-00001-of-00002.gguf"]).contains("missing"));
    }

    #[test]
    fn a_part_s_model_is_found_beside_other_models() {
        let dir = names(&[
            "m-Q8_0-00002-of-00002.gguf",
            "m-Q4_K-00001-of-00003.gguf",
            "m-Q8_0-00001-of-00002.gguf",
            "m-Q4_K-00002-of-00003.gguf",
            "m-F16.gguf",
            "README.md",
        ]);
        assert_eq!(
            gguf_parts_of(&dir, "m-Q8_0-00001-of-00002.gguf"),
            Ok(names(&[
                "m-Q8_0-00001-of-00002.gguf",
                "m-Q8_0-00002-of-00002.gguf"
            ]))
        );
        // Any part names its model.
        assert_eq!(
            gguf_parts_of(&dir, "m-Q8_0-00002-of-00002.gguf").map(|p| p.len()),
            Ok(2)
        );
        let e = |part: &str| gguf_parts_of(&dir, part).unwrap_err().to_string();
        assert!(
            e("m-Q4_K-00001-of-00003.gguf").contains("part m-Q4_K-00003-of-00003.gguf is missing")
        );
        assert!(e("m-F16.gguf").contains("is not a part of a split model"));
        assert!(e("m-Q2_K-00001-of-00002.gguf").contains("is not there"));
    }
}
