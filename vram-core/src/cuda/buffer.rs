//! [`CudaBuffer`]: one `cuMemAlloc` allocation, with bounds-checked copies,
//! pipelined uploads through pinned staging, and on-device leaf hashing.

use super::kernel::THREADS_PER_BLOCK;
use super::shared::DeviceShared;
use super::staging::PinnedStaging;
use super::{call, driver_error, guarded};
use crate::source::read_full;
use crate::{checked_range, DeviceBuffer, DeviceError, StreamError};
use cudarc::driver::{result, sys, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::fmt;
use std::io::Read;
use std::sync::Arc;

/// Leaves hashed per kernel launch: bounds the scratch output (32 MiB) and keeps
/// the grid far below the driver's limit.
const MAX_LEAVES_PER_LAUNCH: u64 = 1 << 20;

/// Bytes of one SHA-256 hash.
const HASH_LEN: u64 = 32;

/// One device allocation and the stream all of its work runs on.
///
/// Invariants: `ptr .. ptr + len` is a live `cuMemAlloc` allocation in the
/// stream's context until `drop`, and `drop` waits for the stream before freeing.
pub(super) struct Allocation {
    id: u64,
    device: u32,
    ptr: sys::CUdeviceptr,
    len: u64,
    stream: Arc<CudaStream>,
}

impl Allocation {
    /// `cuMemAlloc(bytes)` in `shared`'s context; work on it runs on `stream`.
    /// Out of memory is reported with `available: 0`; the device fills it in.
    pub(super) fn new(
        shared: &DeviceShared,
        id: u64,
        bytes: u64,
        stream: Arc<CudaStream>,
    ) -> Result<Self, DeviceError> {
        let out_of_memory = DeviceError::OutOfMemory {
            device: shared.index,
            needed: bytes,
            available: 0,
        };
        let size = usize::try_from(bytes).map_err(|_| out_of_memory.clone())?;
        let ctx = &shared.ctx;
        let allocated = guarded("cuMemAlloc", || {
            ctx.bind_to_thread()?;
            // SAFETY: plain `cuMemAlloc` in the context just bound; the memory is
            // uninitialised device memory, which is only ever copied as bytes.
            unsafe { result::malloc_sync(size) }
        })?;
        let ptr = match allocated {
            Ok(ptr) => ptr,
            Err(err) if err.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                return Err(out_of_memory)
            }
            Err(err) => return Err(driver_error("cuMemAlloc", err)),
        };
        Ok(Self {
            id,
            device: shared.index,
            ptr,
            len: bytes,
            stream,
        })
    }

    /// Registry id (allocation order on the device); read by the test hooks
    /// and the demo.
    #[cfg(any(test, feature = "test-hooks", feature = "demo"))]
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Where `address .. address + len` starts inside this allocation, if it
    /// lies wholly inside it.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(super) fn offset_of(&self, address: u64, len: u64) -> Option<u64> {
        let offset = address.checked_sub(self.ptr)?;
        (offset.checked_add(len)? <= self.len).then_some(offset)
    }

    /// Length in bytes.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Device address of byte `offset` (`offset` already checked against `len`).
    fn address(&self, offset: u64) -> Result<sys::CUdeviceptr, DeviceError> {
        self.ptr
            .checked_add(offset)
            .ok_or(DeviceError::OutOfBounds {
                offset,
                len: 0,
                buffer_len: self.len,
            })
    }

    /// Copies `data` to `offset` and waits for the copy.
    pub(super) fn write(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let range = checked_range(offset, data.len(), self.len)?;
        if data.is_empty() {
            return Ok(());
        }
        let dst = self.address(range.start)?;
        let stream = &self.stream;
        let enqueued = call("cuMemcpyHtoDAsync", || {
            stream.context().bind_to_thread()?;
            // SAFETY: `dst .. dst + data.len()` lies inside this live allocation
            // (checked above); `data` stays borrowed until the stream is
            // synchronised below, on success and on failure alike.
            unsafe { result::memcpy_htod_async(dst, data, stream.cu_stream()) }
        });
        let synced = self.sync();
        enqueued?;
        synced
    }

    /// Copies `data` to `offset` by DMA straight from `data`'s own pages, which
    /// are page-locked with the driver (`cuMemHostRegister`) for the copy's
    /// duration, so no host thread copies them through staging memory first.
    /// Waits for the copy and unregisters the pages on every path.
    ///
    /// `Ok(false)` when the driver will not register this memory (already
    /// registered, a mapping it refuses, registration unsupported): nothing
    /// was copied, and the caller copies another way.
    pub(super) fn write_registered(&self, offset: u64, data: &[u8]) -> Result<bool, DeviceError> {
        let range = checked_range(offset, data.len(), self.len)?;
        if data.is_empty() {
            return Ok(true);
        }
        let dst = self.address(range.start)?;
        let stream = &self.stream;
        // The driver never writes through a registration used only as a copy
        // source; the pointer is `*mut` because the C API is.
        let host: *mut std::ffi::c_void = data.as_ptr().cast_mut().cast();
        let len = data.len();
        let register = |flags: u32| {
            call("cuMemHostRegister", || {
                stream.context().bind_to_thread()?;
                // SAFETY: `host .. host + len` is `data`, a live borrowed slice
                // for this whole function; the registration is removed below
                // before the borrow ends, on every path that made it.
                unsafe { sys::cuMemHostRegister_v2(host, len, flags) }.result()
            })
        };
        // Plain first; read-only for memory mapped without write access.
        let registered = register(0).or_else(|_| register(sys::CU_MEMHOSTREGISTER_READ_ONLY));
        if let Err(err) = registered {
            tracing::debug!(error = %err, len, "host memory cannot be registered; copying through staging");
            return Ok(false);
        }
        let enqueued = call("cuMemcpyHtoDAsync", || {
            // SAFETY: `dst .. dst + len` lies inside this live allocation
            // (checked above); `data` is registered and stays borrowed until the
            // stream is synchronised below, on success and on failure alike.
            unsafe { result::memcpy_htod_async(dst, data, stream.cu_stream()) }
        });
        let synced = self.sync();
        let unregistered = call("cuMemHostUnregister", || {
            stream.context().bind_to_thread()?;
            // SAFETY: `host` was registered above and its copy has completed
            // (or the context has failed): no DMA reads it any more.
            unsafe { sys::cuMemHostUnregister(host) }.result()
        });
        enqueued?;
        synced?;
        unregistered?;
        Ok(true)
    }

    /// Copies `out.len()` bytes from `offset` into `out` and waits for the copy.
    pub(super) fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        let range = checked_range(offset, out.len(), self.len)?;
        if out.is_empty() {
            return Ok(());
        }
        let src = self.address(range.start)?;
        let stream = &self.stream;
        let enqueued = call("cuMemcpyDtoHAsync", || {
            stream.context().bind_to_thread()?;
            // SAFETY: `src .. src + out.len()` lies inside this live allocation
            // (checked above); `out` stays mutably borrowed until the stream is
            // synchronised below, on success and on failure alike.
            unsafe { result::memcpy_dtoh_async(out, src, stream.cu_stream()) }
        });
        let synced = self.sync();
        enqueued?;
        synced
    }

    /// Waits for all work on this allocation's stream.
    fn sync(&self) -> Result<(), DeviceError> {
        // cudarc first reports (and clears) an error stored by an earlier drop,
        // without waiting; a second try then really waits. A sticky context error
        // fails both times.
        call("cuStreamSynchronize", || self.stream.synchronize()).or_else(|first| {
            tracing::warn!(error = %first, "stream synchronize reported an earlier error; waiting again");
            call("cuStreamSynchronize", || self.stream.synchronize())
        })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if let Err(err) = self.sync() {
            tracing::error!(device = self.device, id = self.id, error = %err, "waiting for a buffer's stream before freeing it failed");
        }
        let ptr = self.ptr;
        let ctx = self.stream.context();
        let freed = call("cuMemFree", || {
            ctx.bind_to_thread()?;
            // SAFETY: `ptr` came from `cuMemAlloc` in this context, is freed only
            // here (once), and the stream that used it has been synchronised.
            unsafe { result::free_sync(ptr) }
        });
        if let Err(err) = freed {
            tracing::error!(device = self.device, id = self.id, error = %err, "freeing device memory failed");
        }
    }
}

/// An allocation of plain device memory on a [`CudaDevice`](super::CudaDevice).
/// Freed on drop (after its pending work).
pub struct CudaBuffer {
    alloc: Arc<Allocation>,
    shared: Arc<DeviceShared>,
}

impl fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBuffer")
            .field("device", &self.alloc.device)
            .field("id", &self.alloc.id)
            .field("len", &self.alloc.len)
            .finish_non_exhaustive()
    }
}

/// Why [`CudaBuffer::pipelined_write`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelinedWriteError {
    /// Reading the source failed.
    #[error("reading the source failed: {0}")]
    Read(#[from] std::io::Error),
    /// The device failed, or the source holds more bytes than the buffer.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl CudaBuffer {
    pub(super) fn new(alloc: Arc<Allocation>, shared: Arc<DeviceShared>) -> Self {
        Self { alloc, shared }
    }

    /// This buffer's id in `CudaDevice::live_buffers` (a test hook).
    pub fn id(&self) -> u64 {
        self.alloc.id
    }

    /// Enqueues a copy of `staging[..len]` to `offset` and returns without waiting.
    /// The staging buffer records the copy: its next mutable access (and its drop)
    /// waits until the copy has completed.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when `len` exceeds the staging buffer;
    /// [`DeviceError::OutOfBounds`] when the range does not fit this buffer;
    /// [`DeviceError::Driver`] when enqueueing fails.
    pub fn write_at_async_pinned(
        &mut self,
        offset: u64,
        staging: &PinnedStaging,
        len: usize,
    ) -> Result<(), DeviceError> {
        let src = staging
            .as_slice()?
            .get(..len)
            .ok_or(DeviceError::InvalidArgument {
                reason: "copy longer than the pinned staging buffer",
            })?;
        let range = checked_range(offset, len, self.alloc.len)?;
        if src.is_empty() {
            return Ok(());
        }
        let dst = self.alloc.address(range.start)?;
        let stream = &self.alloc.stream;
        let enqueued = call("cuMemcpyHtoDAsync", || {
            stream.context().bind_to_thread()?;
            // SAFETY: `dst .. dst + len` lies inside this live allocation (checked
            // above). `src` is page-locked memory owned by `staging`, which is not
            // written or freed before `staging.done` (recorded right after this
            // copy on the same stream, after a wait for the copies recorded on it
            // before, on any stream) completes: `as_mut_slice` and `drop` wait on
            // it. If recording fails, the stream is synchronised below instead.
            unsafe { result::memcpy_htod_async(dst, src, stream.cu_stream()) }
        });
        let recorded = enqueued.and_then(|()| staging.record_use(stream));
        if let Err(err) = recorded {
            if let Err(sync_err) = self.alloc.sync() {
                tracing::error!(error = %sync_err, "synchronising after a failed pinned copy failed");
            }
            return Err(err);
        }
        Ok(())
    }

    /// Copies `data` to `offset` by DMA straight from `data`'s own pages,
    /// registered with the driver for the copy (`cuMemHostRegister`), so no
    /// host thread copies the bytes; waits for the copy. `None` when the driver
    /// will not register that memory (already page-locked, a mapping it
    /// refuses): nothing was copied.
    ///
    /// Registration pins every page first, which on some hosts costs more
    /// than the copy it saves (`vram bench` on CUDA measures both); seals use
    /// the pinned pipeline.
    ///
    /// # Errors
    /// `Some(Err(_))`: [`DeviceError::OutOfBounds`] when the range does not fit
    /// this buffer, driver errors.
    pub fn write_direct(&mut self, offset: u64, data: &[u8]) -> Option<Result<(), DeviceError>> {
        match self.alloc.write_registered(offset, data) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(err) => Some(Err(err)),
        }
    }

    /// Streams `reader` into this buffer from offset 0 through two pinned staging
    /// buffers of `chunk` bytes, and returns the number of bytes written.
    ///
    /// While chunk N is copied from one staging buffer, chunk N+1 is read into the
    /// other, and `on_chunk` (the caller's hashing) sees chunk N. A staging buffer
    /// is refilled only after its previous copy has completed. Host memory stays
    /// `O(chunk)` whatever the source size. Bytes past the end of a short source
    /// are left as they were.
    ///
    /// # Errors
    /// [`PipelinedWriteError::Read`] when the reader fails;
    /// [`PipelinedWriteError::Device`] with [`DeviceError::OutOfBounds`] when the
    /// source holds more bytes than the buffer, [`DeviceError::InvalidArgument`]
    /// for `chunk == 0`, or a driver error.
    pub fn pipelined_write<R: Read>(
        &mut self,
        mut reader: R,
        chunk: usize,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<u64, PipelinedWriteError> {
        if chunk == 0 {
            return Err(DeviceError::InvalidArgument {
                reason: "zero-byte pipeline chunk",
            }
            .into());
        }
        // No staging buffer needs to be larger than the whole buffer.
        let chunk = chunk.min(usize::try_from(self.alloc.len).unwrap_or(usize::MAX));
        let mut first = PinnedStaging::new(&self.shared.ctx, chunk)?;
        let mut second = PinnedStaging::new(&self.shared.ctx, chunk)?;
        let outcome = self.pipeline(&mut reader, [&mut first, &mut second], &mut on_chunk);
        // Whatever happened, every copy completes before the staging buffers go
        // (their drops wait on their own events as well).
        let synced = self.alloc.sync();
        let written = outcome?;
        synced?;
        tracing::debug!(
            device = self.alloc.device,
            id = self.alloc.id,
            written,
            chunk,
            "pipelined upload finished"
        );
        Ok(written)
    }

    fn pipeline(
        &mut self,
        reader: &mut impl Read,
        staging: [&mut PinnedStaging; 2],
        on_chunk: &mut impl FnMut(&[u8]),
    ) -> Result<u64, PipelinedWriteError> {
        let [first, second] = staging;
        let capacity = self.alloc.len;
        let mut offset = 0u64;
        let mut use_first = true;
        loop {
            let remaining = capacity.saturating_sub(offset);
            if remaining == 0 {
                let mut probe = [0u8; 1];
                if read_full(reader, &mut probe)? > 0 {
                    return Err(DeviceError::OutOfBounds {
                        offset: capacity,
                        len: 1,
                        buffer_len: capacity,
                    }
                    .into());
                }
                return Ok(offset);
            }
            let staging: &mut PinnedStaging = if use_first { &mut *first } else { &mut *second };
            use_first = !use_first;
            // Waits until this staging buffer's previous copy has completed.
            let host = staging.as_mut_slice()?;
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(host.len());
            let target = host.get_mut(..want).ok_or(DeviceError::InvalidArgument {
                reason: "pipeline chunk larger than its staging buffer",
            })?;
            let filled = read_full(reader, target)?;
            if filled == 0 {
                return Ok(offset);
            }
            self.write_at_async_pinned(offset, staging, filled)?;
            // Hash chunk N on the host while its copy is in flight.
            if let Some(bytes) = staging.as_slice()?.get(..filled) {
                on_chunk(bytes);
            }
            let filled64 = u64::try_from(filled).map_err(|_| DeviceError::InvalidArgument {
                reason: "chunk length does not fit in 64 bits",
            })?;
            offset = offset.saturating_add(filled64);
            if filled < want {
                return Ok(offset);
            }
        }
    }

    /// Hashes leaves `first_leaf .. first_leaf + count` (checked) in batches.
    fn hash_leaves(
        &self,
        prefix: &[u8],
        leaf_size: u64,
        first_leaf: u64,
        count: u64,
    ) -> Result<Vec<[u8; 32]>, DeviceError> {
        let end = leaf_range(self.alloc.len, leaf_size, first_leaf, count)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let function = self.shared.hasher()?;
        let mut hashes = Vec::new();
        let capacity = usize::try_from(count).map_err(|_| DeviceError::InvalidArgument {
            reason: "too many leaves for host memory",
        })?;
        hashes
            .try_reserve_exact(capacity)
            .map_err(|_| DeviceError::InvalidArgument {
                reason: "too many leaves for host memory",
            })?;
        let mut batch_first = first_leaf;
        while batch_first < end {
            let batch = end.saturating_sub(batch_first).min(MAX_LEAVES_PER_LAUNCH);
            self.hash_batch(function, prefix, leaf_size, batch_first, batch, &mut hashes)?;
            batch_first = batch_first.saturating_add(batch);
        }
        Ok(hashes)
    }

    /// One kernel launch over `batch` (1 ..= MAX_LEAVES_PER_LAUNCH) checked leaves.
    fn hash_batch(
        &self,
        function: &CudaFunction,
        prefix: &[u8],
        leaf_size: u64,
        batch_first: u64,
        batch: u64,
        hashes: &mut Vec<[u8; 32]>,
    ) -> Result<(), DeviceError> {
        let too_large = DeviceError::InvalidArgument {
            reason: "leaf batch or prefix too large",
        };
        let out_bytes = batch.checked_mul(HASH_LEN).ok_or(too_large.clone())?;
        let prefix_len = u64::try_from(prefix.len()).map_err(|_| too_large.clone())?;
        // Output first, then the prefix (at least one byte, so never a zero-size
        // allocation), on this buffer's stream so the kernel is ordered after it.
        let scratch_len = out_bytes
            .checked_add(prefix_len.max(1))
            .ok_or(too_large.clone())?;
        let scratch = Allocation::new(
            &self.shared,
            u64::MAX,
            scratch_len,
            Arc::clone(&self.alloc.stream),
        )?;
        scratch.write(out_bytes, prefix)?;
        let data = self.alloc.ptr;
        let data_len = self.alloc.len;
        let out = scratch.ptr;
        let prefix_ptr = scratch.address(out_bytes)?;
        let config = launch_config(batch)?;
        let stream = &self.alloc.stream;
        call("cuLaunchKernel", || {
            let mut launch = stream.launch_builder(function);
            launch
                .arg(&data)
                .arg(&data_len)
                .arg(&prefix_ptr)
                .arg(&prefix_len)
                .arg(&leaf_size)
                .arg(&batch_first)
                .arg(&batch)
                .arg(&out);
            // SAFETY: the eight arguments match the kernel's signature (three
            // device pointers and five u64, see kernel.rs). The host checked that
            // every leaf in the batch starts inside `data[..data_len]`, and the
            // kernel clamps each leaf to `data_len`, reads `prefix_len` bytes at
            // `prefix_ptr` and writes `batch * 32` bytes at `out`, all inside live
            // allocations that outlive the launch (`scratch` is read back, which
            // synchronises the stream, before it drops).
            unsafe { launch.launch(config) }
        })?;
        let mut host = vec![0u8; usize::try_from(out_bytes).map_err(|_| too_large.clone())?];
        scratch.read(0, &mut host)?;
        for hash in host.chunks_exact(32) {
            let hash: [u8; 32] = hash.try_into().map_err(|_| too_large.clone())?;
            hashes.push(hash);
        }
        Ok(())
    }
}

impl DeviceBuffer for CudaBuffer {
    fn len(&self) -> u64 {
        self.alloc.len
    }

    /// The allocation's device address, after the work queued on its stream
    /// has completed (so a kernel on another stream sees every byte written).
    fn memory(&self) -> Result<crate::MemoryAccess<'_>, DeviceError> {
        self.alloc.sync()?;
        Ok(crate::MemoryAccess::Device(crate::DeviceMemory::new(
            self.alloc.ptr,
            self.alloc.len,
            self.alloc.device,
        )))
    }

    fn stream_from(
        &mut self,
        reader: &mut dyn Read,
        chunk: usize,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, StreamError> {
        self.pipelined_write(reader, chunk, |c| on_chunk(c))
            .map_err(|e| match e {
                PipelinedWriteError::Read(io) => StreamError::Read(io),
                PipelinedWriteError::Device(d) => StreamError::Device(d),
            })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.alloc.write(offset, data)
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        self.alloc.read(offset, out)
    }

    /// Runs a SHA-256 kernel (compiled with NVRTC at first use, cached per device),
    /// one thread per leaf, and copies only the 32-byte hashes back.
    /// [`DeviceError::Unsupported`] when NVRTC is not installed.
    fn hash_leaves_on_device(
        &self,
        prefix: &[u8],
        leaf_size: u64,
        first_leaf: u64,
        count: u64,
    ) -> Result<Vec<[u8; 32]>, DeviceError> {
        self.hash_leaves(prefix, leaf_size, first_leaf, count)
    }
}

/// The grid for one launch of the leaf kernel over `batch` leaves: one thread per
/// leaf, [`THREADS_PER_BLOCK`] threads per block, a one-dimensional grid. The
/// kernel's host emulation test runs exactly this grid.
pub(super) fn launch_config(batch: u64) -> Result<LaunchConfig, DeviceError> {
    // gridDim.x may be at most 2^31 - 1 on every device the driver supports.
    const MAX_GRID_X: u64 = (1 << 31) - 1;
    let blocks = batch.div_ceil(u64::from(THREADS_PER_BLOCK));
    let blocks = u32::try_from(blocks)
        .ok()
        .filter(|&b| u64::from(b) <= MAX_GRID_X)
        .ok_or(DeviceError::InvalidArgument {
            reason: "leaf batch too large for one kernel launch",
        })?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS_PER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Checks leaves `first_leaf .. first_leaf + count` of `leaf_size` bytes against
/// a buffer of `buffer_len` bytes (the last leaf may be partial) and returns the
/// end leaf.
pub(super) fn leaf_range(
    buffer_len: u64,
    leaf_size: u64,
    first_leaf: u64,
    count: u64,
) -> Result<u64, DeviceError> {
    if leaf_size == 0 {
        return Err(DeviceError::InvalidArgument {
            reason: "leaf size must be non-zero",
        });
    }
    let leaves = buffer_len.div_ceil(leaf_size);
    match first_leaf.checked_add(count) {
        Some(end) if end <= leaves => Ok(end),
        _ => Err(DeviceError::OutOfBounds {
            offset: first_leaf.saturating_mul(leaf_size),
            len: count.saturating_mul(leaf_size),
            buffer_len,
        }),
    }
}
