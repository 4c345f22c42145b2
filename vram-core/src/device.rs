//! The `Device` seam: the one interface between residency policy and hardware.
//!
//! Implemented by the CUDA backend (`cuda` feature) and by `vram-mock`. A raw
//! device pointer crosses it in one place only, [`DeviceBuffer::memory`], which
//! the facade calls for a verified lease; no `Debug` output shows one.

use crate::DeviceError;
use std::fmt::Debug;

/// Which kind of backend a device is. Reports and audit records name it so a run
/// on the mock can never be mistaken for a run on real VRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// A CUDA device driven through the driver API.
    Cuda,
    /// Host memory pretending to be a device (tests, GPU-less machines).
    Mock,
}

impl DeviceKind {
    /// Lower-case name, as printed by the CLI and written to audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::Mock => "mock",
        }
    }
}

/// Identity of a device. Stable for the device's lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Ordinal among devices of the same kind (CUDA ordinal for CUDA devices).
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3" or "mock".
    pub name: String,
    /// Backend kind.
    pub kind: DeviceKind,
    /// The device's UUID as its driver reports it (`cuDeviceGetUuid` for
    /// CUDA), stable across reboots and ordinals; `None` when the backend has
    /// none (the mock) or the driver did not answer. Seals (format v2) bind it.
    pub uuid: Option<[u8; 16]>,
}

impl std::fmt::Display for DeviceInfo {
    /// "device 0 (NVIDIA H100 80GB HBM3)". The name comes from the driver, so
    /// control characters are escaped and it is cut at 64 characters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device {} (", self.index)?;
        for c in self.name.chars().take(64) {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if self.name.chars().nth(64).is_some() {
            write!(f, "...")?;
        }
        write!(f, ")")
    }
}

/// Memory figures at one instant, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Total device memory.
    pub total: u64,
    /// Free device memory as the driver reports it (all processes).
    pub free: u64,
}

/// Attributes the VRAM-only policy inspects. Each `true` is a reason the bytes
/// might not live (only) in dedicated device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceAttributes {
    /// The GPU shares system memory with the CPU (an integrated GPU).
    pub integrated: bool,
    /// Allocations the backend would hand out are managed (unified) memory that
    /// the driver may migrate to the host.
    pub managed_memory: bool,
    /// Allocations the backend would hand out are host memory mapped into the
    /// device address space.
    pub host_mapped: bool,
    /// The device may access pageable host memory directly (HMM / ATS systems);
    /// weights must still be copied into plain device memory.
    pub pageable_memory_access: bool,
}

/// A device that can hold sealed model bytes.
///
/// Implementations are `Send + Sync`: one device is shared by every thread of a
/// worker. All methods take `&self`.
pub trait Device: Send + Sync + Debug {
    /// Identity of the device.
    fn info(&self) -> &DeviceInfo;

    /// Total and free memory right now.
    ///
    /// # Errors
    /// [`DeviceError`] when the backend cannot be queried.
    fn memory_info(&self) -> Result<MemoryInfo, DeviceError>;

    /// Attributes for the VRAM-only policy.
    ///
    /// # Errors
    /// [`DeviceError`] when the backend cannot be queried.
    fn attributes(&self) -> Result<DeviceAttributes, DeviceError>;

    /// Allocates `bytes` of plain device memory (never managed, unified or
    /// host-mapped memory). The memory is freed when the buffer is dropped.
    ///
    /// # Errors
    /// [`DeviceError::OutOfMemory`] when the device cannot satisfy the request;
    /// [`DeviceError::InvalidArgument`] for a zero-byte request; other variants
    /// for backend failures.
    fn alloc(&self, bytes: u64) -> Result<Box<dyn DeviceBuffer>, DeviceError>;

    /// What this device's buffers can do beyond [`DeviceBuffer::write_at`]
    /// and [`DeviceBuffer::read_at`]. Decided by the backend once (a CUDA
    /// device compiles its leaf kernel at the first call to learn whether it
    /// can hash) and the same for every buffer it allocates: callers choose
    /// their route from it instead of probing the optional methods. The
    /// default is none of them.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::default()
    }
}

/// The optional abilities of a device's buffers, reported by
/// [`Device::capabilities`]. Each `true` promises that the named
/// [`DeviceBuffer`] method works on every buffer of the device; each `false`
/// that it returns [`DeviceError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceCapabilities {
    /// [`DeviceBuffer::stream_from`]: the backend has its own upload pipeline
    /// (CUDA: pinned, double-buffered staging with asynchronous copies).
    pub stream_from: bool,
    /// [`DeviceBuffer::fill_in_place`]: the buffer's memory is host memory,
    /// lent whole so a source is read straight into it (the mock).
    pub fill_in_place: bool,
    /// [`DeviceBuffer::hash_leaves_on_device`]: leaves are hashed on the
    /// device (CUDA with its kernel compiled; the mock when built to emulate it).
    pub hash_on_device: bool,
}

/// One allocation of device memory. Freed on drop.
///
/// Offsets and lengths are checked with overflow-safe arithmetic; an access
/// outside `0..len()` is [`DeviceError::OutOfBounds`], never undefined behaviour.
pub trait DeviceBuffer: Send + Sync + Debug {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// `true` when the buffer holds no bytes (never, for buffers from `alloc`).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `data` from host memory to the buffer at `offset`.
    ///
    /// # Errors
    /// [`DeviceError::OutOfBounds`] when `offset + data.len()` exceeds `len()`;
    /// backend failures otherwise.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError>;

    /// Copies `out.len()` bytes from the buffer at `offset` into host memory.
    ///
    /// # Errors
    /// [`DeviceError::OutOfBounds`] when `offset + out.len()` exceeds `len()`;
    /// backend failures otherwise.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), DeviceError>;

    /// Streams `reader` into the buffer from offset 0 through the backend's own
    /// pipeline (pinned, double-buffered staging on CUDA), calling `on_chunk`
    /// with each chunk while its copy to the device is in flight, and returns
    /// the number of bytes written. Offered when the device reports
    /// [`DeviceCapabilities::stream_from`]; callers decide from that, never by
    /// calling this to see whether it works.
    ///
    /// # Errors
    /// [`StreamError::Read`](crate::StreamError::Read) when the reader fails;
    /// [`StreamError::Device`](crate::StreamError::Device) for device failures,
    /// including [`DeviceError::OutOfBounds`] when the source is longer than the
    /// buffer, and [`DeviceError::Unsupported`] on a backend without such a
    /// pipeline (the default; nothing is read then).
    fn stream_from(
        &mut self,
        reader: &mut dyn std::io::Read,
        chunk: usize,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, crate::StreamError> {
        let _ = (reader, chunk, on_chunk);
        Err(crate::StreamError::Device(DeviceError::Unsupported {
            operation: "streaming through a backend pipeline",
        }))
    }

    /// Lends the buffer's whole memory to `fill`, which writes every byte of
    /// it: for backends whose memory is host memory (the mock), so that a
    /// source is read straight into the memory it will occupy, with no
    /// staging copy (the caller spreads the work over its threads). The
    /// buffer is locked for the call. Offered when the device reports
    /// [`DeviceCapabilities::fill_in_place`].
    ///
    /// # Errors
    /// [`StreamError::Read`](crate::StreamError::Read) with the error `fill`
    /// returned (the buffer then reads as never written);
    /// [`StreamError::Device`](crate::StreamError::Device) for device
    /// failures, and [`DeviceError::Unsupported`] when this backend's memory
    /// is not host-visible (the default; `fill` is not called then).
    fn fill_in_place(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> std::io::Result<()>,
    ) -> Result<(), crate::StreamError> {
        let _ = fill;
        Err(crate::StreamError::Device(DeviceError::Unsupported {
            operation: "lending host-visible memory",
        }))
    }

    /// The buffer's memory, for computation on it: the bytes themselves on a
    /// backend whose memory is host memory (the mock), a device address on
    /// CUDA. The facade calls this only for a verified lease.
    ///
    /// # Errors
    /// [`DeviceError::Unsupported`] on backends that offer neither (the default).
    fn memory(&self) -> Result<crate::MemoryAccess<'_>, DeviceError> {
        Err(DeviceError::Unsupported {
            operation: "direct memory access",
        })
    }

    /// Hashes leaves on the device itself, so verification need not copy the
    /// bytes back to the host. Offered when the device reports
    /// [`DeviceCapabilities::hash_on_device`]. Leaf `i` covers bytes
    /// `i * leaf_size .. min((i + 1) * leaf_size, len())` and is hashed exactly
    /// as `vram-crypto` hashes leaves (SHA-256 over `prefix || leaf bytes`).
    /// Returns one 32-byte hash per leaf in `first_leaf .. first_leaf + count`.
    ///
    /// # Errors
    /// [`DeviceError::Unsupported`] on backends without on-device hashing (the
    /// default); [`DeviceError::OutOfBounds`] for leaves past the end.
    fn hash_leaves_on_device(
        &self,
        prefix: &[u8],
        leaf_size: u64,
        first_leaf: u64,
        count: u64,
    ) -> Result<Vec<[u8; 32]>, DeviceError> {
        let _ = (prefix, leaf_size, first_leaf, count);
        Err(DeviceError::Unsupported {
            operation: "on-device leaf hashing",
        })
    }
}

/// Checks that `offset .. offset + len` lies within a buffer of `buffer_len`
/// bytes, without overflow. Returns the range as `usize` bounds for host slices.
///
/// # Errors
/// [`DeviceError::OutOfBounds`] when the range does not fit.
pub fn checked_range(
    offset: u64,
    len: usize,
    buffer_len: u64,
) -> Result<std::ops::Range<u64>, DeviceError> {
    let len64 = u64::try_from(len).map_err(|_| DeviceError::OutOfBounds {
        offset,
        len: u64::MAX,
        buffer_len,
    })?;
    match offset.checked_add(len64) {
        Some(end) if end <= buffer_len => Ok(offset..end),
        _ => Err(DeviceError::OutOfBounds {
            offset,
            len: len64,
            buffer_len,
        }),
    }
}
