//! Device memory reachable for computation: what an inference engine reads
//! its weights from.
//!
//! [`DeviceBuffer::memory`](crate::DeviceBuffer::memory) hands it out. The
//! facade (`vram-residency`) calls it only for a verified lease, and keeps the
//! buffers of sealed shards private, so a lease is the one way to these values.
//! Neither type implements `Serialize`, and their `Debug` never shows an address.

use std::fmt;
use std::ops::Deref;

/// A buffer's memory, as its backend can offer it for computation.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryAccess<'a> {
    /// Host memory (the mock device): the bytes themselves, readable for as
    /// long as this value lives.
    Host(HostBytes<'a>),
    /// Device memory (CUDA): an address for a kernel launch or another
    /// crate's device-pointer API, valid while the buffer lives.
    Device(DeviceMemory),
}

/// Bytes of a buffer whose memory is host memory, borrowed from it. Writers
/// to the buffer (fault injection included) wait until this is dropped.
pub struct HostBytes<'a>(Box<dyn Deref<Target = [u8]> + Sync + 'a>);

impl<'a> HostBytes<'a> {
    /// Wraps a guard that derefs to the buffer's bytes.
    pub fn new(bytes: impl Deref<Target = [u8]> + Sync + 'a) -> Self {
        Self(Box::new(bytes))
    }
}

impl Deref for HostBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HostBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBytes")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

/// A range of device memory: a CUDA device pointer (`CUdeviceptr`) and its
/// length, on one device. The address is only ever printed as `<redacted>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    address: u64,
    len: u64,
    device: u32,
}

impl DeviceMemory {
    /// A range of `len` bytes at `address` on device `device`.
    #[must_use]
    pub fn new(address: u64, len: u64, device: u32) -> Self {
        Self {
            address,
            len,
            device,
        }
    }

    /// The device pointer of the first byte (a `CUdeviceptr` on CUDA).
    #[must_use]
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` for an empty range.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device's index.
    #[must_use]
    pub fn device(&self) -> u32 {
        self.device
    }

    /// The sub-range `offset .. offset + len`, or `None` when it does not lie
    /// within this one.
    #[must_use]
    pub fn slice(&self, offset: u64, len: u64) -> Option<Self> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Self {
            address: self.address.checked_add(offset)?,
            len,
            device: self.device,
        })
    }
}

impl fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("address", &"<redacted>")
            .field("len", &self.len)
            .field("device", &self.device)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_address() {
        let m = DeviceMemory::new(0x7f12_3456_7000, 4096, 1);
        let text = format!("{m:?} {:?}", MemoryAccess::Device(m));
        assert!(!text.contains("7f12"), "{text}");
        assert!(!text
            .to_lowercase()
            .contains(&format!("{}", 0x7f12_3456_7000_u64)));
        assert!(
            text.contains("<redacted>") && text.contains("4096"),
            "{text}"
        );
    }

    #[test]
    fn slices_stay_inside() {
        let m = DeviceMemory::new(1000, 100, 0);
        let s = m.slice(10, 90).unwrap();
        assert_eq!((s.address(), s.len(), s.device()), (1010, 90, 0));
        assert!(m.slice(10, 91).is_none());
        assert!(m.slice(u64::MAX, 2).is_none());
        assert!(m.slice(100, 0).unwrap().is_empty());
    }

    #[test]
    fn host_bytes_deref_to_the_bytes() {
        let v = vec![1u8, 2, 3];
        let h = HostBytes::new(v);
        assert_eq!(&*h, &[1, 2, 3]);
        assert_eq!(format!("{h:?}"), "HostBytes { len: 3, .. }");
    }
}
