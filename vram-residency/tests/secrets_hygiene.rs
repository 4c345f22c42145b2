//! Secrets hygiene: seal, verify, fail and audit with TRACE logging captured,
//! then search every captured log line, error, Debug string and audit record
//! for key bytes and for anything that looks like an address.
//!
//! This is the only test in its binary on purpose: tracing caches per-callsite
//! interest, and a parallel test hitting a callsite first without a subscriber
//! could hide events from the capturing subscriber.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unused_qualifications
)]

mod common;
use common::*;
use vram_residency::{SealRequest, SealSource};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Key bytes in every form a leak could take.
fn key_needles() -> Vec<String> {
    let s = secret();
    let mut needles = Vec::new();
    for key in [
        *s.seal_key().expose_secret(),
        *s.audit_key().expose_secret(),
        SECRET,
    ] {
        needles.push(hex(&key));
        needles.push(hex(&key).to_uppercase());
        needles.push(format!("{:?}", &key[..8]).trim_end_matches(']').to_string());
        needles.push(String::from_utf8_lossy(&key[..12]).into_owned());
    }
    needles
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn keys_and_addresses_never_reach_logs_errors_debug_or_json() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let mut texts = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let f = fixture(64 * MIB);
        let shard = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(300_000, 1)),
            )
            .unwrap();
        f.manager.verify_sealed(&shard).unwrap();
        texts.push(format!("{shard:?}"));
        texts.push(format!("{:?}", f.manager));
        texts.push(serde_json::to_string(&shard.handle()).unwrap());
        texts.push(format!("{:?}", shard.handle()));
        f.device.flip_bits(f.last_buffer(), 10, 1).unwrap();
        let err = f.manager.verify_sealed(&shard).unwrap_err();
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        f.device.fail_next_allocs(1);
        let err = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&[1; 100]),
            )
            .unwrap_err();
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        texts.push(format!("{:?}", secret()));
        texts.push(format!("{:?}", secret().seal_key()));
        drop(shard);
        texts.extend(f.audit_lines());
    });
    texts.push(String::from_utf8(captured.0.lock().unwrap().clone()).unwrap());
    let all = texts.join("\n");
    assert!(
        all.contains("VERIFICATION FAILED"),
        "tracing output was not captured"
    );
    for needle in key_needles() {
        assert!(!all.contains(&needle), "key material leaked: {needle}");
    }
    // Nothing that looks like a heap or device address.
    let addr = all
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.starts_with("0x") && w.len() >= 10);
    assert!(addr.is_none(), "address-like text in output: {addr:?}");
}
