#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

mod access;
mod bytes;
mod capacity;
mod device;
mod error;
mod policy;
pub mod source;
mod sync;

pub use access::{DeviceMemory, HostBytes, MemoryAccess};
pub use capacity::{CapacityError, CapacityTracker, Reservation};
pub use device::{
    checked_range, Device, DeviceAttributes, DeviceBuffer, DeviceCapabilities, DeviceInfo,
    DeviceKind, MemoryInfo,
};
pub use error::{DeviceError, StreamError};
pub use policy::{check_fits, check_vram_only, PolicyViolation};

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
pub mod cuda;
