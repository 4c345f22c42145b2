#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

mod device;
mod error;

pub use device::{
    checked_range, Device, DeviceAttributes, DeviceBuffer, DeviceInfo, DeviceKind, MemoryInfo,
};
pub use error::DeviceError;

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
pub mod cuda;
