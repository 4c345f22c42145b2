//! One mock allocation: host bytes that behave like a device buffer.

use crate::state::{BufferId, Cell, HostMem, Shared};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLockReadGuard};
use tracing::{debug, warn};
use vram_core::{checked_range, DeviceBuffer, DeviceError, HostBytes, MemoryAccess, StreamError};

/// A buffer handed out by [`MockDevice::alloc`](vram_core::Device::alloc).
/// Dropping it returns its bytes to the device.
pub(crate) struct MockBuffer {
    pub(crate) id: BufferId,
    pub(crate) len: u64,
    pub(crate) cell: Arc<Cell>,
    pub(crate) shared: Arc<Shared>,
}

/// `range` (already checked against the buffer length) as host slice bounds.
pub(crate) fn host_range(range: &Range<u64>, buffer_len: u64) -> Result<Range<usize>, DeviceError> {
    let oob = || DeviceError::OutOfBounds {
        offset: range.start,
        len: range.end.saturating_sub(range.start),
        buffer_len,
    };
    let start = usize::try_from(range.start).map_err(|_| oob())?;
    let end = usize::try_from(range.end).map_err(|_| oob())?;
    Ok(start..end)
}

impl MockBuffer {
    /// Copies `data` to `offset`, as `write_at` and each chunk of
    /// `stream_from` do: armed faults apply, `bytes_written` counts it.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let range = checked_range(offset, data.len(), self.len)?;
        let host = host_range(&range, self.len)?;
        let mut bytes = self.cell.write();
        if let Some(at) = self.shared.take_write_fault(range.start, range.end) {
            // A copy that dies part-way: the bytes before the fault land, the
            // rest do not.
            let landed = usize::try_from(at.saturating_sub(range.start)).unwrap_or(0);
            let end = host.start.saturating_add(landed).min(host.end);
            Cell::materialise(&mut bytes, end);
            if let (Some(d), Some(s)) = (bytes.get_mut(host.start..end), data.get(..landed)) {
                d.copy_from_slice(s);
            }
            warn!(buffer = %self.id, at, "mock: injected write failure");
            return Err(DeviceError::InjectedFault {
                what: "write failure",
            });
        }
        if host.start == bytes.len() {
            // The sequential case (sealing): append into reserved capacity.
            bytes.extend_from_slice(data);
        } else {
            Cell::materialise(&mut bytes, host.end);
            let dst = bytes
                .get_mut(host.clone())
                .ok_or(DeviceError::OutOfBounds {
                    offset,
                    len: range.end.saturating_sub(range.start),
                    buffer_len: self.len,
                })?;
            dst.copy_from_slice(data);
        }
        if Shared::take_one(&self.shared.corrupt_writes) {
            if let Some(b) = bytes.get_mut(host.start) {
                *b ^= 0x01;
                warn!(buffer = %self.id, offset, "mock: injected silent write corruption");
            }
        }
        drop(bytes);
        self.shared
            .bytes_written
            .fetch_add(range.end.saturating_sub(range.start), Ordering::Relaxed);
        Ok(())
    }
}

impl DeviceBuffer for MockBuffer {
    fn len(&self) -> u64 {
        self.len
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.write(offset, data)?;
        self.shared.write_calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        let range = checked_range(offset, out.len(), self.len)?;
        let host = host_range(&range, self.len)?;
        if Shared::take_one(&self.shared.fail_reads) {
            warn!(buffer = %self.id, offset, "mock: injected read failure");
            return Err(DeviceError::InjectedFault {
                what: "read failure",
            });
        }
        if !self.cell.read_into(host, out) {
            return Err(DeviceError::OutOfBounds {
                offset,
                len: range.end.saturating_sub(range.start),
                buffer_len: self.len,
            });
        }
        self.shared
            .bytes_read
            .fetch_add(range.end.saturating_sub(range.start), Ordering::Relaxed);
        Ok(())
    }

    /// The buffer's bytes, shared-locked while the view lives (writers, fault
    /// injection included, wait for it). Bytes never written read as zero,
    /// as through `read_at`.
    fn memory(&self) -> Result<MemoryAccess<'_>, DeviceError> {
        let len = usize::try_from(self.len).map_err(|_| DeviceError::OutOfBounds {
            offset: 0,
            len: self.len,
            buffer_len: self.len,
        })?;
        let guard = self.cell.read();
        let guard = if guard.len() >= len {
            guard
        } else {
            drop(guard);
            Cell::materialise(&mut self.cell.write(), len);
            self.cell.read()
        };
        Ok(MemoryAccess::Host(HostBytes::new(View { guard, len })))
    }

    /// The mock's memory is host memory: `fill` writes straight into it.
    /// Armed faults apply as to `write_at`: a write fault anywhere in the
    /// buffer fails the fill before anything lands, a silent corruption flips
    /// the first byte.
    fn fill_in_place(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> std::io::Result<()>,
    ) -> Result<(), StreamError> {
        if !self.shared.capabilities.fill_in_place {
            return Err(StreamError::Device(DeviceError::Unsupported {
                operation: "lending host memory (mock built without it)",
            }));
        }
        let mut bytes = self.cell.write();
        if self.shared.take_write_fault(0, self.len).is_some() {
            bytes.set_written(0);
            warn!(buffer = %self.id, "mock: injected write failure");
            return Err(StreamError::Device(DeviceError::InjectedFault {
                what: "write failure",
            }));
        }
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        let region = bytes.all_mut();
        let region_len = region.len().min(len);
        let filled = fill(region.get_mut(..region_len).unwrap_or_default());
        if let Err(e) = filled {
            bytes.set_written(0);
            return Err(StreamError::Read(e));
        }
        bytes.set_written(region_len);
        if Shared::take_one(&self.shared.corrupt_writes) {
            if let Some(b) = bytes.get_mut(0) {
                *b ^= 0x01;
                warn!(buffer = %self.id, "mock: injected silent write corruption");
            }
        }
        drop(bytes);
        self.shared
            .bytes_written
            .fetch_add(self.len, Ordering::Relaxed);
        self.shared.fill_calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// When the device was built with
    /// [`stream_from`](crate::MockDeviceBuilder::stream_from): reads `reader`
    /// in `chunk`-byte pieces into a staging buffer, writes each as
    /// `write_at` does (armed faults included) and hands it to `on_chunk`.
    /// Otherwise [`DeviceError::Unsupported`], and nothing is read.
    fn stream_from(
        &mut self,
        reader: &mut dyn std::io::Read,
        chunk: usize,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, StreamError> {
        if !self.shared.capabilities.stream_from {
            return Err(StreamError::Device(DeviceError::Unsupported {
                operation: "streaming through a pipeline (mock built without it)",
            }));
        }
        let mut staging = vec![0u8; chunk.max(1)];
        let mut offset = 0u64;
        loop {
            let n =
                vram_core::source::read_full(reader, &mut staging).map_err(StreamError::Read)?;
            let Some(piece) = staging.get(..n).filter(|p| !p.is_empty()) else {
                break;
            };
            self.write(offset, piece)?;
            on_chunk(piece);
            offset = offset.saturating_add(n as u64);
        }
        self.shared.stream_calls.fetch_add(1, Ordering::Relaxed);
        Ok(offset)
    }

    /// Emulated when the device was built with
    /// [`on_device_hashing`](crate::MockDeviceBuilder::on_device_hashing):
    /// SHA-256 over `prefix || leaf bytes` for each leaf, as the CUDA kernel
    /// computes it (bytes never written hash as zeros). Otherwise
    /// [`DeviceError::Unsupported`].
    fn hash_leaves_on_device(
        &self,
        prefix: &[u8],
        leaf_size: u64,
        first_leaf: u64,
        count: u64,
    ) -> Result<Vec<[u8; 32]>, DeviceError> {
        if !self.shared.capabilities.hash_on_device {
            return Err(DeviceError::Unsupported {
                operation: "on-device leaf hashing (mock built without it)",
            });
        }
        if leaf_size == 0 {
            return Err(DeviceError::InvalidArgument {
                reason: "leaf size must be non-zero",
            });
        }
        let leaves = self.len.div_ceil(leaf_size);
        let end = first_leaf
            .checked_add(count)
            .filter(|&end| end <= leaves)
            .ok_or(DeviceError::OutOfBounds {
                offset: first_leaf.saturating_mul(leaf_size),
                len: count.saturating_mul(leaf_size),
                buffer_len: self.len,
            })?;
        let too_many = DeviceError::InvalidArgument {
            reason: "too many leaves for host memory",
        };
        let mut out = Vec::new();
        out.try_reserve_exact(usize::try_from(count).map_err(|_| too_many.clone())?)
            .map_err(|_| too_many)?;
        let bytes = self.cell.read();
        let zeros = [0u8; 4096];
        for i in first_leaf..end {
            let start = i.saturating_mul(leaf_size);
            let stop = start.saturating_add(leaf_size).min(self.len);
            let host = host_range(&(start..stop), self.len)?;
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(prefix);
            // Materialised bytes, then zeros for bytes never written.
            let written_end = host.end.min(bytes.len()).max(host.start);
            if let Some(part) = bytes.get(host.start..written_end) {
                ctx.update(part);
            }
            let mut left = host.end.saturating_sub(written_end);
            while left > 0 {
                let n = left.min(zeros.len());
                ctx.update(zeros.get(..n).unwrap_or_default());
                left = left.saturating_sub(n);
            }
            let hash = <[u8; 32]>::try_from(ctx.finish().as_ref()).map_err(|_| {
                DeviceError::InvalidArgument {
                    reason: "SHA-256 output is not 32 bytes",
                }
            })?;
            out.push(hash);
        }
        Ok(out)
    }
}

/// A buffer's bytes under its read lock.
struct View<'a> {
    guard: RwLockReadGuard<'a, HostMem>,
    len: usize,
}

impl std::ops::Deref for View<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.guard.get(..self.len).unwrap_or_default()
    }
}

impl Drop for MockBuffer {
    fn drop(&mut self) {
        let cell = std::mem::replace(&mut self.cell, Arc::new(Cell::new(HostMem::none(), 0)));
        self.shared.free(self.id, self.len);
        // The registry's handle is gone; unless a corruption call holds the
        // cell this instant, ours is the last and the memory can be reused.
        if let Ok(cell) = Arc::try_unwrap(cell) {
            self.shared.recycle(cell.into_bytes());
        }
        debug!(buffer = %self.id, bytes = self.len, "mock: freed");
    }
}

impl fmt::Debug for MockBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockBuffer")
            .field("id", &self.id.as_u64())
            .field("device", &self.shared.index)
            .field("len", &self.len)
            .finish()
    }
}
