//! A safetensors file read into host memory: the [`TensorSource`] that needs
//! no device, and the reference the sealed sources are compared with.
//!
//! The header is untrusted. It is read and checked by the workspace's one
//! safetensors parser, `vram_format::SafetensorsHeader` (header length capped,
//! JSON, no name twice, known dtypes, offsets contiguous and
//! non-overlapping, each tensor's size equal to its dtype times its shape,
//! the data exactly filling the file: the same verdict a lease's tensor
//! table gets) *before* the data is read or any memory is allocated for it;
//! the data is then read once, after the very header bytes that were
//! parsed, so the tensor table describes exactly the bytes kept.

use std::fmt;
use std::io::Read;
use std::path::Path;

use vram_format::{FormatError, SafetensorsHeader, TensorTable};
use vram_residency::TensorView;

use crate::error::{shown, shown_path};
use crate::{EmbedError, TensorSource};

/// Largest header accepted: 100,000,000 bytes, the format's own limit
/// (`vram_format::MAX_HEADER_BYTES`).
pub const MAX_HEADER_BYTES: u64 = vram_format::MAX_HEADER_BYTES;

/// A whole safetensors file in host memory, with its checked tensor table
/// (the workspace's one [`TensorTable`], offsets absolute in the file).
pub struct SafetensorsFile {
    bytes: Vec<u8>,
    table: TensorTable,
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("len", &self.bytes.len())
            .field("tensors", &self.table.tensors().len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Reads the file at `path`, opened as a model file of its directory
    /// ([`vram_hub::open_model_file`]: a link judged by where it leads,
    /// `O_NOFOLLOW | O_NONBLOCK`, a regular file checked on the descriptor).
    ///
    /// # Errors
    ///
    /// [`EmbedError::Io`] when it cannot be opened or read;
    /// [`EmbedError::Safetensors`] when it is not a valid safetensors file
    /// (see [`Self::from_reader`]) or not a regular file inside its
    /// directory.
    pub fn read(path: &Path) -> Result<Self, EmbedError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| EmbedError::Io {
                path: shown_path(path),
                kind: std::io::ErrorKind::InvalidInput,
            })?;
        let opened = vram_hub::open_model_file(dir, name, None).map_err(|e| match e {
            vram_hub::HubError::Io { kind, .. } => EmbedError::Io {
                path: shown_path(path),
                kind,
            },
            other => EmbedError::Safetensors {
                path: shown_path(path),
                reason: other.to_string(),
            },
        })?;
        Self::from_reader(
            std::io::BufReader::new(opened.file),
            opened.len,
            &shown_path(path),
        )
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
        // The parser's reasons are in its words, untrusted names already
        // escaped: not escaped twice.
        let refused = |e: FormatError| EmbedError::Safetensors {
            path: origin.to_owned(),
            reason: match e {
                FormatError::Safetensors { reason } => reason,
                other => shown(&other.to_string()),
            },
        };
        let mut prefix = [0u8; 8];
        reader.read_exact(&mut prefix).map_err(|e| {
            invalid(format!(
                "reading the 8-byte header length: {}",
                std::io::Error::from(e.kind())
            ))
        })?;
        let data_start =
            SafetensorsHeader::data_start_from_prefix(prefix, Some(total_len)).map_err(refused)?;
        let header_len = data_start.saturating_sub(8);
        // Grows as bytes arrive: bounded by the cap and by the file.
        let mut head = prefix.to_vec();
        reader
            .by_ref()
            .take(header_len)
            .read_to_end(&mut head)
            .map_err(|e| invalid(format!("reading the header: {}", e.kind())))?;
        if u64::try_from(head.len()).ok() != Some(data_start) {
            return Err(invalid(format!(
                "the header of {header_len} bytes is cut short"
            )));
        }
        // The format's rules, the end of the data at the end of the file
        // included, checked on the bytes that will be kept.
        let table = SafetensorsHeader::parse(&head, Some(total_len))
            .map_err(refused)?
            .into_table();
        let file_data = total_len.saturating_sub(data_start);
        // Checked: allocate the file and read its data.
        let total = usize::try_from(total_len)
            .map_err(|_| invalid(format!("{total_len} bytes do not fit in memory")))?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(total).map_err(|_| {
            invalid(format!(
                "cannot allocate {total_len} bytes of host memory for the file"
            ))
        })?;
        bytes.extend_from_slice(&head);
        drop(head);
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
        tracing::debug!(
            origin,
            bytes = total_len,
            tensors = table.tensors().len(),
            "safetensors file read"
        );
        Ok(Self { bytes, table })
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

    /// The tensors' names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.table.names()
    }
}

impl TensorSource for SafetensorsFile {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        let info = self
            .table
            .get(name)
            .ok_or_else(|| EmbedError::missing(name))?;
        // In range by construction (validated against the file's length);
        // checked anyway rather than indexed.
        let bytes = usize::try_from(info.data.start)
            .ok()
            .zip(usize::try_from(info.data.end).ok())
            .and_then(|(start, end)| self.bytes.get(start..end))
            .ok_or_else(|| EmbedError::missing(name))?;
        Ok(TensorView::host(&info.name, info.dtype, &info.shape, bytes))
    }
}
