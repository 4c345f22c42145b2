//! Seals: a canonical encoding of what a consumer relies on, authenticated
//! with HMAC-SHA256.

use subtle::ConstantTimeEq;

use crate::hex::hex32_impls;
use crate::tree::TreeDigest;
use crate::CryptoError;

/// Version of the seal message encoding, the byte after [`SEAL_DOMAIN`].
pub const SEAL_FORMAT_VERSION: u8 = 1;

/// ASCII domain string that starts every encoded seal message.
pub const SEAL_DOMAIN: &[u8] = b"vram-residency seal";

/// Minimum HMAC key length in bytes (the SHA-256 output size).
pub const MIN_KEY_LEN: usize = 32;

/// Everything a seal commits to.
///
/// [`SealMessage::encode`] is injective: every variable-length field carries a
/// u32 big-endian length prefix and every other field has a fixed width, in a
/// fixed order after a domain string and a version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealMessage<'a> {
    /// Shard identifier.
    pub shard_id: &'a str,
    /// Model reference the shard belongs to.
    pub model_ref: &'a str,
    /// Device the bytes are resident on.
    pub device_index: u32,
    /// Number of bytes sealed.
    pub byte_len: u64,
    /// Tree digest (descriptor and root) of the bytes.
    pub tree: &'a TreeDigest,
    /// Seal time, nanoseconds since the Unix epoch.
    pub sealed_at_ns: u64,
    /// Position of this shard in the model, from 0.
    pub shard_index: u16,
    /// Number of shards in the model.
    pub shard_total: u16,
    /// Fingerprint of the key that signs the seal.
    pub key_id: [u8; 8],
}

fn put_var(out: &mut Vec<u8>, bytes: &[u8]) {
    // sign_seal and verify_seal reject fields over u32::MAX bytes first.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl SealMessage<'_> {
    /// The canonical bytes that are signed:
    ///
    /// ```text
    /// "vram-residency seal" (19 bytes) || version (u8 = 1)
    /// || len(shard_id) (u32 BE) || shard_id || len(model_ref) (u32 BE) || model_ref
    /// || device_index (u32 BE) || byte_len (u64 BE)
    /// || tree descriptor (19 bytes, TreeDescriptor::encode) || tree root (32 bytes)
    /// || sealed_at_ns (u64 BE) || shard_index (u16 BE) || shard_total (u16 BE)
    /// || key_id (8 bytes)
    /// ```
    ///
    /// Fields longer than `u32::MAX` bytes cannot be encoded; [`sign_seal`]
    /// and [`verify_seal`] refuse them before encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let cap = 128usize
            .saturating_add(self.shard_id.len())
            .saturating_add(self.model_ref.len());
        let mut out = Vec::with_capacity(cap);
        out.extend_from_slice(SEAL_DOMAIN);
        out.push(SEAL_FORMAT_VERSION);
        put_var(&mut out, self.shard_id.as_bytes());
        put_var(&mut out, self.model_ref.as_bytes());
        out.extend_from_slice(&self.device_index.to_be_bytes());
        out.extend_from_slice(&self.byte_len.to_be_bytes());
        out.extend_from_slice(&self.tree.descriptor.encode());
        out.extend_from_slice(self.tree.root.as_bytes());
        out.extend_from_slice(&self.sealed_at_ns.to_be_bytes());
        out.extend_from_slice(&self.shard_index.to_be_bytes());
        out.extend_from_slice(&self.shard_total.to_be_bytes());
        out.extend_from_slice(&self.key_id);
        out
    }

    fn check(&self) -> Result<(), CryptoError> {
        for (field, len) in [
            ("shard_id", self.shard_id.len()),
            ("model_ref", self.model_ref.len()),
        ] {
            if u32::try_from(len).is_err() {
                return Err(CryptoError::FieldTooLong { field, len });
            }
        }
        Ok(())
    }
}

/// An HMAC-SHA256 seal tag.
///
/// `Display`, `Debug` and serde use 64 lower-case hex digits; `FromStr` also
/// accepts upper case. `==` is constant-time.
#[derive(Clone, Copy)]
pub struct SealTag(pub [u8; 32]);

hex32_impls!(SealTag, "a seal tag");

impl PartialEq for SealTag {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SealTag {}

impl SealTag {
    /// The raw 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn hmac_key(key: &[u8]) -> Result<ring::hmac::Key, CryptoError> {
    if key.len() < MIN_KEY_LEN {
        return Err(CryptoError::KeyTooShort {
            len: key.len(),
            min: MIN_KEY_LEN,
        });
    }
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
}

/// HMAC-SHA256 of `data` under `key` (ring).
///
/// # Errors
///
/// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], CryptoError> {
    let tag = ring::hmac::sign(&hmac_key(key)?, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Checks an HMAC-SHA256 tag in constant time (ring).
///
/// # Errors
///
/// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes;
/// [`CryptoError::MacMismatch`] when the tag is wrong.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8; 32]) -> Result<(), CryptoError> {
    ring::hmac::verify(&hmac_key(key)?, data, tag).map_err(|_| CryptoError::MacMismatch)
}

/// Signs a seal message: HMAC-SHA256 over [`SealMessage::encode`].
///
/// # Errors
///
/// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes;
/// [`CryptoError::FieldTooLong`] for a field over `u32::MAX` bytes.
pub fn sign_seal(key: &[u8], msg: &SealMessage<'_>) -> Result<SealTag, CryptoError> {
    msg.check()?;
    hmac_sha256(key, &msg.encode()).map(SealTag)
}

/// Verifies a seal tag in constant time (`ring::hmac::verify`).
///
/// # Errors
///
/// [`CryptoError::SealMismatch`] when any field, the key or the tag differs
/// from what was signed; [`CryptoError::KeyTooShort`] and
/// [`CryptoError::FieldTooLong`] as for [`sign_seal`].
pub fn verify_seal(key: &[u8], msg: &SealMessage<'_>, tag: &SealTag) -> Result<(), CryptoError> {
    msg.check()?;
    ring::hmac::verify(&hmac_key(key)?, &msg.encode(), &tag.0)
        .map_err(|_| CryptoError::SealMismatch)
}
