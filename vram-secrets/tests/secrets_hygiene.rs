//! Key and secret bytes never appear in logs, Debug output or errors.
//!
//! The only test in its binary on purpose: tracing caches per-callsite interest,
//! so a test running in parallel that hits a callsite first without a subscriber
//! could hide events from the capturing subscriber.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use vram_secrets::{KeyPurpose, WorkerSecret};
use zeroize::Zeroizing;

const SECRET: &[u8] = b"correct horse battery staple, 32+ bytes of it";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
/// A `MakeWriter` that appends to a shared buffer.
#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Exercises every API under a capturing TRACE subscriber and checks that no key
/// or secret bytes (raw, lower or upper hex) appear in logs, Debug output or errors.
#[test]
fn key_bytes_never_appear_in_output() {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Capture(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();

    let dir = tempfile::tempdir().unwrap();
    let mut texts = Vec::new();
    let mut secrets: Vec<Vec<u8>> = vec![SECRET.to_vec()];
    let mut keys: Vec<[u8; 32]> = Vec::new();

    tracing::subscriber::with_default(subscriber, || {
        let good = dir.path().join("good");
        fs::write(&good, [SECRET, b"\n"].concat()).unwrap();
        fs::set_permissions(&good, fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = WorkerSecret::load_file(&good).unwrap();
        texts.push(format!("{loaded:?}"));

        let bad = dir.path().join("bad");
        fs::write(&bad, SECRET).unwrap();
        fs::set_permissions(&bad, fs::Permissions::from_mode(0o644)).unwrap();
        texts.push(WorkerSecret::load_file(&bad).unwrap_err().to_string());
        texts.push(format!("{:?}", WorkerSecret::load_file(&bad).unwrap_err()));

        let short = dir.path().join("short");
        fs::write(&short, &SECRET[..20]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let err = WorkerSecret::load_file(&short).unwrap_err();
        texts.push(format!("{err} {err:?}"));
        let err = WorkerSecret::from_bytes(Zeroizing::new(SECRET[..31].to_vec())).unwrap_err();
        texts.push(format!("{err} {err:?}"));

        fs::write(dir.path().join("cred"), SECRET).unwrap();
        fs::set_permissions(dir.path().join("cred"), fs::Permissions::from_mode(0o400)).unwrap();
        let cred = WorkerSecret::load_systemd_credential_from(dir.path(), "cred").unwrap();
        texts.push(format!("{cred:?}"));

        let ephemeral = WorkerSecret::generate_ephemeral().unwrap();
        texts.push(format!("{ephemeral:?}"));

        for s in [&loaded, &cred, &ephemeral] {
            for purpose in [KeyPurpose::Seal, KeyPurpose::Audit] {
                let key = s.derive_key(purpose);
                texts.push(format!("{key:?} {:?} {}", key.key_id(), key.key_id()));
                keys.push(*key.expose_secret());
            }
            let (seal, audit) = (s.seal_key(), s.audit_key());
            texts.push(format!("{seal:?} {audit:?}"));
        }
    });
    // The ephemeral secret's bytes are unknown, but its keys were collected above.
    secrets.push(SECRET[..20].to_vec());

    texts.push(String::from_utf8(buffer.lock().unwrap().clone()).unwrap());
    let log = texts.last().unwrap();
    assert!(log.contains("loaded worker secret"), "{log}");
    assert!(log.contains("derived key"), "{log}");
    assert!(log.contains("ephemeral"), "{log}");

    let all = texts.join("\n");
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for bytes in secrets
        .iter()
        .map(Vec::as_slice)
        .chain(keys.iter().map(|k| &k[..]))
    {
        needles.push(bytes.to_vec());
        needles.push(hex(bytes).into_bytes());
        needles.push(hex(bytes).to_uppercase().into_bytes());
        // Also any 8-byte window in hex: a partial leak counts.
        for w in bytes.windows(8) {
            needles.push(hex(w).into_bytes());
        }
    }
    // A 16-byte window of the raw secret text.
    for w in SECRET.windows(16) {
        needles.push(w.to_vec());
    }
    let haystack = all.as_bytes();
    for needle in &needles {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "leaked {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    assert_eq!(keys.len(), 6);
}
