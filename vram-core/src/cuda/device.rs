//! [`CudaDevice`]: one CUDA device (its primary context), the `Device` seam's real
//! implementation.

use super::buffer::{Allocation, CudaBuffer};
use super::shared::DeviceShared;
use super::staging::PinnedStaging;
use super::{call, device_count, driver_present};
use crate::{
    Device, DeviceAttributes, DeviceBuffer, DeviceCapabilities, DeviceError, DeviceInfo,
    DeviceKind, MemoryInfo,
};
use cudarc::driver::{sys, CudaContext};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// Live allocations in allocation order, for the test-only overwrite path.
#[derive(Default)]
struct Registry {
    next_id: u64,
    live: Vec<Weak<Allocation>>,
}

impl Registry {
    /// Drops entries whose buffer is gone and returns the live ones.
    fn live(&mut self) -> Vec<Arc<Allocation>> {
        self.live.retain(|weak| weak.strong_count() > 0);
        self.live.iter().filter_map(Weak::upgrade).collect()
    }
}

/// One CUDA device, driven through its primary context.
///
/// `Send + Sync`: every method binds the context to the calling thread before it
/// talks to the driver, so the device can be shared by all threads of a worker.
/// Allocations are plain `cuMemAlloc` device memory, freed when their buffer drops.
pub struct CudaDevice {
    info: DeviceInfo,
    shared: Arc<DeviceShared>,
    registry: Mutex<Registry>,
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaDevice")
            .field("index", &self.info.index)
            .field("name", &self.info.name)
            .field("live_allocations", &self.live_allocations())
            .finish_non_exhaustive()
    }
}

impl CudaDevice {
    /// Opens CUDA device `index` (its primary context).
    ///
    /// # Errors
    /// [`DeviceError::NoDriver`] when `libcuda` cannot be loaded;
    /// [`DeviceError::NoDevice`] when the driver has no device `index`;
    /// [`DeviceError::Driver`] when a driver call fails.
    pub fn open(index: u32) -> Result<Arc<Self>, DeviceError> {
        if !driver_present() {
            return Err(DeviceError::NoDriver);
        }
        let count = device_count()?;
        let no_device = DeviceError::NoDevice { index, count };
        if index >= count {
            return Err(no_device);
        }
        let ordinal = usize::try_from(index).map_err(|_| no_device)?;
        let ctx = call("cuDevicePrimaryCtxRetain", || CudaContext::new(ordinal))?;
        let name = call("cuDeviceGetName", || ctx.name())?;
        // Seals bind the UUID when the driver gives one; a driver that does
        // not answer leaves it out rather than refusing the device.
        let uuid = match ctx.uuid() {
            Ok(u) => Some(u.bytes.map(|b| b.to_ne_bytes()[0])),
            Err(e) => {
                tracing::warn!(index, error = %e, "cuDeviceGetUuid failed: seals will not name this device's UUID");
                None
            }
        };
        tracing::info!(index, name = %name, "opened CUDA device");
        Ok(Arc::new(Self {
            info: DeviceInfo {
                index,
                name,
                kind: DeviceKind::Cuda,
                uuid,
            },
            shared: Arc::new(DeviceShared::new(index, ctx)),
            registry: Mutex::new(Registry::default()),
        }))
    }

    /// Allocates `bytes` of plain device memory and returns the concrete buffer,
    /// for callers that want [`CudaBuffer::pipelined_write`]. [`Device::alloc`] is
    /// this, boxed.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for zero bytes;
    /// [`DeviceError::OutOfMemory`] (with the free bytes the driver reports) when
    /// `cuMemAlloc` runs out of memory; [`DeviceError::Driver`] otherwise.
    pub fn alloc_cuda(&self, bytes: u64) -> Result<CudaBuffer, DeviceError> {
        if bytes == 0 {
            return Err(DeviceError::InvalidArgument {
                reason: "zero-byte device allocation",
            });
        }
        let id = {
            let mut registry = self.lock_registry();
            let id = registry.next_id;
            registry.next_id = id.saturating_add(1);
            id
        };
        // One stream per buffer: its copies never wait for another buffer's work.
        let stream = call("cuStreamCreate", || self.shared.ctx.new_stream())?;
        let allocation = match Allocation::new(&self.shared, id, bytes, stream) {
            Ok(allocation) => Arc::new(allocation),
            Err(DeviceError::OutOfMemory { device, needed, .. }) => {
                let available = self.memory_info().map(|m| m.free).unwrap_or(0);
                tracing::warn!(
                    device,
                    needed,
                    available,
                    "CUDA allocation failed: out of memory"
                );
                return Err(DeviceError::OutOfMemory {
                    device,
                    needed,
                    available,
                });
            }
            Err(err) => return Err(err),
        };
        self.lock_registry().live.push(Arc::downgrade(&allocation));
        tracing::debug!(
            device = self.info.index,
            id,
            bytes,
            "allocated device memory"
        );
        Ok(CudaBuffer::new(allocation, Arc::clone(&self.shared)))
    }

    /// Allocates `bytes` of page-locked host memory for [`CudaBuffer::write_at_async_pinned`].
    /// Not write-combined: the host reads it back cheaply (to hash each chunk).
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for zero bytes or more than `isize::MAX`;
    /// [`DeviceError::Driver`] when `cuMemHostAlloc` fails.
    pub fn alloc_pinned_staging(&self, bytes: usize) -> Result<PinnedStaging, DeviceError> {
        PinnedStaging::new(&self.shared.ctx, bytes)
    }

    /// Ids of the live buffers allocated by this device, in allocation order.
    ///
    /// Test and demo support, with [`CudaDevice::overwrite`]; behind the
    /// `test-hooks` feature.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn live_buffers(&self) -> Vec<u64> {
        self.lock_registry().live().iter().map(|a| a.id()).collect()
    }

    /// Number of live buffers allocated by this device.
    pub fn live_allocations(&self) -> usize {
        self.lock_registry().live().len()
    }

    /// Bytes held by the live buffers allocated by this device.
    pub fn live_bytes(&self) -> u64 {
        self.lock_registry()
            .live()
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(a.len()))
    }

    /// Writes `bytes` at `offset` into live buffer `id`, through the driver,
    /// bypassing the buffer's owner.
    ///
    /// **This is a test and demo path that corrupts device memory behind a seal's
    /// back on purpose**, so that verification can be shown to catch it. It is the
    /// CUDA twin of the mock device's `overwrite`. Behind the `test-hooks`
    /// feature: not for production builds.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when no live buffer has this id;
    /// [`DeviceError::OutOfBounds`] when the range does not fit the buffer;
    /// [`DeviceError::Driver`] when the copy fails.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn overwrite(&self, id: u64, offset: u64, bytes: &[u8]) -> Result<(), DeviceError> {
        let target = self.live_allocation(id)?;
        tracing::warn!(
            device = self.info.index,
            id,
            offset,
            len = bytes.len(),
            "overwriting device memory behind its owner's back (test/demo path)"
        );
        target.write(offset, bytes)
    }

    /// Reads bytes of a live allocation by id (the test/demo twin of
    /// [`CudaDevice::overwrite`], e.g. to flip a bit of what is there).
    /// Behind the `test-hooks` feature: not for production builds.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] for an unknown id;
    /// [`DeviceError::OutOfBounds`] or a driver error from the copy.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn read_for_test(&self, id: u64, offset: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        let target = self.live_allocation(id)?;
        target.read(offset, out)
    }

    /// Reads device memory handed out as a [`DeviceMemory`](crate::DeviceMemory)
    /// (what a lease gives an engine), as a kernel would read it: for tests
    /// that check a lease's address against the host. The range must lie
    /// inside one live allocation of this device. Behind `test-hooks`.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when the range is not inside a live
    /// allocation of this device; a driver error from the copy.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn read_device_memory(
        &self,
        memory: &crate::DeviceMemory,
        out: &mut [u8],
    ) -> Result<(), DeviceError> {
        let len = u64::try_from(out.len())
            .unwrap_or(u64::MAX)
            .min(memory.len());
        let found = self
            .lock_registry()
            .live()
            .into_iter()
            .find_map(|a| a.offset_of(memory.address(), len).map(|o| (a, o)));
        let Some((target, offset)) = found.filter(|_| memory.device() == self.info.index) else {
            return Err(DeviceError::InvalidArgument {
                reason: "the range is not inside a live allocation of this device",
            });
        };
        target.read(offset, out)
    }

    /// Flips the bits of `mask` in the byte at `offset` of the most recently
    /// made live allocation of this device, behind its owner's back.
    ///
    /// **The demo's simulated corruption, on purpose**: `vram demo` shows that
    /// verification catches a changed byte. Behind the `demo` feature (or
    /// `test-hooks`), which the `vram` binary turns on only through its own
    /// `demo-cuda` feature.
    ///
    /// # Errors
    /// [`DeviceError::InvalidArgument`] when no buffer is live;
    /// [`DeviceError::OutOfBounds`] when `offset` is past its end;
    /// [`DeviceError::Driver`] when a copy fails.
    #[cfg(any(test, feature = "test-hooks", feature = "demo"))]
    pub fn corrupt_one_byte_for_demo(&self, offset: u64, mask: u8) -> Result<(), DeviceError> {
        let target = self
            .lock_registry()
            .live()
            .into_iter()
            .max_by_key(|a| a.id())
            .ok_or(DeviceError::InvalidArgument {
                reason: "no live buffer on this device",
            })?;
        let mut byte = [0u8; 1];
        target.read(offset, &mut byte)?;
        let [old] = byte;
        tracing::warn!(
            device = self.info.index,
            offset,
            "corrupting one byte of device memory behind its owner's back (demo)"
        );
        target.write(offset, &[old ^ mask])
    }

    /// The live allocation with this id.
    #[cfg(any(test, feature = "test-hooks"))]
    fn live_allocation(&self, id: u64) -> Result<Arc<Allocation>, DeviceError> {
        self.lock_registry()
            .live()
            .into_iter()
            .find(|a| a.id() == id)
            .ok_or(DeviceError::InvalidArgument {
                reason: "no live buffer with this id on this device",
            })
    }

    fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        // The registry holds no invariant a panic could break halfway.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn attribute(&self, attribute: sys::CUdevice_attribute) -> Result<bool, DeviceError> {
        call("cuDeviceGetAttribute", || {
            self.shared.ctx.attribute(attribute)
        })
        .map(|v| v != 0)
    }
}

impl Device for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn memory_info(&self) -> Result<MemoryInfo, DeviceError> {
        // `mem_get_info` binds the context to the calling thread first.
        let (free, total) = call("cuMemGetInfo", || self.shared.ctx.mem_get_info())?;
        let to_u64 = |v: usize| {
            u64::try_from(v).map_err(|_| DeviceError::Driver {
                call: "cuMemGetInfo",
                code: "memory size does not fit in 64 bits".to_owned(),
            })
        };
        Ok(MemoryInfo {
            total: to_u64(total)?,
            free: to_u64(free)?,
        })
    }

    /// `integrated` and `pageable_memory_access` come from the device attributes
    /// `CU_DEVICE_ATTRIBUTE_INTEGRATED` and `CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS`.
    /// `managed_memory` and `host_mapped` describe *our* allocations, which are
    /// always plain `cuMemAlloc` memory, so both are `false` whatever the device
    /// supports; the device's managed-memory and unified-addressing support is
    /// logged at debug level for the record.
    fn attributes(&self) -> Result<DeviceAttributes, DeviceError> {
        use sys::CUdevice_attribute::{
            CU_DEVICE_ATTRIBUTE_INTEGRATED, CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY,
            CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING,
        };
        let integrated = self.attribute(CU_DEVICE_ATTRIBUTE_INTEGRATED)?;
        let pageable_memory_access = self.attribute(CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS)?;
        let supports_managed = self.attribute(CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY)?;
        let unified_addressing = self.attribute(CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING)?;
        tracing::debug!(
            device = self.info.index,
            integrated,
            pageable_memory_access,
            supports_managed,
            unified_addressing,
            "CUDA device attributes (our allocations are never managed or host-mapped)"
        );
        Ok(DeviceAttributes {
            integrated,
            managed_memory: false,
            host_mapped: false,
            pageable_memory_access,
        })
    }

    fn alloc(&self, bytes: u64) -> Result<Box<dyn DeviceBuffer>, DeviceError> {
        self.alloc_cuda(bytes)
            .map(|buffer| Box::new(buffer) as Box<dyn DeviceBuffer>)
    }

    /// Streams through pinned staging; never lends host memory; hashes on
    /// the device when its leaf kernel compiles and loads (NVRTC present, a
    /// driver that loads its PTX). The first call compiles the kernel; the
    /// outcome, success or failure, is cached for the device's lifetime.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            stream_from: true,
            fill_in_place: false,
            hash_on_device: self.shared.hasher().is_ok(),
        }
    }
}
