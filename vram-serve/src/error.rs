//! The crate's one error type: what stops the worker from starting or
//! serving, with the exit code a supervisor branches on.

use vram_embed::EmbedError;

/// Exit code of a worker whose weights failed (a refused lease, a digest
/// mismatch at seal time): a supervisor restarts it and seals again.
pub const EXIT_INTEGRITY: u8 = 1;
/// Exit code of a usage error (bad arguments, an unusable model directory).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of an environment failure (device, secret, audit log, I/O, an
/// engine that cannot run on the chosen device or in this build).
pub const EXIT_ENVIRONMENT: u8 = 3;

/// Why the worker could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The worker could not be built or the model sealed, as `vram seal`
    /// says it (device, secret, audit log, hub cache, digest mismatch).
    #[error("{reason}")]
    Worker {
        /// What `vram` would have said.
        reason: String,
        /// `vram`'s exit code for it (1 integrity, 2 usage, 3 environment).
        code: u8,
    },
    /// The embedding engine refused the model or its weights.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The GGUF engine refused the model (its metadata, a tensor, the
    /// sealing or the first lease).
    #[error("text engine: {0}")]
    Text(#[from] vram_llm::LlmError),
    /// The engine cannot compute on the chosen device (its weights would
    /// not be reachable from where it computes).
    #[error("{engine} cannot run on {device}: {reason}")]
    UnsupportedDevice {
        /// The engine.
        engine: &'static str,
        /// The device kind chosen (`cuda`, `mock`).
        device: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A command-line value is out of range (the flag is named).
    #[error("{0}")]
    Usage(String),
    /// The listener could not be bound or the runtime started.
    #[error("{0}")]
    Environment(String),
    /// A request's lease was refused: the sealed weights are compromised
    /// (the message names the tensor); the worker stopped serving.
    #[error("stopped serving: {0}")]
    Compromised(String),
}

impl ServeError {
    /// The process exit code for this error.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Worker { code, .. } => *code,
            Self::Embed(e) => e.class().exit_code(),
            Self::Usage(_) => EXIT_USAGE,
            Self::Compromised(_) => EXIT_INTEGRITY,
            Self::Text(e) => match e.class() {
                vram_llm::ErrorClass::Usage => EXIT_USAGE,
                vram_llm::ErrorClass::Integrity => EXIT_INTEGRITY,
                vram_llm::ErrorClass::Environment => EXIT_ENVIRONMENT,
            },
            Self::UnsupportedDevice { .. } | Self::Environment(_) => EXIT_ENVIRONMENT,
        }
    }
}
