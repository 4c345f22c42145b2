//! A shard's tensor table (when it holds a safetensors or GGUF file) and
//! typed views of its tensors through a lease.
//!
//! The table is parsed once per shard from the shard's own memory: the bytes
//! holding the header are read, checked leaf by leaf against the seal, and
//! parsed from that same read by the workspace's one owner of model formats
//! (`vram_format`: bounded, panic-free, each format's rules: for
//! safetensors the header limit, no name twice, known dtypes, shapes that
//! account for exactly their bytes, offsets without gaps or overlaps that
//! end at the end of the shard; for GGUF every count, string and array
//! length, tensor offset and the alignment checked against the bytes
//! present). So a hostile header never yields a view that reads outside its
//! tensor, and a file gets the same verdict here as in every other reader
//! of the workspace. Nothing is allocated from a header before its lengths
//! are checked.

use crate::VramError;
use std::fmt;
use std::ops::Range;
use vram_core::{DeviceMemory, MemoryAccess};
use vram_format::{Dtype, FormatError, GgufHeader, TensorInfo};
use vram_validation::escape_for_log;

/// The most tensors an integrity error names.
pub const MAX_NAMED_TENSORS: usize = 16;

/// The tensors of one model file (safetensors or GGUF), by name.
#[derive(Debug)]
pub(crate) struct TensorTable {
    header: vram_format::ModelHeader,
    shard_id: String,
}

/// Why reading a table stopped: the shard's bytes (a failed verification:
/// the lease is refused) or the file's header (kept as the reason).
enum ReadError {
    Shard(VramError),
    Format(FormatError),
}

impl From<FormatError> for ReadError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl TensorTable {
    /// Reads the table of a shard of `len` bytes through `read_prefix(n)`
    /// (at least the shard's first `n` bytes, verified against the seal).
    /// The outer `Err` is a failed read (a corrupt header refuses the
    /// lease); the inner one says why the shard holds no usable model file.
    pub(crate) fn read(
        len: u64,
        shard_id: &str,
        mut read_prefix: impl FnMut(u64) -> Result<Vec<u8>, VramError>,
    ) -> Result<Result<Self, String>, VramError> {
        if len < 8 {
            // The length is a sealed field, checked with the seal.
            return Ok(Err("shorter than a safetensors length prefix".into()));
        }
        match vram_format::read_header(len, |n| read_prefix(n).map_err(ReadError::Shard)) {
            Ok(header) => Ok(Ok(Self {
                header,
                shard_id: shard_id.to_owned(),
            })),
            Err(ReadError::Format(e)) => Ok(Err(e.to_string())),
            Err(ReadError::Shard(e)) => Err(e),
        }
    }

    /// Parses and checks the header at the start of `bytes` (the first
    /// bytes of a file of `file_len` bytes); `Err` says why the file is not
    /// usable (untrusted names escaped).
    #[cfg(test)]
    pub(crate) fn parse(bytes: &[u8], file_len: u64, shard_id: &str) -> Result<Self, String> {
        let read = |n: u64| {
            let n = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
            Ok(bytes.get(..n).unwrap_or_default().to_vec())
        };
        Self::read(file_len, shard_id, read).map_err(|e| e.to_string())?
    }

    fn table(&self) -> &vram_format::TensorTable {
        self.header.table()
    }

    /// The GGUF header, for a shard holding a GGUF file.
    pub(crate) fn gguf(&self) -> Option<&GgufHeader> {
        self.header.gguf()
    }

    /// The tensor of that name.
    pub(crate) fn get(&self, name: &str) -> Result<&TensorInfo, VramError> {
        self.table()
            .get(name)
            .ok_or_else(|| VramError::UnknownTensor {
                shard_id: self.shard_id.clone(),
                name: escape_for_log(name, 128),
            })
    }

    /// Tensor names in file order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.table().names()
    }

    /// What the corrupt ranges touch, in words: `NAME, bytes A..B of N` per
    /// tensor (offsets inside it), `the safetensors header` (or `the GGUF
    /// header`); at most [`MAX_NAMED_TENSORS`] entries, then `and K more`.
    pub(crate) fn describe(&self, ranges: &[vram_crypto::CorruptRange]) -> Vec<String> {
        let mut out = Vec::new();
        let mut more = 0usize;
        for r in ranges {
            let mut push = |text: String| {
                if out.len() < MAX_NAMED_TENSORS {
                    out.push(text);
                } else {
                    more = more.saturating_add(1);
                }
            };
            if r.start < self.table().data_start() {
                push(format!("the {} header", self.table().format()));
            }
            for (name, inside, len) in self.locate(r.start..r.end) {
                push(format!(
                    "{}, bytes {}..{} of {len}",
                    escape_for_log(name, 128),
                    inside.start,
                    inside.end
                ));
            }
        }
        if more > 0 {
            out.push(format!("and {more} more"));
        }
        out
    }

    /// The tensors a byte range of the file touches, each with the part of
    /// its own bytes that lies in the range: `(name, start..end, tensor_len)`.
    pub(crate) fn locate(&self, range: Range<u64>) -> Vec<(&str, Range<u64>, u64)> {
        self.table()
            .locate(range)
            .map(|(t, inside)| (t.name.as_str(), inside, t.len()))
            .collect()
    }
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum TensorMemory<'a> {
    /// On the host (the mock device): the bytes.
    Host(&'a [u8]),
    /// On a CUDA device: the address range.
    Device(DeviceMemory),
}

fn out_of_range(info: &TensorInfo, device: u32) -> VramError {
    VramError::Device {
        device,
        source: vram_core::DeviceError::OutOfBounds {
            offset: info.data.start,
            len: info.data.end.saturating_sub(info.data.start),
            buffer_len: 0,
        },
    }
}

/// Every tensor of a leased shard, over one access to its memory: what a
/// model builds its weights from (see [`Lease::tensors`](crate::Lease::tensors)).
/// Borrows the lease (`'l`): it, and every view it gives, cannot be used
/// once the lease is dropped. On the mock the shard's bytes stay
/// read-locked while this lives.
#[derive(Debug)]
pub struct Tensors<'l> {
    table: &'l TensorTable,
    memory: MemoryAccess<'l>,
    device: u32,
}

impl<'l> Tensors<'l> {
    pub(crate) fn new(table: &'l TensorTable, memory: MemoryAccess<'l>, device: u32) -> Self {
        Self {
            table,
            memory,
            device,
        }
    }

    /// The tensor called `name`.
    ///
    /// # Errors
    /// [`VramError::UnknownTensor`] when there is none of that name.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>, VramError> {
        let info = self.table.get(name)?;
        let len = info.data.end.saturating_sub(info.data.start);
        let memory = match &self.memory {
            MemoryAccess::Host(all) => {
                let start = usize::try_from(info.data.start).ok();
                let end = usize::try_from(info.data.end).ok();
                let bytes = start
                    .zip(end)
                    .and_then(|(start, end)| all.get(start..end))
                    .ok_or_else(|| out_of_range(info, self.device))?;
                TensorMemory::Host(bytes)
            }
            MemoryAccess::Device(mem) => TensorMemory::Device(
                mem.slice(info.data.start, len)
                    .ok_or_else(|| out_of_range(info, self.device))?,
            ),
            _ => {
                return Err(VramError::Device {
                    device: self.device,
                    source: vram_core::DeviceError::Unsupported {
                        operation: "tensor views of this device's memory",
                    },
                })
            }
        };
        Ok(TensorView {
            name: &info.name,
            dtype: info.dtype,
            shape: &info.shape,
            memory,
        })
    }

    /// Tensor names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &'l str> {
        self.table.names()
    }

    /// For a GGUF shard, its header: the metadata that changes what the
    /// model computes (vocabulary, merges, special tokens, chat template,
    /// hyperparameters), read from the sealed header leaves, each checked
    /// against the seal before it was parsed. `None` for a safetensors
    /// shard.
    #[must_use]
    pub fn gguf(&self) -> Option<&'l GgufHeader> {
        self.table.gguf()
    }
}

/// One tensor: name, dtype, shape and memory. Through a lease, borrowed
/// from [`Tensors`]; over bytes the caller holds itself (a model file read
/// into host memory), from [`TensorView::host`]. `Debug` shows its dtype,
/// shape and length, never its bytes or address.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [u64],
    memory: TensorMemory<'a>,
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorView")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("len", &self.len())
            .finish()
    }
}

impl<'a> TensorView<'a> {
    /// A view of a tensor whose bytes the caller holds in host memory (a
    /// model file read whole, not a lease): `name`, `dtype` and `shape` as
    /// the file's tensor table gives them. Nothing is checked here; a model
    /// checks the shape against its config and the length against dtype and
    /// shape when it builds a tensor from the view.
    #[must_use]
    pub fn host(name: &'a str, dtype: Dtype, shape: &'a [u64], bytes: &'a [u8]) -> Self {
        Self {
            name,
            dtype,
            shape,
            memory: TensorMemory::Host(bytes),
        }
    }

    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self.memory {
            TensorMemory::Host(b) => u64::try_from(b.len()).unwrap_or(u64::MAX),
            TensorMemory::Device(m) => m.len(),
        }
    }

    /// Whether it has no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's name (untrusted text from the file's header: escape it
    /// before showing it).
    #[must_use]
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Its dtype's name: safetensors' (`F32`, `F16`, `BF16`) or ggml's
    /// (`Q4_1`, `Q6_K`).
    #[must_use]
    pub fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// Its element type, with its block size (quantized GGUF types store
    /// 32 or 256 elements per block).
    #[must_use]
    pub fn element_type(&self) -> Dtype {
        self.dtype
    }

    /// Its dimensions.
    #[must_use]
    pub fn shape(&self) -> &'a [u64] {
        self.shape
    }

    /// Where its bytes are.
    #[must_use]
    pub fn memory(&self) -> TensorMemory<'a> {
        self.memory
    }

    /// Its bytes, on a device whose memory is host memory (the mock).
    #[must_use]
    pub fn host_bytes(&self) -> Option<&'a [u8]> {
        match self.memory {
            TensorMemory::Host(b) => Some(b),
            TensorMemory::Device(_) => None,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header.as_bytes());
        f.resize(f.len() + data_len, 0);
        f
    }

    fn parse(header: &str, data_len: usize) -> Result<TensorTable, String> {
        let f = file(header, data_len);
        TensorTable::parse(&f, f.len() as u64, "s")
    }

    #[test]
    fn a_valid_header_gives_a_table() {
        let t = parse(
            r#"{"b":{"dtype":"F16","shape":[2,2],"data_offsets":[24,32]},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"x":"y"}}"#,
            32,
        )
        .unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["a", "b"]);
        let a = t.get("a").unwrap();
        assert_eq!(
            (a.dtype.name(), a.shape.as_slice()),
            ("F32", &[2u64, 3][..])
        );
        let unknown = t.get("c\u{1b}[31m").unwrap_err().to_string();
        assert!(!unknown.contains('\u{1b}'), "{unknown}");
        let start = a.data.start;
        assert_eq!(
            t.locate(start + 20..start + 28),
            vec![("a", 20..24, 24), ("b", 0..4, 8)]
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        for (header, data, why) in [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
                "overlaps",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                16,
                "twice",
            ),
            (
                r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                "unknown dtype",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                "does not fill",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
                8,
                "does not fill",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#,
                8,
                "",
            ),
            ("[1,2]", 0, "JSON object"),
        ] {
            let e = parse(header, data).err().unwrap_or_default();
            assert!(!e.is_empty() && e.contains(why), "{header}: {e}");
        }
        let mut short = 9u64.to_le_bytes().to_vec();
        short.resize(16, b' ');
        let short = TensorTable::parse(&short, 16, "s").unwrap_err();
        assert!(
            short.contains("does not fit in a file of 16 bytes"),
            "{short}"
        );
        let huge = TensorTable::parse(&u64::MAX.to_le_bytes(), 8, "s").unwrap_err();
        assert!(huge.contains("over the 100000000-byte limit"), "{huge}");
    }
}
