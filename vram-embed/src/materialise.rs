//! A tensor's host bytes checked for the CPU forward pass ([`checked_view`]:
//! dtype, shape, length, host memory), and, for tests, candle tensors built
//! from a [`TensorSource`] as candle's own layers take them.
//!
//! candle-nn's `VarBuilder` asks a backend for each weight by name and
//! shape; `SourceBackend` (tests: the reference the in-place forward pass
//! is compared with) answers from the source's views, checked, by copying
//! the bytes into a candle tensor. Candle's errors carry text only, so the
//! first typed error the backend saw is kept in a `LoadRecord` and
//! returned in place of candle's: the caller learns which tensor failed,
//! and why.

#[cfg(test)]
use std::sync::Mutex;

use candle_core::DType;
#[cfg(test)]
use candle_core::{Device, Shape, Tensor};
#[cfg(test)]
use candle_nn::var_builder::SimpleBackend;

use vram_format::Dtype;

use crate::error::shown;
use crate::{EmbedError, TensorSource};

/// The first error a model build met.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct LoadRecord {
    first_error: Mutex<Option<EmbedError>>,
}

#[cfg(test)]
impl LoadRecord {
    /// Keeps `e` if it is the first error, and hands candle a copy of its text.
    fn fail(&self, e: EmbedError) -> candle_core::Error {
        let text = e.to_string();
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
        candle_core::Error::Msg(text)
    }
}

/// A `VarBuilder` backend over a borrowed source.
#[cfg(test)]
pub(crate) struct SourceBackend<'a, S: ?Sized> {
    pub(crate) source: &'a S,
    pub(crate) record: &'a LoadRecord,
}

/// candle's element type for a dtype this crate computes with: the
/// safetensors types candle's CPU backend loads, `None` for any other.
fn candle_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::U8 => DType::U8,
        Dtype::U32 => DType::U32,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        _ => return None,
    })
}

/// A tensor's host bytes, checked: the dtype is one candle computes with
/// (its candle type returned), the shape is `expected` (when given), the
/// byte length is what dtype and shape need, and the bytes are in host
/// memory (a lease on the mock, a file; a CUDA lease is refused).
pub(crate) struct CheckedView<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
}

pub(crate) fn checked_view<'a, S: TensorSource + ?Sized>(
    source: &'a S,
    name: &str,
    expected: Option<&[usize]>,
) -> Result<CheckedView<'a>, EmbedError> {
    let view = source.tensor(name)?;
    let element = view.element_type();
    let dtype = candle_dtype(element).ok_or_else(|| EmbedError::UnsupportedDtype {
        name: shown(name),
        dtype: element.name().to_owned(),
    })?;
    let shape = view
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect::<Vec<_>>();
    if let Some(expected) = expected {
        if shape != expected {
            return Err(EmbedError::TensorShape {
                name: shown(name),
                expected: expected.to_vec(),
                found: shape,
            });
        }
    }
    let bytes = view.host_bytes().ok_or_else(|| EmbedError::Lease {
        reason: "the weights are in device memory, and this build computes on the CPU \
                 (serve from the mock, or a build with candle's CUDA backend)"
            .into(),
        integrity: false,
    })?;
    let found = view.len();
    let needed = view
        .shape()
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .and_then(|elements| element.bytes_for(elements));
    if needed != Some(found) || u64::try_from(bytes.len()).ok() != Some(found) {
        return Err(EmbedError::TensorSize {
            name: shown(name),
            expected: needed.unwrap_or(u64::MAX),
            found,
        });
    }
    Ok(CheckedView {
        bytes,
        dtype,
        shape,
    })
}

#[cfg(test)]
impl<S: TensorSource + Sync + ?Sized> SourceBackend<'_, S> {
    pub(crate) fn load(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor, EmbedError> {
        let view = checked_view(self.source, name, expected)?;
        let tensor = Tensor::from_raw_buffer(view.bytes, view.dtype, &view.shape, dev)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| EmbedError::model(&e))?;
        Ok(tensor)
    }
}

#[cfg(test)]
impl<S: TensorSource + Sync + ?Sized> SimpleBackend for SourceBackend<'_, S> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, Some(s.dims()), dtype, dev)
            .map_err(|e| self.record.fail(e))
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, None, dtype, dev)
            .map_err(|e| self.record.fail(e))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.source.tensor(name).is_ok()
    }
}
