//! A GGUF file's header (metadata and tensor table) read from leased,
//! verified bytes, and the llama hyperparameters it holds.
//!
//! Everything that changes what the model computes (hyperparameters,
//! tokenizer, chat template) is inside the file, hence inside the seal: it is
//! read from the sealed memory, never from the file on disk.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::GgmlDType;

use crate::kernels::SUPPORTED_TYPES;
use crate::LlmError;

/// The metadata map of a GGUF file, as candle reads it.
pub type Metadata = HashMap<String, Value>;

/// One tensor of the file: its type, its shape (rows first) and where its
/// bytes lie in the sealed shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Its GGUF type.
    pub dtype: GgmlDType,
    /// Its dimensions, outermost first (a weight is `[out, in]`).
    pub dims: Vec<usize>,
    /// Its bytes in the shard.
    pub range: Range<usize>,
}

impl TensorEntry {
    /// Number of values.
    #[must_use]
    pub fn elems(&self) -> usize {
        self.dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

/// The header of a GGUF file: metadata and tensor table (ranges checked to
/// lie inside the shard).
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) metadata: Metadata,
    pub(crate) tensors: HashMap<String, TensorEntry>,
}

/// Reads the header of the GGUF file in `bytes` (the whole sealed shard),
/// in place: candle's reader over a cursor, no copy of the file.
///
/// # Errors
/// [`LlmError::Metadata`] for a header candle refuses, a tensor of a type
/// this engine does not compute on, or a tensor whose bytes lie outside the
/// shard (each named).
pub(crate) fn read_header(bytes: &[u8]) -> Result<Header, LlmError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut cursor)
        .map_err(|e| LlmError::Metadata(format!("not a readable GGUF header: {e}")))?;
    let base = content.tensor_data_offset;
    let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let entry = entry(name, info, base, bytes.len())?;
        tensors.insert(name.clone(), entry);
    }
    Ok(Header {
        metadata: content.metadata,
        tensors,
    })
}

fn entry(
    name: &str,
    info: &gguf_file::TensorInfo,
    base: u64,
    shard_len: usize,
) -> Result<TensorEntry, LlmError> {
    let dtype = info.ggml_dtype;
    if !SUPPORTED_TYPES.contains(&dtype) {
        return Err(LlmError::Metadata(format!(
            "tensor {name}: type {dtype:?} is not supported by this engine (supported: {SUPPORTED_TYPES:?})"
        )));
    }
    let dims = info.shape.dims().to_vec();
    let elems = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| LlmError::Metadata(format!("tensor {name}: shape {dims:?} overflows")))?;
    let block = dtype.block_size();
    if block == 0
        || !elems.is_multiple_of(block)
        || dims.last().is_some_and(|&d| !d.is_multiple_of(block))
    {
        return Err(LlmError::Metadata(format!(
            "tensor {name}: shape {dims:?} is not a whole number of {block}-value {dtype:?} blocks per row"
        )));
    }
    let len = elems
        .checked_div(block)
        .and_then(|b| b.checked_mul(dtype.type_size()));
    let start = base
        .checked_add(info.offset)
        .and_then(|s| usize::try_from(s).ok());
    let range = match (start, len) {
        (Some(start), Some(len)) => start
            .checked_add(len)
            .filter(|&end| end <= shard_len)
            .map(|end| start..end),
        _ => None,
    };
    let range = range.ok_or_else(|| {
        LlmError::Metadata(format!(
            "tensor {name}: its {dtype:?} bytes at offset {} lie outside the {shard_len}-byte file",
            info.offset
        ))
    })?;
    Ok(TensorEntry { dtype, dims, range })
}

/// The llama hyperparameters of a GGUF file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Transformer blocks.
    pub block_count: usize,
    /// Hidden size.
    pub embedding_length: usize,
    /// Attention heads.
    pub head_count: usize,
    /// Key/value heads (grouped-query attention).
    pub head_count_kv: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// RMS norm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE frequency base.
    pub rope_freq_base: f32,
    /// Context length in tokens.
    pub context_length: u32,
}

/// Context lengths past this are refused: the rotary tables are computed for
/// every position at load.
pub const MAX_CONTEXT: u32 = 1 << 20;

fn get<'a>(md: &'a Metadata, key: &str) -> Result<&'a Value, LlmError> {
    md.get(key)
        .ok_or_else(|| LlmError::Metadata(format!("key {key} is missing")))
}

fn get_usize(md: &Metadata, key: &str) -> Result<usize, LlmError> {
    let v = get(md, key)?;
    let n = v
        .to_u64()
        .or_else(|_| v.to_u32().map(u64::from))
        .or_else(|_| v.to_i32().map(|i| u64::try_from(i).unwrap_or(0)))
        .map_err(|_| LlmError::Metadata(format!("key {key} is not an unsigned integer")))?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| LlmError::Metadata(format!("key {key} must be a positive integer, is {n}")))
}

fn get_f32(md: &Metadata, key: &str) -> Result<f32, LlmError> {
    let v = get(md, key)?;
    v.to_f32()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| LlmError::Metadata(format!("key {key} is not a finite float")))
}

impl LlamaConfig {
    /// The hyperparameters of a llama-architecture file.
    ///
    /// # Errors
    /// [`LlmError::Metadata`] naming the key that is missing or unusable, or
    /// the architecture when it is not `llama`.
    pub fn from_metadata(md: &Metadata) -> Result<Self, LlmError> {
        let arch = get(md, "general.architecture")?
            .to_string()
            .map_err(|_| LlmError::Metadata("key general.architecture is not a string".into()))?;
        if arch != "llama" {
            return Err(LlmError::Metadata(format!(
                "general.architecture is {:?}; this engine runs llama",
                arch.chars().take(32).collect::<String>()
            )));
        }
        let block_count = get_usize(md, "llama.block_count")?;
        let embedding_length = get_usize(md, "llama.embedding_length")?;
        let head_count = get_usize(md, "llama.attention.head_count")?;
        let head_count_kv = get_usize(md, "llama.attention.head_count_kv")?;
        if !embedding_length.is_multiple_of(head_count) || !head_count.is_multiple_of(head_count_kv)
        {
            return Err(LlmError::Metadata(format!(
                "llama.embedding_length {embedding_length}, llama.attention.head_count {head_count} and head_count_kv {head_count_kv} do not divide"
            )));
        }
        let head_dim = embedding_length.checked_div(head_count).unwrap_or(0);
        let rope_dim = match md.get("llama.rope.dimension_count") {
            Some(_) => get_usize(md, "llama.rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim != head_dim || !head_dim.is_multiple_of(2) {
            return Err(LlmError::Metadata(format!(
                "llama.rope.dimension_count {rope_dim} must be the (even) head dimension {head_dim}"
            )));
        }
        let rms_norm_eps = get_f32(md, "llama.attention.layer_norm_rms_epsilon")?;
        let rope_freq_base = match md.get("llama.rope.freq_base") {
            Some(_) => get_f32(md, "llama.rope.freq_base")?,
            None => 10_000.0,
        };
        let context = get_usize(md, "llama.context_length")?;
        let context_length = u32::try_from(context)
            .ok()
            .filter(|&c| c <= MAX_CONTEXT)
            .ok_or_else(|| {
                LlmError::Metadata(format!(
                    "llama.context_length {context} is over this engine's {MAX_CONTEXT}"
                ))
            })?;
        Ok(Self {
            block_count,
            embedding_length,
            head_count,
            head_count_kv,
            head_dim,
            rms_norm_eps,
            rope_freq_base,
            context_length,
        })
    }
}
