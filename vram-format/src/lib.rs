#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod dtype;
mod error;
mod gguf;
mod safetensors;
mod table;

pub use dtype::Dtype;
pub use error::FormatError;
pub use gguf::{
    GgufArray, GgufHeader, GgufValue, DEFAULT_ALIGNMENT, MAGIC as GGUF_MAGIC,
    MAX_ARRAY_DEPTH as GGUF_MAX_ARRAY_DEPTH, MAX_DIMS as GGUF_MAX_DIMS,
    MAX_HEADER_BYTES as GGUF_MAX_HEADER_BYTES, MAX_NAME_BYTES as GGUF_MAX_NAME_BYTES,
};
pub use safetensors::{dtype_bits, SafetensorsHeader, MAX_HEADER_BYTES};
pub use table::{Format, TensorInfo, TensorTable};

/// Reads the tensor table of a model file of `file_len` bytes, whichever
/// its format, through `read_prefix(n)` (the file's first `n` bytes, or all
/// of them when it is shorter): the first bytes say the format (GGUF's
/// magic, else safetensors), then only the header's bytes are read.
///
/// # Errors
///
/// [`FormatError`] when the header breaks its format's rules; whatever
/// `read_prefix` returns, converted.
pub fn read_table<E: From<FormatError>>(
    file_len: u64,
    mut read_prefix: impl FnMut(u64) -> Result<Vec<u8>, E>,
) -> Result<TensorTable, E> {
    let first = read_prefix(8.min(file_len))?;
    if Format::sniff(&first) == Format::Gguf {
        return GgufHeader::read_with(file_len, 1 << 16, read_prefix).map(|h| h.table);
    }
    let prefix = first
        .first_chunk::<8>()
        .copied()
        .ok_or_else(|| error::safetensors("shorter than the 8-byte header length"))?;
    let end = SafetensorsHeader::data_start_from_prefix(prefix, Some(file_len))?;
    let bytes = read_prefix(end)?;
    Ok(SafetensorsHeader::parse(&bytes, Some(file_len))?.into_table())
}
