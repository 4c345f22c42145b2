#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cache;
mod error;
mod expected;
mod layout;
mod open;
mod reference;

pub use cache::{cache_dir_from, CachedFile, HubCache, Snapshot, MAX_SNAPSHOT_FILES};
pub use error::HubError;
pub use expected::{git_blob_id, Expected, FileCheck};
pub use layout::{
    gguf_part_model, ModelLayout, INFERENCE_FILES, MAX_INDEX_BYTES, MAX_WEIGHT_FILES,
    SINGLE_WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
};
pub use open::{
    file_kind, open_model_file, open_regular_file, read_model_file, read_regular_file, ModelFile,
};
pub use reference::HubRef;
