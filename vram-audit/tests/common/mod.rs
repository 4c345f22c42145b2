//! Helpers shared by the integration tests.
#![allow(
    clippy::unwrap_used,
    dead_code,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};

use vram_audit::{AuditEvent, AuditKey, AuditLog, AuditSink, FsyncPolicy, LogOptions};

pub(crate) const KEY: [u8; 32] = [0x5a; 32];

pub(crate) fn key() -> AuditKey {
    AuditKey::from_bytes(KEY)
}

/// An ordinary event whose fields vary with `i`.
pub(crate) fn event(i: u64) -> AuditEvent {
    match i % 4 {
        0 => AuditEvent::VramAllocated {
            shard_id: format!("shard-{i}"),
            gpu_device: (i % 2) as u32,
            bytes: 1000 + i,
        },
        1 => AuditEvent::VramSealed {
            shard_id: format!("shard-{i}"),
            model_ref: "hf:org/model@main".into(),
            gpu_device: 0,
            device_kind: "mock".into(),
            vram_bytes: 1000 + i,
            tree_digest: "ab".repeat(32),
            leaf_size: 1 << 20,
            key_id: "0011223344556677".into(),
            provenance: None,
        },
        2 => AuditEvent::SealVerified {
            shard_id: format!("shard-{i}"),
            gpu_device: 0,
            policy: "full".into(),
            leaves_checked: 4,
            bytes_checked: 1000 + i,
        },
        _ => AuditEvent::VramDeallocated {
            shard_id: format!("shard-{i}"),
            gpu_device: 0,
            bytes: 1000 + i,
        },
    }
}

pub(crate) fn fast_options() -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::CriticalOnly,
        ..LogOptions::default()
    }
}

/// A file log of `n` lines: `log_created` (the genesis record) then `n - 1` events. Returns its path.
pub(crate) fn write_log(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open_file(&path, key(), "worker-0", fast_options()).unwrap();
    for i in 1..n {
        let r = log.record(event(i)).unwrap();
        assert_eq!(r.seq, i + 1);
    }
    path
}

pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}
