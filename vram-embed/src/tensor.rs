//! The seam between where weights live and the model that computes on them.

use std::fmt;

use crate::EmbedError;

/// Element types a [`TensorView`] may hold: the safetensors types candle's
/// CPU backend computes with. Named as safetensors names them (`F32`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// Unsigned 8-bit integers.
    U8,
    /// Unsigned 32-bit integers.
    U32,
    /// Signed 64-bit integers.
    I64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl Dtype {
    /// The dtype of a safetensors header's spelling (`"F32"`, `"BF16"`, ...);
    /// `None` for one this crate does not compute with.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "U8" => Self::U8,
            "U32" => Self::U32,
            "I64" => Self::I64,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "F32" => Self::F32,
            "F64" => Self::F64,
            _ => return None,
        })
    }

    /// The safetensors spelling.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "U8",
            Self::U32 => "U32",
            Self::I64 => "I64",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::F32 => "F32",
            Self::F64 => "F64",
        }
    }

    /// Bytes per element.
    #[must_use]
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F16 | Self::BF16 => 2,
            Self::U32 | Self::F32 => 4,
            Self::I64 | Self::F64 => 8,
        }
    }

    pub(crate) fn to_candle(self) -> candle_core::DType {
        use candle_core::DType;
        match self {
            Self::U8 => DType::U8,
            Self::U32 => DType::U32,
            Self::I64 => DType::I64,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::F32 => DType::F32,
            Self::F64 => DType::F64,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor as a [`TensorSource`] hands it out: element type, shape
/// (row-major, little-endian elements) and the bytes, borrowed from the
/// source for as long as the source is borrowed.
///
/// Today the bytes are in host memory. A source over CUDA device memory
/// will hand out a device address instead (a field or variant added then;
/// the struct is `#[non_exhaustive]` for that), and like the bytes it will
/// never appear in `Debug`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TensorView<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// The tensor's bytes: `shape` elements of `dtype`, little-endian.
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view of bytes in host memory. Nothing is checked here: the model
    /// checks the shape against its config and the length against dtype and
    /// shape when it builds a tensor from the view.
    #[must_use]
    pub fn host(dtype: Dtype, shape: Vec<usize>, bytes: &'a [u8]) -> Self {
        Self {
            dtype,
            shape,
            bytes,
        }
    }

    /// Bytes that `dtype` and `shape` need; `None` when that overflows.
    #[must_use]
    pub fn expected_len(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size_in_bytes(), |n, d| n.checked_mul(*d))
    }
}

impl fmt::Debug for TensorView<'_> {
    // The bytes (and, on a device, the address) stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorView")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Where a model's weights come from, one named tensor at a time.
///
/// The model is built from a source *per request*: the views it hands out
/// are borrowed from `&self`, so nothing computed on them outlives the
/// borrow, and a source that checks something before it is handed out (a
/// verified lease on sealed device memory) covers every byte a request
/// computes on. Implementations: [`crate::SafetensorsFile`] (a file read into
/// host memory); later, a verified lease.
pub trait TensorSource {
    /// The tensor called `name` (safetensors naming, e.g.
    /// `encoder.layer.0.attention.self.query.weight`).
    ///
    /// # Errors
    ///
    /// [`EmbedError::MissingTensor`] when there is none of that name;
    /// [`EmbedError::UnsupportedDtype`] when its element type is not a
    /// [`Dtype`]; a source may add its own (a failed verification).
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError>;

    /// What was verified before this source was handed out (a lease's
    /// verification), for the response line; `None` for unverified sources.
    fn lease_cost(&self) -> Option<LeaseCost> {
        None
    }
}

/// A lease's verification, as a response line reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseCost {
    /// The verification policy that ran (`sampled:4`, `full`).
    pub policy: String,
    /// Leaves re-read and hashed.
    pub leaves_checked: u64,
    /// Bytes re-read and hashed.
    pub bytes_checked: u64,
    /// Its wall time, in microseconds.
    pub verify_us: u64,
}

impl<T: TensorSource + ?Sized> TensorSource for &T {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        (**self).tensor(name)
    }

    fn lease_cost(&self) -> Option<LeaseCost> {
        (**self).lease_cost()
    }
}
