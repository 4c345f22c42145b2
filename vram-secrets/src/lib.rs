#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod escape;
mod file;
mod hkdf;
mod key;
mod worker;

pub use error::SecretsError;
pub use key::{KeyId, SecretKey, KEY_LEN};
pub use worker::{KeyPurpose, WorkerSecret, MAX_SECRET_LEN, MIN_SECRET_LEN};
