//! Seals: a canonical encoding of what a consumer relies on, authenticated
//! with HMAC-SHA256.

use subtle::ConstantTimeEq;

use crate::hex::hex32_impls;
use crate::tree::TreeDigest;
use crate::CryptoError;

/// Seal format version 1: no device kind, device UUID, worker or set.
pub const SEAL_FORMAT_V1: u8 = 1;

/// Seal format version 2: version 1's fields plus what the seal is for
/// ([`SealBinding`]: device kind, device UUID, worker id, set id).
pub const SEAL_FORMAT_V2: u8 = 2;

/// Seal format version 3: version 2's fields plus the provenance of the
/// bytes ([`SealProvenance`]: the publisher's key fingerprint, the signed
/// statement's SHA-256, the model's and the file's names).
pub const SEAL_FORMAT_V3: u8 = 3;

/// Version of the seal message encoding new seals use when they carry no
/// provenance, the byte after [`SEAL_DOMAIN`]; seals with a provenance are
/// [`SEAL_FORMAT_V3`]. Version 1 messages still encode and verify.
pub const SEAL_FORMAT_VERSION: u8 = SEAL_FORMAT_V2;

/// The longest model name or resource name a version 3 seal accepts, in
/// bytes ([`SealProvenance`]).
pub const MAX_PROVENANCE_NAME_LEN: usize = 4096;

/// ASCII domain string that starts every encoded seal message.
pub const SEAL_DOMAIN: &[u8] = b"vram-residency seal";

/// Minimum HMAC key length in bytes (the SHA-256 output size).
pub const MIN_KEY_LEN: usize = 32;

/// The kind of memory a seal says the bytes are in, as a seal encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealDeviceKind {
    /// Host memory standing in for a GPU (the mock device): never real VRAM.
    Mock,
    /// A CUDA device's memory.
    Cuda,
}

impl SealDeviceKind {
    /// The byte a v2 seal encodes: 1 for the mock, 2 for CUDA.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Mock => 1,
            Self::Cuda => 2,
        }
    }

    /// The lower-case name handles carry: `mock` or `cuda`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "mock",
            Self::Cuda => "cuda",
        }
    }

    /// The kind named `mock` or `cuda`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "mock" => Some(Self::Mock),
            "cuda" => Some(Self::Cuda),
            _ => None,
        }
    }
}

/// What a version 2 seal adds: where the bytes are, who sealed them and which
/// set they were sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealBinding<'a> {
    /// Mock or CUDA: a seal made on the mock never passes for one made in VRAM.
    pub device_kind: SealDeviceKind,
    /// The device's UUID as the driver reports it (CUDA); `None` when the
    /// backend has none (the mock).
    pub device_uuid: Option<[u8; 16]>,
    /// The worker that sealed (its configured worker id).
    pub worker_id: &'a str,
    /// Random id shared by the shards sealed together as one tensor-parallel
    /// set (a lone shard has a set of its own).
    pub set_id: [u8; 16],
    /// Version 3's provenance block; `None` for a version 2 seal.
    pub provenance: Option<SealProvenance<'a>>,
}

/// What a version 3 seal adds: which signed model the bytes were checked
/// against before sealing.
///
/// The seal only records these values; checking the publisher's signature
/// (and that the bytes match the signed statement) is the caller's job,
/// before it asks for the seal. The seal then proves which statement, and
/// which file of it, the resident bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealProvenance<'a> {
    /// SHA-256 of the publisher's public key (the key the signature was
    /// checked with).
    pub publisher_key_sha256: [u8; 32],
    /// SHA-256 of the signed in-toto statement as signed: the DSSE payload
    /// bytes, so every field of the statement (its subject, every file's
    /// name and digest, the serialization) is bound, not only the subject
    /// digest that two statements may share.
    pub statement_sha256: [u8; 32],
    /// The model's name in the signed statement (at most
    /// [`MAX_PROVENANCE_NAME_LEN`] bytes).
    pub model_name: &'a str,
    /// The file's name in the signed manifest (`sub/tokenizer.json`; `.`
    /// for a single-file model), at most [`MAX_PROVENANCE_NAME_LEN`] bytes.
    pub resource_name: &'a str,
}

/// Everything a seal commits to.
///
/// [`SealMessage::encode`] is injective: every variable-length field carries a
/// u32 big-endian length prefix and every other field has a fixed width, in a
/// fixed order after a domain string and a version byte. `binding: None`
/// encodes version 1, `Some` version 2, and a binding with a
/// [`provenance`](SealBinding::provenance) version 3.
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
    /// Version 2's fields (and version 3's, in their provenance); `None`
    /// for a version 1 seal.
    pub binding: Option<SealBinding<'a>>,
}

fn put_var(out: &mut Vec<u8>, bytes: &[u8]) {
    // sign_seal and verify_seal reject fields over u32::MAX bytes first.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl SealMessage<'_> {
    /// The format version this message encodes: [`SEAL_FORMAT_V1`] without a
    /// binding, [`SEAL_FORMAT_V2`] with one, [`SEAL_FORMAT_V3`] with a
    /// binding that carries a provenance.
    #[must_use]
    pub fn version(&self) -> u8 {
        match &self.binding {
            None => SEAL_FORMAT_V1,
            Some(SealBinding {
                provenance: None, ..
            }) => SEAL_FORMAT_V2,
            Some(SealBinding {
                provenance: Some(_),
                ..
            }) => SEAL_FORMAT_V3,
        }
    }

    /// The canonical bytes that are signed. Version 1:
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
    /// Version 2 (version byte 2) inserts after `model_ref`
    /// `device_kind (u8: 1 mock, 2 cuda) || uuid_present (u8: 0 or 1) ||
    /// device_uuid (16 bytes, zeros when absent)`, and after `shard_total`
    /// `set_id (16 bytes) || len(worker_id) (u32 BE) || worker_id`, before
    /// `key_id`.
    ///
    /// Version 3 (version byte 3) is version 2 with, after `worker_id` and
    /// before `key_id`, `publisher_key_sha256 (32 bytes) ||
    /// statement_sha256 (32 bytes) || len(model_name) (u32 BE) ||
    /// model_name || len(resource_name) (u32 BE) || resource_name`.
    /// docs/formats.md has all three with vectors.
    ///
    /// Fields longer than `u32::MAX` bytes, and provenance names longer than
    /// [`MAX_PROVENANCE_NAME_LEN`], cannot be sealed: [`sign_seal`] and
    /// [`verify_seal`] refuse them before encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (worker, names) = self.binding.as_ref().map_or((0, 0), |b| {
            let names = b.provenance.as_ref().map_or(0, |p| {
                72usize
                    .saturating_add(p.model_name.len())
                    .saturating_add(p.resource_name.len())
            });
            (b.worker_id.len().saturating_add(40), names)
        });
        let cap = 128usize
            .saturating_add(self.shard_id.len())
            .saturating_add(self.model_ref.len())
            .saturating_add(worker)
            .saturating_add(names);
        let mut out = Vec::with_capacity(cap);
        out.extend_from_slice(SEAL_DOMAIN);
        out.push(self.version());
        put_var(&mut out, self.shard_id.as_bytes());
        put_var(&mut out, self.model_ref.as_bytes());
        if let Some(b) = &self.binding {
            out.push(b.device_kind.code());
            out.push(u8::from(b.device_uuid.is_some()));
            out.extend_from_slice(&b.device_uuid.unwrap_or([0; 16]));
        }
        out.extend_from_slice(&self.device_index.to_be_bytes());
        out.extend_from_slice(&self.byte_len.to_be_bytes());
        out.extend_from_slice(&self.tree.descriptor.encode());
        out.extend_from_slice(self.tree.root.as_bytes());
        out.extend_from_slice(&self.sealed_at_ns.to_be_bytes());
        out.extend_from_slice(&self.shard_index.to_be_bytes());
        out.extend_from_slice(&self.shard_total.to_be_bytes());
        if let Some(b) = &self.binding {
            out.extend_from_slice(&b.set_id);
            put_var(&mut out, b.worker_id.as_bytes());
            if let Some(p) = &b.provenance {
                out.extend_from_slice(&p.publisher_key_sha256);
                out.extend_from_slice(&p.statement_sha256);
                put_var(&mut out, p.model_name.as_bytes());
                put_var(&mut out, p.resource_name.as_bytes());
            }
        }
        out.extend_from_slice(&self.key_id);
        out
    }

    /// Refuses fields the encoding cannot carry (over `u32::MAX` bytes) and
    /// provenance names over [`MAX_PROVENANCE_NAME_LEN`].
    fn check(&self) -> Result<(), CryptoError> {
        let u32_max = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        let worker_len = self.binding.map_or(0, |b| b.worker_id.len());
        let provenance = self.binding.and_then(|b| b.provenance);
        let model_name_len = provenance.map_or(0, |p| p.model_name.len());
        let resource_name_len = provenance.map_or(0, |p| p.resource_name.len());
        for (field, len, max) in [
            ("shard_id", self.shard_id.len(), u32_max),
            ("model_ref", self.model_ref.len(), u32_max),
            ("worker_id", worker_len, u32_max),
            ("model_name", model_name_len, MAX_PROVENANCE_NAME_LEN),
            ("resource_name", resource_name_len, MAX_PROVENANCE_NAME_LEN),
        ] {
            if len > max {
                return Err(CryptoError::FieldTooLong { field, len, max });
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

/// A long-lived HMAC-SHA256 key, built once and kept on the heap.
///
/// Build one per key for the life of its user (a manager keeps its seal key
/// as one): rebuilding a `ring::hmac::Key` on every call leaves a fresh copy
/// of its keyed state in memory each time, and ring's key, context and tag
/// types do not zeroize. Boxed, so moving a `HmacKey` moves a pointer, not
/// the keyed state. ring still does not clear that state when the box is
/// freed (docs/threat-model.md lists this). `Debug` shows nothing of the key.
pub struct HmacKey(Box<ring::hmac::Key>);

impl HmacKey {
    /// Builds the key from its bytes (at least [`MIN_KEY_LEN`]).
    ///
    /// # Errors
    ///
    /// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes.
    pub fn new(key: &[u8]) -> Result<HmacKey, CryptoError> {
        if key.len() < MIN_KEY_LEN {
            return Err(CryptoError::KeyTooShort {
                len: key.len(),
                min: MIN_KEY_LEN,
            });
        }
        Ok(HmacKey(Box::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            key,
        ))))
    }

    /// HMAC-SHA256 of `data`.
    #[must_use]
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.0, data);
        let mut out = [0u8; 32];
        out.iter_mut().zip(tag.as_ref()).for_each(|(o, t)| *o = *t);
        out
    }

    /// Checks a tag over `data` in constant time.
    ///
    /// # Errors
    ///
    /// [`CryptoError::MacMismatch`] when the tag is wrong.
    pub fn verify(&self, data: &[u8], tag: &[u8; 32]) -> Result<(), CryptoError> {
        ring::hmac::verify(&self.0, data, tag).map_err(|_| CryptoError::MacMismatch)
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

/// HMAC-SHA256 of `data` under `key` (ring), with a key built for this one
/// call: for one-off MACs. A key used more than once belongs in a [`HmacKey`].
///
/// # Errors
///
/// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], CryptoError> {
    Ok(HmacKey::new(key)?.sign(data))
}

/// Checks an HMAC-SHA256 tag in constant time (ring).
///
/// # Errors
///
/// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes;
/// [`CryptoError::MacMismatch`] when the tag is wrong.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8; 32]) -> Result<(), CryptoError> {
    HmacKey::new(key)?.verify(data, tag)
}

/// Signs a seal message: HMAC-SHA256 over [`SealMessage::encode`].
///
/// # Errors
///
/// [`CryptoError::KeyTooShort`] for keys under [`MIN_KEY_LEN`] bytes;
/// [`CryptoError::FieldTooLong`] for a field over its limit (`u32::MAX`
/// bytes; [`MAX_PROVENANCE_NAME_LEN`] for provenance names).
pub fn sign_seal(key: &[u8], msg: &SealMessage<'_>) -> Result<SealTag, CryptoError> {
    sign_seal_with(&HmacKey::new(key)?, msg)
}

/// [`sign_seal`] with a key built once ([`HmacKey`]).
///
/// # Errors
///
/// [`CryptoError::FieldTooLong`] for a field over its limit (`u32::MAX`
/// bytes; [`MAX_PROVENANCE_NAME_LEN`] for provenance names).
pub fn sign_seal_with(key: &HmacKey, msg: &SealMessage<'_>) -> Result<SealTag, CryptoError> {
    msg.check()?;
    Ok(SealTag(key.sign(&msg.encode())))
}

/// Verifies a seal tag in constant time (`ring::hmac::verify`).
///
/// # Errors
///
/// [`CryptoError::SealMismatch`] when any field, the key or the tag differs
/// from what was signed; [`CryptoError::KeyTooShort`] and
/// [`CryptoError::FieldTooLong`] as for [`sign_seal`].
pub fn verify_seal(key: &[u8], msg: &SealMessage<'_>, tag: &SealTag) -> Result<(), CryptoError> {
    verify_seal_with(&HmacKey::new(key)?, msg, tag)
}

/// [`verify_seal`] with a key built once ([`HmacKey`]).
///
/// # Errors
///
/// [`CryptoError::SealMismatch`] when any field, the key or the tag differs;
/// [`CryptoError::FieldTooLong`] for a field over its limit (`u32::MAX`
/// bytes; [`MAX_PROVENANCE_NAME_LEN`] for provenance names).
pub fn verify_seal_with(
    key: &HmacKey,
    msg: &SealMessage<'_>,
    tag: &SealTag,
) -> Result<(), CryptoError> {
    msg.check()?;
    key.verify(&msg.encode(), &tag.0)
        .map_err(|_| CryptoError::SealMismatch)
}
