//! A request's weights: candle tensors whose storage is the sealed memory,
//! reached through the request's lease on every use.
//!
//! [`LeasedBlocks`] names one tensor's bytes in a leased shard; it implements
//! candle's `QuantizedType`, so a `QTensor` can be built over it, and every
//! read (matmul, embedding row, dequantization) happens inside
//! [`LeaseHandle::with_host_bytes`]: while the request's lease is open it
//! reads the blocks where the seal keeps them, after it has ended it fails
//! with [`VramError::LeaseEnded`](vram_residency::VramError::LeaseEnded).
//!
//! candle reaches some storages through raw pointers (`QTensor::data`, and
//! the repacking caches its own `QMatMul` builds for some types and shapes,
//! which would also copy the weights per request). Leased blocks have no
//! address outside a lease, so they report an empty storage to those paths,
//! and the engine multiplies through [`LeasedLinear`], its own candle op,
//! never through `QMatMul`.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor, QuantizedType};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;
use vram_residency::LeaseHandle;

use crate::gguf::TensorEntry;
use crate::{kernels, LlmError};

/// One tensor's blocks in a leased shard.
#[derive(Debug)]
pub(crate) struct LeasedBlocks {
    handle: LeaseHandle,
    name: String,
    entry: TensorEntry,
}

fn candle_error(e: impl std::fmt::Display + Send + Sync + 'static) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

impl LeasedBlocks {
    pub(crate) fn new(handle: LeaseHandle, name: &str, entry: TensorEntry) -> Arc<Self> {
        Arc::new(Self {
            handle,
            name: name.to_string(),
            entry,
        })
    }

    pub(crate) fn dims(&self) -> &[usize] {
        &self.entry.dims
    }

    /// The tensor's ggml type.
    #[cfg(feature = "cuda-engine")]
    pub(crate) fn dtype(&self) -> GgmlDType {
        self.entry.dtype
    }

    /// This tensor's range of the leased device memory, on `device` (fails
    /// once the lease has ended, and for a shard not on `device`).
    #[cfg(feature = "cuda-engine")]
    pub(crate) fn device_memory(
        &self,
        device: &candle_core::CudaDevice,
    ) -> Result<vram_residency::DeviceMemory, LlmError> {
        crate::cuda::tensor_memory(&self.handle, &self.name, &self.entry.range, device)
    }

    /// Runs `f` on this tensor's bytes, inside the lease.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> Result<R, LlmError>) -> Result<R, LlmError> {
        self.handle.with_host_bytes(|bytes| {
            let mine = bytes.get(self.entry.range.clone()).ok_or_else(|| {
                LlmError::Compute(format!("tensor {} lies outside its shard", self.name))
            })?;
            f(mine)
        })?
    }

    /// All values as f32 (small tensors: norms).
    pub(crate) fn to_f32(&self) -> Result<Vec<f32>, LlmError> {
        let elems = self.entry.elems();
        self.with_bytes(|b| kernels::to_f32(self.entry.dtype, b, elems))
    }

    /// A `QTensor` over these blocks (no copy).
    pub(crate) fn qtensor(self: &Arc<Self>) -> Result<QTensor, LlmError> {
        QTensor::new(
            QStorage::Cpu(Box::new(LeasedStorage(Arc::clone(self)))),
            self.entry.dims.as_slice(),
        )
        .map_err(|e| LlmError::Compute(format!("tensor {}: {e}", self.name)))
    }
}

/// The `QuantizedType` over [`LeasedBlocks`] (what a `QTensor` owns).
#[derive(Debug)]
pub(crate) struct LeasedStorage(Arc<LeasedBlocks>);

impl QuantizedType for LeasedStorage {
    fn dtype(&self) -> GgmlDType {
        self.0.entry.dtype
    }

    fn matmul_t(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        let dtype = self.0.entry.dtype;
        self.0
            .with_bytes(|b| kernels::matmul(dtype, mkn, lhs, b, dst))
            .map_err(candle_error)
    }

    fn matmul_t_f16(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f16],
        dst: &mut [f16],
    ) -> candle_core::Result<()> {
        let dtype = self.0.entry.dtype;
        self.0
            .with_bytes(|b| kernels::matmul_f16(dtype, mkn, lhs, b, dst))
            .map_err(candle_error)
    }

    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        hidden: usize,
    ) -> candle_core::Result<CpuStorage> {
        let dtype = self.0.entry.dtype;
        self.0
            .with_bytes(|b| kernels::rows_to_f32(dtype, b, ids, rows, hidden))
            .map(CpuStorage::F32)
            .map_err(candle_error)
    }

    fn dequantize(&self, elem_count: usize) -> candle_core::Result<CpuStorage> {
        let dtype = self.0.entry.dtype;
        self.0
            .with_bytes(|b| kernels::to_f32(dtype, b, elem_count))
            .map(CpuStorage::F32)
            .map_err(candle_error)
    }

    /// Zero: the blocks have no address outside a lease (see the module
    /// documentation), so candle's raw-pointer paths see no bytes.
    fn storage_size_in_bytes(&self) -> usize {
        0
    }

    fn as_ptr(&self) -> *const u8 {
        std::ptr::NonNull::<u8>::dangling().as_ptr()
    }

    fn block_size(&self) -> usize {
        self.0.entry.dtype.block_size()
    }

    /// Sealed blocks are read-only: quantizing onto them is refused (logged;
    /// candle's signature has no error to return).
    fn from_float(&mut self, _xs: &[f32]) {
        tracing::error!(tensor = %self.0.name, "refused: quantizing onto sealed, read-only blocks");
    }

    fn from_float_imatrix(&mut self, _xs: &[f32], _imatrix: &[f32], _n_per_row: usize) {
        tracing::error!(tensor = %self.0.name, "refused: quantizing onto sealed, read-only blocks");
    }

    fn size(&self) -> usize {
        self.0.entry.range.len()
    }
}

/// `y = x · Wᵀ` over a leased weight `W` (`[out, in]`), as a candle op: the
/// quantized matmul reads the blocks inside the lease.
#[derive(Debug, Clone)]
pub(crate) struct LeasedLinear {
    blocks: Arc<LeasedBlocks>,
    out: usize,
    inp: usize,
}

impl LeasedLinear {
    pub(crate) fn new(blocks: Arc<LeasedBlocks>) -> Result<Self, LlmError> {
        match *blocks.dims() {
            [out, inp] => Ok(Self { blocks, out, inp }),
            ref other => Err(LlmError::Metadata(format!(
                "tensor {}: a weight has two dimensions, this one {other:?}",
                blocks.name
            ))),
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply_op1_no_bwd(self)
    }

    /// For a contiguous input `[.., inp]` at `layout`: the rows `m` and the
    /// output's dims `[.., out]`.
    fn output_dims(&self, layout: &Layout) -> candle_core::Result<(usize, Vec<usize>)> {
        if !layout.is_contiguous() {
            candle_core::bail!("leased matmul: input is not contiguous")
        }
        let mut dims = layout.shape().dims().to_vec();
        if dims.pop() != Some(self.inp) {
            candle_core::bail!(
                "leased matmul: input {:?} does not end in {} (tensor {})",
                layout.shape(),
                self.inp,
                self.blocks.name
            )
        }
        let m: usize = dims.iter().product();
        dims.push(self.out);
        Ok((m, dims))
    }
}

impl CustomOp1 for LeasedLinear {
    fn name(&self) -> &'static str {
        "leased-qmatmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, dims) = self.output_dims(layout)?;
        let lhs = storage.as_slice::<f32>()?;
        let count = layout.shape().elem_count();
        let lhs = layout
            .start_offset()
            .checked_add(count)
            .and_then(|end| lhs.get(layout.start_offset()..end))
            .ok_or_else(|| candle_core::Error::msg("leased matmul: input out of its storage"))?;
        let total = m
            .checked_mul(self.out)
            .ok_or_else(|| candle_core::Error::msg("leased matmul: output too large"))?;
        let mut dst = vec![0f32; total];
        let dtype = self.blocks.entry.dtype;
        self.blocks
            .with_bytes(|b| kernels::matmul(dtype, (m, self.inp, self.out), lhs, b, &mut dst))
            .map_err(candle_error)?;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }

    /// On CUDA: candle's matrix-vector kernels launched on the leased device
    /// address (see the `cuda` module), never a copy of the weight.
    #[cfg(feature = "cuda-engine")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (m, dims) = self.output_dims(layout)?;
        let weights = self
            .blocks
            .device_memory(&storage.device)
            .map_err(candle_error)?;
        let out = crate::cuda::linear(
            weights,
            self.blocks.entry.dtype,
            (m, self.inp, self.out),
            storage,
            layout,
        )?;
        Ok((out, Shape::from(dims)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::Device;
    use vram_audit::{AuditKey, AuditLog, AuditSink};
    use vram_mock::MockDevice;
    use vram_residency::{LeasePolicy, VramConfig, VramError, VramManager, WorkerSecret};

    fn manager() -> VramManager {
        let device: Arc<dyn vram_residency::Device> = MockDevice::new(0, 16 << 20);
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![9u8; 32])).unwrap();
        let audit: Arc<dyn AuditSink> = Arc::new(
            AuditLog::in_memory(AuditKey::from_secret(&secret.audit_key()), "weights-test")
                .unwrap(),
        );
        VramManager::new(
            VramConfig::builder(secret)
                .device(device)
                .audit(audit)
                .build(),
        )
        .unwrap()
    }

    /// A 4×64 Q8_0 table, its bytes and its values.
    pub(crate) fn table() -> (Vec<u8>, Vec<f32>) {
        let values: Vec<f32> = (0..256u16)
            .map(|i| (f32::from(i) * 7.0) % 23.0 / 11.0 - 1.0)
            .collect();
        let t = Tensor::from_slice(&values, (4, 64), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let expect = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        (q.data().unwrap().into_owned(), expect.to_vec1().unwrap())
    }

    #[test]
    fn a_qtensor_kept_past_its_lease_reads_nothing() {
        let manager = manager();
        let (bytes, values) = table();
        let shard = Arc::new(
            manager
                .seal(
                    &vram_residency::SealRequest::inline(0).unwrap(),
                    vram_residency::SealSource::Bytes(&bytes),
                )
                .unwrap(),
        );
        let lease = manager.lease_shared(&shard, LeasePolicy::Full).unwrap();
        let entry = TensorEntry {
            dtype: GgmlDType::Q8_0,
            dims: vec![4, 64],
            range: 0..bytes.len(),
            shard: 0,
        };
        let blocks = LeasedBlocks::new(lease.handle(), "token_embd.weight", entry);
        let qtensor = blocks.qtensor().unwrap();
        let linear = LeasedLinear::new(Arc::clone(&blocks)).unwrap();

        // While the lease is open: rows looked up in the sealed blocks, and a
        // matmul over them, agree with candle's own dequantization.
        let ids = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let rows = qtensor.embedding(&ids).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows[0], values[128..192]);
        assert_eq!(rows[1], values[..64]);
        let x = Tensor::from_slice(&values[64..128], (1, 64), &Device::Cpu).unwrap();
        let y = linear.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y[0].len(), 4);
        let dot: f32 = values[64..128]
            .iter()
            .zip(&values[64..128])
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            (y[0][1] - dot).abs() < 0.05 * dot.abs().max(1.0),
            "{} vs {dot}",
            y[0][1]
        );
        assert_eq!(
            qtensor.storage_size_in_bytes(),
            0,
            "no address outside a lease"
        );

        // The request ends: the QTensor (and the matmul) kept past it read nothing.
        drop(lease);
        let e = qtensor.embedding(&ids).unwrap_err();
        let ended = VramError::LeaseEnded {
            shard_id: shard.shard_id().to_string(),
        }
        .to_string();
        assert!(e.to_string().contains(&ended), "{e}");
        let e = linear.forward(&x).unwrap_err();
        assert!(e.to_string().contains(&ended), "{e}");
        let e = qtensor.dequantize(&Device::Cpu).unwrap_err();
        assert!(e.to_string().contains(&ended), "{e}");
    }

    #[test]
    fn quantizing_onto_sealed_blocks_changes_nothing() {
        let manager = manager();
        let (bytes, values) = table();
        let shard = Arc::new(
            manager
                .seal(
                    &vram_residency::SealRequest::inline(0).unwrap(),
                    vram_residency::SealSource::Bytes(&bytes),
                )
                .unwrap(),
        );
        let lease = manager.lease_shared(&shard, LeasePolicy::Full).unwrap();
        let entry = TensorEntry {
            dtype: GgmlDType::Q8_0,
            dims: vec![4, 64],
            range: 0..bytes.len(),
            shard: 0,
        };
        let mut storage = LeasedStorage(LeasedBlocks::new(lease.handle(), "t", entry));
        storage.from_float(&[0.0; 256]);
        let CpuStorage::F32(after) = storage.dequantize(256).unwrap() else {
            panic!("f32 expected")
        };
        assert_eq!(after, values);
        assert_eq!(storage.size(), bytes.len());
        manager.verify_sealed(&shard).unwrap();
    }
}
