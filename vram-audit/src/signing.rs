//! Signed checkpoints: the log's Ed25519 signing key, its public key (PEM,
//! fingerprint), the signed message and the one-line form a monitor keeps.
//!
//! The signing key is derived from the worker secret (its own HKDF label,
//! `vram-residency/audit-signing-key/v1`) and never written anywhere; the
//! public key lets anyone check a log's signed checkpoints, and through the
//! SHA-256 chain every record before them, without the secret that writes
//! the log. See docs/audit-log.md, *Signed checkpoints*.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

use crate::record::{self, hex};
use crate::{AuditError, Checkpoint};

/// The version line of the signed checkpoint message.
pub(crate) const CHECKPOINT_TAG: &str = "vram-residency/audit-checkpoint/v1";

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): the 32-byte
/// key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";
/// Length of a signature in hex.
const SIG_HEX_LEN: usize = 128;
/// Length of a fingerprint in hex.
const FINGERPRINT_HEX_LEN: usize = 16;

/// The exact bytes a checkpoint signature covers (format v1): four lines,
/// each ending in `\n`: the tag `vram-residency/audit-checkpoint/v1`, the
/// log id (32 lowercase hex), the sequence number (decimal, no leading
/// zeros) and the record's hash (64 lowercase hex).
#[must_use]
pub fn checkpoint_message(log_id: &str, seq: u64, hash: &str) -> Vec<u8> {
    format!("{CHECKPOINT_TAG}\n{log_id}\n{seq}\n{hash}\n").into_bytes()
}

/// The audit log's Ed25519 signing key.
///
/// Made from the 32-byte seed the worker secret derives
/// (`WorkerSecret::audit_signing_seed`); no `Clone`, `Display` or serde, and
/// `Debug` shows only the public key's fingerprint. (ring's key pair holds
/// the expanded private key and, as for the HMAC key, offers no way to
/// zeroize it; it lives as long as the `AuditKey` that holds it.)
pub struct AuditSigner {
    pair: Ed25519KeyPair,
    public: AuditPublicKey,
}

impl AuditSigner {
    /// The signing key from a derived seed (its bytes are read in place).
    ///
    /// # Errors
    /// [`AuditError::InvalidPublicKey`] if ring refuses the seed (it takes
    /// every 32-byte seed).
    pub fn from_seed(seed: &vram_secrets::SecretKey) -> Result<Self, AuditError> {
        Self::from_seed_bytes(seed.expose_secret())
    }

    /// The signing key from 32 seed bytes (tests, and known-answer vectors).
    ///
    /// # Errors
    /// As [`Self::from_seed`].
    pub fn from_seed_bytes(seed: &[u8; 32]) -> Result<Self, AuditError> {
        // "Unchecked": there is no public key to compare the seed with.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| {
            AuditError::InvalidPublicKey {
                reason: "the signing seed was refused".into(),
            }
        })?;
        let mut raw = [0u8; 32];
        raw.iter_mut()
            .zip(pair.public_key().as_ref())
            .for_each(|(o, i)| *o = *i);
        Ok(Self {
            pair,
            public: AuditPublicKey { raw },
        })
    }

    /// The public key that verifies this key's signatures.
    #[must_use]
    pub fn public_key(&self) -> &AuditPublicKey {
        &self.public
    }

    /// Signs a checkpoint; the signature as 128 lowercase hex digits.
    pub(crate) fn sign_checkpoint(&self, log_id: &str, seq: u64, hash: &str) -> String {
        hex(self
            .pair
            .sign(&checkpoint_message(log_id, seq, hash))
            .as_ref())
    }
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigner")
            .field("fingerprint", &self.public.fingerprint())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key that verifies a log's signed checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditPublicKey {
    raw: [u8; 32],
}

impl AuditPublicKey {
    /// The key from its 32 raw bytes.
    #[must_use]
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self { raw }
    }

    /// The DER `SubjectPublicKeyInfo` (RFC 8410), 44 bytes.
    #[must_use]
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        der
    }

    /// PEM (`-----BEGIN PUBLIC KEY-----`, SPKI), as `openssl pkey -pubout` writes it.
    #[must_use]
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.spki_der());
        format!("{PEM_BEGIN}\n{b64}\n{PEM_END}\n")
    }

    /// Reads a PEM public key (`-----BEGIN PUBLIC KEY-----`, an Ed25519
    /// SPKI); text around the block is ignored.
    ///
    /// # Errors
    /// [`AuditError::InvalidPublicKey`] when there is no such block or it is
    /// not an Ed25519 key.
    pub fn from_pem(text: &str) -> Result<Self, AuditError> {
        let invalid = |reason: &str| AuditError::InvalidPublicKey {
            reason: reason.to_owned(),
        };
        let body = text
            .split_once(PEM_BEGIN)
            .and_then(|(_, rest)| rest.split_once(PEM_END))
            .map(|(body, _)| body)
            .ok_or_else(|| invalid("no -----BEGIN PUBLIC KEY----- block"))?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| invalid("the PEM block is not valid base64"))?;
        let raw = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| invalid("not an Ed25519 public key (SubjectPublicKeyInfo, RFC 8410)"))?;
        Ok(Self { raw })
    }

    /// The key's fingerprint: the first 8 bytes of SHA-256 over its DER
    /// `SubjectPublicKeyInfo`, 16 lowercase hex digits (`openssl pkey -pubin
    /// -outform DER | sha256sum`, first 16 digits).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.spki_der());
        let mut out = hex(digest.as_ref());
        out.truncate(FINGERPRINT_HEX_LEN);
        out
    }

    /// True when `signature_hex` is this key's signature of the checkpoint.
    #[must_use]
    pub fn verifies(&self, log_id: &str, seq: u64, hash: &str, signature_hex: &str) -> bool {
        let Some(sig) = unhex_sig(signature_hex) else {
            return false;
        };
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.raw)
            .verify(&checkpoint_message(log_id, seq, hash), &sig)
            .is_ok()
    }
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditPublicKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// 64 signature bytes from 128 lowercase hex digits.
fn unhex_sig(text: &str) -> Option<[u8; 64]> {
    vram_validation::hex::decode_lower::<64>(text)
}

/// True for 128 lowercase hex digits.
pub(crate) fn is_signature_hex(text: &str) -> bool {
    text.len() == SIG_HEX_LEN && unhex_sig(text).is_some()
}

/// True for a fingerprint: 16 lowercase hex digits.
pub(crate) fn is_fingerprint(text: &str) -> bool {
    vram_validation::hex::decode_lower::<{ FINGERPRINT_HEX_LEN / 2 }>(text).is_some()
}

/// A signed checkpoint in the one-line form a monitor stores:
/// `SEQ:HASH:LOG_ID:FINGERPRINT:SIGNATURE` (`vram audit head --signed`).
///
/// `SEQ:HASH:LOG_ID` is the position signed (as a [`Checkpoint`]); the
/// signature is over [`checkpoint_message`]; the fingerprint names the key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedCheckpoint {
    /// The position signed.
    pub checkpoint: Checkpoint,
    /// Fingerprint of the signing key.
    pub signing_key: String,
    /// The signature, 128 lowercase hex digits.
    pub signature: String,
}

impl SignedCheckpoint {
    /// True when `key` signed it (and its fingerprint names `key`).
    #[must_use]
    pub fn verifies_with(&self, key: &AuditPublicKey) -> bool {
        let Some(log_id) = &self.checkpoint.log_id else {
            return false;
        };
        self.signing_key == key.fingerprint()
            && key.verifies(
                log_id,
                self.checkpoint.seq,
                &self.checkpoint.hash,
                &self.signature,
            )
    }
}

impl fmt::Display for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.checkpoint, self.signing_key, self.signature
        )
    }
}

impl FromStr for SignedCheckpoint {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || AuditError::InvalidCheckpoint {
            got: s.chars().take(80).collect(),
        };
        let s = s.trim();
        let mut parts = s.rsplitn(3, ':');
        let (Some(signature), Some(signing_key), Some(position)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let checkpoint: Checkpoint = position.parse().map_err(|_| invalid())?;
        if checkpoint.log_id.is_none()
            || !is_fingerprint(signing_key)
            || !is_signature_hex(signature)
        {
            return Err(invalid());
        }
        Ok(Self {
            checkpoint,
            signing_key: signing_key.to_owned(),
            signature: signature.to_owned(),
        })
    }
}

/// Whether a log id / hash pair can be signed (format 2 only).
pub(crate) fn signable(log_id: Option<&str>, hash: &str) -> bool {
    log_id.is_some_and(record::is_log_id) && record::is_hash_hex(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_refuses_other_keys() {
        let signer = AuditSigner::from_seed_bytes(&[3; 32]).unwrap();
        let pem = signer.public_key().to_pem();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
            "{pem}"
        );
        let back = AuditPublicKey::from_pem(&format!("text before\n{pem}after")).unwrap();
        assert_eq!(&back, signer.public_key());
        // A P-256 key (id-ecPublicKey) is refused.
        let p256 = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\nq9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n-----END PUBLIC KEY-----\n";
        assert!(AuditPublicKey::from_pem(p256).is_err());
        assert!(AuditPublicKey::from_pem("nothing").is_err());
    }

    #[test]
    fn a_signature_verifies_only_for_its_position() {
        let signer = AuditSigner::from_seed_bytes(&[9; 32]).unwrap();
        let id = "00112233445566778899aabbccddeeff";
        let hash = "ab".repeat(32);
        let sig = signer.sign_checkpoint(id, 7, &hash);
        let key = signer.public_key();
        assert!(key.verifies(id, 7, &hash, &sig));
        assert!(!key.verifies(id, 8, &hash, &sig));
        assert!(!key.verifies(id, 7, &"ac".repeat(32), &sig));
        assert!(!key.verifies("10112233445566778899aabbccddeeff", 7, &hash, &sig));
        let other = AuditSigner::from_seed_bytes(&[10; 32]).unwrap();
        assert!(!other.public_key().verifies(id, 7, &hash, &sig));
        let line = SignedCheckpoint {
            checkpoint: Checkpoint {
                seq: 7,
                hash: hash.clone(),
                log_id: Some(id.into()),
            },
            signing_key: key.fingerprint(),
            signature: sig,
        };
        let parsed: SignedCheckpoint = line.to_string().parse().unwrap();
        assert_eq!(parsed, line);
        assert!(parsed.verifies_with(key));
        assert!(!parsed.verifies_with(other.public_key()));
        assert!("7:ab".parse::<SignedCheckpoint>().is_err());
    }
}
