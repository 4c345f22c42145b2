#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod diff;
mod digest;
mod engine;
mod error;
mod hasher;
mod hex;
mod index;
mod model;
mod seal;
mod tree;

pub use diff::{diff_leaves, verify_leaves, CorruptRange};
pub use digest::{sha256, Sha256Digest, Sha256Stream};
pub use engine::{
    backend, beside, hash_alongside, hash_in_place, hash_in_place_alongside, hash_leaf_run,
    hash_leaf_run_threads, hashing_threads, lane_width, leaf_hash_from, leaf_hashes,
    leaf_hashes_from, self_test, tree_digest,
};
pub use error::CryptoError;
pub use hasher::{TreeHasher, TreeOutput};
pub use index::LeafIndex;
pub use model::{
    sign_model_binding, verify_model_binding, BoundFile, BoundShard, ModelBinding,
    MODEL_BINDING_DOMAIN, MODEL_BINDING_V1,
};
pub use seal::{
    hmac_sha256, hmac_sha256_verify, sign_seal, sign_seal_with, verify_seal, verify_seal_with,
    HmacKey, SealBinding, SealDeviceKind, SealMessage, SealProvenance, SealTag,
    MAX_PROVENANCE_NAME_LEN, MIN_KEY_LEN, SEAL_DOMAIN, SEAL_FORMAT_V1, SEAL_FORMAT_V2,
    SEAL_FORMAT_V3, SEAL_FORMAT_VERSION,
};
pub use tree::{
    LeafHashes, LeafSize, TreeDescriptor, TreeDigest, DESCRIPTOR_LEN, LEAF_PREFIX, ROOT_PREFIX,
    TREE_ALGORITHM_SHA256, TREE_FORMAT_VERSION,
};
