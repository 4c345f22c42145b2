//! Interoperability with the real `model_signing` 1.1.1: bundles it made
//! (tests/fixtures, remade by make-fixtures.sh) verify here, and on the
//! genuine model and each tampering our verdict is the real tool's
//! (recorded in verdicts.txt by the same script).
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use base64::Engine as _;
use std::path::{Path, PathBuf};
use vram_signing::{verify_bundle, Curve, PublicKey, SigningError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn key(name: &str) -> PublicKey {
    PublicKey::from_pem(&std::fs::read(fixtures().join(format!("{name}.pub"))).unwrap()).unwrap()
}

fn bundle(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn sha256(path: &Path) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(path).unwrap());
    d.as_ref().try_into().unwrap()
}

/// Our whole verdict, as `model_signing verify key` gives it: the bundle,
/// the file set, then every file's bytes.
fn verdict(model: &Path, sig: &[u8], key: &PublicKey) -> Result<(), SigningError> {
    let signed = verify_bundle(sig, key)?;
    for f in signed.files_in(model, &[])? {
        if sha256(&f.path) != f.sha256 {
            return Err(SigningError::Inconsistent {
                reason: format!("{} does not match", f.name),
            });
        }
    }
    Ok(())
}

/// A fresh copy of the fixture model.
fn copy_model(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let m = dir.join("m");
    copy(&fixtures().join("model"), &m);
    m
}

fn recorded_verdicts() -> Vec<(String, bool)> {
    std::fs::read_to_string(fixtures().join("verdicts.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (name, v) = l.split_once(' ').unwrap();
            (name.to_string(), v == "ok")
        })
        .collect()
}

#[test]
fn every_recorded_verdict_of_the_real_tool_is_ours() {
    let recorded = recorded_verdicts();
    assert!(recorded.len() >= 12, "{recorded:?}");
    for (case, expected_ok) in recorded {
        let dir = tempfile::tempdir().unwrap();
        let m = copy_model(dir.path());
        let p256 = key("p256");
        let ours = match case.as_str() {
            "genuine-p256" => verdict(&m, &bundle("p256.sig"), &p256),
            "genuine-p384" => verdict(&m, &bundle("p384.sig"), &key("p384")),
            "genuine-p521" => verdict(&m, &bundle("p521.sig"), &key("p521")),
            "compat-pae" => verdict(&m, &bundle("p256-compat-pae.sig"), &p256),
            "single" => verdict(
                &fixtures().join("single.safetensors"),
                &bundle("single-p256.sig"),
                &p256,
            ),
            "other-key" => verdict(&m, &bundle("p256.sig"), &key("other")),
            "flipped-byte" => {
                let f = m.join("model.safetensors");
                let mut bytes = std::fs::read(&f).unwrap();
                bytes[300] = 0x01;
                std::fs::write(&f, bytes).unwrap();
                verdict(&m, &bundle("p256.sig"), &p256)
            }
            "missing-file" => {
                std::fs::remove_file(m.join("tokenizer/vocab.txt")).unwrap();
                verdict(&m, &bundle("p256.sig"), &p256)
            }
            "extra-file" => {
                std::fs::write(m.join("extra.txt"), "extra\n").unwrap();
                verdict(&m, &bundle("p256.sig"), &p256)
            }
            "edited-config" => {
                let f = m.join("config.json");
                let text = std::fs::read_to_string(&f).unwrap().replacen("32", "33", 1);
                std::fs::write(&f, text).unwrap();
                verdict(&m, &bundle("p256.sig"), &p256)
            }
            "symlink" => {
                let outside = dir.path().join("config.json");
                std::fs::rename(m.join("config.json"), &outside).unwrap();
                std::os::unix::fs::symlink(&outside, m.join("config.json")).unwrap();
                verdict(&m, &bundle("p256.sig"), &p256)
            }
            "git-file-edited" => {
                std::fs::write(m.join(".gitattributes"), "ignored\n").unwrap();
                verdict(&m, &bundle("p256.sig"), &p256)
            }
            other => panic!("verdicts.txt has a case this test does not build: {other}"),
        };
        assert_eq!(ours.is_ok(), expected_ok, "{case}: ours {ours:?}");
        if let Err(e) = &ours {
            assert!(e.is_integrity(), "{case}: {e}");
        }
    }
}

#[test]
fn a_genuine_bundle_says_what_was_signed() {
    let k = key("p521");
    assert_eq!(k.curve(), Curve::P521);
    let signed = verify_bundle(&bundle("p521.sig"), &k).unwrap();
    assert_eq!(signed.model_name(), "model");
    let names: Vec<&str> = signed.resources().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    );
    assert_eq!(signed.publisher_key_sha256(), k.fingerprint());
    assert!(!signed.serialization().allow_symlinks);
    // The subject digest is SHA-256 over the digests in the statement's order
    // (which model_signing sorts by name).
    let mut all = Vec::new();
    for r in signed.resources() {
        all.extend_from_slice(&r.sha256);
    }
    let subject = ring::digest::digest(&ring::digest::SHA256, &all);
    assert_eq!(subject.as_ref(), signed.subject_sha256());
    // The key hint in the bundle is the fingerprint of the key.
    let json: serde_json::Value = serde_json::from_slice(&bundle("p521.sig")).unwrap();
    assert_eq!(
        json["verificationMaterial"]["publicKey"]["hint"],
        k.fingerprint_hex()
    );
}

/// Rewrites the bundle's JSON.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&bundle(name)).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn payload_of(v: &serde_json::Value) -> serde_json::Value {
    let b64 = v["dsseEnvelope"]["payload"].as_str().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

fn set_payload(v: &mut serde_json::Value, payload: &serde_json::Value) {
    v["dsseEnvelope"]["payload"] = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(payload).unwrap())
        .into();
}

#[test]
fn an_edited_payload_under_the_old_signature_is_refused() {
    let k = key("p256");
    // A new digest for a file, and the subject fixed up to match: only the
    // signature can tell.
    let forged = edited("p256.sig", |v| {
        let mut p = payload_of(v);
        p["predicate"]["resources"][0]["digest"] = "00".repeat(32).into();
        let mut all = Vec::new();
        for r in p["predicate"]["resources"].as_array().unwrap() {
            let hex = r["digest"].as_str().unwrap();
            all.extend((0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()));
        }
        let d = ring::digest::digest(&ring::digest::SHA256, &all);
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        p["subject"][0]["digest"]["sha256"] = hex.into();
        set_payload(v, &p);
    });
    let e = verify_bundle(&forged, &k).unwrap_err();
    assert!(matches!(e, SigningError::BadSignature { .. }), "{e}");
}

#[test]
fn altered_signature_bytes_are_refused() {
    let k = key("p384");
    let v: serde_json::Value = serde_json::from_slice(&bundle("p384.sig")).unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(v["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    for i in [8, sig.len() / 2, sig.len() - 1] {
        let mut bad = sig.clone();
        bad[i] ^= 0x01;
        let forged = edited("p384.sig", |v| {
            v["dsseEnvelope"]["signatures"][0]["sig"] = base64::engine::general_purpose::STANDARD
                .encode(&bad)
                .into();
        });
        let e = verify_bundle(&forged, &k).unwrap_err();
        assert!(
            matches!(e, SigningError::BadSignature { .. }),
            "byte {i}: {e}"
        );
    }
}

#[test]
fn another_key_is_refused_even_without_the_unsigned_hint() {
    let other = key("other");
    let e = verify_bundle(&bundle("p256.sig"), &other).unwrap_err();
    assert!(matches!(e, SigningError::KeyMismatch { .. }), "{e}");
    // The hint is not what protects: removed, the signature still fails.
    let no_hint = edited("p256.sig", |v| {
        v["verificationMaterial"]["publicKey"] = serde_json::json!({});
    });
    let e = verify_bundle(&no_hint, &other).unwrap_err();
    assert!(matches!(e, SigningError::BadSignature { .. }), "{e}");
    // And a hint that claims the other key does not make it verify.
    let lying = edited("p256.sig", |v| {
        v["verificationMaterial"]["publicKey"]["hint"] = other.fingerprint_hex().into();
    });
    let e = verify_bundle(&lying, &other).unwrap_err();
    assert!(matches!(e, SigningError::BadSignature { .. }), "{e}");
}

#[test]
fn keyless_and_certificate_bundles_are_refused_as_unsupported() {
    let k = key("p256");
    for field in ["certificate", "x509CertificateChain"] {
        let b = edited("p256.sig", |v| {
            v["verificationMaterial"][field] = serde_json::json!({"rawBytes": "MAA="});
        });
        let e = verify_bundle(&b, &k).unwrap_err();
        assert!(matches!(e, SigningError::UnsupportedMethod { .. }), "{e}");
        assert!(!e.is_integrity());
    }
}

#[test]
fn hostile_bundles_are_refused_with_clear_errors() {
    let k = key("p256");
    let genuine = bundle("p256.sig");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", genuine[..genuine.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not json", b"\x00\xff garbage".to_vec()),
        (
            "wrong media type",
            edited("p256.sig", |v| v["mediaType"] = "application/json".into()),
        ),
        (
            "two signatures",
            edited("p256.sig", |v| {
                let s = v["dsseEnvelope"]["signatures"][0].clone();
                v["dsseEnvelope"]["signatures"] = serde_json::json!([s.clone(), s]);
            }),
        ),
        (
            "no signature",
            edited("p256.sig", |v| {
                v["dsseEnvelope"]["signatures"] = serde_json::json!([]);
            }),
        ),
        (
            "huge hint",
            edited("p256.sig", |v| {
                v["verificationMaterial"]["publicKey"]["hint"] =
                    "\u{1b}[31m".repeat(100_000).into();
            }),
        ),
        (
            "hostile string where an object belongs",
            br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":"\u001b[2J\u001b[31mPWNED"}"#.to_vec(),
        ),
        (
            "payload not base64",
            edited("p256.sig", |v| v["dsseEnvelope"]["payload"] = "%%%".into()),
        ),
    ];
    for (what, b) in cases {
        let e = verify_bundle(&b, &k).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains('\u{1b}'), "{what}: raw control in {msg:?}");
        assert!(msg.len() < 2000, "{what}: message of {} bytes", msg.len());
    }
    // A signed payload of the wrong type is refused after the signature.
    let wrong_type = edited("p256.sig", |v| {
        v["dsseEnvelope"]["payloadType"] = "application/json".into();
    });
    let e = verify_bundle(&wrong_type, &k).unwrap_err();
    assert!(e.to_string().contains("payload type"), "{e}");
    assert!(e.is_integrity(), "a bundle that does not verify: {e:?}");
}

#[test]
fn hostile_keys_are_refused() {
    let fx = fixtures();
    for (what, bytes) in [
        ("private key", std::fs::read(fx.join("p256.key")).unwrap()),
        ("empty", Vec::new()),
        (
            "garbage",
            b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n".to_vec(),
        ),
        ("bundle", bundle("p256.sig")),
    ] {
        let e = PublicKey::from_pem(&bytes).unwrap_err();
        assert!(matches!(e, SigningError::BadKey { .. }), "{what}: {e}");
    }
}

#[test]
fn the_signature_file_inside_the_model_is_ignored_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    std::fs::write(m.join("model.sig"), bundle("p256.sig")).unwrap();
    let k = key("p256");
    let signed = verify_bundle(&bundle("p256.sig"), &k).unwrap();
    let e = signed.files_in(&m, &[]).unwrap_err();
    assert!(matches!(e, SigningError::Extra { .. }), "{e}");
    let files = signed.files_in(&m, &[m.join("model.sig")]).unwrap();
    assert_eq!(files.len(), 3);
    let files = signed.files_in(&m, &["model.sig".into()]).unwrap();
    assert_eq!(files.len(), 3);
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = verify_bundle(&bytes, &key("p256"));
            let _ = PublicKey::from_pem(&bytes);
        }

        /// Single-byte edits of a genuine bundle: refused or, where the
        /// edit falls in JSON whitespace, still the same statement.
        #[test]
        fn edits_of_a_genuine_bundle(at in 0usize..1807, byte in any::<u8>()) {
            let mut b = bundle("p256.sig");
            let at = at % b.len();
            b[at] = byte;
            if let Ok(signed) = verify_bundle(&b, &key("p256")) {
                let genuine = verify_bundle(&bundle("p256.sig"), &key("p256")).unwrap();
                prop_assert_eq!(signed, genuine);
            }
        }
    }
}
