//! The GGUF engine as a server uses it: the llama model over leased blocks
//! ([`LlamaModel`]) behind the generation loop ([`Generator`]), with the
//! tokenizer and chat template read from the same sealed, verified header.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;

use vram_residency::{LeasePolicy, VramManager};

use crate::generate::{Generator, LogitsModel, LogitsSource};
use crate::model::{GgufSource, LlamaModel, RequestModel};
use crate::LlmError;

impl LogitsSource for RequestModel<'_> {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, LlmError> {
        RequestModel::forward(self, tokens, position)
    }
}

impl LogitsModel for LlamaModel {
    fn start(&self) -> Result<(Box<dyn LogitsSource + '_>, Duration), LlmError> {
        let (model, verification) = LlamaModel::start(self)?;
        Ok((Box::new(model), verification))
    }

    fn context_length(&self) -> u32 {
        LlamaModel::context_length(self)
    }

    fn vocab_size(&self) -> usize {
        LlamaModel::vocab_size(self)
    }
}

/// Loads a sealed GGUF llama model and its text side (tokenizer, chat
/// template, end-of-generation set, all from the sealed header): a
/// [`TextGeneration`](crate::TextGeneration) whose every request computes on
/// a lease verified with `policy` for that request.
///
/// # Errors
/// As [`LlamaModel::load`] and [`Generator::from_gguf_metadata`].
pub fn load_generator(
    model_id: impl Into<String>,
    manager: Arc<VramManager>,
    source: GgufSource,
    policy: LeasePolicy,
) -> Result<Generator, LlmError> {
    load_generator_on(model_id, manager, source, policy, Device::Cpu)
}

/// As [`load_generator`], computing on `device`: the CPU for a model sealed
/// in host memory (the mock), candle's CUDA device
/// (`vram_llm::cuda_device`, feature `cuda-engine`) for a model
/// sealed on that CUDA device.
///
/// # Errors
/// As [`LlamaModel::load_on`].
pub fn load_generator_on(
    model_id: impl Into<String>,
    manager: Arc<VramManager>,
    source: GgufSource,
    policy: LeasePolicy,
    device: Device,
) -> Result<Generator, LlmError> {
    let model = Arc::new(LlamaModel::load_on(manager, source, policy, device)?);
    let metadata = model.metadata().clone();
    Generator::from_gguf_metadata(model_id, model, &metadata)
}
