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

/// A path as an error message or a log line shows it: [`escape_for_log`] of
/// its text, non-UTF-8 bytes shown as U+FFFD (escaped).
///
/// ```
/// use vram_validation::escape_path_for_log;
/// use std::path::Path;
/// assert_eq!(escape_path_for_log(Path::new("/run/evil\nname"), 200), r"/run/evil\u{a}name");
/// ```
#[must_use]
pub fn escape_path_for_log(path: &std::path::Path, max_chars: usize) -> String {
    escape_for_log(&path.to_string_lossy(), max_chars)
}

/// Escapes one character with the rules of [`escape_for_log`].
pub(crate) fn escape_char(c: char) -> String {
    let mut out = String::new();
    push_escaped(&mut out, c);
    out
}

/// A field of a human-readable output line (a file name, a model reference),
/// escaped the way `sha256sum` escapes file names, but stricter.
///
/// * `\` becomes `\\`, a newline `\n`, a carriage return `\r`;
/// * every other character outside printable ASCII (control characters, ESC,
///   DEL, anything non-ASCII, including bidirectional overrides) becomes
///   `\u{XX}`;
/// * nothing is truncated: an output line names its input exactly.
///
/// Returns the text and whether anything was escaped. A line with at least
/// one escaped field starts with a single `\`, as `sha256sum` marks its
/// escaped lines, so a reader knows to unescape it; [`OutputLine`] does that
/// bookkeeping. A field left unchanged is the input byte for byte.
///
/// ```
/// use vram_validation::escape_line_field;
/// assert_eq!(escape_line_field("model.bin"), ("model.bin".to_string(), false));
/// assert_eq!(escape_line_field("a\nb\\c\u{1b}]0;x\u{7}"), (r"a\nb\\c\u{1b}]0;x\u{7}".to_string(), true));
/// ```
#[must_use]
pub fn escape_line_field(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => {
                out.push(c);
                continue;
            }
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
        escaped = true;
    }
    (out, escaped)
}

/// Undoes [`escape_line_field`]: `\\`, `\n`, `\r` and `\u{XX}` (1 to 6 hex
/// digits naming a Unicode scalar value) become the characters they stand
/// for. `None` for any other use of `\` (a text that no escaping produced).
///
/// ```
/// use vram_validation::{escape_line_field, unescape_line_field};
/// let name = "a\nb\\c\u{1b}é";
/// assert_eq!(unescape_line_field(&escape_line_field(name).0).as_deref(), Some(name));
/// assert_eq!(unescape_line_field(r"bad\q"), None);
/// ```
#[must_use]
pub fn unescape_line_field(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let mut value = 0u32;
                let mut digits = 0u8;
                loop {
                    let d = chars.next()?;
                    if d == '}' {
                        break;
                    }
                    digits = digits.checked_add(1).filter(|n| *n <= 6)?;
                    value = value.checked_mul(16)?.checked_add(d.to_digit(16)?)?;
                }
                if digits == 0 {
                    return None;
                }
                out.push(char::from_u32(value)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A human-readable output line built from trusted text and untrusted fields
/// ([`escape_line_field`]); rendered with a leading `\` when any field was
/// escaped.
///
/// ```
/// use vram_validation::OutputLine;
/// let mut line = OutputLine::new();
/// line.push("0123  ").field("evil\nname");
/// assert_eq!(line.to_string(), r"\0123  evil\nname");
/// let mut plain = OutputLine::new();
/// plain.push("0123  ").field("model.bin");
/// assert_eq!(plain.to_string(), "0123  model.bin");
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutputLine {
    text: String,
    escaped: bool,
}

impl OutputLine {
    /// An empty line.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends trusted text (our own words and numbers) as it is.
    pub fn push(&mut self, trusted: &str) -> &mut Self {
        self.text.push_str(trusted);
        self
    }

    /// Appends an untrusted field, escaped.
    pub fn field(&mut self, untrusted: &str) -> &mut Self {
        let (text, escaped) = escape_line_field(untrusted);
        self.text.push_str(&text);
        self.escaped |= escaped;
        self
    }

    /// Whether some field was escaped (the line starts with `\`).
    #[must_use]
    pub fn is_escaped(&self) -> bool {
        self.escaped
    }
}

impl std::fmt::Display for OutputLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.escaped {
            f.write_str("\\")?;
        }
        f.write_str(&self.text)
    }
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
    fn line_fields_unescape_to_what_was_escaped() {
        for name in [
            "plain.bin",
            "a\\b",
            "x\ny\rz",
            "\u{1b}]0;t\u{7}",
            "é\u{202e}\u{10ffff}",
            "",
        ] {
            let (text, _) = escape_line_field(name);
            assert_eq!(unescape_line_field(&text).as_deref(), Some(name), "{text}");
        }
        for bad in [
            r"a\",
            r"\q",
            r"\u",
            r"\u{",
            r"\u{}",
            r"\u{1234567}",
            r"\u{d800}",
            r"\u{zz}",
        ] {
            assert_eq!(unescape_line_field(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_fields_escape_like_sha256sum_and_stricter() {
        let hostile = "m\u{1b}]0;pwned\u{7}\nabc  forged.bin";
        let (text, escaped) = escape_line_field(hostile);
        assert!(escaped);
        assert_eq!(text, r"m\u{1b}]0;pwned\u{7}\nabc  forged.bin");
        assert!(!text.contains(['\n', '\r', '\u{1b}', '\u{7}']));
        assert_eq!(escape_line_field("a\\b").0, r"a\\b");
        assert_eq!(escape_line_field("a\rb").0, r"a\rb");
        assert_eq!(
            escape_line_field("\u{202e}\u{7f}é").0,
            r"\u{202e}\u{7f}\u{e9}"
        );
        // Plain names are untouched, quotes included, and never truncated.
        let long = "n\"q".repeat(1000);
        assert_eq!(escape_line_field(&long), (long.clone(), false));
    }

    #[test]
    fn output_lines_are_marked_when_escaped() {
        let mut l = OutputLine::new();
        l.push("sealed ").field("a\nb").push(" ok");
        assert!(l.is_escaped());
        assert_eq!(l.to_string(), r"\sealed a\nb ok");
        assert_eq!(l.to_string().lines().count(), 1);
        let mut p = OutputLine::new();
        p.push("x ").field("plain");
        assert_eq!(p.to_string(), "x plain");
    }

    #[test]
    fn escape_char_matches() {
        assert_eq!(escape_char('\t'), r"\u{9}");
        assert_eq!(escape_char('a'), "a");
    }
}
