//! A tiny byte-level BPE model written by the tests: its GGUF metadata map
//! and a scripted `LogitsModel` whose next token is known in advance.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::quantized::gguf_file::Value;
use vram_llm::{LlmError, LogitsModel, LogitsSource};

/// GPT-2's printable stand-in for byte `b` (`Ġ` for a space).
pub fn byte_char(b: u8) -> char {
    let printable = |x: u8| (b'!'..=b'~').contains(&x) || (0xA1..=0xAC).contains(&x) || x >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

pub const ENDOFTEXT: u32 = 0;
pub const IM_START: u32 = 1;
pub const IM_END: u32 = 2;
/// The first of the 256 byte tokens: byte `b` is `BYTE0 + b`.
pub const BYTE0: u32 = 3;

pub fn byte_token(b: u8) -> u32 {
    BYTE0 + u32::from(b)
}

/// Merged tokens after the byte tokens, with the merges that build them.
pub const MERGED: &[(&str, &str)] = &[
    ("h", "e"),
    ("l", "l"),
    ("he", "ll"),
    ("hell", "o"),
    ("Ġ", "w"),
    ("o", "r"),
    ("Ġw", "or"),
    ("Ġwor", "l"),
    ("Ġworl", "d"),
    ("1", "2"),
];

pub fn token_id(text: &str) -> u32 {
    let tokens = tokens();
    tokens.iter().position(|t| t == text).unwrap() as u32
}

pub fn tokens() -> Vec<String> {
    let mut t: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    t.extend((0..=255u8).map(|b| byte_char(b).to_string()));
    t.extend(MERGED.iter().map(|(a, b)| format!("{a}{b}")));
    t
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// The metadata map of the tiny model, SmolLM2-shaped: `gpt2` tokenizer,
/// `smollm` pre-tokenizer, no BOS, a ChatML template.
pub fn metadata() -> HashMap<String, Value> {
    let tokens = tokens();
    let mut types = vec![Value::I32(3); 3];
    types.extend(std::iter::repeat_n(Value::I32(1), tokens.len() - 3));
    let merges: Vec<String> = MERGED.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.pre".into(), Value::String("smollm".into()));
    md.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert("tokenizer.ggml.merges".into(), strings(&merges));
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(IM_START));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(IM_END));
    md.insert(
        "tokenizer.ggml.unknown_token_id".into(),
        Value::U32(ENDOFTEXT),
    );
    md.insert("tokenizer.ggml.padding_token_id".into(), Value::U32(IM_END));
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    md.insert(
        "tokenizer.chat_template".into(),
        Value::String(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".into(),
        ),
    );
    md
}

/// What a scripted model was fed: (tokens, position) per forward call.
pub type Feed = Arc<Mutex<Vec<(Vec<u32>, usize)>>>;

/// A model whose k-th forward call of a request makes `script[k]` the most
/// likely token (after the script: `filler`), or, when `flat`, gives every
/// byte token of `a`..`z` the same logit.
pub struct ScriptedModel {
    pub script: Vec<u32>,
    pub filler: u32,
    pub flat: bool,
    pub context: u32,
    pub vocab: usize,
    pub lease: Duration,
    pub feed: Feed,
    pub starts: Arc<Mutex<u32>>,
    /// `start` fails (as a refused lease would) when set.
    pub refuse: bool,
}

impl ScriptedModel {
    pub fn new(script: Vec<u32>) -> Self {
        Self {
            script,
            filler: byte_token(b'x'),
            flat: false,
            context: 64,
            vocab: tokens().len() + 7,
            lease: Duration::from_micros(1234),
            feed: Arc::default(),
            starts: Arc::default(),
            refuse: false,
        }
    }
}

struct ScriptedSource<'a> {
    model: &'a ScriptedModel,
    calls: usize,
}

impl LogitsSource for ScriptedSource<'_> {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, LlmError> {
        self.model
            .feed
            .lock()
            .unwrap()
            .push((tokens.to_vec(), position));
        let mut logits = vec![-10.0f32; self.model.vocab];
        if self.model.flat {
            for b in b'a'..=b'z' {
                logits[byte_token(b) as usize] = 1.0;
            }
        } else {
            let next = self
                .model
                .script
                .get(self.calls)
                .copied()
                .unwrap_or(self.model.filler);
            logits[next as usize] = 5.0;
        }
        self.calls += 1;
        Ok(logits)
    }
}

impl LogitsModel for ScriptedModel {
    fn start(&self) -> Result<(Box<dyn LogitsSource + '_>, Duration), LlmError> {
        *self.starts.lock().unwrap() += 1;
        if self.refuse {
            return Err(LlmError::Compute("the test model refuses to start".into()));
        }
        Ok((
            Box::new(ScriptedSource {
                model: self,
                calls: 0,
            }),
            self.lease,
        ))
    }

    fn context_length(&self) -> u32 {
        self.context
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }
}

/// The byte tokens spelling `text`.
pub fn bytes_of(text: &str) -> Vec<u32> {
    text.bytes().map(byte_token).collect()
}
