//! The crate's one error type.

use std::path::Path;

use vram_validation::escape_for_log;

/// Longest tensor name or path shown in a message, in characters.
const SHOWN_CHARS: usize = 200;

/// What went wrong while loading a snapshot, reading weights or serving a
/// request. Messages name the tensor or file at fault and carry the numbers
/// needed to act; untrusted text in them (tensor names, paths) is escaped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {kind}")]
    Io {
        /// The file, escaped.
        path: String,
        /// What the operating system said.
        kind: std::io::ErrorKind,
    },
    /// A safetensors file is malformed or hostile (header length, JSON,
    /// dtypes, offsets, overlaps, sizes). Refused before its data was read
    /// or allocated.
    #[error("safetensors {path}: {reason}")]
    Safetensors {
        /// Where the bytes came from, escaped.
        path: String,
        /// What is wrong, escaped.
        reason: String,
    },
    /// The weights have no tensor of this name.
    #[error("tensor `{name}` is missing from the weights")]
    MissingTensor {
        /// The tensor the model asked for, escaped.
        name: String,
    },
    /// A tensor's shape is not the one the model's config asks for.
    #[error("tensor `{name}` has shape {found:?}, the model needs {expected:?}")]
    TensorShape {
        /// The tensor, escaped.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape the weights have.
        found: Vec<usize>,
    },
    /// A tensor's bytes do not match its dtype and shape.
    #[error("tensor `{name}` holds {found} bytes, its dtype and shape need {expected}")]
    TensorSize {
        /// The tensor, escaped.
        name: String,
        /// Bytes its dtype and shape need (`u64::MAX` when that overflows).
        expected: u64,
        /// Bytes the view holds.
        found: u64,
    },
    /// A tensor's element type is one this crate does not compute with.
    #[error("tensor `{name}` has dtype {dtype}, which vram-embed cannot compute with")]
    UnsupportedDtype {
        /// The tensor, escaped.
        name: String,
        /// The dtype as the weights name it.
        dtype: String,
    },
    /// A small file of the snapshot (`config.json`, `modules.json`,
    /// `1_Pooling/config.json`, ...) is missing, invalid or asks for
    /// something this crate does not implement.
    #[error("{file}: {reason}")]
    Snapshot {
        /// The file, relative to the snapshot directory, escaped.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer could not be built or could not encode a text.
    #[error("tokenizer: {reason}")]
    Tokenizer {
        /// What the tokenizers crate said.
        reason: String,
    },
    /// A request line is not `{"text": "..."}`.
    #[error("request: {reason}")]
    Request {
        /// What is wrong with it.
        reason: String,
    },
    /// The forward pass failed (candle's message).
    #[error("model: {reason}")]
    Model {
        /// What candle said.
        reason: String,
    },
    /// A lease on the sealed weights was refused (the verification failed,
    /// naming the corrupt tensors, or could not run; the shard was
    /// compromised before), or the sealed file holds no usable tensors.
    #[error("sealed weights: {reason}")]
    Lease {
        /// The facade's message (tensor names escaped there).
        reason: String,
        /// Whether the bytes or seal are wrong (exit 1) rather than the
        /// environment failing (exit 3).
        integrity: bool,
    },
    /// The worker could not be set up or the model sealed (device, worker
    /// secret, audit log, hub cache, digest mismatch): as `vram seal` says it.
    #[error("{reason}")]
    Worker {
        /// What `vram` would have said.
        reason: String,
        /// `vram`'s exit code for it (1 integrity, 2 usage, 3 environment).
        code: u8,
    },
    /// The compute device cannot run the embedder: CUDA libraries missing,
    /// the device failing, or weights in memory the device cannot reach
    /// (exit 3).
    #[error("engine: {reason}")]
    Engine {
        /// What is missing or failed.
        reason: String,
    },
    /// A response could not be written.
    #[error("writing a response: {kind}")]
    Output {
        /// What the operating system said.
        kind: std::io::ErrorKind,
    },
}

/// The class of an error, named as the `vram` CLI names its exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The weights are not what the model needs (or, once leases exist,
    /// failed verification): exit code 1.
    Integrity,
    /// The input (a request, the snapshot's files) is invalid: exit code 2.
    Usage,
    /// I/O, resources, the compute backend: exit code 3.
    Environment,
}

impl ErrorClass {
    /// `integrity`, `usage` or `environment`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integrity => "integrity",
            Self::Usage => "usage",
            Self::Environment => "environment",
        }
    }

    /// The process exit code of this class (as the `vram` CLI's).
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Integrity => 1,
            Self::Usage => 2,
            Self::Environment => 3,
        }
    }
}

impl EmbedError {
    /// Whether the error concerns the weights themselves. A server stops at
    /// such an error: the next request would compute on the same weights.
    #[must_use]
    pub fn is_weights_error(&self) -> bool {
        matches!(
            self,
            Self::Safetensors { .. }
                | Self::MissingTensor { .. }
                | Self::TensorShape { .. }
                | Self::TensorSize { .. }
                | Self::UnsupportedDtype { .. }
                | Self::Lease { .. }
        )
    }

    /// The class scripts branch on.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Lease {
                integrity: false, ..
            } => ErrorClass::Environment,
            Self::Worker { code: 1, .. } => ErrorClass::Integrity,
            Self::Worker { code: 2, .. } => ErrorClass::Usage,
            e if e.is_weights_error() => ErrorClass::Integrity,
            Self::Snapshot { .. } | Self::Request { .. } | Self::Tokenizer { .. } => {
                ErrorClass::Usage
            }
            _ => ErrorClass::Environment,
        }
    }

    /// The `error` object of a response line:
    /// `{"code": EXIT_CODE, "class": "...", "message": "..."}`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.class().exit_code(),
            "class": self.class().as_str(),
            "message": self.to_string(),
        })
    }

    pub(crate) fn missing(name: &str) -> Self {
        Self::MissingTensor { name: shown(name) }
    }

    pub(crate) fn snapshot(file: &str, reason: impl Into<String>) -> Self {
        Self::Snapshot {
            file: shown(file),
            reason: reason.into(),
        }
    }

    pub(crate) fn model(e: &candle_core::Error) -> Self {
        Self::Model {
            reason: shown(&e.to_string()),
        }
    }
}

/// Untrusted text (a tensor name, a header's complaint) made safe for a
/// message: control characters escaped, length capped.
pub(crate) fn shown(s: &str) -> String {
    escape_for_log(s, SHOWN_CHARS)
}

/// A path made safe for a message.
pub(crate) fn shown_path(p: &Path) -> String {
    shown(&p.display().to_string())
}
