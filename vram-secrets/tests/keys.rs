//! Derivation, key ids, and the absence of key bytes from every output.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Test helpers outside #[test] functions unwrap too.

use proptest::prelude::*;
use ring::digest;
use vram_secrets::{KeyId, KeyPurpose, SecretKey, SecretsError, WorkerSecret};
use zeroize::Zeroizing;

const SECRET: &[u8] = b"correct horse battery staple, 32+ bytes of it";

fn secret(bytes: &[u8]) -> WorkerSecret {
    WorkerSecret::from_bytes(Zeroizing::new(bytes.to_vec())).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn labels_are_versioned_and_distinct() {
    assert_eq!(KeyPurpose::Seal.label(), "vram-residency/seal-key/v1");
    assert_eq!(KeyPurpose::Audit.label(), "vram-residency/audit-key/v1");
    assert_eq!(
        KeyPurpose::AuditSigning.label(),
        "vram-residency/audit-signing-key/v1"
    );
}

#[test]
fn the_audit_signing_seed_is_its_own_key() {
    let a = secret(SECRET);
    let seed = a.audit_signing_seed();
    assert_ne!(seed.expose_secret(), a.audit_key().expose_secret());
    assert_ne!(seed.expose_secret(), a.seal_key().expose_secret());
    assert_eq!(
        seed.expose_secret(),
        a.derive_key(KeyPurpose::AuditSigning).expose_secret()
    );
}

#[test]
fn keys_differ_by_purpose_and_by_secret() {
    let a = secret(SECRET);
    let b = secret(b"correct horse battery staple, 32+ bytes of iT");
    let (seal_a, audit_a) = (a.seal_key(), a.audit_key());
    assert_ne!(seal_a.expose_secret(), audit_a.expose_secret());
    assert_ne!(seal_a.expose_secret(), b.seal_key().expose_secret());
    assert_ne!(audit_a.expose_secret(), b.audit_key().expose_secret());
    // Deterministic.
    assert_eq!(
        seal_a.expose_secret(),
        a.derive_key(KeyPurpose::Seal).expose_secret()
    );
    assert_eq!(
        audit_a.expose_secret(),
        secret(SECRET).derive_key(KeyPurpose::Audit).expose_secret()
    );
    // Not the secret itself, nor a plain hash of it.
    assert_ne!(&seal_a.expose_secret()[..], &SECRET[..32]);
    assert_ne!(
        &seal_a.expose_secret()[..],
        digest::digest(&digest::SHA256, SECRET).as_ref()
    );
}

/// Pins the derivation: a change of salt, label or construction is a format change.
#[test]
fn derivation_is_pinned() {
    let s = secret(&[0x42; 32]);
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"vram-residency/hkdf-salt/v1");
    let prk = salt.extract(&[0x42; 32]);
    for purpose in [
        KeyPurpose::Seal,
        KeyPurpose::Audit,
        KeyPurpose::AuditSigning,
    ] {
        let info = [purpose.label().as_bytes()];
        let okm = prk.expand(&info, ring::hkdf::HKDF_SHA256).unwrap();
        let mut want = [0u8; 32];
        okm.fill(&mut want).unwrap();
        assert_eq!(s.derive_key(purpose).expose_secret(), &want);
    }
}

#[test]
fn key_id_is_an_hmac_fingerprint() {
    let key = SecretKey::from_bytes([7; 32]);
    let id = key.key_id();
    assert_eq!(id, SecretKey::from_bytes([7; 32]).key_id());
    assert_ne!(id, SecretKey::from_bytes([8; 32]).key_id());
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]),
        b"vram-residency/key-id/v1",
    );
    assert_eq!(id.as_bytes(), &mac.as_ref()[..8]);
    let plain_hash = digest::digest(&digest::SHA256, &[7; 32]);
    assert_ne!(id.as_bytes(), &plain_hash.as_ref()[..8]);
}

#[test]
fn key_id_text_and_serde() {
    let id = KeyId::from_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    assert_eq!(id.to_string(), "0123456789abcdef");
    assert_eq!(format!("{id:?}"), "KeyId(\"0123456789abcdef\")");
    assert_eq!("0123456789abcdef".parse::<KeyId>().unwrap(), id);
    assert_eq!("0123456789ABCDEF".parse::<KeyId>().unwrap(), id);
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"0123456789abcdef\"");
    assert_eq!(
        serde_json::from_str::<KeyId>("\"0123456789abcdef\"").unwrap(),
        id
    );
    for bad in [
        "",
        "0123456789abcde",
        "0123456789abcdef0",
        "0123456789abcdeg",
        "+123456789abcdef",
        "01234567é9abcd",
        "0123456789abcd\n",
    ] {
        assert!(bad.parse::<KeyId>().is_err(), "{bad:?}");
        let err = serde_json::from_str::<KeyId>(&serde_json::to_string(bad).unwrap());
        assert!(err.is_err(), "{bad:?}");
    }
    let err = "\n\u{1b}[2J".parse::<KeyId>().unwrap_err();
    assert!(!err.to_string().chars().any(char::is_control));
}

#[test]
fn short_and_empty_secrets_are_rejected() {
    assert!(matches!(
        WorkerSecret::from_bytes(Zeroizing::new(Vec::new())),
        Err(SecretsError::Empty)
    ));
    assert!(matches!(
        WorkerSecret::from_bytes(Zeroizing::new(vec![1; 31])),
        Err(SecretsError::TooShort { len: 31, min: 32 })
    ));
    assert!(WorkerSecret::from_bytes(Zeroizing::new(vec![1; 32])).is_ok());
    assert!(matches!(
        WorkerSecret::from_bytes(Zeroizing::new(vec![1; (1 << 20) + 1])),
        Err(SecretsError::TooLarge { .. })
    ));
}

#[test]
fn ephemeral_secrets_are_random() {
    let a = WorkerSecret::generate_ephemeral().unwrap();
    let b = WorkerSecret::generate_ephemeral().unwrap();
    assert_ne!(a.seal_key().key_id(), b.seal_key().key_id());
    assert_eq!(format!("{a:?}"), "WorkerSecret { len: 32, .. }");
}

proptest! {
    #[test]
    fn distinct_secrets_give_distinct_keys(a in prop::collection::vec(any::<u8>(), 32..64), b in prop::collection::vec(any::<u8>(), 32..64)) {
        prop_assume!(a != b);
        let (sa, sb) = (secret(&a), secret(&b));
        let (seal_a, seal_b) = (sa.seal_key(), sb.seal_key());
        prop_assert_ne!(seal_a.expose_secret(), seal_b.expose_secret());
        prop_assert_ne!(seal_a.key_id(), sa.audit_key().key_id());
        let shown = format!("{seal_a:?}");
        let leaked = shown.contains(&hex(&seal_a.expose_secret()[..8]));
        prop_assert!(!leaked, "{}", shown);
    }

    #[test]
    fn key_id_parse_never_panics(s in any::<String>()) {
        match s.parse::<KeyId>() {
            Ok(id) => prop_assert_eq!(id.to_string(), s.to_ascii_lowercase()),
            Err(e) => prop_assert!(!e.to_string().chars().any(char::is_control)),
        }
    }
}
