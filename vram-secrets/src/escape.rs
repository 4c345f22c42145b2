//! Escaping of paths and names before they reach an error message or a log line.

use std::fmt::Write as _;
use std::path::Path;

/// How many characters of a path or name are shown.
const SHOWN_CHARS: usize = 200;

/// Printable ASCII is kept (`\` and `"` are doubled up as escapes); everything
/// else becomes `\u{..}`; long input is truncated. The result is one safe line.
pub(crate) fn escape_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(SHOWN_CHARS));
    for (shown, (offset, c)) in s.char_indices().enumerate() {
        if shown >= SHOWN_CHARS {
            let _ = write!(out, "…({} more bytes)", s.len().saturating_sub(offset));
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ' '..='~' => out.push(c),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out
}

/// [`escape_str`] of a path (non-UTF-8 bytes show as U+FFFD, escaped).
pub(crate) fn escape_path(path: &Path) -> String {
    escape_str(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_truncates() {
        assert_eq!(escape_str("a\nb\u{202e}"), r"a\u{a}b\u{202e}");
        assert_eq!(escape_str("q\"\\"), r#"q\"\\"#);
        let long = "p".repeat(300);
        assert_eq!(
            escape_str(&long),
            format!("{}…(100 more bytes)", "p".repeat(200))
        );
        assert_eq!(escape_path(Path::new("/run/x\ty")), r"/run/x\u{9}y");
    }
}
