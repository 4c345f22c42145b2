//! The real CUDA backend: [`CudaDevice`] and [`CudaBuffer`] over the CUDA driver
//! API (through `cudarc`, with `libcuda` loaded at run time).
//!
//! The crate builds without a CUDA toolkit and runs without a driver: every entry
//! point first checks that `libcuda` can be loaded ([`driver_present`]) and returns
//! [`DeviceError::NoDriver`] when it cannot. `cudarc` panics when a library or a
//! symbol is missing; every driver call here also runs under
//! [`std::panic::catch_unwind`], so such a panic becomes a typed error instead of
//! reaching the caller (a second line of defence; it needs `panic = "unwind"`).
//!
//! What the backend hands out:
//! - **Plain device memory only.** Buffers come from `cuMemAlloc` (never managed,
//!   unified, pool-backed or host-mapped memory) and are freed on drop.
//! - **Bounds-checked copies.** Every offset and length is checked with
//!   [`checked_range`](crate::checked_range) before any driver call, so nothing can
//!   index out of bounds or panic on a length mismatch.
//! - **One stream per buffer.** Work on one buffer never waits for another buffer's
//!   copies (a verify of one shard never waits on the seal of another).
//! - **Pipelined uploads** ([`CudaBuffer::pipelined_write`]) through two pinned
//!   staging buffers ([`PinnedStaging`]): chunk N+1 is read while chunk N is copied,
//!   and a staging buffer is never refilled before its copy has completed.
//! - **On-device leaf hashing** ([`DeviceBuffer::hash_leaves_on_device`]): a
//!   SHA-256 kernel compiled with NVRTC at first use and cached per device.
//! - **A deliberate corruption path for tests** (`CudaDevice::overwrite`,
//!   behind the `test-hooks` feature) and one byte flipped for the demo
//!   (`CudaDevice::corrupt_one_byte_for_demo`, behind `demo`): each writes
//!   device memory behind a seal's back, and neither is in a default build.
//!
//! [`DeviceBuffer::hash_leaves_on_device`]: crate::DeviceBuffer::hash_leaves_on_device

mod buffer;
mod device;
mod kernel;
#[cfg(test)]
mod kernel_host_tests;
mod shared;
mod staging;
#[cfg(test)]
mod tests;

pub use buffer::{CudaBuffer, PipelinedWriteError};
pub use device::CudaDevice;
pub use staging::PinnedStaging;

use crate::DeviceError;
use cudarc::driver::{sys, CudaContext, DriverError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Whether the CUDA driver library (`libcuda.so` / `nvcuda.dll`) can be loaded.
/// The answer is computed once per process.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: `is_culib_present` only tries to dlopen the driver library under
        // its well-known names and closes it again; loading the NVIDIA driver
        // library runs no initialiser with preconditions we could violate.
        let found = catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
        tracing::debug!(found, "probed for the CUDA driver library");
        found
    })
}

/// Whether the NVRTC runtime compiler library (`libnvrtc.so`) can be loaded. It is
/// needed only for on-device leaf hashing. Computed once per process.
pub fn nvrtc_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: as for the driver library: a dlopen / dlclose probe of NVRTC.
        let found =
            catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false);
        tracing::debug!(found, "probed for the NVRTC library");
        found
    })
}

/// Number of CUDA devices the driver reports (0 when the driver loads but finds
/// no device).
///
/// # Errors
/// [`DeviceError::NoDriver`] when `libcuda` cannot be loaded;
/// [`DeviceError::Driver`] when `cuInit` or `cuDeviceGetCount` fails otherwise.
pub fn device_count() -> Result<u32, DeviceError> {
    if !driver_present() {
        return Err(DeviceError::NoDriver);
    }
    match guarded("cuDeviceGetCount", CudaContext::device_count)? {
        Ok(count) => u32::try_from(count).map_err(|_| DeviceError::Driver {
            call: "cuDeviceGetCount",
            code: "negative device count".to_owned(),
        }),
        Err(err) if err.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => Ok(0),
        Err(err) => Err(driver_error("cuDeviceGetCount", err)),
    }
}

/// Runs `f` (which calls into the driver) and turns a panic from the bindings
/// (missing library or symbol) into a typed error.
fn guarded<T>(call: &'static str, f: impl FnOnce() -> T) -> Result<T, DeviceError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        if driver_present() {
            tracing::error!(call, "the CUDA bindings panicked (missing driver symbol?)");
            DeviceError::Driver {
                call,
                code: "driver library lacks a required symbol (driver too old?)".to_owned(),
            }
        } else {
            DeviceError::NoDriver
        }
    })
}

/// [`guarded`] for calls that return a driver result.
fn call<T>(
    call: &'static str,
    f: impl FnOnce() -> Result<T, DriverError>,
) -> Result<T, DeviceError> {
    guarded(call, f)?.map_err(|err| driver_error(call, err))
}

/// A driver error as [`DeviceError::Driver`], named by its `CUresult` (for
/// example `CUDA_ERROR_ILLEGAL_ADDRESS`). Never includes addresses.
fn driver_error(call: &'static str, err: DriverError) -> DeviceError {
    DeviceError::Driver {
        call,
        code: format!("{:?}", err.0),
    }
}
