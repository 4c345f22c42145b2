//! Derived keys and their public fingerprints.

use std::fmt;
use std::str::FromStr;

use ring::hmac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::buf::{KeyBuf, KEY_LEN};
use crate::SecretsError;

/// The HMAC message whose tag, truncated, is a key's [`KeyId`].
const KEY_ID_LABEL: &[u8] = b"vram-residency/key-id/v1";

/// A 32-byte symmetric key (a seal key or an audit key).
///
/// The bytes live on the heap, so moving a `SecretKey` does not leave copies on the
/// stack, and they are overwritten with zeros when it is dropped. It has no
/// `Clone`, no `Display` and no serde impls; `Debug` shows only the [`KeyId`].
///
/// ```
/// use vram_secrets::SecretKey;
/// let key = SecretKey::from_bytes([7; 32]);
/// assert_eq!(format!("{key:?}"), format!("SecretKey {{ key_id: \"{}\" }}", key.key_id()));
/// ```
pub struct SecretKey {
    /// Zeroized on drop (`KeyBuf`'s own `Drop`).
    bytes: KeyBuf,
    key_id: KeyId,
}

impl SecretKey {
    /// Takes ownership of key bytes. The argument's copy is zeroed once the bytes
    /// are on the heap; copies the caller made before the call are theirs to clear.
    #[must_use]
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey::fill_with(|out| {
            *out.bytes_mut() = bytes;
            bytes.zeroize();
        })
    }

    /// A key whose bytes `fill` writes straight into their heap buffer: no
    /// copy of the key is made on the way (derived keys are built this way).
    pub(crate) fn fill_with(fill: impl FnOnce(&mut KeyBuf)) -> SecretKey {
        let mut bytes = KeyBuf::new("secret-key");
        fill(&mut bytes);
        let key_id = KeyId::of(bytes.bytes());
        SecretKey { bytes, key_id }
    }

    /// The raw key bytes.
    ///
    /// Only for feeding a MAC (`ring::hmac::Key::new`); never log, print, store or
    /// compare them.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.bytes.bytes()
    }

    /// The key's public fingerprint.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.key_id.to_string())
            .finish()
    }
}

/// A key's public fingerprint: the first 8 bytes of
/// HMAC-SHA256(key, `"vram-residency/key-id/v1"`).
///
/// An HMAC under the key rather than a hash of it, so the id says nothing usable
/// about the key and cannot be computed without it. It goes into seals and audit
/// records so that keys can rotate. Written as 16 lower-case hex digits (parsing
/// also accepts upper case); serde uses the same string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &[u8; KEY_LEN]) -> KeyId {
        KeyId::of_mac_key(&hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// The id of the key inside an HMAC-SHA256 key: the workspace's one
    /// key-id function. [`SecretKey::key_id`] uses it, and so does a holder
    /// that keeps only the built MAC key and no key bytes (the audit log's
    /// key), so the two ids of one key are the same.
    #[must_use]
    pub fn of_mac_key(mac_key: &hmac::Key) -> KeyId {
        let tag = hmac::sign(mac_key, KEY_ID_LABEL);
        let mut id = [0u8; 8];
        for (dst, src) in id.iter_mut().zip(tag.as_ref()) {
            *dst = *src;
        }
        KeyId(id)
    }

    /// Builds a key id from its 8 bytes (as read from a seal or a record).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 8]) -> KeyId {
        KeyId(bytes)
    }

    /// The 8 bytes of the id.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        vram_validation::hex::write_lower(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId(\"{self}\")")
    }
}

impl FromStr for KeyId {
    type Err = SecretsError;

    fn from_str(s: &str) -> Result<KeyId, SecretsError> {
        let invalid = || SecretsError::InvalidKeyId {
            shown: vram_validation::escape_for_log(s, crate::SHOWN_CHARS),
        };
        vram_validation::hex::decode(s)
            .map(KeyId)
            .ok_or_else(invalid)
    }
}

impl TryFrom<String> for KeyId {
    type Error = SecretsError;
    fn try_from(s: String) -> Result<KeyId, SecretsError> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.to_string()
    }
}
