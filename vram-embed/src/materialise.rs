//! Candle tensors built from a [`TensorSource`], for one request.
//!
//! candle-nn's `VarBuilder` asks a backend for each weight by name and
//! shape; [`SourceBackend`] answers from the source's views, checking the
//! shape against the model's config, the dtype against those candle
//! computes with and the byte length against dtype and shape, and copying
//! the bytes into a candle tensor (host memory, aligned
//! for its element type). Candle's errors carry text only, so the first
//! typed error the backend saw is kept in a [`LoadRecord`] and returned in
//! place of candle's: the caller learns which tensor failed, and why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use vram_format::Dtype;

use crate::error::shown;
use crate::{EmbedError, TensorSource};

/// What one model build took from its source.
#[derive(Debug, Default)]
pub(crate) struct LoadRecord {
    first_error: Mutex<Option<EmbedError>>,
    tensors: AtomicU64,
    bytes: AtomicU64,
}

impl LoadRecord {
    /// Keeps `e` if it is the first error, and hands candle a copy of its text.
    fn fail(&self, e: EmbedError) -> candle_core::Error {
        let text = e.to_string();
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
        candle_core::Error::Msg(text)
    }

    /// The first error the source or a check reported, if any.
    pub(crate) fn take_error(&self) -> Option<EmbedError> {
        self.first_error.lock().ok().and_then(|mut e| e.take())
    }

    /// Tensors built and the bytes they took from the source.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.tensors.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// A `VarBuilder` backend over a borrowed source.
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

impl<S: TensorSource + Sync + ?Sized> SourceBackend<'_, S> {
    pub(crate) fn load(
        &self,
        name: &str,
        expected: Option<&[usize]>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor, EmbedError> {
        let view = self.source.tensor(name)?;
        let element = view.element_type();
        let from = candle_dtype(element).ok_or_else(|| EmbedError::UnsupportedDtype {
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
        if needed != Some(found) {
            return Err(EmbedError::TensorSize {
                name: shown(name),
                expected: needed.unwrap_or(u64::MAX),
                found,
            });
        }
        let tensor = Tensor::from_raw_buffer(bytes, from, &shape, dev)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| EmbedError::model(&e))?;
        self.record.tensors.fetch_add(1, Ordering::Relaxed);
        self.record.bytes.fetch_add(found, Ordering::Relaxed);
        Ok(tensor)
    }
}

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
