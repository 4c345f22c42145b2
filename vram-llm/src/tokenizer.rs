//! The model's tokenizer, built from its GGUF metadata (`tokenizer.ggml.*`),
//! which the engine reads from sealed, verified header bytes: the vocabulary
//! a request is tokenized with is the one the seal covers.
//!
//! Supported, built with the `tokenizers` crate:
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE (tokens, merges, token
//!   types, and the pre-tokenizer named by `tokenizer.ggml.pre`: `default`,
//!   `gpt2`, `smollm`, `llama-bpe`, `qwen2`; any other is refused rather
//!   than tokenized differently from the model's training);
//! - `tokenizer.ggml.model = llama`: SentencePiece pieces with scores and
//!   `<0xAB>` byte tokens, as a BPE with byte fallback whose merges are
//!   derived from the scores as Transformers derives them
//!   (`tokenizer.ggml.add_space_prefix` honoured).
//!
//! BOS is added exactly as `tokenizer.ggml.add_bos_token` says (without the
//! key: no for `gpt2`, yes for `llama`). Special tokens (control tokens, BOS, EOS,
//! EOT, unknown, padding) are added as special tokens, so the text a chat
//! template renders (`<|im_start|>`) becomes their ids, as Transformers and
//! llama.cpp tokenize it.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::LlmError;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;
const TYPE_BYTE: i32 = 6;

/// SentencePiece's stand-in for a space.
const SPM_SPACE: char = '\u{2581}';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `gpt2`: byte-level BPE with merges.
    ByteLevel,
    /// `llama`: SentencePiece pieces with scores, byte fallback tokens.
    SentencePiece,
}

/// Llama 3's pre-tokenizer regex (`llama-bpe`), from its `tokenizer.json`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's pre-tokenizer regex (`qwen2`): Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token texts llama.cpp treats as end of generation whatever the metadata
/// says (its `special_eog_ids`: end-of-turn markers, and the fill-in-the-middle
/// pad, repository and file separators).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    // FIM pad
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    // FIM repository
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    // FIM file separator
    "<|file_sep|>",
];

/// The tokenizer of a GGUF language model.
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Each token's bytes as it appears in generated text (control and
    /// unused tokens: none).
    pieces: Vec<Vec<u8>>,
    /// Each token's text as the vocabulary spells it (for the template's
    /// `bos_token` / `eos_token`).
    texts: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    /// Sorted, without duplicates.
    end_of_generation: Vec<u32>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("end_of_generation", &self.end_of_generation)
            .finish_non_exhaustive()
    }
}

fn meta_err(key: &str, what: &str) -> LlmError {
    LlmError::Metadata(format!("{key}: {what}"))
}

fn get_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<Option<&'a str>, LlmError> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(meta_err(key, "expected a string")),
    }
}

fn get_bool(md: &HashMap<String, Value>, key: &str) -> Result<Option<bool>, LlmError> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(meta_err(key, "expected a boolean")),
    }
}

fn get_id(
    md: &HashMap<String, Value>,
    key: &str,
    n_tokens: usize,
) -> Result<Option<u32>, LlmError> {
    let Some(v) = md.get(key) else {
        return Ok(None);
    };
    let id = match v {
        Value::U8(x) => u64::from(*x),
        Value::U16(x) => u64::from(*x),
        Value::U32(x) => u64::from(*x),
        Value::U64(x) => *x,
        Value::I8(x) => u64::try_from(*x).map_err(|_| meta_err(key, "negative token id"))?,
        Value::I16(x) => u64::try_from(*x).map_err(|_| meta_err(key, "negative token id"))?,
        Value::I32(x) => {
            // llama.cpp writes -1 for "no such token".
            if *x == -1 {
                return Ok(None);
            }
            u64::try_from(*x).map_err(|_| meta_err(key, "negative token id"))?
        }
        Value::I64(x) => u64::try_from(*x).map_err(|_| meta_err(key, "negative token id"))?,
        _ => return Err(meta_err(key, "expected an integer token id")),
    };
    let id = u32::try_from(id).map_err(|_| meta_err(key, "token id over u32"))?;
    let in_range = usize::try_from(id).is_ok_and(|i| i < n_tokens);
    if !in_range {
        return Err(LlmError::Metadata(format!(
            "{key}: token id {id} is outside the vocabulary of {n_tokens} tokens"
        )));
    }
    Ok(Some(id))
}

fn get_array<'a>(
    md: &'a HashMap<String, Value>,
    key: &str,
) -> Result<Option<&'a [Value]>, LlmError> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.as_slice())),
        Some(_) => Err(meta_err(key, "expected an array")),
    }
}

fn string_array(md: &HashMap<String, Value>, key: &str) -> Result<Option<Vec<String>>, LlmError> {
    let Some(a) = get_array(md, key)? else {
        return Ok(None);
    };
    a.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(meta_err(key, "expected an array of strings")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// GPT-2's byte-to-character table: the byte each printable stand-in
/// character means in a byte-level BPE vocabulary (`Ġ` is a space).
fn byte_level_chars() -> HashMap<char, u8> {
    let mut printable: Vec<u8> = Vec::with_capacity(256);
    printable.extend(b'!'..=b'~');
    printable.extend(0xA1u8..=0xAC);
    printable.extend(0xAEu8..=0xFF);
    let mut map = HashMap::with_capacity(256);
    for &b in &printable {
        map.insert(char::from(b), b);
    }
    let mut next: u32 = 256;
    for b in 0u8..=255 {
        if !printable.contains(&b) {
            if let Some(c) = char::from_u32(next) {
                map.insert(c, b);
            }
            next = next.saturating_add(1);
        }
    }
    map
}

/// A byte-level token's bytes; a token holding a character outside the
/// table (a user-defined token written as plain text) is its UTF-8.
fn byte_level_bytes(token: &str, table: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    let mut buf = [0u8; 4];
    for c in token.chars() {
        match table.get(&c) {
            Some(b) => out.push(*b),
            None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out
}

fn float_array(md: &HashMap<String, Value>, key: &str, n: usize) -> Result<Vec<f32>, LlmError> {
    let a = get_array(md, key)?.ok_or_else(|| meta_err(key, "missing"))?;
    if a.len() != n {
        return Err(LlmError::Metadata(format!(
            "{key}: {} entries for {n} tokens",
            a.len()
        )));
    }
    a.iter()
        .map(|v| match v {
            Value::F32(x) if x.is_finite() => Ok(*x),
            _ => Err(meta_err(key, "expected finite 32-bit floats")),
        })
        .collect()
}

/// A byte token's byte (`<0x0A>` is a newline).
fn sentencepiece_byte(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The merges a SentencePiece vocabulary implies, as Transformers derives
/// them (`generate_merges` with the scores): every split of a piece into two
/// pieces of the vocabulary, ranked by the piece's score (higher first),
/// then by the lengths of the halves, ties in vocabulary order.
fn sentencepiece_merges(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut merges: Vec<Merge<'_>> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<(u32, u32, Merge<'_>)> = Vec::new();
        for (at, _) in token.char_indices().skip(1) {
            let (Some(left), Some(right)) = (token.get(..at), token.get(at..)) else {
                continue;
            };
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                local.push((
                    l,
                    r,
                    Merge {
                        left,
                        right,
                        score,
                        left_chars: left.chars().count(),
                        right_chars: right.chars().count(),
                    },
                ));
            }
        }
        local.sort_by_key(|(l, r, _)| (*l, *r));
        merges.extend(local.into_iter().map(|(_, _, m)| m));
    }
    // Stable: equal keys keep their order, as Python's sorted(reverse=True).
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    merges
        .into_iter()
        .map(|m| (m.left.to_owned(), m.right.to_owned()))
        .collect()
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, LlmError> {
    let byte_level_regex = || PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    let split_then_bytes = |regex: &str| -> Result<PreTokenizerWrapper, LlmError> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| LlmError::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ])))
    };
    match pre {
        "default" | "gpt2" | "gpt-2" => Ok(byte_level_regex()),
        // SmolLM: every digit on its own, then GPT-2's byte-level regex.
        "smollm" => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level_regex(),
        ]))),
        "llama-bpe" | "llama3" => split_then_bytes(LLAMA3_REGEX),
        "qwen2" => split_then_bytes(QWEN2_REGEX),
        other => {
            let shown: String = other.chars().take(40).collect();
            Err(LlmError::Metadata(format!(
                "tokenizer.ggml.pre: pre-tokenizer {shown:?} is not supported \
                 (supported: default, gpt2, smollm, llama-bpe, qwen2)"
            )))
        }
    }
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    ///
    /// # Errors
    /// [`LlmError::Metadata`] when a key is missing, has the wrong type, a
    /// special token id is outside the vocabulary, or the tokenizer model or
    /// pre-tokenizer is one this engine does not implement.
    pub fn from_gguf_metadata(md: &HashMap<String, Value>) -> Result<Self, LlmError> {
        let model = get_str(md, "tokenizer.ggml.model")?
            .ok_or_else(|| meta_err("tokenizer.ggml.model", "missing"))?;
        let kind = match model {
            "gpt2" => Kind::ByteLevel,
            "llama" => Kind::SentencePiece,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(LlmError::Metadata(format!(
                    "tokenizer.ggml.model: {shown:?} is not supported (supported: gpt2 \
                     (byte-level BPE), llama (SentencePiece BPE with byte fallback))"
                )));
            }
        };
        let tokens = string_array(md, "tokenizer.ggml.tokens")?
            .ok_or_else(|| meta_err("tokenizer.ggml.tokens", "missing"))?;
        if tokens.is_empty() || u32::try_from(tokens.len()).is_err() {
            return Err(meta_err(
                "tokenizer.ggml.tokens",
                "empty or over u32 tokens",
            ));
        }
        let n = tokens.len();
        let types: Vec<i32> = match get_array(md, "tokenizer.ggml.token_type")? {
            None => vec![1; n],
            Some(a) => {
                if a.len() != n {
                    return Err(LlmError::Metadata(format!(
                        "tokenizer.ggml.token_type: {} entries for {n} tokens",
                        a.len()
                    )));
                }
                a.iter()
                    .map(|v| match v {
                        Value::I32(t) => Ok(*t),
                        Value::U32(t) => i32::try_from(*t)
                            .map_err(|_| meta_err("tokenizer.ggml.token_type", "type over i32")),
                        _ => Err(meta_err("tokenizer.ggml.token_type", "expected integers")),
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let pre = get_str(md, "tokenizer.ggml.pre")?.unwrap_or("default");

        let bos = get_id(md, "tokenizer.ggml.bos_token_id", n)?;
        let eos = get_id(md, "tokenizer.ggml.eos_token_id", n)?;
        let eot = get_id(md, "tokenizer.ggml.eot_token_id", n)?;
        let eom = get_id(md, "tokenizer.ggml.eom_token_id", n)?;
        let unknown = get_id(md, "tokenizer.ggml.unknown_token_id", n)?;
        let padding = get_id(md, "tokenizer.ggml.padding_token_id", n)?;
        // Without the key: no BOS for a byte-level vocabulary, BOS for a
        // SentencePiece one (llama.cpp's and Transformers' defaults); the
        // key, when present, decides.
        let add_bos =
            get_bool(md, "tokenizer.ggml.add_bos_token")?.unwrap_or(kind == Kind::SentencePiece);

        let mut vocab = Vocab::default();
        for (id, t) in tokens.iter().enumerate() {
            let id =
                u32::try_from(id).map_err(|_| meta_err("tokenizer.ggml.tokens", "over u32"))?;
            // A duplicate keeps its first id, as llama.cpp's token_to_id does.
            vocab.entry(t.clone()).or_insert(id);
        }
        let mut inner = match kind {
            Kind::ByteLevel => {
                let merges = string_array(md, "tokenizer.ggml.merges")?
                    .ok_or_else(|| meta_err("tokenizer.ggml.merges", "missing"))?;
                let mut merge_pairs = Vec::with_capacity(merges.len());
                for (i, m) in merges.iter().enumerate() {
                    let (a, b) = m.split_once(' ').ok_or_else(|| {
                        LlmError::Metadata(format!("tokenizer.ggml.merges: entry {i} has no space"))
                    })?;
                    merge_pairs.push((a.to_owned(), b.to_owned()));
                }
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merge_pairs)
                    .build()
                    .map_err(|e| LlmError::Tokenizer(format!("building the BPE model: {e}")))?;
                let mut inner = Tokenizer::new(bpe);
                inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
                inner.with_decoder(Some(ByteLevel::default()));
                inner
            }
            Kind::SentencePiece => {
                let scores = float_array(md, "tokenizer.ggml.scores", n)?;
                let merges = sentencepiece_merges(&tokens, &scores, &vocab);
                let mut builder = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .byte_fallback(true)
                    .fuse_unk(true);
                if let Some(unk) = unknown.and_then(|id| tokens.get(usize::try_from(id).ok()?)) {
                    builder = builder.unk_token(unk.clone());
                }
                let bpe = builder
                    .build()
                    .map_err(|e| LlmError::Tokenizer(format!("building the BPE model: {e}")))?;
                let add_space_prefix =
                    get_bool(md, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                let scheme = if add_space_prefix {
                    PrependScheme::First
                } else {
                    PrependScheme::Never
                };
                let mut inner = Tokenizer::new(bpe);
                inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(Metaspace::new(
                    SPM_SPACE, scheme, false,
                ))));
                inner
            }
        };

        let special_ids: Vec<u32> = [bos, eos, eot, eom, unknown, padding]
            .into_iter()
            .flatten()
            .collect();
        let mut special = Vec::new();
        let mut user_defined = Vec::new();
        for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
            let id = u32::try_from(i).map_err(|_| meta_err("tokenizer.ggml.tokens", "over u32"))?;
            if *ty == TYPE_CONTROL || special_ids.contains(&id) {
                special.push(AddedToken::from(t.clone(), true));
            } else if *ty == TYPE_USER_DEFINED {
                user_defined.push(AddedToken::from(t.clone(), false).normalized(false));
            }
        }
        inner
            .add_special_tokens(special)
            .map_err(|e| LlmError::Tokenizer(format!("adding special tokens: {e}")))?;
        inner
            .add_tokens(user_defined)
            .map_err(|e| LlmError::Tokenizer(format!("adding user-defined tokens: {e}")))?;

        let table = byte_level_chars();
        let pieces = tokens
            .iter()
            .zip(&types)
            .map(|(t, ty)| match (*ty, kind) {
                (TYPE_CONTROL | TYPE_UNUSED, _) => Vec::new(),
                (TYPE_USER_DEFINED, _) => t.as_bytes().to_vec(),
                (TYPE_BYTE, Kind::SentencePiece) => {
                    sentencepiece_byte(t).map_or_else(|| t.as_bytes().to_vec(), |b| vec![b])
                }
                (_, Kind::SentencePiece) => t.replace(SPM_SPACE, " ").into_bytes(),
                (_, Kind::ByteLevel) => byte_level_bytes(t, &table),
            })
            .collect();

        let mut end_of_generation: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for (i, t) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&t.as_str()) {
                let id =
                    u32::try_from(i).map_err(|_| meta_err("tokenizer.ggml.tokens", "over u32"))?;
                end_of_generation.push(id);
            }
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        if end_of_generation.is_empty() {
            return Err(meta_err(
                "tokenizer.ggml.eos_token_id",
                "no end-of-generation token (no EOS, EOT or known end-of-turn token)",
            ));
        }

        tracing::debug!(
            tokens = n,
            pre,
            add_bos,
            eog = ?end_of_generation,
            "built the GGUF tokenizer"
        );
        Ok(Self {
            inner,
            pieces,
            texts: tokens,
            bos,
            eos,
            add_bos,
            end_of_generation,
        })
    }

    /// The number of tokens in the vocabulary.
    #[must_use]
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Whether a prompt starts with BOS (`tokenizer.ggml.add_bos_token`).
    #[must_use]
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The BOS token's text (the template's `bos_token`), if the model has one.
    #[must_use]
    pub fn bos_text(&self) -> Option<&str> {
        self.bos.and_then(|id| self.token_text(id))
    }

    /// The EOS token's text (the template's `eos_token`), if the model has one.
    #[must_use]
    pub fn eos_text(&self) -> Option<&str> {
        self.eos.and_then(|id| self.token_text(id))
    }

    /// A token's text as the vocabulary spells it.
    #[must_use]
    pub fn token_text(&self, id: u32) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.texts.get(i))
            .map(String::as_str)
    }

    /// The tokens that end generation (EOS, EOT, EOM and the end-of-turn
    /// tokens llama.cpp recognises by their text), sorted.
    #[must_use]
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Whether `id` ends generation.
    #[must_use]
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    /// The bytes `id` adds to generated text (none for control tokens).
    /// A token may hold part of a multi-byte character.
    #[must_use]
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.pieces.get(i))
            .map(Vec::as_slice)
    }

    /// Tokenizes `text` (special tokens written in it become their ids),
    /// without BOS.
    ///
    /// # Errors
    /// [`LlmError::Tokenizer`] when the tokenizer fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| LlmError::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenizes a prompt: BOS first when the metadata asks for it.
    ///
    /// # Errors
    /// [`LlmError::Tokenizer`] when the tokenizer fails.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let ids = self.encode(text)?;
        match (self.add_bos, self.bos) {
            (true, Some(bos)) => {
                let mut with = Vec::with_capacity(ids.len().saturating_add(1));
                with.push(bos);
                with.extend(ids);
                Ok(with)
            }
            _ => Ok(ids),
        }
    }

    /// The text of `ids` (control tokens skipped; invalid UTF-8 replaced).
    #[must_use]
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&id| self.token_bytes(id))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
