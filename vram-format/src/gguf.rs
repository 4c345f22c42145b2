//! The header of a GGUF file (llama.cpp's format), read defensively.
//!
//! Layout (little-endian): the magic `GGUF`, a `u32` version (2 or 3), a
//! `u64` tensor count, a `u64` metadata count, the metadata (key string,
//! `u32` value type, value), the tensor infos (name string, `u32` dimension
//! count, that many `u64` dimensions, `u32` ggml type, `u64` offset), then
//! padding to `general.alignment` (default 32), then the tensor data. A
//! string is a `u64` length and that many UTF-8 bytes; an array is a `u32`
//! element type, a `u64` count and the elements.
//!
//! The header is untrusted. Every count, string length and array length is
//! checked against the bytes the file has (and the [`MAX_HEADER_BYTES`]
//! limit) *before* anything is allocated for it, arithmetic is checked, and
//! no input makes the parser panic. On top of the format, llama.cpp's own
//! rules (`gguf.c`): keys and tensor names unique, names shorter than 64
//! bytes, at most 4 dimensions, a first dimension that is a whole number of
//! blocks, an alignment that is a power of two, offsets that are multiples
//! of it and tensors that follow one another in the data section with no
//! more than alignment padding between them, all inside the file.

use std::collections::HashSet;

use vram_validation::escape_for_log;

use crate::error::gguf as invalid;
use crate::{Dtype, Format, FormatError, TensorInfo, TensorTable};

/// The first four bytes of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Largest header accepted (metadata and tensor infos): 100,000,000 bytes,
/// the same bound as a safetensors header. A large vocabulary (150,000
/// tokens and their merges) takes a few megabytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Longest tensor name, in bytes (ggml's `GGML_MAX_NAME` less its NUL).
pub const MAX_NAME_BYTES: u64 = 63;

/// Deepest nesting of arrays in metadata values (an array of arrays).
pub const MAX_ARRAY_DEPTH: u32 = 2;

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: elements of one type, stored without a tag each (so
/// that a large array costs what its bytes cost).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufArray {
    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl GgufValue {
    /// The value as an unsigned integer, when it is one of any width (or a
    /// non-negative signed one).
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string, when it is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array, when it is one.
    #[must_use]
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The parsed header of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order, keys unique.
    pub metadata: Vec<(String, GgufValue)>,
    /// Alignment of the data section and of every tensor in it.
    pub alignment: u64,
    /// The tensors, with absolute byte ranges.
    pub table: TensorTable,
}

/// Bytes of a value type's fixed-size encoding, or the least bytes of a
/// variable one (string: its length; array: type and count).
fn min_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

/// A cursor over the given bytes of a file of `file_len` bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
    /// Bytes the header may span: the file (when known), at most the limit.
    limit: u64,
}

impl<'a> Cursor<'a> {
    /// The next `n` bytes, or why not: past the limit (hostile), or past
    /// the given prefix (read more).
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.limit)
            .ok_or_else(|| {
                invalid(format!(
                    "{what} at byte {} ({n} bytes) runs past {}",
                    self.pos,
                    if self.limit == MAX_HEADER_BYTES {
                        format!("the {MAX_HEADER_BYTES}-byte header limit")
                    } else {
                        format!("the end of the file ({} bytes)", self.limit)
                    }
                ))
            })?;
        let slice = usize::try_from(self.pos)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.bytes.get(s..e))
            .ok_or(FormatError::GgufTruncated {
                needed: end,
                given: u64::try_from(self.bytes.len()).unwrap_or(u64::MAX),
            })?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let n = u64::try_from(N).unwrap_or(u64::MAX);
        let s = self.take(n, what)?;
        s.first_chunk::<N>()
            .copied()
            .ok_or_else(|| invalid(format!("{what}: a short read")))
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `each` bytes can follow; the
    /// capacity worth reserving for them.
    fn room_for(&self, count: u64, each: u64, what: &str) -> Result<usize, FormatError> {
        let bytes = count.checked_mul(each);
        let fits = bytes
            .and_then(|b| self.pos.checked_add(b))
            .is_some_and(|end| end <= self.limit);
        if !fits {
            return Err(invalid(format!(
                "{what} claims {count} entries at byte {}, more than the {} bytes left could hold",
                self.pos,
                self.limit.saturating_sub(self.pos)
            )));
        }
        // Reserve only for what the given bytes could hold.
        let given = u64::try_from(self.bytes.len())
            .unwrap_or(u64::MAX)
            .saturating_sub(self.pos);
        Ok(usize::try_from(count.min(given.checked_div(each).unwrap_or(0))).unwrap_or(0))
    }

    fn string(&mut self, what: &str, max: u64) -> Result<String, FormatError> {
        let len = self.u64(what)?;
        if len > max {
            return Err(invalid(format!(
                "{what} at byte {} is {len} bytes long, over the {max}-byte limit",
                self.pos
            )));
        }
        let at = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| invalid(format!("{what} at byte {at} is not UTF-8")))
    }

    fn value(&mut self, ty: u32, depth: u32, key: &str) -> Result<GgufValue, FormatError> {
        let what = "a metadata value";
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => GgufValue::Bool(self.bool(key)?),
            8 => GgufValue::String(self.string("a metadata string", MAX_HEADER_BYTES)?),
            9 => GgufValue::Array(self.array_value(depth, key)?),
            10 => GgufValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            _ => return Err(bad_type(ty, key)),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool, FormatError> {
        match self.array::<1>("a metadata bool")? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(invalid(format!(
                "metadata `{}` holds a bool of value {b}",
                escape_for_log(key, 80)
            ))),
        }
    }

    fn array_value(&mut self, depth: u32, key: &str) -> Result<GgufArray, FormatError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(invalid(format!(
                "metadata `{}` nests arrays deeper than {MAX_ARRAY_DEPTH}",
                escape_for_log(key, 80)
            )));
        }
        let ty = self.u32("an array type")?;
        let count = self.u64("an array length")?;
        let each = min_size(ty).ok_or_else(|| bad_type(ty, key))?;
        let cap = self.room_for(count, each, "an array")?;
        macro_rules! fixed {
            ($variant:ident, $t:ty, $n:literal) => {{
                let mut v = Vec::with_capacity(cap);
                for _ in 0..count {
                    v.push(<$t>::from_le_bytes(self.array::<$n>("an array element")?));
                }
                GgufArray::$variant(v)
            }};
        }
        Ok(match ty {
            0 => fixed!(U8, u8, 1),
            1 => fixed!(I8, i8, 1),
            2 => fixed!(U16, u16, 2),
            3 => fixed!(I16, i16, 2),
            4 => fixed!(U32, u32, 4),
            5 => fixed!(I32, i32, 4),
            6 => fixed!(F32, f32, 4),
            10 => fixed!(U64, u64, 8),
            11 => fixed!(I64, i64, 8),
            12 => fixed!(F64, f64, 8),
            7 => {
                let mut v = Vec::with_capacity(cap);
                for _ in 0..count {
                    v.push(self.bool(key)?);
                }
                GgufArray::Bool(v)
            }
            8 => {
                let mut v = Vec::with_capacity(cap);
                for _ in 0..count {
                    v.push(self.string("a metadata string", MAX_HEADER_BYTES)?);
                }
                GgufArray::String(v)
            }
            9 => {
                let mut v = Vec::with_capacity(cap);
                let inner = depth.saturating_add(1);
                for _ in 0..count {
                    v.push(self.array_value(inner, key)?);
                }
                GgufArray::Array(v)
            }
            _ => return Err(bad_type(ty, key)),
        })
    }
}

fn bad_type(ty: u32, key: &str) -> FormatError {
    invalid(format!(
        "metadata `{}` has an unknown value type {ty}",
        escape_for_log(key, 80)
    ))
}

fn align_up(n: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    n.checked_add(mask).map(|m| m & !mask)
}

impl GgufHeader {
    /// Parses the header at the start of `bytes` (the file's first bytes).
    /// `file_len`, when known, is the file's length: the header and every
    /// tensor must lie inside it.
    ///
    /// # Errors
    ///
    /// [`FormatError::GgufTruncated`] when the header goes on past `bytes`
    /// (within the file and the limit): read at least `needed` bytes and
    /// parse again. [`FormatError::Gguf`] when the file is not a GGUF file
    /// this crate reads: wrong magic or version, a count, length or offset
    /// that does not fit in the file or the limit, an unknown value or ggml
    /// type, a key or tensor name given twice, a tensor whose shape does not
    /// fill whole blocks, a misaligned or overlapping tensor, a bad
    /// `general.alignment`.
    pub fn parse(bytes: &[u8], file_len: Option<u64>) -> Result<Self, FormatError> {
        let limit = file_len.map_or(MAX_HEADER_BYTES, |n| n.min(MAX_HEADER_BYTES));
        let mut c = Cursor {
            bytes,
            pos: 0,
            limit,
        };
        let magic = c.array::<4>("the magic")?;
        if &magic != MAGIC {
            return Err(invalid("the file does not start with the magic `GGUF`"));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(invalid(format!(
                "version {version} is not one this reader knows (2 or 3)"
            )));
        }
        let tensor_count = c.u64("the tensor count")?;
        let kv_count = c.u64("the metadata count")?;
        // A metadata entry takes at least a key length, a type and one
        // byte; a tensor info at least a name length, a dimension count, a
        // type and an offset.
        let cap = c.room_for(kv_count, 13, "the metadata count")?;
        let mut metadata = Vec::with_capacity(cap);
        let mut keys = HashSet::with_capacity(cap);
        for _ in 0..kv_count {
            let key = c.string("a metadata key", u64::from(u16::MAX))?;
            let ty = c.u32("a metadata type")?;
            let value = c.value(ty, 0, &key)?;
            if !keys.insert(key.clone()) {
                return Err(invalid(format!(
                    "metadata `{}` is given twice",
                    escape_for_log(&key, 80)
                )));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, GgufValue::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some(_) => return Err(invalid("general.alignment is not a u32 power of two")),
        };
        let cap = c.room_for(tensor_count, 24, "the tensor count")?;
        let mut infos = Vec::with_capacity(cap);
        let mut names = HashSet::with_capacity(cap);
        for _ in 0..tensor_count {
            let name = c.string("a tensor name", MAX_NAME_BYTES)?;
            let shown = || escape_for_log(&name, 80);
            let n_dims = c.u32("a dimension count")?;
            if n_dims > MAX_DIMS {
                return Err(invalid(format!(
                    "tensor `{}` has {n_dims} dimensions, more than {MAX_DIMS}",
                    shown()
                )));
            }
            let mut shape = Vec::with_capacity(4);
            for _ in 0..n_dims {
                shape.push(c.u64("a dimension")?);
            }
            let ty = c.u32("a ggml type")?;
            let offset = c.u64("a tensor offset")?;
            let dtype = Dtype::from_ggml(ty).ok_or_else(|| {
                invalid(format!(
                    "tensor `{}` has an unknown ggml type {ty}",
                    shown()
                ))
            })?;
            let elements = shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| i64::try_from(n).is_ok());
            let first_ok = shape
                .first()
                .is_none_or(|&d| d.checked_rem(dtype.block_elements()) == Some(0));
            let len = elements
                .filter(|_| first_ok)
                .and_then(|n| dtype.bytes_for(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "tensor `{}`: shape {shape:?} is not a whole number of {dtype} blocks",
                        shown()
                    ))
                })?;
            if offset.checked_rem(alignment) != Some(0) {
                return Err(invalid(format!(
                    "tensor `{}` has offset {offset}, not a multiple of the alignment {alignment}",
                    shown()
                )));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("tensor `{}` is given twice", shown())));
            }
            infos.push((name, dtype, shape, offset, len));
        }
        let header_end = c.pos;
        let data_start = align_up(header_end, alignment)
            .ok_or_else(|| invalid("the data section starts past the largest offset"))?;
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dtype, shape, offset, len) in infos {
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(len));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(invalid(format!(
                    "tensor `{}` has an offset out of range",
                    escape_for_log(&name, 80)
                )));
            };
            if let Some(n) = file_len {
                if end > n {
                    return Err(invalid(format!(
                        "tensor `{}` ends at byte {end}, past the end of the file ({n} bytes)",
                        escape_for_log(&name, 80)
                    )));
                }
            }
            tensors.push(TensorInfo {
                name,
                dtype,
                shape,
                data: start..end,
            });
        }
        let table = TensorTable::new(Format::Gguf, tensors, data_start);
        // In order, each tensor begins where the one before ended, padded
        // to the alignment: no overlap, and no hidden bytes between them.
        let mut end = data_start;
        for t in table.tensors() {
            let expected = align_up(end, alignment).unwrap_or(u64::MAX);
            if t.data.start != expected {
                let what = if t.data.start > expected {
                    "leaves a gap after"
                } else {
                    "overlaps"
                };
                return Err(invalid(format!(
                    "tensor `{}` {what} the bytes before it (data offset {}, expected {})",
                    escape_for_log(&t.name, 80),
                    t.data.start.saturating_sub(data_start),
                    expected.saturating_sub(data_start)
                )));
            }
            end = t.data.end;
        }
        if let Some(n) = file_len {
            // Nothing after the last tensor but its padding.
            let last = if table.tensors().is_empty() {
                header_end
            } else {
                end
            };
            let padded = align_up(last, alignment).unwrap_or(u64::MAX);
            if n > padded {
                return Err(invalid(format!(
                    "the file has {} bytes after its last tensor",
                    n.saturating_sub(last)
                )));
            }
        }
        Ok(Self {
            version,
            metadata,
            alignment,
            table,
        })
    }

    /// Parses the header from the start of a file, reading it through
    /// `read_prefix(n)` (which returns the file's first `n` bytes, or all of
    /// them when the file is shorter): a first read of `first` bytes, then
    /// as many as the header turns out to need (at least doubling each
    /// time, so a header of `H` bytes takes about `log2(H / first)` reads),
    /// never more than the file or [`MAX_HEADER_BYTES`] plus the alignment.
    ///
    /// # Errors
    ///
    /// As [`Self::parse`] (never [`FormatError::GgufTruncated`]); whatever
    /// `read_prefix` returns, converted.
    pub fn read_with<E: From<FormatError>>(
        file_len: u64,
        first: u64,
        mut read_prefix: impl FnMut(u64) -> Result<Vec<u8>, E>,
    ) -> Result<Self, E> {
        let want = first.clamp(1, file_len.clamp(1, MAX_HEADER_BYTES));
        let bytes = read_prefix(want)?;
        Self::read_from_prefix(file_len, bytes, read_prefix)
    }

    /// As [`Self::read_with`], starting from `bytes`, the file's first bytes
    /// already read.
    ///
    /// # Errors
    ///
    /// As [`Self::read_with`].
    pub fn read_from_prefix<E: From<FormatError>>(
        file_len: u64,
        mut bytes: Vec<u8>,
        mut read_prefix: impl FnMut(u64) -> Result<Vec<u8>, E>,
    ) -> Result<Self, E> {
        let cap = file_len.min(MAX_HEADER_BYTES);
        // Doubling from 1 reaches 2^27 > 10^8 in 27 steps: the bound is
        // only a guard against a reader that returns fewer bytes than asked.
        for _ in 0..64 {
            match Self::parse(&bytes, Some(file_len)) {
                Err(FormatError::GgufTruncated { needed, given }) => {
                    let next = needed.max(given.saturating_mul(2)).min(cap);
                    if next <= given {
                        return Err(invalid(format!(
                            "the header needs {needed} bytes, only {given} could be read"
                        ))
                        .into());
                    }
                    bytes = read_prefix(next)?;
                }
                other => return other.map_err(E::from),
            }
        }
        Err(invalid("the header could not be read in 64 attempts").into())
    }

    /// candle's view of the same header (`candle_core::quantized::gguf_file::Content`,
    /// what candle's quantized models are built from), read by candle's
    /// reader from `bytes` (the file's first bytes, at least the header)
    /// only after this crate's bounded pass accepted them, so no count or
    /// length in them can make candle allocate more than the bytes hold.
    ///
    /// # Errors
    ///
    /// As [`Self::parse`]; [`FormatError::Gguf`] when candle's reader
    /// refuses what the bounded pass accepted.
    #[cfg(feature = "candle")]
    pub fn candle_content(
        bytes: &[u8],
        file_len: u64,
    ) -> Result<candle_core::quantized::gguf_file::Content, FormatError> {
        let header = Self::parse(bytes, Some(file_len))?;
        let end = usize::try_from(header.data_start())
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let mut reader = std::io::Cursor::new(bytes.get(..end).unwrap_or_default());
        candle_core::quantized::gguf_file::Content::read(&mut reader).map_err(|e| {
            invalid(format!(
                "candle's reader refused it: {}",
                escape_for_log(&e.to_string(), 200)
            ))
        })
    }

    /// The value of a metadata key.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture` (e.g. `llama`).
    #[must_use]
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(GgufValue::as_str)
    }

    /// A hyperparameter of the architecture: `ARCH.NAME` as an integer
    /// (e.g. `block_count`, `context_length`, `embedding_length`).
    #[must_use]
    pub fn hyperparameter(&self, name: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.{name}"))
            .and_then(GgufValue::as_u64)
    }

    /// The tokenizer's vocabulary (`tokenizer.ggml.tokens`).
    #[must_use]
    pub fn tokens(&self) -> Option<&[String]> {
        match self.get("tokenizer.ggml.tokens")?.as_array()? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// The tokenizer's BPE merges (`tokenizer.ggml.merges`).
    #[must_use]
    pub fn merges(&self) -> Option<&[String]> {
        match self.get("tokenizer.ggml.merges")?.as_array()? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// A special token's id: `bos`, `eos`, `unknown`, `padding`, ...
    /// (`tokenizer.ggml.KIND_token_id`).
    #[must_use]
    pub fn special_token(&self, kind: &str) -> Option<u64> {
        self.get(&format!("tokenizer.ggml.{kind}_token_id"))
            .and_then(GgufValue::as_u64)
    }

    /// The chat template (`tokenizer.chat_template`), a Jinja template.
    #[must_use]
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
    }

    /// Which part of a split model this file is: `(split.no, split.count)`,
    /// `split.no` counting from 0; `None` for a file that is not split.
    #[must_use]
    pub fn split(&self) -> Option<(u64, u64)> {
        let no = self.get("split.no")?.as_u64()?;
        let count = self.get("split.count")?.as_u64()?;
        Some((no, count))
    }

    /// Bytes before the data section: header and padding.
    #[must_use]
    pub fn data_start(&self) -> u64 {
        self.table.data_start()
    }
}
