//! The mock device: capacity accounting, allocation, and the test handle for
//! fault injection and leak detection.

use crate::buffer::{host_range, MockBuffer};
use crate::state::{BufferId, Cell, HostMem, Shared, DISARMED};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::{debug, info, warn};
use vram_core::{
    checked_range, Device, DeviceAttributes, DeviceBuffer, DeviceCapabilities, DeviceError,
    DeviceInfo, DeviceKind, MemoryInfo,
};

/// Default capacity: 24 GiB, the memory of a common 24 GB consumer card.
pub const DEFAULT_CAPACITY: u64 = 24 << 30;

const UNKNOWN_BUFFER: DeviceError = DeviceError::InvalidArgument {
    reason: "no live mock buffer has this id",
};

/// A [`Device`] backed by host memory, with capacity enforcement, leak
/// counters and fault injection.
///
/// `DeviceInfo::kind` is [`DeviceKind::Mock`], so reports can never pass it off
/// as VRAM. The fault-injection methods take a [`BufferId`] and never expose an
/// address; [`live_buffers`](Self::live_buffers) lists ids in allocation order.
pub struct MockDevice {
    info: DeviceInfo,
    attributes: DeviceAttributes,
    shared: Arc<Shared>,
}

/// Configures a [`MockDevice`]; see [`MockDevice::builder`].
#[derive(Debug, Clone)]
pub struct MockDeviceBuilder {
    index: u32,
    capacity: u64,
    name: String,
    attributes: DeviceAttributes,
    capabilities: DeviceCapabilities,
}

/// How many successful calls each upload method of a mock device's buffers
/// has served: which route the seals took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadCalls {
    /// [`DeviceBuffer::write_at`] calls.
    pub write_at: u64,
    /// [`DeviceBuffer::stream_from`] calls.
    pub stream_from: u64,
    /// [`DeviceBuffer::fill_in_place`] calls.
    pub fill_in_place: u64,
}

impl MockDeviceBuilder {
    /// Device index (default 0).
    pub fn index(mut self, index: u32) -> Self {
        self.index = index;
        self
    }

    /// Capacity in bytes (default [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Name reported in [`DeviceInfo`] (default `"mock"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Attributes reported to the VRAM-only policy (default: all `false`, a
    /// discrete device). Set them to simulate an integrated GPU or a backend
    /// that would hand out managed or host-mapped memory.
    pub fn attributes(mut self, attributes: DeviceAttributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Emulates on-device leaf hashing
    /// ([`DeviceBuffer::hash_leaves_on_device`])
    /// the way the CUDA backend's kernel does it, so the code paths that hash on
    /// a device (verification, seals with on-device hashing) run without a GPU.
    /// The hashing runs on the host, on the calling thread: it saves no host
    /// work. Off by default: the mock then reports on-device hashing as
    /// unsupported, like a CUDA machine without NVRTC.
    pub fn on_device_hashing(mut self, enabled: bool) -> Self {
        self.capabilities.hash_on_device = enabled;
        self
    }

    /// Whether buffers lend their host memory whole
    /// ([`DeviceBuffer::fill_in_place`]). On by default: the mock's memory
    /// is host memory. Off, the mock behaves like a device whose memory the
    /// host cannot see, so the routes of other backends run without one.
    pub fn fill_in_place(mut self, enabled: bool) -> Self {
        self.capabilities.fill_in_place = enabled;
        self
    }

    /// Whether buffers stream from a reader through a pipeline of their own
    /// ([`DeviceBuffer::stream_from`]), the route a CUDA device offers: each
    /// chunk is read into a staging buffer, written, and handed to the
    /// caller. Off by default.
    pub fn stream_from(mut self, enabled: bool) -> Self {
        self.capabilities.stream_from = enabled;
        self
    }

    /// The device.
    pub fn build(self) -> Arc<MockDevice> {
        info!(
            index = self.index,
            capacity = self.capacity,
            "mock device created: host memory, not VRAM"
        );
        Arc::new(MockDevice {
            info: DeviceInfo {
                index: self.index,
                name: self.name,
                kind: DeviceKind::Mock,
                // The mock is no physical device: it has no UUID to bind.
                uuid: None,
            },
            attributes: self.attributes,
            shared: Arc::new(Shared::new(self.index, self.capacity, self.capabilities)),
        })
    }
}

impl MockDevice {
    /// A discrete-looking mock device named "mock" with `capacity` bytes.
    pub fn new(index: u32, capacity: u64) -> Arc<Self> {
        Self::builder().index(index).capacity(capacity).build()
    }

    /// A builder, for a custom name or attributes.
    pub fn builder() -> MockDeviceBuilder {
        MockDeviceBuilder {
            index: 0,
            capacity: DEFAULT_CAPACITY,
            name: "mock".to_string(),
            attributes: DeviceAttributes::default(),
            capabilities: DeviceCapabilities {
                stream_from: false,
                fill_in_place: true,
                hash_on_device: false,
            },
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Buffers allocated and not yet dropped (leak detection).
    pub fn live_allocations(&self) -> usize {
        self.shared.registry().buffers.len()
    }

    /// Bytes of the live buffers (leak detection).
    pub fn live_bytes(&self) -> u64 {
        self.shared.registry().live_bytes
    }

    /// Ids of the live buffers, oldest first: `.last()` is the newest buffer.
    pub fn live_buffers(&self) -> Vec<BufferId> {
        self.shared.registry().buffers.keys().copied().collect()
    }

    /// Length of a live buffer, `None` when it has been dropped.
    pub fn buffer_len(&self, id: BufferId) -> Option<u64> {
        let cell = self.shared.registry().buffers.get(&id).cloned()?;
        u64::try_from(cell.len()).ok()
    }

    /// Host memory kept from freed buffers for reuse (like a caching device
    /// allocator: it spares later allocations the host's first-touch page
    /// faults). Never counted as used device memory; a reused buffer starts
    /// with every byte reading as zero, as a new one does.
    pub fn pooled_bytes(&self) -> u64 {
        self.shared.pooled_bytes()
    }

    /// Returns the pooled host memory to the system.
    pub fn trim_pool(&self) {
        self.shared.trim_pool();
    }

    /// Total bytes copied out of buffers by successful `read_at` calls. Lets a
    /// test prove that verification re-read device memory.
    pub fn bytes_read(&self) -> u64 {
        self.shared.bytes_read.load(Ordering::Relaxed)
    }

    /// Total bytes copied into buffers by successful `write_at` calls.
    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes_written.load(Ordering::Relaxed)
    }

    /// Successful calls of each upload method so far, on all buffers.
    pub fn upload_calls(&self) -> UploadCalls {
        UploadCalls {
            write_at: self.shared.write_calls.load(Ordering::Relaxed),
            stream_from: self.shared.stream_calls.load(Ordering::Relaxed),
            fill_in_place: self.shared.fill_calls.load(Ordering::Relaxed),
        }
    }

    /// The next `n` calls to `alloc` fail with [`DeviceError::InjectedFault`]
    /// (`"allocation failure"`) and allocate nothing. Replaces any earlier count.
    pub fn fail_next_allocs(&self, n: u32) {
        self.shared.fail_allocs.store(n, Ordering::Release);
    }

    /// The next `n` calls to `read_at` on any buffer of this device fail with
    /// [`DeviceError::InjectedFault`] (`"read failure"`). Replaces any earlier
    /// count.
    pub fn fail_next_reads(&self, n: u32) {
        self.shared.fail_reads.store(n, Ordering::Release);
    }

    /// The next `write_at`, on any buffer of this device, whose range covers
    /// buffer offset `offset` fails with [`DeviceError::InjectedFault`]
    /// (`"write failure"`) after copying only the bytes before `offset`, like a
    /// copy that dies part-way. Fires once. Replaces an earlier armed offset.
    ///
    /// Armed before a seal, it makes the seal fail in the middle of its copy.
    pub fn fail_write_at(&self, offset: u64) {
        self.shared.fail_write_at.store(offset, Ordering::Release);
    }

    /// The next `n` calls to `write_at` on any buffer of this device succeed
    /// but land with one bit of their first byte flipped: a silent corruption
    /// on the way to the device (a bad link, a buggy copy), which no error
    /// reports. Replaces any earlier count.
    pub fn corrupt_next_writes(&self, n: u32) {
        self.shared.corrupt_writes.store(n, Ordering::Release);
    }

    /// Disarms every pending fault (allocations, reads, writes).
    pub fn clear_faults(&self) {
        self.shared.fail_allocs.store(0, Ordering::Release);
        self.shared.fail_reads.store(0, Ordering::Release);
        self.shared.fail_write_at.store(DISARMED, Ordering::Release);
        self.shared.corrupt_writes.store(0, Ordering::Release);
    }

    /// Flips bit `bit` (0 = least significant) of the byte at `offset` in
    /// buffer `id`, behind the back of whoever owns the buffer.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for an unknown id or `bit > 7`;
    /// [`DeviceError::OutOfBounds`] when `offset` is past the end.
    pub fn flip_bit(&self, id: BufferId, offset: u64, bit: u8) -> Result<(), DeviceError> {
        let mask = 1u8.checked_shl(u32::from(bit)).filter(|_| bit < 8).ok_or(
            DeviceError::InvalidArgument {
                reason: "bit index must be 0..=7",
            },
        )?;
        self.flip_bits(id, offset, mask)
    }

    /// XORs the byte at `offset` in buffer `id` with `mask`.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for an unknown id or a zero mask (it
    /// would corrupt nothing); [`DeviceError::OutOfBounds`] when `offset` is
    /// past the end.
    pub fn flip_bits(&self, id: BufferId, offset: u64, mask: u8) -> Result<(), DeviceError> {
        if mask == 0 {
            return Err(DeviceError::InvalidArgument {
                reason: "a zero mask flips no bit",
            });
        }
        self.with_bytes(id, offset, 1, |bytes| {
            for b in bytes {
                *b ^= mask;
            }
        })?;
        warn!(buffer = %id, offset, mask, "mock: bits flipped");
        Ok(())
    }

    /// Overwrites `data.len()` bytes of buffer `id` at `offset`.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for an unknown id;
    /// [`DeviceError::OutOfBounds`] when the range does not fit the buffer.
    pub fn overwrite(&self, id: BufferId, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.with_bytes(id, offset, data.len(), |bytes| {
            bytes.copy_from_slice(data);
        })?;
        warn!(buffer = %id, offset, len = data.len(), "mock: bytes overwritten");
        Ok(())
    }

    /// Runs `f` on `len` bytes at `offset` of buffer `id`, without touching
    /// the read/write counters.
    fn with_bytes(
        &self,
        id: BufferId,
        offset: u64,
        len: usize,
        f: impl FnOnce(&mut [u8]),
    ) -> Result<(), DeviceError> {
        let cell = self
            .shared
            .registry()
            .buffers
            .get(&id)
            .cloned()
            .ok_or(UNKNOWN_BUFFER)?;
        let buffer_len = u64::try_from(cell.len()).unwrap_or(u64::MAX);
        let range = checked_range(offset, len, buffer_len)?;
        let host = host_range(&range, buffer_len)?;
        let mut bytes = cell.write();
        Cell::materialise(&mut bytes, host.end);
        let slice = bytes.get_mut(host).ok_or(DeviceError::OutOfBounds {
            offset,
            len: range.end.saturating_sub(range.start),
            buffer_len,
        })?;
        f(slice);
        Ok(())
    }

    fn out_of_memory(&self, needed: u64, available: u64) -> DeviceError {
        DeviceError::OutOfMemory {
            device: self.info.index,
            needed,
            available,
        }
    }
}

impl Device for MockDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn memory_info(&self) -> Result<MemoryInfo, DeviceError> {
        let live = self.live_bytes();
        Ok(MemoryInfo {
            total: self.shared.capacity,
            free: self.shared.capacity.saturating_sub(live),
        })
    }

    fn attributes(&self) -> Result<DeviceAttributes, DeviceError> {
        Ok(self.attributes)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.shared.capabilities
    }

    fn alloc(&self, bytes: u64) -> Result<Box<dyn DeviceBuffer>, DeviceError> {
        if bytes == 0 {
            return Err(DeviceError::InvalidArgument {
                reason: "zero-byte allocation",
            });
        }
        if Shared::take_one(&self.shared.fail_allocs) {
            warn!(
                device = self.info.index,
                bytes, "mock: injected allocation failure"
            );
            return Err(DeviceError::InjectedFault {
                what: "allocation failure",
            });
        }
        // Claim the bytes first, under the lock, so concurrent allocations can
        // never exceed the capacity together; the host memory comes after.
        let available = {
            let mut reg = self.shared.registry();
            let available = self.shared.capacity.saturating_sub(reg.live_bytes);
            if bytes > available {
                return Err(self.out_of_memory(bytes, available));
            }
            reg.live_bytes = reg.live_bytes.saturating_add(bytes);
            available
        };
        // Fallible host allocation: a request the host cannot hold is
        // OutOfMemory, never an abort.
        let host = usize::try_from(bytes).ok().and_then(|n| {
            if let Some(v) = self.shared.reuse(n) {
                return Some((v, n));
            }
            HostMem::new(n).ok().map(|v| (v, n))
        });
        let mut reg = self.shared.registry();
        let Some(host) = host else {
            reg.live_bytes = reg.live_bytes.saturating_sub(bytes);
            drop(reg);
            warn!(
                device = self.info.index,
                bytes, "mock: host allocation failed"
            );
            return Err(self.out_of_memory(bytes, available));
        };
        let id = BufferId(reg.next_id);
        reg.next_id = reg.next_id.saturating_add(1);
        let cell = Arc::new(Cell::new(host.0, host.1));
        reg.buffers.insert(id, Arc::clone(&cell));
        drop(reg);
        debug!(device = self.info.index, buffer = %id, bytes, "mock: allocated");
        Ok(Box::new(MockBuffer {
            id,
            len: bytes,
            cell,
            shared: Arc::clone(&self.shared),
        }))
    }
}

impl fmt::Debug for MockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockDevice")
            .field("info", &self.info)
            .field("capacity", &self.shared.capacity)
            .field("live_allocations", &self.live_allocations())
            .field("live_bytes", &self.live_bytes())
            .finish()
    }
}
