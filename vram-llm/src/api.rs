//! What a server asks of a text generator: the request, the stream of
//! generated text, the outcome. The HTTP layer (`vram-serve`) speaks only
//! these types; the GGUF engine implements [`TextGeneration`].

use std::ops::ControlFlow;
use std::time::Duration;

use crate::LlmError;

/// One message of a chat conversation, as the OpenAI API carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (the chat template decides what it accepts).
    pub role: String,
    /// The message's text.
    pub content: String,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Raw text, tokenized as the model's metadata says (BOS or not).
    Text(String),
    /// A conversation, rendered with the model's own chat template (from the
    /// sealed metadata) with the generation prompt added.
    Chat(Vec<ChatMessage>),
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (the most likely token, no randomness).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability
    /// reaches `top_p` (`None` or 1.0: all tokens).
    pub top_p: Option<f64>,
    /// Seed of the sampler's random stream: the same request with the same
    /// seed generates the same text.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            seed: 0,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// At most this many generated tokens.
    pub max_tokens: u32,
    /// Sampling.
    pub sampling: SamplingParams,
    /// Generation stops before any of these strings would be emitted; the
    /// stop string itself is not part of the text.
    pub stop: Vec<String>,
}

/// A piece of generated text, handed to the caller as soon as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDelta {
    /// The token generated (its id in the model's vocabulary).
    pub token_id: u32,
    /// The text this token adds (may be empty while a multi-byte character
    /// or a possible stop string is incomplete; such text is emitted with a
    /// later delta).
    pub text: String,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context length reached.
    Length,
    /// The caller's callback asked to stop (a client that went away).
    Cancelled,
}

impl FinishReason {
    /// The OpenAI API's name for it (`stop`, `length`); a cancelled request
    /// has no answer to carry one, `cancelled` is used in logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What one request produced and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutcome {
    /// The whole generated text (stop string excluded).
    pub text: String,
    /// Tokens of the prompt as the model saw it (template and BOS included).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// From the start of the request to the first generated token (`None`
    /// when none was generated).
    pub time_to_first_token: Option<Duration>,
    /// Time spent verifying the request's lease before computing.
    pub lease_verification: Duration,
    /// Whole request.
    pub total: Duration,
}

/// A text generator a server can share between requests (`Arc<dyn
/// TextGeneration>`): every call computes on weights reached through a
/// lease verified for that call.
pub trait TextGeneration: Send + Sync {
    /// The model's reference (what `/v1/models` lists).
    fn model_id(&self) -> &str;

    /// The context length in tokens (prompt plus generated).
    fn context_length(&self) -> u32;

    /// Generates text for `request`, calling `on_token` for each piece of text
    /// as soon as it is known; `ControlFlow::Break` from it stops generation
    /// (the outcome then says [`FinishReason::Cancelled`]).
    ///
    /// # Errors
    /// [`LlmError`]: its [`LlmError::class`] tells a server what to answer
    /// (usage: 400; integrity: the lease was refused, the process must stop
    /// serving; environment: 500).
    fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(&TokenDelta) -> ControlFlow<()>,
    ) -> Result<GenerateOutcome, LlmError>;
}
