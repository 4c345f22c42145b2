#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod buf;
mod error;
mod file;
mod hkdf;
mod key;
#[cfg(test)]
mod probe;
mod worker;

/// How many characters of a path or name an error message shows.
const SHOWN_CHARS: usize = 200;

/// A path escaped for an error message or a log line (one printable line;
/// non-UTF-8 bytes show as U+FFFD, escaped).
fn escape_path(path: &std::path::Path) -> String {
    vram_validation::escape_for_log(&path.to_string_lossy(), SHOWN_CHARS)
}

pub use error::SecretsError;
pub use key::{KeyId, SecretKey, KEY_LEN};
pub use worker::{KeyPurpose, WorkerSecret, MAX_SECRET_LEN, MIN_SECRET_LEN};
