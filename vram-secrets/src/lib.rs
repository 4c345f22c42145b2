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

/// How many characters of a path or name an error message shows
/// (`vram_validation::escape_path_for_log`, `escape_for_log`).
const SHOWN_CHARS: usize = 200;

pub use buf::KEY_LEN;
pub use error::SecretsError;
pub use key::{KeyId, SecretKey};
pub use worker::{KeyPurpose, WorkerSecret, MAX_SECRET_LEN, MIN_SECRET_LEN};
