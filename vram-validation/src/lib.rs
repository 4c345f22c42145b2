#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod device;
mod error;
mod escape;
mod expected_digest;
pub mod hex;
mod model_ref;
mod newtype;
mod provenance_name;
mod sha256;
mod shard_id;
mod size;

pub use device::{validate_device_index, ShardPosition, MAX_SHARDS};
pub use error::{Field, ValidationError};
pub use escape::{
    escape_for_log, escape_line_field, escape_path_for_log, unescape_line_field, OutputLine,
};
pub use expected_digest::{DigestForm, ExpectedDigest, EXPECTED_DIGEST_FORMS};
pub use model_ref::{is_model_ref_char, ModelRef, MAX_MODEL_REF_LEN};
pub use provenance_name::{is_provenance_name_char, ProvenanceName, MAX_PROVENANCE_NAME_LEN};
pub use sha256::{Sha256Hex, SHA256_HEX_LEN};
pub use shard_id::{is_shard_id_char, ShardId, MAX_SHARD_ID_LEN};
pub use size::{format_bytes, parse_byte_size, validate_model_size, DEFAULT_MAX_MODEL_BYTES};
