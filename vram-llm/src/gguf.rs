//! A GGUF file's header (metadata and tensor table), as the facade read it
//! from the sealed shard's seal-checked header leaves, and the llama
//! hyperparameters it holds.
//!
//! Everything that changes what the model computes (hyperparameters,
//! tokenizer, chat template) is inside the file, hence inside the seal: it is
//! read from the sealed memory, never from the file on disk. The header is
//! parsed by the workspace's one GGUF reader (`vram_format::GgufHeader`:
//! counts, strings, arrays, offsets and alignment bounded, one verdict on
//! every path); this module only turns its table and metadata into what the
//! engine computes with (candle's types), refusing tensor types the engine
//! has no kernel for.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;
use vram_format::{Dtype, GgufArray, GgufHeader, GgufValue, TensorInfo};
use vram_validation::escape_for_log;

use crate::kernels::SUPPORTED_TYPES;
use crate::LlmError;

/// The metadata map of a GGUF file, in candle's value type.
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
    /// The shard holding it: its part of a split model (0 for one file).
    pub shard: usize,
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

impl Header {
    /// The engine's view of a header `vram_format` read and checked (every
    /// tensor's bytes inside the file, whole blocks, aligned, no overlap).
    ///
    /// # Errors
    /// [`LlmError::Metadata`] for a tensor of a type this engine does not
    /// compute on, or a size this machine cannot address (each named).
    pub(crate) fn of(gguf: &GgufHeader) -> Result<Self, LlmError> {
        let tensors = gguf
            .table
            .tensors()
            .iter()
            .map(|t| Ok((t.name.clone(), entry(t)?)))
            .collect::<Result<HashMap<_, _>, LlmError>>()?;
        let metadata = gguf
            .metadata
            .iter()
            .map(|(k, v)| Ok((k.clone(), value(k, v)?)))
            .collect::<Result<Metadata, LlmError>>()?;
        Ok(Self { metadata, tensors })
    }
}

/// An integer metadata value of any width, as u64 (`None` for a negative
/// or non-integer value).
fn integer(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(u64::from(*x)),
        Value::U16(x) => Some(u64::from(*x)),
        Value::U32(x) => Some(u64::from(*x)),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

/// llama.cpp's keys of a split model's parts (`gguf-split`).
const SPLIT_NO: &str = "split.no";
const SPLIT_COUNT: &str = "split.count";
const SPLIT_TENSORS: &str = "split.tensors.count";

impl Header {
    /// The one header of a model sealed as `parts` (its shards, in order):
    /// the header itself for one file; for a model split by llama.cpp's
    /// `gguf-split`, the first part's metadata (where `gguf-split` writes it
    /// all) and every part's tensors, each entry naming its part.
    ///
    /// # Errors
    /// [`LlmError::Metadata`] when the parts do not make one model: a part's
    /// `split.no` is not its position or its `split.count` not the number of
    /// parts (or a part of several lacks them), `split.tensors.count`
    /// differs from the tensors found, or a tensor is in two parts (each
    /// named).
    pub(crate) fn of_parts(parts: Vec<Self>) -> Result<Self, LlmError> {
        let n = parts.len();
        let count = u64::try_from(n).unwrap_or(u64::MAX);
        let mut merged: Option<Self> = None;
        let mut total = 0usize;
        for (i, part) in parts.into_iter().enumerate() {
            let field = |key: &'static str| part.metadata.get(key).map(|v| integer(v).ok_or(key));
            let bad = |what: String| {
                LlmError::Metadata(format!("part {} of {n}: {what}", i.saturating_add(1)))
            };
            match (field(SPLIT_NO), field(SPLIT_COUNT)) {
                (None, None) if n == 1 => {}
                (Some(Ok(no)), Some(Ok(c))) => {
                    if c != count {
                        return Err(bad(format!(
                            "{SPLIT_COUNT} is {c}, and the model was sealed as {n} parts"
                        )));
                    }
                    if usize::try_from(no).ok() != Some(i) {
                        return Err(bad(format!(
                            "{SPLIT_NO} is {no}: the parts are out of order or from several models"
                        )));
                    }
                }
                (Some(Err(key)), _) | (_, Some(Err(key))) => {
                    return Err(bad(format!("{key} is not a non-negative integer")));
                }
                _ => {
                    return Err(bad(format!(
                        "a part of a split model without {SPLIT_NO} and {SPLIT_COUNT}"
                    )));
                }
            }
            total = total.saturating_add(part.tensors.len());
            match merged.as_mut() {
                None => {
                    let mut first = part;
                    for e in first.tensors.values_mut() {
                        e.shard = i;
                    }
                    merged = Some(first);
                }
                Some(into) => {
                    for (name, mut e) in part.tensors {
                        e.shard = i;
                        if into.tensors.contains_key(&name) {
                            return Err(bad(format!(
                                "tensor {} is in an earlier part too",
                                escape_for_log(&name, 80)
                            )));
                        }
                        into.tensors.insert(name, e);
                    }
                }
            }
        }
        let merged =
            merged.ok_or_else(|| LlmError::Metadata("the sealed model holds no file".into()))?;
        if let Some(v) = merged.metadata.get(SPLIT_TENSORS) {
            let want = integer(v).and_then(|w| usize::try_from(w).ok());
            if want != Some(total) {
                return Err(LlmError::Metadata(format!(
                    "{SPLIT_TENSORS} says {v:?} tensors, and the {n} parts hold {total}"
                )));
            }
        }
        Ok(merged)
    }
}

/// candle's type of a ggml type, `None` for one candle has no type for.
fn ggml_dtype(dtype: Dtype) -> Option<GgmlDType> {
    Some(match dtype {
        Dtype::F32 => GgmlDType::F32,
        Dtype::F16 => GgmlDType::F16,
        Dtype::BF16 => GgmlDType::BF16,
        Dtype::Q4_0 => GgmlDType::Q4_0,
        Dtype::Q4_1 => GgmlDType::Q4_1,
        Dtype::Q5_0 => GgmlDType::Q5_0,
        Dtype::Q5_1 => GgmlDType::Q5_1,
        Dtype::Q8_0 => GgmlDType::Q8_0,
        Dtype::Q8_1 => GgmlDType::Q8_1,
        Dtype::Q2_K => GgmlDType::Q2K,
        Dtype::Q3_K => GgmlDType::Q3K,
        Dtype::Q4_K => GgmlDType::Q4K,
        Dtype::Q5_K => GgmlDType::Q5K,
        Dtype::Q6_K => GgmlDType::Q6K,
        Dtype::Q8_K => GgmlDType::Q8K,
        _ => return None,
    })
}

fn entry(info: &TensorInfo) -> Result<TensorEntry, LlmError> {
    let name = escape_for_log(&info.name, 80);
    let dtype = ggml_dtype(info.dtype)
        .filter(|d| SUPPORTED_TYPES.contains(d))
        .ok_or_else(|| {
            LlmError::Metadata(format!(
                "tensor {name}: type {} is not supported by this engine (supported: {SUPPORTED_TYPES:?})",
                info.dtype
            ))
        })?;
    let too_large = || {
        LlmError::Metadata(format!(
            "tensor {name}: shape {:?} at bytes {}..{} is too large for this machine",
            info.shape, info.data.start, info.data.end
        ))
    };
    // ggml lists dimensions innermost first; the engine, rows first.
    let dims = info
        .shape
        .iter()
        .rev()
        .map(|&d| usize::try_from(d).map_err(|_| too_large()))
        .collect::<Result<Vec<_>, _>>()?;
    let start = usize::try_from(info.data.start).map_err(|_| too_large())?;
    let end = usize::try_from(info.data.end).map_err(|_| too_large())?;
    Ok(TensorEntry {
        dtype,
        dims,
        range: start..end,
        shard: 0,
    })
}

/// A metadata value in candle's type.
fn value(key: &str, v: &GgufValue) -> Result<Value, LlmError> {
    Ok(match v {
        GgufValue::U8(x) => Value::U8(*x),
        GgufValue::I8(x) => Value::I8(*x),
        GgufValue::U16(x) => Value::U16(*x),
        GgufValue::I16(x) => Value::I16(*x),
        GgufValue::U32(x) => Value::U32(*x),
        GgufValue::I32(x) => Value::I32(*x),
        GgufValue::U64(x) => Value::U64(*x),
        GgufValue::I64(x) => Value::I64(*x),
        GgufValue::F32(x) => Value::F32(*x),
        GgufValue::F64(x) => Value::F64(*x),
        GgufValue::Bool(x) => Value::Bool(*x),
        GgufValue::String(x) => Value::String(x.clone()),
        GgufValue::Array(a) => Value::Array(array(key, a)?),
        _ => return Err(unreadable(key)),
    })
}

fn array(key: &str, a: &GgufArray) -> Result<Vec<Value>, LlmError> {
    fn each<T: Copy>(v: &[T], f: fn(T) -> Value) -> Vec<Value> {
        v.iter().map(|&x| f(x)).collect()
    }
    Ok(match a {
        GgufArray::U8(v) => each(v, Value::U8),
        GgufArray::I8(v) => each(v, Value::I8),
        GgufArray::U16(v) => each(v, Value::U16),
        GgufArray::I16(v) => each(v, Value::I16),
        GgufArray::U32(v) => each(v, Value::U32),
        GgufArray::I32(v) => each(v, Value::I32),
        GgufArray::U64(v) => each(v, Value::U64),
        GgufArray::I64(v) => each(v, Value::I64),
        GgufArray::F32(v) => each(v, Value::F32),
        GgufArray::F64(v) => each(v, Value::F64),
        GgufArray::Bool(v) => each(v, Value::Bool),
        GgufArray::String(v) => v.iter().cloned().map(Value::String).collect(),
        GgufArray::Array(v) => v
            .iter()
            .map(|inner| array(key, inner).map(Value::Array))
            .collect::<Result<_, _>>()?,
        _ => return Err(unreadable(key)),
    })
}

fn unreadable(key: &str) -> LlmError {
    LlmError::Metadata(format!(
        "key {}: a value type this engine does not read",
        escape_for_log(key, 80)
    ))
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
