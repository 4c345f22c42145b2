//! Records carry neither key material nor addresses.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
// Helper functions outside #[test] items are test code too.

use vram_audit::{AuditEvent, AuditKey, AuditLog, AuditSink, ByteRange};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn records_contain_no_key_bytes_and_no_addresses() {
    let raw: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let log = AuditLog::in_memory(AuditKey::from_bytes(raw), "worker-0").unwrap();
    // What a facade records over a shard's life.
    let key_id = AuditKey::from_bytes(raw).key_id();
    let events = vec![
        AuditEvent::VramAllocated {
            shard_id: "shard-0".into(),
            gpu_device: 0,
            bytes: 1 << 30,
        },
        AuditEvent::VramSealed {
            shard_id: "shard-0".into(),
            model_ref: "hf:org/model@main".into(),
            gpu_device: 0,
            device_kind: "mock".into(),
            vram_bytes: 1 << 30,
            tree_digest: "cd".repeat(32),
            leaf_size: 1 << 20,
            key_id: key_id.clone(),
            provenance: None,
        },
        AuditEvent::SealVerificationFailed {
            shard_id: "shard-0".into(),
            gpu_device: 0,
            policy: "full".into(),
            reason: "leaf mismatch".into(),
            corrupt_ranges: vec![ByteRange {
                start: 0,
                end: 1 << 20,
            }],
        },
        AuditEvent::VramDeallocated {
            shard_id: "shard-0".into(),
            gpu_device: 0,
            bytes: 1 << 30,
        },
    ];
    for e in events {
        log.record(e).unwrap();
    }
    let text = log.lines().join("\n");
    let key_hex = hex(&raw);
    for window in 4..=32 {
        for start in 0..=(32 - window) {
            let needle = &key_hex[start * 2..(start + window) * 2];
            assert!(!text.contains(needle), "key bytes {needle} in records");
        }
    }
    assert!(
        !text.contains("0x"),
        "an address-like value in records: {text}"
    );
    assert!(text.contains(&key_id), "the key id is what identifies keys");
    // Debug of the key and of the log shows no key bytes.
    let dbg = format!("{:?} {:?}", AuditKey::from_bytes(raw), log);
    assert!(!dbg.contains(&key_hex[..8]), "{dbg}");
    assert!(!dbg.contains(&format!("{:?}", &raw[..4])), "{dbg}");
}
