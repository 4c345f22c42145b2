//! The CPU forward pass on the weights where the source keeps them: a
//! lease's view of the mock's memory, or a file read into host memory.
//!
//! candle's `BertModel` takes owned tensors, so the CPU path used to copy
//! every weight out of the lease for each request (90 MB for
//! all-MiniLM-L6-v2: most of a short request's time went into that copy and
//! the page faults of its fresh allocations). Here each linear layer's
//! weight matrix is read in place: [`matmul_wt`] makes the call candle's
//! CPU matmul makes for `Linear` (gemm, the same strides, alpha, beta and
//! parallelism), with the lease's bytes, viewed as `f32`, as the right-hand
//! side. Only what is small is copied per request: the embedding rows of
//! the request's token ids, LayerNorm vectors and biases (a few KiB). A
//! weight that cannot be viewed as `f32` in place (F16 or BF16 weights, or
//! F32 bytes not aligned for `f32`) is converted once per request, and
//! counted in [`Timings`](crate::Timings)' `tensors` and `bytes`.
//!
//! The one module of vram-embed's CPU path with `unsafe` code: the gemm
//! call, which takes raw pointers and strides. [`matmul_wt`] checks every
//! length against the dimensions (checked arithmetic) before it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

use crate::bert::BertWeights;
use crate::error::shown;
use crate::materialise::checked_view;
use crate::{EmbedError, TensorSource};

/// A weight matrix as the product reads it: the source's own bytes, or a
/// conversion made for this request.
enum Matrix<'a> {
    InPlace(&'a [f32]),
    Converted(Rc<[f32]>),
}

impl std::ops::Deref for Matrix<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Matrix::InPlace(s) => s,
            Matrix::Converted(v) => v,
        }
    }
}

/// The weights of one request over a host source, read in place.
pub(crate) struct InPlaceWeights<'a, S: ?Sized> {
    source: &'a S,
    /// Matrices converted for this request (F16/BF16, or unaligned F32),
    /// kept for its other texts.
    converted: RefCell<HashMap<String, Rc<[f32]>>>,
    tensors: Cell<u64>,
    bytes: Cell<u64>,
    spent: Cell<Duration>,
}

impl<'a, S: TensorSource + ?Sized> InPlaceWeights<'a, S> {
    /// Over `source` (host bytes: a lease on the mock, a file).
    pub(crate) fn new(source: &'a S) -> Self {
        Self {
            source,
            converted: RefCell::new(HashMap::new()),
            tensors: Cell::new(0),
            bytes: Cell::new(0),
            spent: Cell::new(Duration::ZERO),
        }
    }

    /// Weights converted so far: tensors, bytes of the source read, and
    /// the time the conversions took.
    pub(crate) fn converted(&self) -> (u64, u64, Duration) {
        (self.tensors.get(), self.bytes.get(), self.spent.get())
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix<'a>, EmbedError> {
        let view = checked_view(self.source, name, Some(&[rows, cols]))?;
        if view.dtype == DType::F32 {
            if let Ok(values) = bytemuck::try_cast_slice::<u8, f32>(view.bytes) {
                return Ok(Matrix::InPlace(values));
            }
        }
        if let Some(done) = self.converted.borrow().get(name) {
            return Ok(Matrix::Converted(Rc::clone(done)));
        }
        let start = Instant::now();
        let values = Tensor::from_raw_buffer(view.bytes, view.dtype, &[rows, cols], &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| EmbedError::model(&e))?;
        let values: Rc<[f32]> = values.into();
        self.converted
            .borrow_mut()
            .insert(name.to_owned(), Rc::clone(&values));
        self.tensors.set(self.tensors.get().saturating_add(1));
        self.bytes
            .set(self.bytes.get().saturating_add(view.bytes.len() as u64));
        self.spent
            .set(self.spent.get().saturating_add(start.elapsed()));
        Ok(Matrix::Converted(values))
    }
}

fn model_err(e: candle_core::Error) -> EmbedError {
    EmbedError::model(&e)
}

impl<S: TensorSource + ?Sized> BertWeights for InPlaceWeights<'_, S> {
    fn linear(
        &self,
        prefix: &str,
        x: &Tensor,
        (out, input): (usize, usize),
    ) -> Result<Tensor, EmbedError> {
        let weight = self.matrix(&format!("{prefix}.weight"), out, input)?;
        let bias = self.vector(&format!("{prefix}.bias"), out)?;
        let (batch, seq, width) = x.dims3().map_err(model_err)?;
        if width != input {
            return Err(EmbedError::Model {
                reason: format!(
                    "{}: input of width {width}, expected {input}",
                    shown(prefix)
                ),
            });
        }
        let rows = batch.checked_mul(seq).ok_or_else(|| EmbedError::Model {
            reason: "activations too large".into(),
        })?;
        let x = x.contiguous().map_err(model_err)?;
        let product = {
            let (storage, layout) = x.storage_and_layout();
            let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
                return Err(EmbedError::Model {
                    reason: "the CPU forward pass got activations that are not f32 host memory"
                        .into(),
                });
            };
            let start = layout.start_offset();
            let len = rows.saturating_mul(input);
            let end = start.saturating_add(len);
            let lhs = values.get(start..end).ok_or_else(|| EmbedError::Model {
                reason: "activations shorter than their shape".into(),
            })?;
            matmul_wt(lhs, &weight, rows, out, input)?
        };
        Tensor::from_vec(product, (batch, seq, out), &Device::Cpu)
            .and_then(|y| y.broadcast_add(&bias))
            .map_err(model_err)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor, EmbedError> {
        let view = checked_view(self.source, name, Some(&[len]))?;
        Tensor::from_raw_buffer(view.bytes, view.dtype, &[len], &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(model_err)
    }

    fn rows(
        &self,
        name: &str,
        ids: &[u32],
        (rows, hidden): (usize, usize),
    ) -> Result<Tensor, EmbedError> {
        let view = checked_view(self.source, name, Some(&[rows, hidden]))?;
        let row_bytes =
            view.bytes
                .len()
                .checked_div(rows)
                .ok_or_else(|| EmbedError::TensorShape {
                    name: shown(name),
                    expected: vec![rows, hidden],
                    found: view.shape.clone(),
                })?;
        let mut gathered = Vec::with_capacity(row_bytes.saturating_mul(ids.len()));
        for &id in ids {
            let outside = || EmbedError::Model {
                reason: format!("{}: token id {id} is outside its {rows} rows", shown(name)),
            };
            let start = usize::try_from(id)
                .ok()
                .and_then(|i| i.checked_mul(row_bytes))
                .ok_or_else(outside)?;
            let end = start.checked_add(row_bytes).ok_or_else(outside)?;
            gathered.extend_from_slice(view.bytes.get(start..end).ok_or_else(outside)?);
        }
        Tensor::from_raw_buffer(&gathered, view.dtype, &[1, ids.len(), hidden], &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(model_err)
    }
}

/// `x · wᵀ` for `x` of `m` rows of `k` and `w` of `n` rows of `k` (both
/// row-major), as a new `m × n` row-major matrix: the gemm call candle's CPU
/// matmul makes for a `Linear` layer (`x.matmul(&weight.t())`), so the
/// result is the same, bit for bit.
///
/// # Errors
/// [`EmbedError::Model`] when a length is not what the dimensions say.
pub(crate) fn matmul_wt(
    x: &[f32],
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Result<Vec<f32>, EmbedError> {
    let bad = || EmbedError::Model {
        reason: format!(
            "a {m}x{k} by {n}x{k} product got inputs of {} and {} values",
            x.len(),
            w.len()
        ),
    };
    let mn = m.checked_mul(n).ok_or_else(bad)?;
    if Some(x.len()) != m.checked_mul(k) || Some(w.len()) != n.checked_mul(k) {
        return Err(bad());
    }
    let mut dst = vec![0f32; mn];
    if mn == 0 || k == 0 {
        return Ok(dst);
    }
    let n_stride = isize::try_from(n).map_err(|_| bad())?;
    let k_stride = isize::try_from(k).map_err(|_| bad())?;
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `dst` holds m·n values, written row-major (column stride 1,
    // row stride n): every index gemm writes, i·n + j for i < m, j < n, is
    // below m·n. `x` holds m·k values read row-major (column stride 1, row
    // stride k): i·k + l < m·k. `w` holds n·k values, read as the k × n
    // matrix wᵀ (row stride 1, column stride k): j·k + l < n·k. All three
    // lengths were checked above; `dst` is not read (`read_dst` false) and
    // does not overlap the inputs (a new allocation); the inputs are only
    // read, and outlive the call (gemm returns when every thread is done).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n_stride,
            false,
            x.as_ptr(),
            1,
            k_stride,
            w.as_ptr(),
            k_stride,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(dst)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_product_is_candle_s_matmul_bit_for_bit() {
        for (m, n, k) in [
            (1, 1, 1),
            (3, 5, 7),
            (12, 384, 384),
            (7, 1536, 384),
            (2, 0, 3),
            (0, 4, 2),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 11.0)
                .collect();
            let ours = matmul_wt(&x, &w, m, n, k).unwrap();
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
            let theirs = xt.matmul(&wt.t().unwrap()).unwrap();
            let theirs: Vec<f32> = theirs.flatten_all().unwrap().to_vec1().unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&theirs), "{m}x{k} by {n}x{k}");
        }
    }

    #[test]
    fn lengths_that_do_not_fit_the_dimensions_are_refused() {
        let x = [1.0f32; 6];
        let w = [1.0f32; 6];
        assert!(matmul_wt(&x, &w, 2, 2, 3).is_ok());
        assert!(matmul_wt(&x[..5], &w, 2, 2, 3).is_err());
        assert!(matmul_wt(&x, &w[..5], 2, 2, 3).is_err());
        assert!(matmul_wt(&x, &w, 3, 2, 3).is_err());
        assert!(matmul_wt(&x, &w, usize::MAX, 2, 3).is_err());
        assert!(matmul_wt(&x, &w, 2, usize::MAX, 3).is_err());
    }
}
