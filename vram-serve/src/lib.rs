//! An OpenAI-compatible HTTP worker over a model sealed in device memory.
//!
//! The worker seals its model at start, verifies every leaf once, then
//! serves: each request computes on weights reached through a lease
//! verified for that request. A refused lease ends that request with an
//! error naming the tensor, turns `/health` to 503, and stops the server
//! (the binary exits 1 for its supervisor to seal again).
//!
//! - [`Server`]: the routes (`/v1/embeddings`, `/v1/completions`,
//!   `/v1/chat/completions`, `/v1/models`, `/health`, `/metrics`), the
//!   limits ([`Limits`]) and the serve loop.
//! - [`Engines`]: what computes: an [`EmbeddingEngine`] (BERT-family
//!   snapshots, built by [`embedding_engine`]) and a
//!   [`vram_llm::TextGeneration`] (GGUF models, wired in by [`text_engine`]).
//! - [`ApiError`]: errors in the OpenAI API's shape.
//! - [`worker`]: the device, secret, audit log and manager the model is
//!   sealed with.

#![forbid(unsafe_code)]

mod api_error;
mod embeddings;
mod engine;
mod error;
mod metrics;
mod server;
mod state;
mod text;
pub mod worker;

pub use api_error::ApiError;
pub use embeddings::MAX_INPUTS;
pub use engine::{
    embedding_device, embedding_engine, model_kind, text_engine, unsupported_device, ModelKind,
};
pub use error::{ServeError, EXIT_ENVIRONMENT, EXIT_INTEGRITY, EXIT_USAGE};
pub use metrics::{HeldModel, ServeMetrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};
pub use server::{Server, Stopped};
pub use state::{EmbeddingEngine, Engines, Limits};

/// Untrusted text (a path, a field name from a request) made safe for a
/// message: control characters escaped, length capped.
pub(crate) fn shown(s: &str) -> String {
    vram_validation::escape_for_log(s, 200)
}
