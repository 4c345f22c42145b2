//! The audit log's HMAC key.

use ring::hmac;
use zeroize::Zeroizing;

/// A 32-byte HMAC-SHA256 key that authenticates audit records.
///
/// Only the HMAC key built from the bytes is kept, once, boxed, when the
/// `AuditKey` is made (not on every record); no copy of the raw bytes stays. The type
/// has no `Clone`, `Display` or serde implementations, and its `Debug` output
/// shows only the key id, never a byte of the key. Make it with
/// [`AuditKey::from_secret`] from the worker secret's audit key (derived with a
/// label of its own, distinct from the seal key), which copies the bytes
/// straight from one zeroizing buffer into another.
///
/// (ring's HMAC key state, which holds the key's inner and outer pads, is not
/// zeroized when dropped: ring offers no way to. It is built once per
/// `AuditKey` and lives exactly as long.)
pub struct AuditKey {
    hmac: Box<hmac::Key>,
    /// Signs checkpoints, when the log has a signing key
    /// ([`AuditKey::with_signer`]).
    signer: Option<crate::AuditSigner>,
}

impl AuditKey {
    /// The audit key from a derived secret key: the HMAC key is built straight
    /// from the secret's own zeroizing buffer, with no copy of its bytes.
    #[must_use]
    pub fn from_secret(key: &vram_secrets::SecretKey) -> Self {
        Self::from_slice(key.expose_secret())
    }

    /// Wraps 32 key bytes; the array is zeroized once the HMAC key is built.
    ///
    /// An array passed by value is copied: a copy the caller still holds is
    /// the caller's to zeroize. Prefer [`AuditKey::from_secret`].
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self::from_slice(bytes.as_slice())
    }

    fn from_slice(bytes: &[u8]) -> Self {
        Self {
            hmac: Box::new(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
            signer: None,
        }
    }

    /// The same key, with an Ed25519 signing key: a log opened with it names
    /// the public key's fingerprint in its genesis record and writes signed
    /// checkpoints (see [`LogOptions`](crate::LogOptions)), and a
    /// verification with it checks their signatures too.
    #[must_use]
    pub fn with_signer(mut self, signer: crate::AuditSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The signing key, when there is one.
    #[must_use]
    pub fn signer(&self) -> Option<&crate::AuditSigner> {
        self.signer.as_ref()
    }

    /// The key's public fingerprint, 16 hex digits: the
    /// [`vram_secrets::KeyId`] of the key, from
    /// [`vram_secrets::KeyId::of_mac_key`] (the one key-id function, whose
    /// label vram-secrets owns), so the id is the one `SecretKey::key_id`
    /// gives for the same key.
    ///
    /// It names the key (so logs written under a rotated key can be told apart)
    /// without revealing anything usable to forge a record.
    #[must_use]
    pub fn key_id(&self) -> String {
        vram_secrets::KeyId::of_mac_key(self.hmac_key()).to_string()
    }

    /// The HMAC key, built once.
    pub(crate) fn hmac_key(&self) -> &hmac::Key {
        &self.hmac
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.key_id())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::record::hex;

    #[test]
    fn debug_shows_the_id_and_no_key_bytes() {
        let key = AuditKey::from_bytes([0xab; 32]);
        let dbg = format!("{key:?}");
        assert!(dbg.contains(&key.key_id()), "{dbg}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(!dbg.contains("171"), "{dbg}");
    }

    #[test]
    fn from_secret_and_from_bytes_make_the_same_key() {
        let secret = vram_secrets::WorkerSecret::from_bytes(Zeroizing::new(vec![7u8; 32])).unwrap();
        let derived = secret.audit_key();
        let a = AuditKey::from_secret(&derived);
        let b = AuditKey::from_bytes(*derived.expose_secret());
        assert_eq!(a.key_id(), b.key_id());
        let other = AuditKey::from_bytes([8u8; 32]);
        assert_ne!(a.key_id(), other.key_id());
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
