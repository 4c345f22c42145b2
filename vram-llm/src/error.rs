//! The crate's one error type.

use vram_residency::VramError;

/// What a failed request or load means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request (or the model file) is unusable as given: a 400 for a
    /// server, exit 2 for a tool.
    Usage,
    /// The sealed weights failed verification: the worker must stop serving
    /// and seal again (exit 1).
    Integrity,
    /// The machine or device failed (exit 3).
    Environment,
}

/// Errors of loading a GGUF model and generating from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The sealed-memory layer refused: a lease whose verification failed
    /// (the message names the tensor), a device error, an audit failure.
    #[error(transparent)]
    Vram(#[from] VramError),
    /// The prompt does not fit the context with room for one generated token.
    #[error("prompt is {tokens} tokens; the model's context is {context} tokens")]
    PromptTooLong {
        /// Prompt tokens.
        tokens: u32,
        /// Context length.
        context: u32,
    },
    /// A request field out of its range (the message names the field).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The model's metadata lacks something the engine needs, or holds a
    /// value it cannot use (the key is named).
    #[error("model metadata: {0}")]
    Metadata(String),
    /// The chat template could not be rendered for these messages.
    #[error("chat template: {0}")]
    Template(String),
    /// Tokenizing or detokenizing failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model computation failed (a shape or kernel error, named).
    #[error("model computation: {0}")]
    Compute(String),
    /// The engine cannot compute on the chosen device: a library it needs is
    /// missing, or the weights are not where it computes (said at start).
    #[error("engine: {0}")]
    Engine(String),
}

impl LlmError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Vram(e) => match e.class() {
                vram_residency::ErrorClass::Fatal => ErrorClass::Integrity,
                vram_residency::ErrorClass::InvalidInput => ErrorClass::Usage,
                _ => ErrorClass::Environment,
            },
            Self::Compute(_) | Self::Engine(_) => ErrorClass::Environment,
            Self::PromptTooLong { .. }
            | Self::InvalidRequest(_)
            | Self::Metadata(_)
            | Self::Template(_)
            | Self::Tokenizer(_) => ErrorClass::Usage,
        }
    }
}
