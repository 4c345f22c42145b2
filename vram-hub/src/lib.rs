#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cache;
mod error;
mod expected;
mod reference;
mod safetensors;

pub use cache::{cache_dir_from, CachedFile, HubCache, Snapshot, MAX_SNAPSHOT_FILES};
pub use error::HubError;
pub use expected::{git_blob_id, Expected, FileCheck};
pub use reference::HubRef;
pub use safetensors::{SafetensorsHeader, TensorInfo, MAX_HEADER_BYTES};
