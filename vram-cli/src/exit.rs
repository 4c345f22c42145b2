//! Exit codes (documented in `--help` and the README) and the error that
//! carries one.

use vram_residency::{ErrorClass, VramError};

/// Success.
pub const OK: u8 = 0;
/// Integrity or verification failure (corrupt bytes, invalid seal, audit findings).
pub const INTEGRITY: u8 = 1;
/// Usage error or invalid input.
pub const USAGE: u8 = 2;
/// Environment: no device, unreadable or too-permissive secret, I/O errors.
pub const ENVIRONMENT: u8 = 3;

/// An error with the exit code it maps to. The message is one line.
#[derive(Debug)]
pub struct CliError {
    /// The exit code ([`OK`], [`INTEGRITY`], [`USAGE`], [`ENVIRONMENT`]).
    pub code: u8,
    /// What went wrong, one line.
    pub message: String,
    /// The command already put this error into its own `--json` output (an
    /// `error` object inside its document): `main` must not print a second
    /// document for it.
    pub(crate) in_json: bool,
    /// The command was asked to print nothing (`digest -c --status`): the
    /// exit code alone reports the error.
    pub(crate) silent: bool,
}

impl CliError {
    fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            in_json: false,
            silent: false,
        }
    }
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::with_code(USAGE, message)
    }
    pub(crate) fn env(message: impl Into<String>) -> Self {
        Self::with_code(ENVIRONMENT, message)
    }
    pub(crate) fn integrity(message: impl Into<String>) -> Self {
        Self::with_code(INTEGRITY, message)
    }

    /// The class scripts branch on, named after the exit code.
    pub(crate) fn class(&self) -> &'static str {
        class_of(self.code)
    }

    /// The `error` object of `--json` output:
    /// `{"code": EXIT_CODE, "class": "usage|integrity|environment", "message": "..."}`.
    /// JSON escaping keeps the message exact and safe.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code,
            "class": self.class(),
            "message": self.message,
        })
    }

    /// Marks the error as one that `main` reports by the exit code only.
    #[must_use]
    pub(crate) fn silent(mut self) -> Self {
        self.silent = true;
        self
    }

    /// Marks the error as already written into the command's JSON output.
    #[must_use]
    pub(crate) fn reported_in_json(mut self) -> Self {
        self.in_json = true;
        self
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

// A flag value's parser (`crate::args`) returns a `CliError` through clap,
// which keeps it as the source of its own error.
impl std::error::Error for CliError {}

impl CliError {
    /// The error of a flag value's parser (`crate::args`) that clap reports
    /// as the cause of its own: the command's error, as if the command had
    /// parsed the value itself.
    pub(crate) fn of_flag_value(e: &clap::Error) -> Option<Self> {
        use std::error::Error;
        let ours = e.source()?.downcast_ref::<Self>()?;
        Some(Self::with_code(ours.code, ours.message.clone()))
    }
}

/// The one-line message of a command line clap refuses, for a `--json`
/// error object: the kind of error and the arguments it is about (`invalid
/// value for --leaf-size <LEAF_SIZE>`), never the value given.
pub fn clap_error_message(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let args = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => vec![arg.clone()],
        Some(ContextValue::Strings(args)) => args.clone(),
        _ => Vec::new(),
    };
    let kind = e.kind().to_string();
    if args.is_empty() {
        return kind;
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| vram_validation::escape_for_log(a, 80))
        .collect();
    format!("{kind}: {}", args.join(", "))
}

/// The class of an exit code, as `--json` errors name it.
pub(crate) fn class_of(code: u8) -> &'static str {
    match code {
        INTEGRITY => "integrity",
        USAGE => "usage",
        OK => "ok",
        _ => "environment",
    }
}

impl From<VramError> for CliError {
    fn from(e: VramError) -> Self {
        let code = match e.class() {
            ErrorClass::Fatal => INTEGRITY,
            ErrorClass::InvalidInput => USAGE,
            _ => ENVIRONMENT,
        };
        Self::with_code(code, e.to_string())
    }
}

impl From<vram_validation::ValidationError> for CliError {
    fn from(e: vram_validation::ValidationError) -> Self {
        Self::usage(e.to_string())
    }
}

impl From<vram_worker::WorkerError> for CliError {
    fn from(e: vram_worker::WorkerError) -> Self {
        Self::with_code(e.exit_code(), e.to_string())
    }
}

impl From<vram_secrets::SecretsError> for CliError {
    fn from(e: vram_secrets::SecretsError) -> Self {
        Self::env(e.to_string())
    }
}

/// The last guard before an error line reaches the terminal: any character
/// outside printable ASCII still in `message` (a lower layer that quoted a
/// path raw) is escaped as in output lines (`\u{..}`, `\n`); what is
/// already printable (including escapes made earlier, and the `…` that marks
/// a truncation) is kept as it is, so nothing is escaped twice.
pub(crate) fn one_safe_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if matches!(c, ' '..='~' | '…') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            out.push_str(&vram_validation::escape_line_field(c.encode_utf8(&mut buf)).0);
        }
    }
    out
}

pub(crate) use vram_worker::shown_path;

/// A file the user named could not be used.
pub(crate) fn io_error(path: &std::path::Path, e: &std::io::Error) -> CliError {
    vram_worker::WorkerError::io(path, e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_carry_no_raw_controls_and_are_not_escaped_twice() {
        assert_eq!(
            one_safe_line("audit log: open /x/evil\u{1b}]0;t\u{7}\nforged: denied"),
            r"audit log: open /x/evil\u{1b}]0;t\u{7}\nforged: denied"
        );
        let already = r#"secret file \"/a\u{a}b\" not found…(3 more bytes)"#;
        assert_eq!(one_safe_line(already), already);
    }
}
