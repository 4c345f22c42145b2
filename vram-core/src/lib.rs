#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod device;
mod error;

pub use device::{
    checked_range, Device, DeviceAttributes, DeviceBuffer, DeviceInfo, DeviceKind, MemoryInfo,
};
pub use error::DeviceError;
