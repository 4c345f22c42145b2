//! The publisher's public key.

use crate::error::SigningError;
use base64::Engine as _;
use spki::der::Decode as _;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// Largest public key file read (a P-521 key in PEM is under 300 bytes).
const MAX_KEY_FILE: usize = 64 << 10;

/// The curves model_signing signs with, each with the hash it pairs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256, ECDSA with SHA-256 (ring).
    P256,
    /// NIST P-384, ECDSA with SHA-384 (ring).
    P384,
    /// NIST P-521, ECDSA with SHA-512 (RustCrypto `p521`).
    P521,
}

impl Curve {
    /// `P-256`, `P-384` or `P-521`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }
}

/// An elliptic-curve public key of a model publisher.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    curve: Curve,
    /// The uncompressed SEC1 point.
    point: Vec<u8>,
    /// SHA-256 of the key's canonical PEM, as model_signing computes its hint.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("curve", &self.curve)
            .field("fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) on P-256, P-384 or
    /// P-521 with an uncompressed point, as `openssl ec -pubout` and
    /// Python's `cryptography` write it.
    ///
    /// # Errors
    /// [`SigningError::BadKey`] for anything else.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SigningError> {
        let bad = |reason: &str| SigningError::BadKey {
            reason: reason.to_string(),
        };
        if pem.len() > MAX_KEY_FILE {
            return Err(bad("the file is too large to be a public key"));
        }
        let (label, der) = spki::der::pem::decode_vec(pem)
            .map_err(|_| bad("not a PEM file (expected -----BEGIN PUBLIC KEY-----)"))?;
        if label != "PUBLIC KEY" {
            return Err(bad(
                "the PEM block is not a PUBLIC KEY (a private key or a certificate?)",
            ));
        }
        Self::from_spki_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`SigningError::BadKey`] for anything but an uncompressed P-256,
    /// P-384 or P-521 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SigningError> {
        let bad = |reason: &str| SigningError::BadKey {
            reason: reason.to_string(),
        };
        let info = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|_| bad("not a DER SubjectPublicKeyInfo"))?;
        if info.algorithm.oid != ID_EC_PUBLIC_KEY {
            return Err(bad(
                "not an elliptic-curve key (model_signing signs with P-256, P-384 or P-521)",
            ));
        }
        let curve = match info.algorithm.parameters_oid() {
            Ok(SECP256R1) => Curve::P256,
            Ok(SECP384R1) => Curve::P384,
            Ok(SECP521R1) => Curve::P521,
            _ => {
                return Err(bad(
                    "unsupported curve (model_signing signs with P-256, P-384 or P-521)",
                ))
            }
        };
        let point = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| bad("the key's bit string is not whole bytes"))?;
        // 0x04 || X || Y.
        let uncompressed_len = match curve {
            Curve::P256 => 65,
            Curve::P384 => 97,
            Curve::P521 => 133,
        };
        if point.first() != Some(&0x04) || point.len() != uncompressed_len {
            return Err(bad("the point is not an uncompressed point of its curve"));
        }
        // The hint model_signing writes: SHA-256 of the key re-encoded as
        // PEM SubjectPublicKeyInfo. For an uncompressed named-curve key,
        // DER is canonical, so re-encoding the DER read gives the same bytes.
        let fingerprint = ring_sha256(canonical_pem(der).as_bytes());
        let key = Self {
            curve,
            point: point.to_vec(),
            fingerprint,
        };
        // A point not on the curve is refused now, not at the first verify.
        if let Curve::P521 = curve {
            p521::ecdsa::VerifyingKey::from_sec1_bytes(&key.point)
                .map_err(|_| bad("the point is not on P-521"))?;
        }
        Ok(key)
    }

    /// The key's curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// SHA-256 of the key's PEM SubjectPublicKeyInfo: the fingerprint
    /// model_signing 1.x writes into its bundles as the key hint.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// [`fingerprint`](Self::fingerprint) in lower-case hex.
    #[must_use]
    pub fn fingerprint_hex(&self) -> String {
        vram_validation::hex::encode(&self.fingerprint)
    }

    /// Whether `signature` (DER ECDSA) signs `message` under this key, with
    /// the hash of the key's curve.
    #[must_use]
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1};
        match self.curve {
            Curve::P256 => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
                .verify(message, signature)
                .is_ok(),
            Curve::P384 => UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &self.point)
                .verify(message, signature)
                .is_ok(),
            Curve::P521 => {
                use p521::ecdsa::signature::Verifier as _;
                let (Ok(key), Ok(sig)) = (
                    p521::ecdsa::VerifyingKey::from_sec1_bytes(&self.point),
                    p521::ecdsa::Signature::from_der(signature),
                ) else {
                    return false;
                };
                key.verify(message, &sig).is_ok()
            }
        }
    }
}

fn ring_sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// PEM as Python's `cryptography` writes it: 64-column base64 lines.
fn canonical_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}
