#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod buffer;
mod device;
mod state;

pub use device::{MockDevice, MockDeviceBuilder, UploadCalls, DEFAULT_CAPACITY};
pub use state::BufferId;
