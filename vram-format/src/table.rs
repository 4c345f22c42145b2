//! One tensor table for every format: which tensor lies in which bytes of
//! the file, so a corrupt byte range can be named by its tensors and a
//! tensor's bytes handed out without reading outside it.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use crate::Dtype;

/// The file formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// A safetensors file (JSON header, then contiguous tensor data).
    Safetensors,
    /// A GGUF file (llama.cpp's format: binary header with metadata, then
    /// aligned tensor data).
    Gguf,
}

impl Format {
    /// The format of a file whose first bytes are `prefix`: GGUF when it
    /// starts with the magic `GGUF`, safetensors otherwise (whose header
    /// parser then has the last word).
    #[must_use]
    pub fn sniff(prefix: &[u8]) -> Self {
        if prefix.starts_with(crate::gguf::MAGIC) {
            Self::Gguf
        } else {
            Self::Safetensors
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Safetensors => "safetensors",
            Self::Gguf => "GGUF",
        })
    }
}

/// One tensor of a model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, exactly as the header has it (untrusted: escape it
    /// before it reaches a terminal).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, as the file lists them (safetensors: outermost first;
    /// GGUF: ggml's order, innermost first).
    pub shape: Vec<u64>,
    /// Where its bytes are, as absolute offsets in the file.
    pub data: Range<u64>,
}

impl TensorInfo {
    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.data.end.saturating_sub(self.data.start)
    }

    /// Whether it has no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tensors of one model file, by name and by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorTable {
    format: Format,
    /// Ordered by where their data begins.
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    data_start: u64,
}

impl TensorTable {
    /// A table of `tensors` (names unique, checked by the format's parser)
    /// whose data begins at `data_start`.
    pub(crate) fn new(format: Format, mut tensors: Vec<TensorInfo>, data_start: u64) -> Self {
        tensors.sort_by_key(|t| (t.data.start, t.data.end));
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Self {
            format,
            tensors,
            by_name,
            data_start,
        }
    }

    /// The file's format.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// Every tensor, ordered by where its data begins.
    #[must_use]
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor of that name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// Offset of the first data byte (everything before it is header).
    #[must_use]
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The header's bytes: `0..data_start`.
    #[must_use]
    pub fn header_range(&self) -> Range<u64> {
        0..self.data_start
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// The tensors whose data overlaps `range` (absolute file offsets,
    /// half-open), in file order.
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = &TensorInfo> {
        self.tensors
            .iter()
            .filter(move |t| t.data.start < range.end && range.start < t.data.end)
    }

    /// The tensors a byte range of the file touches, each with the part of
    /// its own bytes that lies in the range: `(tensor, start..end)`, offsets
    /// inside the tensor.
    pub fn locate(&self, range: Range<u64>) -> impl Iterator<Item = (&TensorInfo, Range<u64>)> {
        self.overlapping(range.clone()).map(move |t| {
            let start = range.start.max(t.data.start).saturating_sub(t.data.start);
            let end = range.end.min(t.data.end).saturating_sub(t.data.start);
            (t, start..end)
        })
    }
}
