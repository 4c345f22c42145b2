//! GGUF language models (the llama family: Llama, SmolLM, Qwen-style
//! checkpoints in llama.cpp's format) generating text from sealed memory.
//!
//! Every request takes a verified lease and computes on the quantized blocks
//! where the seal keeps them: no copy of the weights per request.

mod api;
mod chat;
mod error;
mod generate;
mod sample;
mod stream;
mod tokenizer;

pub use api::{
    ChatMessage, FinishReason, GenerateOutcome, GenerateRequest, Prompt, SamplingParams,
    TextGeneration, TokenDelta,
};
pub use chat::{ChatTemplate, TemplateTokens};
pub use error::{ErrorClass, LlmError};
pub use generate::{Generator, LogitsModel, LogitsSource};
pub use sample::Sampler;
pub use tokenizer::GgufTokenizer;
