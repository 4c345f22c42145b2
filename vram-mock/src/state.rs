//! State shared between a mock device and its buffers: the live-allocation
//! registry, the counters and the armed faults.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use vram_core::DeviceCapabilities;

/// Identity of one live mock allocation. Ids grow with allocation order and
/// are never reused by a device, so the largest live id is the newest buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufferId(pub(crate) u64);

impl BufferId {
    /// The id as a number (allocation sequence number, from 0).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mock buffer #{}", self.0)
    }
}

/// The host bytes behind one buffer. Readers share the lock, so many threads
/// can read (verify) one buffer at once.
///
/// The host memory is reserved whole at allocation (so a too-large request
/// fails there, as on a device) but materialised lazily: the written part
/// grows as bytes are written, and bytes never written read as zero. This
/// spares a zero-filling pass over every allocation, which would otherwise cost
/// as much as the copy itself.
pub(crate) struct Cell {
    len: usize,
    bytes: RwLock<HostMem>,
}

/// A buffer's host memory: an anonymous memory map that asks the kernel for
/// transparent huge pages, so that the first touch of fresh memory costs one
/// page fault per 2 MiB instead of one per 4 KiB (with the kernel's THP
/// setting `always` or `madvise`; with `never` it still works, at 4 KiB
/// faults). Only the first `written` bytes are visible (through `Deref`);
/// the rest reads as zero, whatever an earlier user of a reused map left
/// there.
pub(crate) struct HostMem {
    map: Option<memmap2::MmapMut>,
    written: usize,
}

impl HostMem {
    /// Maps `capacity` bytes (nothing is touched yet).
    pub(crate) fn new(capacity: usize) -> std::io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(capacity).map_anon()?;
        if let Err(e) = map.advise(memmap2::Advice::HugePage) {
            tracing::debug!(error = %e, "mock: no transparent huge pages for this map");
        }
        Ok(Self {
            map: Some(map),
            written: 0,
        })
    }

    /// No memory at all (a dropped buffer's placeholder).
    pub(crate) fn none() -> Self {
        Self {
            map: None,
            written: 0,
        }
    }

    /// Bytes mapped.
    pub(crate) fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Forgets what was written: it reads as zero again.
    pub(crate) fn clear(&mut self) {
        self.written = 0;
    }

    /// Appends `data` at the end of the written part (callers check bounds;
    /// bytes past the capacity are not written).
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        let start = self.written;
        let end = start.saturating_add(data.len()).min(self.capacity());
        if let Some(dst) = self.map.as_mut().and_then(|m| m.get_mut(start..end)) {
            dst.copy_from_slice(data.get(..end.saturating_sub(start)).unwrap_or_default());
            self.written = end;
        }
    }

    /// Grows the written part to `end` with zeros (never shrinks it).
    pub(crate) fn resize(&mut self, end: usize, _zero: u8) {
        let end = end.min(self.capacity());
        if end > self.written {
            if let Some(gap) = self.map.as_mut().and_then(|m| m.get_mut(self.written..end)) {
                gap.fill(0);
            }
            self.written = end;
        }
    }

    /// The whole map, for a fill that writes every byte of it; say how it
    /// went with [`HostMem::set_written`].
    pub(crate) fn all_mut(&mut self) -> &mut [u8] {
        match self.map.as_mut() {
            Some(m) => &mut m[..],
            None => &mut [],
        }
    }

    /// Marks the first `n` bytes (at most the capacity) as written.
    pub(crate) fn set_written(&mut self, n: usize) {
        self.written = n.min(self.capacity());
    }
}

impl std::ops::Deref for HostMem {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map
            .as_ref()
            .and_then(|m| m.get(..self.written))
            .unwrap_or_default()
    }
}

impl std::ops::DerefMut for HostMem {
    fn deref_mut(&mut self) -> &mut [u8] {
        let written = self.written;
        match self.map.as_mut() {
            Some(m) => m.get_mut(..written).unwrap_or_default(),
            None => &mut [],
        }
    }
}

impl Cell {
    /// `bytes` must be empty with at least `len` bytes of capacity mapped.
    pub(crate) fn new(bytes: HostMem, len: usize) -> Self {
        Self {
            len,
            bytes: RwLock::new(bytes),
        }
    }

    /// Logical length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `host` (within the logical length) into `out`, zeros for bytes
    /// never written. Returns false when the range is out of bounds.
    pub(crate) fn read_into(&self, host: std::ops::Range<usize>, out: &mut [u8]) -> bool {
        if host.end > self.len || host.end.checked_sub(host.start) != Some(out.len()) {
            return false;
        }
        let bytes = self.read();
        let split = host.end.min(bytes.len()).max(host.start);
        let (written, unwritten) = out.split_at_mut(split.saturating_sub(host.start));
        match bytes.get(host.start..split) {
            Some(src) => written.copy_from_slice(src),
            None => return false,
        }
        unwritten.fill(0);
        true
    }

    /// The host memory, for reuse by a later allocation.
    pub(crate) fn into_bytes(self) -> HostMem {
        self.bytes
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Materialises bytes up to `end` (never past the reserved capacity).
    pub(crate) fn materialise(bytes: &mut HostMem, end: usize) {
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
    }

    // A poisoned lock only means another thread panicked mid-copy; the bytes
    // are still plain bytes, and corruption is what verification is for.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HostMem> {
        self.bytes.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, HostMem> {
        self.bytes.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Live allocations, in allocation order.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) live_bytes: u64,
    pub(crate) next_id: u64,
    pub(crate) buffers: BTreeMap<BufferId, Arc<Cell>>,
}

/// Sentinel for "no write fault armed": no access range can cover offset
/// `u64::MAX`, because ranges end at most at `u64::MAX` (exclusive).
pub(crate) const DISARMED: u64 = u64::MAX;

pub(crate) struct Shared {
    pub(crate) index: u32,
    pub(crate) capacity: u64,
    registry: Mutex<Registry>,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) fail_allocs: AtomicU32,
    pub(crate) fail_reads: AtomicU32,
    pub(crate) fail_write_at: AtomicU64,
    /// Writes still to be corrupted silently (one bit of their first byte).
    pub(crate) corrupt_writes: AtomicU32,
    /// What the buffers can do beyond `write_at` and `read_at`.
    pub(crate) capabilities: DeviceCapabilities,
    /// Successful calls of each upload method (`write_at`, `stream_from`,
    /// `fill_in_place`), so a test sees which route a seal took.
    pub(crate) write_calls: AtomicU64,
    pub(crate) stream_calls: AtomicU64,
    pub(crate) fill_calls: AtomicU64,
    pool: Mutex<Vec<HostMem>>,
}

/// Most freed host vectors a device keeps for reuse.
pub(crate) const POOL_MAX_ENTRIES: usize = 8;

impl Shared {
    pub(crate) fn new(index: u32, capacity: u64, capabilities: DeviceCapabilities) -> Self {
        Self {
            index,
            capacity,
            registry: Mutex::new(Registry::default()),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            fail_allocs: AtomicU32::new(0),
            fail_reads: AtomicU32::new(0),
            fail_write_at: AtomicU64::new(DISARMED),
            corrupt_writes: AtomicU32::new(0),
            capabilities,
            write_calls: AtomicU64::new(0),
            stream_calls: AtomicU64::new(0),
            fill_calls: AtomicU64::new(0),
            pool: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Consumes one armed "fail the next N" fault, if any.
    pub(crate) fn take_one(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// If the armed write fault lies in `start..end`, disarms it and returns
    /// its offset. Exactly one write can take it.
    pub(crate) fn take_write_fault(&self, start: u64, end: u64) -> Option<u64> {
        let armed = self.fail_write_at.load(Ordering::Acquire);
        if armed < start || armed >= end {
            return None;
        }
        self.fail_write_at
            .compare_exchange(armed, DISARMED, Ordering::AcqRel, Ordering::Acquire)
            .ok()
    }

    /// Returns `bytes` to the device when a buffer is dropped.
    pub(crate) fn free(&self, id: BufferId, bytes: u64) {
        let mut reg = self.registry();
        reg.buffers.remove(&id);
        reg.live_bytes = reg.live_bytes.saturating_sub(bytes);
    }

    /// Keeps a freed buffer's host memory for reuse, as a caching device
    /// allocator does, so the next allocation of a similar size does not pay
    /// the host's first-touch page faults again. Bounded: at most
    /// [`POOL_MAX_ENTRIES`] vectors and half the device capacity in bytes.
    pub(crate) fn recycle(&self, mut bytes: HostMem) {
        bytes.clear();
        let cap = u64::try_from(bytes.capacity()).unwrap_or(u64::MAX);
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let pooled: u64 = pool
            .iter()
            .map(|v| u64::try_from(v.capacity()).unwrap_or(u64::MAX))
            .fold(0, u64::saturating_add);
        if pool.len() < POOL_MAX_ENTRIES && pooled.saturating_add(cap) <= self.capacity / 2 {
            pool.push(bytes);
        }
    }

    /// A pooled vector with capacity for `len` bytes and at most 1/8 more,
    /// emptied (so its old contents can never be read).
    pub(crate) fn reuse(&self, len: usize) -> Option<HostMem> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let slack = len / 8;
        let pos = pool
            .iter()
            .position(|v| v.capacity() >= len && v.capacity().saturating_sub(len) <= slack)?;
        let mut v = pool.swap_remove(pos);
        v.clear();
        Some(v)
    }

    /// Bytes of host memory held for reuse.
    pub(crate) fn pooled_bytes(&self) -> u64 {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.iter()
            .map(|v| u64::try_from(v.capacity()).unwrap_or(u64::MAX))
            .fold(0, u64::saturating_add)
    }

    /// Releases the pooled host memory.
    pub(crate) fn trim_pool(&self) {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
