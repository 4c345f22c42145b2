//! The crate's one error type.

/// Why a model file's header (or a model directory's layout) was refused.
/// Messages carry numbers and escaped names, never raw untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The safetensors header breaks the format's rules.
    #[error("not a valid safetensors header: {reason}")]
    Safetensors {
        /// What is wrong, untrusted names escaped.
        reason: String,
    },
    /// The GGUF header breaks the format's rules or a bound.
    #[error("not a valid GGUF header: {reason}")]
    Gguf {
        /// What is wrong, untrusted names escaped.
        reason: String,
    },
    /// The GGUF header goes on past the bytes given: read at least
    /// `needed` bytes of the file and parse again. Only returned when the
    /// file is long enough to hold them.
    #[error("the GGUF header needs at least {needed} bytes, {given} given")]
    GgufTruncated {
        /// Bytes from the start of the file the header needs at least.
        needed: u64,
        /// Bytes that were given.
        given: u64,
    },
    /// The files of a model directory do not form a model this crate knows.
    #[error("not a valid model layout: {reason}")]
    Layout {
        /// What is wrong, untrusted names escaped.
        reason: String,
    },
}

pub(crate) fn safetensors(reason: impl Into<String>) -> FormatError {
    FormatError::Safetensors {
        reason: reason.into(),
    }
}

pub(crate) fn gguf(reason: impl Into<String>) -> FormatError {
    FormatError::Gguf {
        reason: reason.into(),
    }
}
