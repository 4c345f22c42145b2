#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod dtype;
mod error;
mod gguf;
mod safetensors;
pub mod sentence_transformers;
mod split;
mod table;

pub use dtype::Dtype;
pub use error::FormatError;
pub use gguf::{
    GgufArray, GgufHeader, GgufValue, DEFAULT_ALIGNMENT, MAGIC as GGUF_MAGIC,
    MAX_ARRAY_DEPTH as GGUF_MAX_ARRAY_DEPTH, MAX_DIMS as GGUF_MAX_DIMS,
    MAX_HEADER_BYTES as GGUF_MAX_HEADER_BYTES, MAX_NAME_BYTES as GGUF_MAX_NAME_BYTES,
};
pub use safetensors::{dtype_bits, SafetensorsHeader, MAX_HEADER_BYTES};
pub use split::{gguf_model_files, gguf_parts_of, is_gguf_name, split_part, MAX_SPLIT_PARTS};
pub use table::{Format, TensorInfo, TensorTable};

/// Bytes read first by [`read_table`]: most safetensors headers and the
/// start of a GGUF header.
pub const FIRST_READ_BYTES: u64 = 1 << 16;

/// A model file's parsed header, whichever its format.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ModelHeader {
    /// A safetensors file: its tensor table.
    Safetensors(TensorTable),
    /// A GGUF file: its metadata and tensor table.
    Gguf(Box<GgufHeader>),
}

impl ModelHeader {
    /// The tensor table.
    #[must_use]
    pub fn table(&self) -> &TensorTable {
        match self {
            Self::Safetensors(t) => t,
            Self::Gguf(h) => &h.table,
        }
    }

    /// The GGUF header (metadata: vocabulary, merges, special tokens, chat
    /// template, hyperparameters), for a GGUF file.
    #[must_use]
    pub fn gguf(&self) -> Option<&GgufHeader> {
        match self {
            Self::Safetensors(_) => None,
            Self::Gguf(h) => Some(h),
        }
    }
}

/// Reads the tensor table of a model file of `file_len` bytes, whichever
/// its format: [`read_header`]'s table.
///
/// # Errors
///
/// As [`read_header`].
pub fn read_table<E: From<FormatError>>(
    file_len: u64,
    read_prefix: impl FnMut(u64) -> Result<Vec<u8>, E>,
) -> Result<TensorTable, E> {
    read_header(file_len, read_prefix).map(|h| match h {
        ModelHeader::Safetensors(t) => t,
        ModelHeader::Gguf(h) => h.table,
    })
}

/// Reads the header of a model file of `file_len` bytes, whichever its
/// format, through `read_prefix(n)` (the file's first `n` bytes or more,
/// or all of them when it is shorter): a first read of up to
/// [`FIRST_READ_BYTES`] says the format (GGUF's magic, else safetensors),
/// then only as much as the header needs is read.
///
/// # Errors
///
/// [`FormatError`] when the header breaks its format's rules; whatever
/// `read_prefix` returns, converted.
pub fn read_header<E: From<FormatError>>(
    file_len: u64,
    mut read_prefix: impl FnMut(u64) -> Result<Vec<u8>, E>,
) -> Result<ModelHeader, E> {
    let first = read_prefix(FIRST_READ_BYTES.min(file_len))?;
    if Format::sniff(&first) == Format::Gguf {
        return GgufHeader::read_from_prefix(file_len, first, read_prefix)
            .map(|h| ModelHeader::Gguf(Box::new(h)));
    }
    let prefix = first
        .first_chunk::<8>()
        .copied()
        .ok_or_else(|| error::safetensors("shorter than the 8-byte header length"))?;
    let end = SafetensorsHeader::data_start_from_prefix(prefix, Some(file_len))?;
    let bytes = if u64::try_from(first.len()).is_ok_and(|n| n >= end) {
        first
    } else {
        read_prefix(end)?
    };
    Ok(ModelHeader::Safetensors(
        SafetensorsHeader::parse(&bytes, Some(file_len))?.into_table(),
    ))
}
