//! The engine on candle's CUDA device, computing on leased device memory in
//! place (feature `cuda-engine`).
//!
//! A lease on a CUDA shard gives the device address of the sealed bytes
//! ([`MemoryAccess::Device`]), not host bytes. Candle's own quantized CUDA
//! storage owns its memory (a `cudarc` slice freed on drop) and can only be
//! filled by a copy, so no candle tensor is ever built over leased memory
//! here. Instead the engine launches candle's own kernels (its `QUANTIZED`
//! module, the llama.cpp kernels candle ships) with the leased address as
//! the weight argument:
//!
//! - [`linear`] (`y = x · Wᵀ`, the [`LeasedLinear`](crate::weights) op's CUDA
//!   side): the activations quantized to Q8_1 in a buffer of the request's
//!   own, then `mul_mat_vec_<type>_q8_1_cuda<b>` over at most 8 rows at a time
//!   (prompts run in chunks of 8 rows). The kernel reads only the blocks of
//!   each row (`kbx < blocks_per_row`), never past the tensor's range;
//!   candle's tiled `mul_mat_q*` kernels read whole tiles past a row's end,
//!   which over sealed memory would read the next tensor's bytes (or past
//!   the allocation for the last one), so they are not used.
//! - [`embedding`]: `get_rows_<type>` over the rows of the ids, each checked
//!   against the table's row count on the host before the launch.
//! - [`norm`]: the F32/F16 norm weights copied device to device into a
//!   tensor of the request (a few KiB per layer), the one per-request
//!   conversion, as on the CPU.
//!
//! What is launched, and which addresses it reads:
//! - every address is taken from the lease inside [`LeaseHandle::with_memory`]
//!   (which fails once the lease has ended: nothing is launched then) and
//!   narrowed to the tensor's own range with [`DeviceMemory::slice`];
//! - the device of the lease must be the device candle computes on;
//! - kernels run on candle's stream after the call returns. The request's
//!   model holds the lease until it is dropped, and its `Drop` synchronises
//!   the compute device first, so no kernel reads a shard whose lease has
//!   ended. The lease keeps the shard, hence its device allocation, alive.
//!
//! Candle and the sealing backend share the device's primary context: the
//! backend (vram-core) opens a device with `cuDevicePrimaryCtxRetain`
//! through `CudaContext::new`, and candle's `Device::new_cuda_with_stream`
//! does the same; one process, one device, one primary context, so the
//! sealed addresses are valid in the context candle launches in. Candle gets
//! a stream of its own.
//!
//! `unsafe` in this module: kernel launches (their arguments are checked
//! against the kernels' contracts before each) and one device-to-device copy.

#![allow(unsafe_code)]

use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernels, CudaDevice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::quantized::GgmlDType;
use candle_core::{CudaStorage, DType, Device, Layout, Storage, Tensor};
use vram_residency::{DeviceMemory, LeaseHandle, MemoryAccess};

use crate::LlmError;

/// Elements the kernels pad a row of activations to.
const MATRIX_ROW_PADDING: usize = 512;
/// Threads per block of the Q8_1 quantization kernel.
const QUANTIZE_BLOCK: u32 = 256;
/// Threads per block of the row-gathering kernels.
const GET_ROWS_BLOCK: u32 = 256;
/// Rows of activations one matrix-vector launch takes.
const MAX_BATCH: usize = 8;
/// Bytes of one Q8_1 block (32 values).
const Q8_1_BLOCK_BYTES: usize = 36;
const WARP_SIZE: u32 = 32;

/// The CUDA libraries candle's device needs at run time, by what an operator
/// installs: the driver, cuBLAS (and cuBLASLt), cuRAND and NVRTC.
fn missing_libraries() -> Vec<&'static str> {
    use candle_core::cuda_backend::cudarc;
    let mut missing = Vec::new();
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
    for (name, found) in present {
        if !found {
            missing.push(name);
        }
    }
    missing
}

/// Candle's CUDA device on device `ordinal` (the one the model is sealed
/// on), after checking that the libraries it needs can be loaded: a missing
/// one is refused here, at start, by name, instead of failing later.
///
/// # Errors
/// [`LlmError::Engine`] naming the missing libraries, or the driver's error.
pub fn device(ordinal: u32) -> Result<Device, LlmError> {
    let missing = missing_libraries();
    if !missing.is_empty() {
        return Err(LlmError::Engine(format!(
            "the CUDA engine needs {}, which the dynamic loader does not find: install the \
             CUDA 13 runtime libraries (or add their directory to LD_LIBRARY_PATH)",
            missing.join(", ")
        )));
    }
    let ordinal = usize::try_from(ordinal)
        .map_err(|_| LlmError::Engine(format!("CUDA device {ordinal} is out of range")))?;
    Device::new_cuda_with_stream(ordinal)
        .map_err(|e| LlmError::Engine(format!("candle's CUDA device {ordinal}: {e}")))
}

/// The device range of bytes `range` of the shard under `handle`, checked to
/// lie in the shard and on `device`.
pub(crate) fn tensor_memory(
    handle: &LeaseHandle,
    name: &str,
    range: &std::ops::Range<usize>,
    device: &CudaDevice,
) -> Result<DeviceMemory, LlmError> {
    let offset = u64::try_from(range.start).ok();
    let len = u64::try_from(range.len()).ok();
    let memory = handle.with_memory(|memory| match memory {
        MemoryAccess::Device(whole) => offset
            .zip(len)
            .and_then(|(offset, len)| whole.slice(offset, len))
            .ok_or_else(|| LlmError::Compute(format!("tensor {name} lies outside its shard"))),
        _ => Err(LlmError::Engine(format!(
            "tensor {name}: the shard is in host memory, and this request computes on CUDA"
        ))),
    })??;
    let ordinal = device.cuda_stream().context().ordinal();
    if usize::try_from(memory.device()).ok() != Some(ordinal) {
        return Err(LlmError::Engine(format!(
            "tensor {name} is sealed on CUDA device {}, and the engine computes on CUDA device \
             {ordinal}",
            memory.device()
        )));
    }
    Ok(memory)
}

fn int(v: usize, what: &str) -> candle_core::Result<i32> {
    i32::try_from(v).map_err(|_| candle_core::Error::msg(format!("{what} {v} exceeds i32")))
}

fn uint(v: usize, what: &str) -> candle_core::Result<u32> {
    u32::try_from(v).map_err(|_| candle_core::Error::msg(format!("{what} {v} exceeds u32")))
}

fn overflow(what: &str) -> candle_core::Error {
    candle_core::Error::msg(format!("leased CUDA op: {what} overflows"))
}

/// `a × b`, or an error naming `what`.
fn mul(a: usize, b: usize, what: &str) -> candle_core::Result<usize> {
    a.checked_mul(b).ok_or_else(|| overflow(what))
}

/// `cols` rounded up to [`MATRIX_ROW_PADDING`].
fn padded(cols: usize) -> candle_core::Result<usize> {
    mul(
        cols.div_ceil(MATRIX_ROW_PADDING),
        MATRIX_ROW_PADDING,
        "the padded row",
    )
}

/// The matrix-vector kernel of `dtype` (`mul_mat_vec_<type>_q8_1_cuda<b>`,
/// `b` appended by the caller).
fn mmvq_kernel(dtype: GgmlDType) -> candle_core::Result<&'static str> {
    Ok(match dtype {
        GgmlDType::Q4_0 => "mul_mat_vec_q4_0_q8_1_cuda",
        GgmlDType::Q4_1 => "mul_mat_vec_q4_1_q8_1_cuda",
        GgmlDType::Q5_0 => "mul_mat_vec_q5_0_q8_1_cuda",
        GgmlDType::Q5_1 => "mul_mat_vec_q5_1_q8_1_cuda",
        GgmlDType::Q8_0 => "mul_mat_vec_q8_0_q8_1_cuda",
        GgmlDType::Q2K => "mul_mat_vec_q2_K_q8_1_cuda",
        GgmlDType::Q3K => "mul_mat_vec_q3_K_q8_1_cuda",
        GgmlDType::Q4K => "mul_mat_vec_q4_K_q8_1_cuda",
        GgmlDType::Q5K => "mul_mat_vec_q5_K_q8_1_cuda",
        GgmlDType::Q6K => "mul_mat_vec_q6_K_q8_1_cuda",
        other => candle_core::bail!("the CUDA engine has no matmul kernel for {other:?} weights"),
    })
}

/// The row-gathering kernel of `dtype` and its grid's y extent for rows of
/// `hidden` values.
fn get_rows_kernel(dtype: GgmlDType, hidden: usize) -> candle_core::Result<(&'static str, usize)> {
    // Quantized rows: each thread dequantizes two values.
    let per_block = 2usize.saturating_mul(GET_ROWS_BLOCK as usize);
    Ok(match dtype {
        GgmlDType::Q4_0 => ("get_rows_q4_0", hidden.div_ceil(per_block)),
        GgmlDType::Q4_1 => ("get_rows_q4_1", hidden.div_ceil(per_block)),
        GgmlDType::Q5_0 => ("get_rows_q5_0", hidden.div_ceil(per_block)),
        GgmlDType::Q5_1 => ("get_rows_q5_1", hidden.div_ceil(per_block)),
        GgmlDType::Q8_0 => ("get_rows_q8_0", hidden.div_ceil(per_block)),
        GgmlDType::F32 => ("get_rows_f32", hidden.div_ceil(GET_ROWS_BLOCK as usize)),
        GgmlDType::F16 => ("get_rows_f16", hidden.div_ceil(GET_ROWS_BLOCK as usize)),
        other => candle_core::bail!("the CUDA engine has no embedding kernel for {other:?}"),
    })
}

/// Bytes of one row of `cols` values of `dtype`.
fn row_bytes(dtype: GgmlDType, cols: usize) -> candle_core::Result<usize> {
    let block = dtype.block_size();
    match (cols.checked_rem(block), cols.checked_div(block)) {
        (Some(0), Some(blocks)) => mul(blocks, dtype.type_size(), "a row's size"),
        _ => candle_core::bail!("rows of {cols} values are not whole {dtype:?} blocks of {block}"),
    }
}

/// `rows` rows of `cols` f32 activations quantized to Q8_1, each row padded
/// to [`MATRIX_ROW_PADDING`] values (zeros), as the matrix-vector kernels
/// read them.
fn quantize_q8_1(
    x: &CudaView<'_, f32>,
    cols: usize,
    rows: usize,
    dev: &CudaDevice,
) -> candle_core::Result<CudaSlice<u8>> {
    let padded = padded(cols)?;
    let bytes = mul(
        mul(padded.div_ceil(32), Q8_1_BLOCK_BYTES, "a quantized row")?,
        rows,
        "the quantized activations",
    )?;
    let dst = dev.alloc_zeros::<u8>(bytes)?;
    let func = dev.get_or_load_func("quantize_q8_1", &kernels::QUANTIZED)?;
    let cfg = LaunchConfig {
        grid_dim: (
            uint(padded.div_ceil(QUANTIZE_BLOCK as usize), "blocks")?,
            uint(rows, "rows")?,
            1,
        ),
        block_dim: (QUANTIZE_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let (k, k_padded) = (int(cols, "columns")?, int(padded, "columns")?);
    let mut builder = func.builder();
    builder.arg(x);
    builder.arg(&dst);
    builder.arg(&k);
    builder.arg(&k_padded);
    // SAFETY: `quantize_q8_1(const float *x, void *vy, int kx, int
    // kx_padded)` with grid (ceil(kx_padded / 256), rows): it reads x[row *
    // kx + i] for i < kx (x holds rows * kx values: the caller's view) and
    // writes the row's kx_padded / 32 Q8_1 blocks of vy, allocated above for
    // `rows` rows.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(dst)
}

/// `y = x · Wᵀ` for `x` (`m` rows of `inp` f32 values, contiguous at
/// `layout`) and the leased quantized weight `W` (`out` rows of `inp`
/// values at `weights`): an `m × out` f32 result on `x`'s device.
pub(crate) fn linear(
    weights: DeviceMemory,
    dtype: GgmlDType,
    (m, inp, out): (usize, usize, usize),
    x: &CudaStorage,
    layout: &Layout,
) -> candle_core::Result<CudaStorage> {
    let dev = &x.device;
    let kernel = mmvq_kernel(dtype)?;
    let needed = mul(row_bytes(dtype, inp)?, out, "the weight's size")?;
    if u64::try_from(needed).ok() != Some(weights.len()) {
        candle_core::bail!(
            "leased matmul: the weight holds {} bytes, {out}×{inp} {dtype:?} needs {needed}",
            weights.len()
        )
    }
    let count = mul(m, inp, "the input")?;
    let start = layout.start_offset();
    let end = start
        .checked_add(count)
        .ok_or_else(|| overflow("the input"))?;
    let x = x.as_cuda_slice::<f32>()?;
    if end > x.len() {
        candle_core::bail!("leased matmul: input out of its storage")
    }
    let x = x.slice(start..end);
    let total = mul(m, out, "the output")?;
    let dst = dev.alloc_zeros::<f32>(total)?;
    let padded = padded(inp)?;
    let (ncols, nrows, nrows_y) = (
        int(inp, "columns")?,
        int(out, "rows")?,
        int(padded, "columns")?,
    );
    let address = weights.address();
    let mut row = 0;
    while row < m {
        let b = MAX_BATCH.min(m.saturating_sub(row));
        let next = row.saturating_add(b);
        let chunk = x.slice(mul(row, inp, "the input")?..mul(next, inp, "the input")?);
        let quantized = quantize_q8_1(&chunk, inp, b, dev)?;
        let func = dev.get_or_load_func(&format!("{kernel}{b}"), &kernels::QUANTIZED)?;
        let rows = uint(out, "rows")?;
        let (nblocks, nwarps) = if b == 1 {
            (rows, 4)
        } else if b <= 4 {
            (rows.div_ceil(2), 4)
        } else {
            (rows.div_ceil(2), 2)
        };
        let cfg = LaunchConfig {
            grid_dim: (nblocks, 1, 1),
            block_dim: (WARP_SIZE, nwarps, 1),
            shared_mem_bytes: 0,
        };
        let target = dst.slice(mul(row, out, "the output")?..mul(next, out, "the output")?);
        let mut builder = func.builder();
        builder.arg(&address);
        builder.arg(&quantized);
        builder.arg(&target);
        builder.arg(&ncols);
        builder.arg(&nrows);
        builder.arg(&nrows_y);
        builder.arg(&nrows);
        // SAFETY: `mul_mat_vec_<type>_q8_1_cuda<b>(const void *vx, const
        // void *vy, float *dst, int ncols_x, int nrows_x, int nrows_y, int
        // nrows_dst)`: row r of the weight is read as its ncols_x / block
        // blocks at vx + r * row_bytes for r < nrows_x (the kernel bounds
        // both), all inside `weights`, whose length was checked above to be
        // exactly nrows_x rows (the range the lease vouches for, narrowed
        // to this tensor); vy holds b rows of nrows_y / 32 Q8_1 blocks
        // (quantized above); dst[j * nrows_dst + r] for j < b lies in
        // `target` (b × out values). The lease keeps the weight's memory
        // allocated until the request's model, which synchronises the
        // device in its Drop, is gone.
        unsafe { builder.launch(cfg) }.w()?;
        row = next;
    }
    Ok(CudaStorage::wrap_cuda_slice(dst, dev.clone()))
}

/// The embedding rows of `ids` from the leased table at `table` (`rows`
/// rows of `hidden` values of `dtype`), as a `[1, ids, hidden]` f32 tensor
/// on `device`.
///
/// # Errors
/// [`LlmError::InvalidRequest`] for an id past the table;
/// [`LlmError::Compute`] for a kernel failure.
pub(crate) fn embedding(
    table: DeviceMemory,
    dtype: GgmlDType,
    (rows, hidden): (usize, usize),
    ids: &[u32],
    device: &CudaDevice,
) -> Result<Tensor, LlmError> {
    let compute = |e: candle_core::Error| LlmError::Compute(e.to_string());
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= rows) {
        return Err(LlmError::InvalidRequest(format!(
            "token id {bad} is past the vocabulary of {rows} tokens"
        )));
    }
    let stride = row_bytes(dtype, hidden).map_err(compute)?;
    if stride.checked_mul(rows).and_then(|b| u64::try_from(b).ok()) != Some(table.len()) {
        return Err(LlmError::Compute(format!(
            "the embedding table holds {} bytes, not {rows} rows of {stride}",
            table.len()
        )));
    }
    let (kernel, grid_y) = get_rows_kernel(dtype, hidden).map_err(compute)?;
    let total = ids
        .len()
        .checked_mul(hidden)
        .ok_or_else(|| LlmError::Compute("the embedding output overflows".into()))?;
    let run = || -> candle_core::Result<CudaSlice<f32>> {
        let dst = device.alloc_zeros::<f32>(total)?;
        if ids.is_empty() {
            return Ok(dst);
        }
        let on_device = device.clone_htod(ids)?;
        let func = device.get_or_load_func(kernel, &kernels::QUANTIZED)?;
        let cfg = LaunchConfig {
            grid_dim: (
                uint(ids.len(), "ids")?,
                uint(grid_y.min(usize::from(u16::MAX)), "blocks")?,
                1,
            ),
            block_dim: (GET_ROWS_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (address, hidden, stride) = (
            table.address(),
            i64::try_from(hidden).map_err(|_| overflow("hidden"))?,
            i64::try_from(stride).map_err(|_| overflow("the row stride"))?,
        );
        let mut builder = func.builder();
        builder.arg(&address);
        builder.arg(&on_device);
        builder.arg(&dst);
        builder.arg(&hidden);
        builder.arg(&stride);
        // SAFETY: `get_rows_<type>(const void *vx, const uint32_t *ids,
        // float *dst, int64_t hidden, int64_t row_stride)`: for each id it
        // reads row id's `hidden` values at vx + id * row_stride; every id
        // was checked above to be below `rows`, and the table's length to be
        // rows × row_stride, so every read lies in `table`; dst holds
        // ids × hidden values. Memory kept as in `linear`.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(dst)
    };
    let dst = run().map_err(compute)?;
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(dst, device.clone()));
    Ok(Tensor::from_storage(
        storage,
        (1, ids.len(), hidden),
        BackpropOp::none(),
        false,
    ))
}

/// A norm weight (`n` F32 or F16 values at `memory`) copied device to device
/// into an f32 tensor of the request.
///
/// # Errors
/// [`LlmError::Compute`] for another type, a length that is not `n` values,
/// or a copy failure.
pub(crate) fn norm(
    memory: DeviceMemory,
    dtype: GgmlDType,
    n: usize,
    device: &CudaDevice,
) -> Result<Tensor, LlmError> {
    let compute = |e: candle_core::Error| LlmError::Compute(e.to_string());
    let (candle_dtype, width) = match dtype {
        GgmlDType::F32 => (DType::F32, 4),
        GgmlDType::F16 => (DType::F16, 2),
        other => {
            return Err(LlmError::Compute(format!(
                "a norm weight is F32 or F16, not {other:?}"
            )))
        }
    };
    let bytes = n
        .checked_mul(width)
        .ok_or_else(|| LlmError::Compute("the norm's size overflows".into()))?;
    if u64::try_from(bytes).ok() != Some(memory.len()) {
        return Err(LlmError::Compute(format!(
            "the norm holds {} bytes, not {n} {dtype:?} values",
            memory.len()
        )));
    }
    let copy = || -> candle_core::Result<Storage> {
        let storage = if candle_dtype == DType::F32 {
            let mut dst = device.alloc_zeros::<f32>(n)?;
            copy_from(&mut dst, memory, bytes, device)?;
            CudaStorage::wrap_cuda_slice(dst, device.clone())
        } else {
            let mut dst = device.alloc_zeros::<half::f16>(n)?;
            copy_from(&mut dst, memory, bytes, device)?;
            CudaStorage::wrap_cuda_slice(dst, device.clone())
        };
        Ok(Storage::Cuda(storage))
    };
    let storage = copy().map_err(compute)?;
    Tensor::from_storage(storage, n, BackpropOp::none(), false)
        .to_dtype(DType::F32)
        .map_err(compute)
}

/// Copies `bytes` bytes from the leased `memory` into `dst` on candle's
/// stream.
fn copy_from<T>(
    dst: &mut CudaSlice<T>,
    memory: DeviceMemory,
    bytes: usize,
    device: &CudaDevice,
) -> candle_core::Result<()> {
    if u64::try_from(bytes).ok() != Some(memory.len())
        || bytes != dst.len().saturating_mul(size_of::<T>())
    {
        candle_core::bail!("leased copy: sizes differ")
    }
    let stream = device.cuda_stream();
    let (target, _record) = dst.device_ptr_mut(&stream);
    // SAFETY: `target` is `bytes` bytes of a buffer this function's caller
    // owns (checked above); the source is `bytes` bytes inside the leased
    // shard (`memory`, narrowed to the tensor). The copy is ordered on
    // candle's stream before any use of `dst`; the lease keeps the source
    // allocated until the request's model (which synchronises in Drop) is
    // gone.
    unsafe {
        candle_core::cuda_backend::cudarc::driver::result::memcpy_dtod_async(
            target,
            memory.address(),
            bytes,
            stream.cu_stream(),
        )
    }
    .w()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::gguf::TensorEntry;
    use crate::weights::{LeasedBlocks, LeasedLinear};
    use vram_residency::{LeasePolicy, VramConfig, VramError, VramManager, WorkerSecret};

    /// A manager on CUDA device 0 and candle's device there, or `None`,
    /// said loudly (a failure under `VRAM_RESIDENCY_REQUIRE_CUDA`).
    fn gpu() -> Option<(VramManager, Device)> {
        let require = std::env::var_os("VRAM_RESIDENCY_REQUIRE_CUDA").is_some();
        let found = vram_residency::cuda_devices()
            .map_err(|e| e.to_string())
            .and_then(|d| {
                let compute = device(0).map_err(|e| e.to_string())?;
                Ok((d, compute))
            });
        let (devices, compute) = match found {
            Ok(found) => found,
            Err(why) => {
                assert!(!require, "VRAM_RESIDENCY_REQUIRE_CUDA is set: {why}");
                eprintln!("\n*** SKIPPED: no CUDA device ({why}); not exercised here ***\n");
                return None;
            }
        };
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![9u8; 32])).unwrap();
        let manager = VramManager::new(
            VramConfig::builder(secret)
                .device(Arc::clone(devices.first()?))
                .build(),
        )
        .unwrap();
        Some((manager, compute))
    }

    #[test]
    fn the_engine_and_the_sealing_backend_share_the_primary_context() {
        let Some((_manager, compute)) = gpu() else {
            return;
        };
        let candle = compute
            .as_cuda_device()
            .unwrap()
            .cuda_stream()
            .context()
            .cu_ctx();
        // What the sealing backend opens: the device's primary context.
        let backend = candle_core::cuda_backend::cudarc::driver::CudaContext::new(0)
            .unwrap()
            .cu_ctx();
        assert_eq!(candle, backend, "one device, one primary context");
    }

    #[test]
    fn a_weight_kept_past_its_lease_launches_nothing_on_cuda() {
        let Some((manager, compute)) = gpu() else {
            return;
        };
        // The weights' tests' 4×64 Q8_0 table and its values.
        let (bytes, values) = crate::weights::tests::table();
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
        let linear = LeasedLinear::new(LeasedBlocks::new(lease.handle(), "w", entry)).unwrap();
        let x = Tensor::from_slice(&values[64..128], (1, 64), &compute).unwrap();
        let y = linear.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let dot: f32 = values[64..128].iter().map(|a| a * a).sum();
        assert!(
            (y[0][1] - dot).abs() < 0.05 * dot.abs().max(1.0),
            "{} vs {dot}",
            y[0][1]
        );

        drop(lease);
        let e = linear.forward(&x).unwrap_err();
        let ended = VramError::LeaseEnded {
            shard_id: shard.shard_id().to_string(),
        }
        .to_string();
        assert!(e.to_string().contains(&ended), "{e}");
    }

    #[test]
    fn kernels_are_named_for_the_types_the_cpu_engine_supports() {
        for dtype in [
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q6K,
        ] {
            assert!(mmvq_kernel(dtype).is_ok(), "{dtype:?}");
        }
        assert!(mmvq_kernel(GgmlDType::F32).is_err());
        assert_eq!(
            get_rows_kernel(GgmlDType::Q4_1, 576).unwrap(),
            ("get_rows_q4_1", 2)
        );
        assert_eq!(
            get_rows_kernel(GgmlDType::F32, 576).unwrap(),
            ("get_rows_f32", 3)
        );
        assert!(get_rows_kernel(GgmlDType::Q4K, 576).is_err());
    }

    #[test]
    fn row_sizes_are_whole_blocks() {
        assert_eq!(row_bytes(GgmlDType::Q4_1, 576).unwrap(), 18 * 20);
        assert_eq!(row_bytes(GgmlDType::Q8_0, 64).unwrap(), 2 * 34);
        assert!(row_bytes(GgmlDType::Q8_0, 48).is_err());
    }

    #[test]
    fn without_a_driver_the_device_is_refused_naming_what_is_missing() {
        match device(0) {
            Err(LlmError::Engine(msg)) => {
                eprintln!("CUDA engine refused, as expected on a host without a GPU: {msg}");
                assert!(msg.contains("CUDA"), "{msg}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => eprintln!(
                "NOTE: a CUDA device was opened: the refusal path is not exercised on this host"
            ),
        }
    }
}
