//! The embedder on candle's CUDA device, computing on leased device memory
//! in place (feature `cuda-engine`).
//!
//! A lease on a CUDA shard gives the device address of the sealed bytes
//! ([`TensorMemory::Device`]), not host bytes. Candle's CUDA storage owns its
//! memory (a `cudarc` slice freed on drop), so no candle tensor is built
//! over leased memory. [`CudaWeights`] gives the forward pass of `bert.rs`
//! its three operations instead:
//!
//! - `linear` (`y = x · Wᵀ + b`, the weight `(out, in)` row-major): one
//!   cuBLAS GEMM (`cublasGemmEx`) on candle's cuBLAS handle and stream,
//!   whose matrix A is the leased weight itself: read as the column-major
//!   `(in, out)` matrix it is, transposed (`transa = T`, `m = out`, `n =
//!   rows of x`, `k = in`, `lda = ldb = in`, `ldc = out`). F32 weights
//!   multiply f32 activations; F16 and BF16 weights multiply the
//!   activations cast to their type, accumulating and writing f32
//!   (`CUBLAS_COMPUTE_32F`). The bias (a few KiB) is copied.
//! - `rows` (the embedding tables): the rows of the request's ids copied
//!   device to device into a tensor of the request, each id checked against
//!   the table's rows on the host first.
//! - `vector` (LayerNorm weights and biases): copied device to device.
//!
//! What the copies take is what the request needs (its rows, its small
//! vectors: for all-MiniLM-L6-v2 and 12 tokens about 90 KiB), never a
//! weight matrix. Every address is taken from the lease's view of the
//! tensor, checked to be exactly the tensor's bytes (dtype × shape) and on
//! candle's device. Work is queued on candle's stream; [`CudaWeights`]
//! synchronises the device when it is dropped, and it borrows the lease's
//! views, so nothing queued can still read a shard when its lease ends.
//!
//! The CUDA context: the sealing backend (vram-core) and candle's
//! `Device::new_cuda_with_stream` both retain the device's primary context,
//! so the sealed addresses are valid where candle launches (vram-llm's GPU
//! test `the_engine_and_the_sealing_backend_share_the_primary_context`).
//!
//! `unsafe` in this module: the GEMM call and the device-to-device copies,
//! each with its argument checked before it.

#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys as blas_sys};
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor};
use vram_format::Dtype;
use vram_residency::{DeviceMemory, TensorMemory};

use crate::bert::BertWeights;
use crate::error::shown;
use crate::{EmbedError, TensorSource};

/// The CUDA libraries candle's device needs at run time, by what an operator
/// installs. (The same check as vram-llm's CUDA engine: the two engines do
/// not depend on each other, and the list is theirs, not the sealing
/// backend's, which needs the driver alone.)
fn missing_libraries() -> Vec<&'static str> {
    use candle_core::cuda_backend::cudarc;
    // SAFETY: each `is_culib_present` only tries to load its shared library
    // (dlopen through libloading) and reports whether it could; no symbol is
    // called.
    let present = unsafe {
        [
            (
                "libcuda (the NVIDIA driver)",
                cudarc::driver::sys::is_culib_present(),
            ),
            (
                "libcublas (cuBLAS 13)",
                cudarc::cublas::sys::is_culib_present(),
            ),
            (
                "libcublasLt (cuBLASLt 13)",
                cudarc::cublaslt::sys::is_culib_present(),
            ),
            (
                "libcurand (cuRAND 10)",
                cudarc::curand::sys::is_culib_present(),
            ),
            (
                "libnvrtc (NVRTC 13)",
                cudarc::nvrtc::sys::is_culib_present(),
            ),
        ]
    };
    present
        .into_iter()
        .filter(|(_, found)| !found)
        .map(|(name, _)| name)
        .collect()
}

/// Candle's CUDA device on device `ordinal` (the one the model is sealed
/// on), after checking that the libraries it needs load: a missing one is
/// refused here, at start, by name.
///
/// # Errors
/// [`EmbedError::Engine`] naming the missing libraries, or the driver's
/// error (exit 3).
pub fn cuda_device(ordinal: u32) -> Result<Device, EmbedError> {
    let missing = missing_libraries();
    if !missing.is_empty() {
        return Err(EmbedError::Engine {
            reason: format!(
                "the CUDA embedder needs {}, which the dynamic loader does not find: install \
                 the CUDA 13 runtime libraries (or add their directory to LD_LIBRARY_PATH)",
                missing.join(", ")
            ),
        });
    }
    let index = usize::try_from(ordinal).map_err(|_| EmbedError::Engine {
        reason: format!("CUDA device {ordinal} is out of range"),
    })?;
    Device::new_cuda_with_stream(index).map_err(|e| EmbedError::Engine {
        reason: format!("candle's CUDA device {ordinal}: {e}"),
    })
}

fn compute(e: candle_core::Error) -> EmbedError {
    EmbedError::model(&e)
}

/// Bytes of one element of the float types the embedder computes with.
fn width(dtype: Dtype) -> Option<(usize, DType)> {
    match dtype {
        Dtype::F32 => Some((4, DType::F32)),
        Dtype::F16 => Some((2, DType::F16)),
        Dtype::BF16 => Some((2, DType::BF16)),
        _ => None,
    }
}

/// The parameters of the one GEMM `linear` runs, for `rows` rows of
/// activations, a weight `(out, input)` and its type: `(m, n, k, lda, ldb,
/// ldc)` as cuBLAS takes them (column-major, A transposed), each checked to
/// fit an `int`.
pub(crate) fn gemm_dims(
    rows: usize,
    (out, input): (usize, usize),
) -> Option<(i32, i32, i32, i32, i32, i32)> {
    let int = |v: usize| i32::try_from(v).ok().filter(|v| *v > 0);
    Some((
        int(out)?,
        int(rows)?,
        int(input)?,
        int(input)?,
        int(input)?,
        int(out)?,
    ))
}

/// The weights of one request, reached through a lease's views of sealed
/// CUDA memory. Synchronises the device when dropped.
pub(crate) struct CudaWeights<'a, S: ?Sized> {
    source: &'a S,
    device: Device,
    cuda: CudaDevice,
}

impl<'a, S: TensorSource + Sync + ?Sized> CudaWeights<'a, S> {
    /// Over `source` (a lease's views), computing on `device` (candle's
    /// CUDA device).
    ///
    /// # Errors
    /// [`EmbedError::Engine`] when `device` is not a CUDA device.
    pub(crate) fn new(source: &'a S, device: &Device) -> Result<Self, EmbedError> {
        let Device::Cuda(cuda) = device else {
            return Err(EmbedError::Engine {
                reason: "the CUDA weights need candle's CUDA device".into(),
            });
        };
        Ok(Self {
            source,
            device: device.clone(),
            cuda: cuda.clone(),
        })
    }

    /// The device memory of tensor `name`, checked to be `shape` of a float
    /// type, exactly its bytes, on candle's device.
    fn memory(&self, name: &str, shape: &[usize]) -> Result<(DeviceMemory, Dtype), EmbedError> {
        let view = self.source.tensor(name)?;
        let dtype = view.element_type();
        let (bytes_per, _) = width(dtype).ok_or_else(|| EmbedError::UnsupportedDtype {
            name: shown(name),
            dtype: dtype.name().to_owned(),
        })?;
        let found: Vec<usize> = view
            .shape()
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        if found != shape {
            return Err(EmbedError::TensorShape {
                name: shown(name),
                expected: shape.to_vec(),
                found,
            });
        }
        let needed = shape
            .iter()
            .try_fold(bytes_per, |n, &d| n.checked_mul(d))
            .and_then(|n| u64::try_from(n).ok());
        if needed != Some(view.len()) {
            return Err(EmbedError::TensorSize {
                name: shown(name),
                expected: needed.unwrap_or(u64::MAX),
                found: view.len(),
            });
        }
        let memory = match view.memory() {
            TensorMemory::Device(memory) => memory,
            _ => {
                return Err(EmbedError::Engine {
                    reason: format!(
                        "tensor {}: the weights are in host memory, and this request computes \
                         on CUDA",
                        shown(name)
                    ),
                })
            }
        };
        let ordinal = self.cuda.cuda_stream().context().ordinal();
        if usize::try_from(memory.device()).ok() != Some(ordinal) {
            return Err(EmbedError::Engine {
                reason: format!(
                    "tensor {} is sealed on CUDA device {}, and the embedder computes on CUDA \
                     device {ordinal}",
                    shown(name),
                    memory.device()
                ),
            });
        }
        if Some(memory.len()) != needed {
            return Err(EmbedError::TensorSize {
                name: shown(name),
                expected: needed.unwrap_or(u64::MAX),
                found: memory.len(),
            });
        }
        Ok((memory, dtype))
    }

    /// The byte ranges `pieces` of `memory`, one after the other, copied
    /// into a new tensor of `shape` and `dtype` on the device, made f32.
    fn copy(
        &self,
        memory: &DeviceMemory,
        pieces: &[(u64, usize)],
        dtype: DType,
        shape: Shape,
    ) -> Result<Tensor, EmbedError> {
        let storage = match dtype {
            DType::F32 => CudaStorage::wrap_cuda_slice(
                self.copy_into::<f32>(memory, pieces)?,
                self.cuda.clone(),
            ),
            DType::F16 => CudaStorage::wrap_cuda_slice(
                self.copy_into::<half::f16>(memory, pieces)?,
                self.cuda.clone(),
            ),
            DType::BF16 => CudaStorage::wrap_cuda_slice(
                self.copy_into::<half::bf16>(memory, pieces)?,
                self.cuda.clone(),
            ),
            other => {
                return Err(EmbedError::Engine {
                    reason: format!("a copy of {other:?} values"),
                })
            }
        };
        Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
            .to_dtype(DType::F32)
            .map_err(compute)
    }

    /// The byte ranges `pieces` of `memory` copied, in order, into a new
    /// buffer of `T` values (their total a whole number of values).
    fn copy_into<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        memory: &DeviceMemory,
        pieces: &[(u64, usize)],
    ) -> Result<CudaSlice<T>, EmbedError> {
        let engine = |reason: &str| EmbedError::Engine {
            reason: reason.to_owned(),
        };
        let total: usize = pieces
            .iter()
            .try_fold(0usize, |n, (_, len)| n.checked_add(*len))
            .ok_or_else(|| engine("a copy larger than memory"))?;
        let size = size_of::<T>();
        let values = total
            .checked_div(size)
            .filter(|v| v.checked_mul(size) == Some(total))
            .ok_or_else(|| engine("a copy of part of a value"))?;
        let mut dst = self.cuda.alloc_zeros::<T>(values).map_err(compute)?;
        let stream = self.cuda.cuda_stream();
        {
            let (base, _record) = dst.device_ptr_mut(&stream);
            let mut at = 0usize;
            for &(offset, len) in pieces {
                let src = memory
                    .slice(offset, u64::try_from(len).unwrap_or(u64::MAX))
                    .ok_or_else(|| engine("a copy outside the tensor"))?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= total)
                    .ok_or_else(|| engine("a copy outside its buffer"))?;
                let target = u64::try_from(at)
                    .ok()
                    .and_then(|at| base.checked_add(at))
                    .ok_or_else(|| engine("a device address overflows"))?;
                // SAFETY: the target is bytes `at..end` of `dst`, a buffer of
                // `total` bytes this function owns (`end <= total`, checked);
                // the source is `len` bytes inside the tensor's leased
                // memory (`DeviceMemory::slice` refuses a range outside it).
                // The copy is ordered on candle's stream before any use of
                // `dst`; the lease keeps the source allocated while this
                // struct (which synchronises in Drop) borrows its views.
                unsafe {
                    candle_core::cuda_backend::cudarc::driver::result::memcpy_dtod_async(
                        target,
                        src.address(),
                        len,
                        stream.cu_stream(),
                    )
                }
                .map_err(|e| EmbedError::Engine {
                    reason: format!("a device-to-device copy failed: {e}"),
                })?;
                at = end;
            }
        }
        Ok(dst)
    }
}

impl<S: ?Sized> Drop for CudaWeights<'_, S> {
    fn drop(&mut self) {
        // Nothing queued may read a shard after its lease ends: the lease
        // outlives this struct (it borrows the lease's views).
        if let Err(e) = self.device.synchronize() {
            tracing::error!(error = %e, "the CUDA device failed to synchronise at the end of a request");
        }
    }
}

/// The device address of element `start` of the activations in `storage`
/// (`count` values of `T` from there, checked to lie in it), with the
/// guard that orders their use on `stream`.
fn activations<'a, T: candle_core::cuda_backend::CudaDType + DeviceRepr + 'a>(
    storage: &'a CudaStorage,
    start: usize,
    count: usize,
    stream: &'a std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
) -> candle_core::Result<(
    u64,
    candle_core::cuda_backend::cudarc::driver::SyncOnDrop<'a>,
)> {
    let x = storage.as_cuda_slice::<T>()?;
    if start.checked_add(count).is_none_or(|e| e > x.len()) {
        candle_core::bail!("leased GEMM: input out of its storage")
    }
    let (p, guard) = x.device_ptr(stream);
    let address = start
        .checked_mul(size_of::<T>())
        .and_then(|b| u64::try_from(b).ok())
        .and_then(|b| p.checked_add(b))
        .ok_or_else(|| candle_core::Error::msg("leased GEMM: an address overflows"))?;
    Ok((address, guard))
}

/// The GEMM over a leased weight, as a candle op on the activations.
struct LeasedGemm {
    weight: DeviceMemory,
    dtype: Dtype,
    out: usize,
    input: usize,
}

impl CustomOp1 for LeasedGemm {
    fn name(&self) -> &'static str {
        "leased-gemm"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("the leased GEMM runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dims = layout.shape().dims();
        let (rows, input) = match *dims {
            [rows, input] => (rows, input),
            _ => candle_core::bail!("leased GEMM: 2-d activations expected, got {dims:?}"),
        };
        if input != self.input || !layout.is_contiguous() {
            candle_core::bail!(
                "leased GEMM: activations of {input} columns, the weight takes {}",
                self.input
            )
        }
        let Some((m, n, k, lda, ldb, ldc)) = gemm_dims(rows, (self.out, self.input)) else {
            candle_core::bail!("leased GEMM: sizes out of cuBLAS's range")
        };
        let (bytes_per, candle_type) = width(self.dtype)
            .ok_or_else(|| candle_core::Error::msg("leased GEMM: not a float weight"))?;
        if storage.dtype() != candle_type {
            candle_core::bail!("leased GEMM: activations must be {candle_type:?}")
        }
        let needed = self
            .out
            .checked_mul(self.input)
            .and_then(|e| e.checked_mul(bytes_per))
            .and_then(|b| u64::try_from(b).ok());
        if needed != Some(self.weight.len()) {
            candle_core::bail!("leased GEMM: the weight's bytes are not out × in values")
        }
        let dev = storage.device.clone();
        let total = rows
            .checked_mul(self.out)
            .ok_or_else(|| candle_core::Error::msg("leased GEMM: output too large"))?;
        let mut dst = dev.alloc_zeros::<f32>(total)?;
        let stream = dev.cuda_stream();
        let start = layout.start_offset();
        let count = rows
            .checked_mul(input)
            .ok_or_else(|| candle_core::Error::msg("leased GEMM: input too large"))?;
        let (x_ptr, x_type, _guard_x) = match candle_type {
            DType::F32 => activations::<f32>(storage, start, count, &stream)
                .map(|(p, g)| (p, blas_sys::cudaDataType_t::CUDA_R_32F, g))?,
            DType::F16 => activations::<half::f16>(storage, start, count, &stream)
                .map(|(p, g)| (p, blas_sys::cudaDataType_t::CUDA_R_16F, g))?,
            DType::BF16 => activations::<half::bf16>(storage, start, count, &stream)
                .map(|(p, g)| (p, blas_sys::cudaDataType_t::CUDA_R_16BF, g))?,
            other => candle_core::bail!("leased GEMM: {other:?} activations"),
        };
        let blas_handle = dev.cublas_handle();
        let (c_ptr, _guard_c) = dst.device_ptr_mut(&stream);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: cublasGemmEx computes C(m×n) = op(A)(m×k) · B(k×n) with
        // op(A) = Aᵀ: A is the leased weight, `out` rows of `input` values
        // of `x_type` row-major, i.e. a column-major k×m matrix with lda =
        // k = input: exactly `weight.len()` bytes (checked above), inside the
        // tensor's leased range (the view's memory, checked against the
        // tensor's dtype and shape by `CudaWeights::memory`); B is `rows`
        // contiguous rows of `input` activations of the same type from
        // `start` (checked to lie in the storage), a column-major k×n
        // matrix with ldb = input; C is `dst`, `rows × out` f32 values
        // (ldc = out). alpha and beta are host f32 values (the handle's
        // default pointer mode, CUBLAS_COMPUTE_32F's scale type). The call
        // is queued on candle's stream (the handle's); the lease keeps A
        // allocated while the request's `CudaWeights`, which synchronises
        // the device in its Drop, borrows its views.
        unsafe {
            blas::gemm_ex(
                *blas_handle.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                m,
                n,
                k,
                std::ptr::from_ref(&alpha).cast(),
                self.weight.address() as *const std::ffi::c_void,
                x_type,
                lda,
                x_ptr as *const std::ffi::c_void,
                x_type,
                ldb,
                std::ptr::from_ref(&beta).cast(),
                c_ptr as *mut std::ffi::c_void,
                blas_sys::cudaDataType_t::CUDA_R_32F,
                ldc,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .w()?;
        drop(_guard_c);
        Ok((
            CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from((rows, self.out)),
        ))
    }
}

impl<S: TensorSource + Sync + ?Sized> BertWeights for CudaWeights<'_, S> {
    fn linear(
        &self,
        prefix: &str,
        x: &Tensor,
        (out, input): (usize, usize),
    ) -> Result<Tensor, EmbedError> {
        let name = format!("{prefix}.weight");
        let (weight, dtype) = self.memory(&name, &[out, input])?;
        let (_, candle_type) = width(dtype).ok_or_else(|| EmbedError::UnsupportedDtype {
            name: shown(&name),
            dtype: dtype.name().to_owned(),
        })?;
        let bias = self.vector(&format!("{prefix}.bias"), out)?;
        let (batch, rows, cols) = x.dims3().map_err(compute)?;
        let flat = x
            .reshape((batch.saturating_mul(rows), cols))
            .and_then(|t| t.to_dtype(candle_type))
            .and_then(|t| t.contiguous())
            .map_err(compute)?;
        let y = flat
            .apply_op1_no_bwd(&LeasedGemm {
                weight,
                dtype,
                out,
                input,
            })
            .map_err(compute)?;
        y.broadcast_add(&bias)
            .and_then(|y| y.reshape((batch, rows, out)))
            .map_err(compute)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor, EmbedError> {
        let (memory, dtype) = self.memory(name, &[len])?;
        let (_, candle_type) = width(dtype).ok_or_else(|| EmbedError::UnsupportedDtype {
            name: shown(name),
            dtype: dtype.name().to_owned(),
        })?;
        let bytes = usize::try_from(memory.len()).map_err(|_| EmbedError::Engine {
            reason: "a vector larger than memory".into(),
        })?;
        self.copy(&memory, &[(0, bytes)], candle_type, Shape::from(len))
    }

    fn rows(
        &self,
        name: &str,
        ids: &[u32],
        (rows, hidden): (usize, usize),
    ) -> Result<Tensor, EmbedError> {
        let (memory, dtype) = self.memory(name, &[rows, hidden])?;
        let (bytes_per, candle_type) =
            width(dtype).ok_or_else(|| EmbedError::UnsupportedDtype {
                name: shown(name),
                dtype: dtype.name().to_owned(),
            })?;
        let row_bytes = hidden
            .checked_mul(bytes_per)
            .ok_or_else(|| EmbedError::Engine {
                reason: "a row larger than memory".into(),
            })?;
        let pieces = ids
            .iter()
            .map(|&id| {
                let id = usize::try_from(id)
                    .ok()
                    .filter(|i| *i < rows)
                    .ok_or_else(|| EmbedError::Model {
                        reason: format!("id {id} is outside {}'s {rows} rows", shown(name)),
                    })?;
                let offset = id
                    .checked_mul(row_bytes)
                    .and_then(|o| u64::try_from(o).ok())
                    .ok_or_else(|| EmbedError::Engine {
                        reason: "a row offset overflows".into(),
                    })?;
                Ok((offset, row_bytes))
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        self.copy(
            &memory,
            &pieces,
            candle_type,
            Shape::from((1, ids.len(), hidden)),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gemm_parameters_read_the_row_major_weight_as_its_transpose() {
        // A (out=384, in=1536) weight and 12 rows: C is 384 × 12 (column
        // major: row-major 12 × 384), A is read as 1536 × 384 and
        // transposed, B is 1536 × 12.
        assert_eq!(
            gemm_dims(12, (384, 1536)),
            Some((384, 12, 1536, 1536, 1536, 384))
        );
        assert_eq!(gemm_dims(0, (384, 1536)), None, "no rows: no call");
        assert_eq!(gemm_dims(1, (usize::MAX, 4)), None, "out of an int");
    }

    #[test]
    fn only_float_weights_are_multiplied() {
        assert_eq!(width(Dtype::F32), Some((4, DType::F32)));
        assert_eq!(width(Dtype::F16), Some((2, DType::F16)));
        assert_eq!(width(Dtype::BF16), Some((2, DType::BF16)));
        assert_eq!(width(Dtype::I64), None);
        assert_eq!(width(Dtype::U8), None);
    }

    #[test]
    fn without_a_driver_the_device_is_refused_naming_what_is_missing() {
        if vram_residency::cuda_devices().is_ok_and(|d| !d.is_empty()) {
            eprintln!("a CUDA device is present: the refusal is not what runs here");
            return;
        }
        let e = cuda_device(0).unwrap_err();
        assert!(matches!(e, EmbedError::Engine { .. }), "{e}");
        assert_eq!(e.class(), crate::ErrorClass::Environment, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("libcuda") || text.contains("CUDA device 0"),
            "{text}"
        );
    }
}
