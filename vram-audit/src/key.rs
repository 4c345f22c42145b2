//! The audit log's HMAC key.

use ring::hmac;
use zeroize::Zeroizing;

use crate::record::hex;

/// Domain label whose MAC under the key is the key's public fingerprint.
const KEY_ID_LABEL: &[u8] = b"vram-residency/key-id/v1";

/// A 32-byte HMAC-SHA256 key that authenticates audit records.
///
/// The bytes are zeroized on drop. The type has no `Clone`, `Display` or serde
/// implementations, and its `Debug` output shows only the key id, never a byte
/// of the key. Derive it from the worker secret with a label of its own (distinct
/// from the seal key); this crate takes it as raw bytes so that it depends on no
/// secret-loading code.
pub struct AuditKey(Zeroizing<[u8; 32]>);

impl AuditKey {
    /// Wraps 32 key bytes.
    ///
    /// The array is moved in; a copy the caller still holds is the caller's to
    /// zeroize.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key's public fingerprint: hex of the first 8 bytes of
    /// HMAC-SHA256(key, `"vram-residency/key-id/v1"`), 16 hex digits.
    ///
    /// It names the key (so logs written under a rotated key can be told apart)
    /// without revealing anything usable to forge a record.
    #[must_use]
    pub fn key_id(&self) -> String {
        let tag = hmac::sign(&self.hmac_key(), KEY_ID_LABEL);
        hex(tag.as_ref().get(..8).unwrap_or_default())
    }

    pub(crate) fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice())
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_id_and_no_key_bytes() {
        let key = AuditKey::from_bytes([0xab; 32]);
        let dbg = format!("{key:?}");
        assert!(dbg.contains(&key.key_id()), "{dbg}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(!dbg.contains("171"), "{dbg}");
    }

    #[test]
    fn key_id_is_16_hex_digits_and_depends_on_the_key() {
        let a = AuditKey::from_bytes([1; 32]).key_id();
        let b = AuditKey::from_bytes([2; 32]).key_id();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        // Known answer, computed independently: HMAC-SHA256(key=32 x 0x01, label).
        let expected = {
            let k = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; 32]);
            hex(&hmac::sign(&k, b"vram-residency/key-id/v1").as_ref()[..8])
        };
        assert_eq!(a, expected);
    }
}
