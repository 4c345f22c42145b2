//! Escaping of untrusted input before it reaches an error message or a log line.

use std::fmt::Write as _;

/// Renders untrusted text so that it is safe to put into one log line.
///
/// * Printable ASCII (0x20..=0x7E) is kept as is, except `\` and `"`, which become
///   `\\` and `\"` so that the escapes below cannot be imitated by the input.
/// * Every other character (control characters, DEL, anything non-ASCII: accents,
///   emoji, bidirectional overrides, zero-width characters) becomes `\u{XX}`.
/// * At most `max_chars` characters of the input are shown; the rest is replaced by
///   `…(N more bytes)`, where N counts the input bytes left out.
///
/// The result therefore never contains a newline, a carriage return, an escape
/// sequence or any character a terminal could reorder, whatever the input.
///
/// ```
/// use vram_validation::escape_for_log;
/// assert_eq!(escape_for_log("ok\n[INFO] forged", 64), r"ok\u{a}[INFO] forged");
/// assert_eq!(escape_for_log("abcdef", 3), "abc…(3 more bytes)");
/// ```
#[must_use]
pub fn escape_for_log(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(2)));
    for (shown, (offset, c)) in s.char_indices().enumerate() {
        if shown >= max_chars {
            let rest = s.len().saturating_sub(offset);
            let _ = write!(out, "…({rest} more bytes)");
            return out;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// Escapes one character with the rules of [`escape_for_log`].
pub(crate) fn escape_char(c: char) -> String {
    let mut out = String::new();
    push_escaped(&mut out, c);
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        ' '..='~' => out.push(c),
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_ascii() {
        assert_eq!(escape_for_log("model-01_a b", 100), "model-01_a b");
    }

    #[test]
    fn escapes_controls_and_non_ascii() {
        assert_eq!(escape_for_log("a\r\nb", 100), r"a\u{d}\u{a}b");
        assert_eq!(escape_for_log("\u{1b}[31m", 100), r"\u{1b}[31m");
        assert_eq!(
            escape_for_log("é\u{202e}\u{200b}", 100),
            r"\u{e9}\u{202e}\u{200b}"
        );
        assert_eq!(escape_for_log("\0\u{7f}", 100), r"\u{0}\u{7f}");
    }

    #[test]
    fn escapes_backslash_and_quote_so_escapes_cannot_be_forged() {
        assert_eq!(escape_for_log(r"\u{a}", 100), r"\\u{a}");
        assert_eq!(escape_for_log("\"x\"", 100), r#"\"x\""#);
    }

    #[test]
    fn truncates_counting_input_bytes() {
        assert_eq!(escape_for_log("ééé", 1), r"\u{e9}…(4 more bytes)");
        assert_eq!(escape_for_log("abc", 3), "abc");
        assert_eq!(escape_for_log("abc", 0), "…(3 more bytes)");
        let long = "x".repeat(1 << 20);
        let shown = escape_for_log(&long, 10);
        assert_eq!(shown, format!("xxxxxxxxxx…({} more bytes)", (1 << 20) - 10));
    }

    #[test]
    fn escape_char_matches() {
        assert_eq!(escape_char('\t'), r"\u{9}");
        assert_eq!(escape_char('a'), "a");
    }
}
