//! Putting a worker together, for every binary that serves or seals models
//! (`vram`, `vram-embed`, the servers to come): one implementation, so that
//! they all treat devices, secrets, logs and caches alike.
//!
//! - Devices: [`DeviceSpec`] (`auto`, `mock`, `cuda`, `cuda:N`) resolved to
//!   a [`DeviceSelection`] through the facade's detection; the mock, when in
//!   use, is said on stderr ([`DeviceSelection::announce`]).
//! - The secret, by one rule ([`SecretChoice`]): the operator's
//!   ([`SecretSource`]: a file, standard input where the binary allows it,
//!   the systemd credential, `$VRAM_SECRET_FILE`), or an ephemeral one only
//!   when the caller chooses it by name.
//! - The audit log ([`open_audit_log`]): fail-closed, keyed by the secret,
//!   never the secret's own file.
//! - The manager ([`build_manager`]) over the selected devices.
//! - The model's location ([`locate`]): a snapshot directory, or
//!   `hf://ORG/NAME[@REV]` in the local hub cache with the digests its blob
//!   names promise ([`hub`]).
//! - One error, [`WorkerError`], with its [`ErrorClass`] and exit code
//!   (1 integrity, 2 usage, 3 environment).
//!
//! It knows no command line (no clap), no progress bars, no metrics and no
//! HTTP: binaries bring their own.
//!
//! ```no_run
//! use vram_worker::{locate, DeviceSpec, SecretChoice, SecretSource, Worker, WorkerOptions};
//!
//! # fn main() -> Result<(), vram_worker::WorkerError> {
//! let worker = Worker::open(&WorkerOptions {
//!     device: DeviceSpec::parse("auto")?,
//!     secret: SecretChoice::Operator(SecretSource::new(Some("worker.secret".into()))),
//!     audit_log: Some("audit.jsonl".into()),
//!     quiet: false,
//! })?;
//! let model = worker.seal_snapshot(&locate("hf://sentence-transformers/all-MiniLM-L6-v2", false)?)?;
//! println!("{} bytes sealed on {}", model.vram_bytes(), worker.device_kind());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod audit;
mod device_selection;
mod error;
pub mod hub;
mod location;
mod manager;
mod secret;
mod worker;

pub use audit::{
    audit_key, audit_signer, in_memory_audit_log, open_audit_log, open_audit_log_with, worker_id,
};
pub use device_selection::{DeviceSelection, DeviceSpec};
pub use error::{shown_path, ErrorClass, WorkerError};
pub use location::{locate, locate_in_cache, ModelArg, ModelLocation};
pub use manager::{build_manager, parse_leaf_size, ManagerOptions, SERVING_LEAF_SIZE};
pub use secret::{SecretChoice, SecretSource, StandardInput, CREDENTIAL_NAME, SECRET_FILE_ENV};
pub use worker::{Worker, WorkerOptions};
