//! The generation loop: prompt to tokens, a verified lease per request,
//! prefill, sampling, streamed text, and the reasons to stop.
//!
//! The seam to the model is [`LogitsModel`]: the loaded model, shared by
//! requests, opens one [`LogitsSource`] per request (a verified lease and the
//! state of one sequence) that turns tokens into next-token logits.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Value;

use crate::chat::ChatTemplate;
use crate::sample::Sampler;
use crate::stream::{Step, TextStream};
use crate::tokenizer::GgufTokenizer;
use crate::{
    FinishReason, GenerateOutcome, GenerateRequest, LlmError, Prompt, TextGeneration, TokenDelta,
};

/// The computation of one request: dropped at the end of the request, with
/// the lease it holds.
pub trait LogitsSource {
    /// Feeds `tokens`, the first at `position` in the sequence, and returns
    /// the logits of the last one (one per vocabulary entry).
    ///
    /// # Errors
    /// [`LlmError`] when the computation fails.
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, LlmError>;
}

/// A loaded model that requests share.
pub trait LogitsModel: Send + Sync {
    /// Opens one request's computation: verifies a lease on the weights and
    /// returns the source with the time the verification took.
    ///
    /// # Errors
    /// [`LlmError::Vram`] when the lease is refused (an integrity failure),
    /// other [`LlmError`]s when the model cannot be set up.
    fn start(&self) -> Result<(Box<dyn LogitsSource + '_>, Duration), LlmError>;

    /// The context length in tokens.
    fn context_length(&self) -> u32;

    /// The number of logits [`LogitsSource::forward`] returns.
    fn vocab_size(&self) -> usize;
}

/// A text generator over a [`LogitsModel`]: the tokenizer and chat template
/// from the model's metadata, the end-of-generation tokens, the model id.
///
/// Streaming: each generated token yields one [`TokenDelta`], whose text is
/// what can be sent now (empty while a character is incomplete or a stop
/// string may be starting). The end-of-generation token is not counted nor
/// sent, except when text was still held back: it then carries that text.
pub struct Generator {
    model: Arc<dyn LogitsModel>,
    tokenizer: GgufTokenizer,
    template: Option<ChatTemplate>,
    model_id: String,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("model_id", &self.model_id)
            .field("tokenizer", &self.tokenizer)
            .field("chat_template", &self.template.is_some())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// A generator whose tokenizer and chat template come from the model's
    /// GGUF metadata (read from sealed, verified header bytes).
    ///
    /// # Errors
    /// [`LlmError::Metadata`] / [`LlmError::Template`] from the tokenizer and
    /// template, or when the tokenizer has more tokens than the model has
    /// logits.
    pub fn from_gguf_metadata(
        model_id: impl Into<String>,
        model: Arc<dyn LogitsModel>,
        metadata: &HashMap<String, Value>,
    ) -> Result<Self, LlmError> {
        let tokenizer = GgufTokenizer::from_gguf_metadata(metadata)?;
        let template = ChatTemplate::from_gguf_metadata(metadata, &tokenizer)?;
        Self::new(model_id, model, tokenizer, template)
    }

    /// A generator from its parts.
    ///
    /// # Errors
    /// [`LlmError::Metadata`] when the tokenizer has more tokens than the
    /// model has logits, or the model's context is empty.
    pub fn new(
        model_id: impl Into<String>,
        model: Arc<dyn LogitsModel>,
        tokenizer: GgufTokenizer,
        template: Option<ChatTemplate>,
    ) -> Result<Self, LlmError> {
        if tokenizer.vocab_size() > model.vocab_size() {
            return Err(LlmError::Metadata(format!(
                "tokenizer.ggml.tokens: {} tokens but the model computes {} logits",
                tokenizer.vocab_size(),
                model.vocab_size()
            )));
        }
        if model.context_length() == 0 {
            return Err(LlmError::Metadata("the context length is 0".to_owned()));
        }
        Ok(Self {
            model,
            tokenizer,
            template,
            model_id: model_id.into(),
        })
    }

    /// The tokenizer.
    #[must_use]
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// The chat template, if the model has one.
    #[must_use]
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// The prompt's text as the model sees it (the chat template applied).
    ///
    /// # Errors
    /// [`LlmError::Template`] when the model has no template or it fails.
    pub fn prompt_text(&self, prompt: &Prompt) -> Result<String, LlmError> {
        match prompt {
            Prompt::Text(t) => Ok(t.clone()),
            Prompt::Chat(messages) => {
                let template = self.template.as_ref().ok_or_else(|| {
                    LlmError::Template(
                        "the model has no chat template (tokenizer.chat_template); send a text prompt"
                            .to_owned(),
                    )
                })?;
                template.render(messages, true)
            }
        }
    }

    /// The prompt's tokens (BOS as the metadata says).
    ///
    /// # Errors
    /// As [`Self::prompt_text`], and [`LlmError::Tokenizer`].
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, LlmError> {
        let text = self.prompt_text(prompt)?;
        self.tokenizer.encode_prompt(&text)
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl TextGeneration for Generator {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn context_length(&self) -> u32 {
        self.model.context_length()
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(&TokenDelta) -> ControlFlow<()>,
    ) -> Result<GenerateOutcome, LlmError> {
        let started = Instant::now();
        if request.max_tokens == 0 {
            return Err(LlmError::InvalidRequest(
                "max_tokens must be at least 1".to_owned(),
            ));
        }
        let mut sampler = Sampler::new(&request.sampling)?;
        let prompt = self.prompt_tokens(&request.prompt)?;
        if prompt.is_empty() {
            return Err(LlmError::InvalidRequest(
                "the prompt is empty (it has no tokens)".to_owned(),
            ));
        }
        let context = self.model.context_length();
        let context_len = usize::try_from(context).unwrap_or(usize::MAX);
        if prompt.len() >= context_len {
            return Err(LlmError::PromptTooLong {
                tokens: count(prompt.len()),
                context,
            });
        }
        let vocab = self.model.vocab_size();

        let (mut source, lease_verification) = self.model.start()?;
        let mut logits = source.forward(&prompt, 0)?;
        // Positions 0..position are filled; the next token goes to `position`.
        let mut position = prompt.len();
        let mut stream = TextStream::new(&request.stop);
        let mut generated: usize = 0;
        let mut time_to_first_token = None;
        let finish = loop {
            if logits.len() != vocab {
                return Err(LlmError::Compute(format!(
                    "the model returned {} logits for a vocabulary of {vocab}",
                    logits.len()
                )));
            }
            let token = sampler.sample(&logits)?;
            if self.tokenizer.is_end_of_generation(token) {
                let rest = stream.finish();
                if !rest.is_empty() {
                    // The client gets what was held back; a Break here
                    // changes nothing, generation ends anyway.
                    let _ = on_token(&TokenDelta {
                        token_id: token,
                        text: rest,
                    });
                }
                break FinishReason::Stop;
            }
            generated = generated.saturating_add(1);
            if time_to_first_token.is_none() {
                time_to_first_token = Some(started.elapsed());
            }
            let bytes = self.tokenizer.token_bytes(token).unwrap_or_default();
            let full = generated >= usize::try_from(request.max_tokens).unwrap_or(usize::MAX)
                || position.saturating_add(1) >= context_len;
            let (mut text, stopped) = match stream.push(bytes) {
                Step::Text(t) => (t, false),
                Step::Stopped(t) => (t, true),
            };
            if full && !stopped {
                text.push_str(&stream.finish());
            }
            let flow = on_token(&TokenDelta {
                token_id: token,
                text,
            });
            // A Break on the last delta changes nothing: generation had ended.
            if stopped {
                break FinishReason::Stop;
            }
            if full {
                break FinishReason::Length;
            }
            if flow.is_break() {
                break FinishReason::Cancelled;
            }
            logits = source.forward(&[token], position)?;
            position = position.saturating_add(1);
        };
        drop(source);
        let outcome = GenerateOutcome {
            text: stream.released().to_owned(),
            prompt_tokens: count(prompt.len()),
            completion_tokens: count(generated),
            finish_reason: finish,
            time_to_first_token,
            lease_verification,
            total: started.elapsed(),
        };
        tracing::debug!(
            model = %self.model_id,
            prompt_tokens = outcome.prompt_tokens,
            completion_tokens = outcome.completion_tokens,
            finish = finish.as_str(),
            "generation finished"
        );
        Ok(outcome)
    }
}
