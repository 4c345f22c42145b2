//! GGUF language models (the llama family: Llama, SmolLM, Qwen-style
//! checkpoints in llama.cpp's format) generating text from sealed memory.
//!
//! Every request takes a verified lease and computes on the quantized blocks
//! where the seal keeps them: no copy of the weights per request.

#![deny(unsafe_code)]

mod api;
mod chat;
#[cfg(feature = "cuda-engine")]
mod cuda;
mod engine;
mod error;
mod generate;
mod gguf;
mod kernels;
mod model;
mod sample;
mod stream;
mod tokenizer;
mod weights;

pub use api::{
    ChatMessage, FinishReason, GenerateOutcome, GenerateRequest, Prompt, SamplingParams,
    TextGeneration, TokenDelta,
};
/// Where a model computes (candle's device): `Device::Cpu`, or a CUDA device
/// from `vram_llm::cuda_device` (feature `cuda-engine`).
pub use candle_core::Device;
pub use chat::{ChatTemplate, TemplateTokens};
#[cfg(feature = "cuda-engine")]
pub use cuda::device as cuda_device;
pub use engine::{load_generator, load_generator_on};
pub use error::{ErrorClass, LlmError};
pub use generate::{Generator, LogitsModel, LogitsSource};
pub use gguf::{LlamaConfig, Metadata, TensorEntry, MAX_CONTEXT};
pub use kernels::SUPPORTED_TYPES;
pub use model::{GgufSource, LlamaModel, RequestModel};
pub use sample::Sampler;
pub use tokenizer::GgufTokenizer;
