//! A safetensors file read into host memory: the [`TensorSource`] that needs
//! no device, and the reference the sealed sources are compared with.
//!
//! The header is untrusted. It is read and checked with the `safetensors`
//! crate (header length capped, JSON, known dtypes, offsets contiguous
//! and non-overlapping, each tensor's size equal to its dtype times its
//! shape, the data exactly filling the file) *before* the data is read or
//! any memory is allocated for it; the data is then read once, and parsed
//! again from the bytes kept, so the tensor table describes exactly those.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use safetensors::tensor::Metadata;
use safetensors::SafeTensors;

use crate::error::{shown, shown_path};
use crate::{Dtype, EmbedError, TensorSource, TensorView};

/// Largest header accepted: 100,000,000 bytes, the `safetensors` crate's own
/// limit.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes before the JSON header: its length, `u64` little-endian.
const LEN_PREFIX: u64 = 8;

/// One tensor of the table.
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// Absolute offsets in `bytes`.
    range: Range<usize>,
}

/// A whole safetensors file in host memory, with its checked tensor table.
pub struct SafetensorsFile {
    bytes: Vec<u8>,
    tensors: HashMap<String, Entry>,
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("len", &self.bytes.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Reads the file at `path`.
    ///
    /// # Errors
    ///
    /// [`EmbedError::Io`] when it cannot be opened or read;
    /// [`EmbedError::Safetensors`] when it is not a valid safetensors file
    /// (see [`Self::from_reader`]).
    pub fn read(path: &Path) -> Result<Self, EmbedError> {
        let file = std::fs::File::open(path).map_err(|e| EmbedError::io(path, &e))?;
        let len = file.metadata().map_err(|e| EmbedError::io(path, &e))?.len();
        Self::from_reader(std::io::BufReader::new(file), len, &shown_path(path))
    }

    /// Reads a safetensors file of `total_len` bytes from `reader`; `origin`
    /// names it in errors. The header is read and checked first; only then
    /// is memory allocated for the data (`total_len` bytes) and the data
    /// read. A hostile header costs at most its own bytes, which are capped
    /// at [`MAX_HEADER_BYTES`] and at `total_len`.
    ///
    /// # Errors
    ///
    /// [`EmbedError::Safetensors`] when the header length is over the cap or
    /// the file, the header is not valid JSON of known dtypes, offsets
    /// overlap, leave gaps, disagree with dtype and shape or do not end at
    /// the end of the file, or the reader yields more or fewer than
    /// `total_len` bytes.
    pub fn from_reader(
        mut reader: impl Read,
        total_len: u64,
        origin: &str,
    ) -> Result<Self, EmbedError> {
        let invalid = |reason: String| EmbedError::Safetensors {
            path: origin.to_owned(),
            reason: shown(&reason),
        };
        let mut prefix = [0u8; 8];
        reader.read_exact(&mut prefix).map_err(|e| {
            invalid(format!(
                "reading the 8-byte header length: {}",
                std::io::Error::from(e.kind())
            ))
        })?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len > MAX_HEADER_BYTES {
            return Err(invalid(format!(
                "a header of {header_len} bytes is over the {MAX_HEADER_BYTES}-byte limit"
            )));
        }
        let data_start = LEN_PREFIX.saturating_add(header_len);
        if data_start > total_len {
            return Err(invalid(format!(
                "a header of {header_len} bytes does not fit in a file of {total_len} bytes"
            )));
        }
        // Grows as bytes arrive: bounded by the cap and by the file.
        let mut header = Vec::new();
        reader
            .by_ref()
            .take(header_len)
            .read_to_end(&mut header)
            .map_err(|e| invalid(format!("reading the header: {}", e.kind())))?;
        if u64::try_from(header.len()).ok() != Some(header_len) {
            return Err(invalid(format!(
                "the header of {header_len} bytes is cut short"
            )));
        }
        // The safetensors crate's own checks: JSON, dtypes, offsets in order
        // without gaps or overlaps, sizes that match dtype times shape.
        let metadata: Metadata =
            serde_json::from_slice(&header).map_err(|e| invalid(format!("invalid header: {e}")))?;
        let data_len = u64::try_from(metadata.data_len()).unwrap_or(u64::MAX);
        let file_data = total_len.saturating_sub(data_start);
        if data_len != file_data {
            return Err(invalid(format!(
                "the tensors cover {data_len} data bytes, the file has {file_data}"
            )));
        }
        // Checked: allocate the file and read its data.
        let total = usize::try_from(total_len)
            .map_err(|_| invalid(format!("{total_len} bytes do not fit in memory")))?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(total).map_err(|_| {
            invalid(format!(
                "cannot allocate {total_len} bytes of host memory for the file"
            ))
        })?;
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&header);
        drop(header);
        reader
            .take(file_data.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("reading the data: {}", e.kind())))?;
        if bytes.len() != total {
            return Err(invalid(format!(
                "the file changed while it was read: {} bytes, {total_len} expected",
                bytes.len()
            )));
        }
        let tensors = table(&bytes).map_err(|e| invalid(e.to_string()))?;
        tracing::debug!(
            origin,
            bytes = total_len,
            tensors = tensors.len(),
            "safetensors file read"
        );
        Ok(Self { bytes, tensors })
    }

    /// The file's length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        u64::try_from(self.bytes.len()).unwrap_or(u64::MAX)
    }

    /// Whether the file is empty (never: a valid file has at least a header).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The tensors' names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

/// The tensor table of a whole file, parsed (and validated) again by the
/// `safetensors` crate from the bytes that will be served.
fn table(bytes: &[u8]) -> Result<HashMap<String, Entry>, safetensors::SafeTensorError> {
    let (header_len, metadata) = SafeTensors::read_metadata(bytes)?;
    let data_start = header_len.saturating_add(8);
    let mut tensors = HashMap::new();
    for (name, info) in metadata.tensors() {
        let (begin, end) = info.data_offsets;
        let range = data_start.saturating_add(begin)..data_start.saturating_add(end);
        tensors.insert(
            name,
            Entry {
                dtype: info.dtype,
                shape: info.shape.clone(),
                range,
            },
        );
    }
    Ok(tensors)
}

fn dtype_of(d: safetensors::Dtype) -> Option<Dtype> {
    use safetensors::Dtype as St;
    Some(match d {
        St::U8 => Dtype::U8,
        St::U32 => Dtype::U32,
        St::I64 => Dtype::I64,
        St::F16 => Dtype::F16,
        St::BF16 => Dtype::BF16,
        St::F32 => Dtype::F32,
        St::F64 => Dtype::F64,
        _ => return None,
    })
}

impl TensorSource for SafetensorsFile {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        let entry = self
            .tensors
            .get(name)
            .ok_or_else(|| EmbedError::missing(name))?;
        let dtype = dtype_of(entry.dtype).ok_or_else(|| EmbedError::UnsupportedDtype {
            name: shown(name),
            dtype: format!("{:?}", entry.dtype),
        })?;
        // In range by construction (validated against the file's length);
        // checked anyway rather than indexed.
        let bytes = self
            .bytes
            .get(entry.range.clone())
            .ok_or_else(|| EmbedError::missing(name))?;
        Ok(TensorView::host(dtype, entry.shape.clone(), bytes))
    }
}
