//! Records per second on this machine's disk (a temp dir under $TMPDIR): fsync per record vs
//! batched, and in memory. Run: `cargo bench -p vram-audit --bench append`.
#![allow(clippy::arithmetic_side_effects, clippy::unwrap_used)]
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vram_audit::{AuditEvent, AuditKey, AuditLog, AuditSink, FsyncPolicy, LogOptions};

fn event(i: u64) -> AuditEvent {
    AuditEvent::SealVerified {
        shard_id: format!("llama-70b-shard-{}", i % 64),
        gpu_device: 0,
        policy: "sampled".into(),
        leaves_checked: 16,
        bytes_checked: 16 << 20,
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    // Set TMPDIR to measure another disk.
    let dir = tempfile::tempdir().unwrap();
    for (name, fsync) in [
        ("fsync_every_record", FsyncPolicy::EveryRecord),
        ("fsync_every_64", FsyncPolicy::EveryN(64)),
        (
            "fsync_interval_10ms",
            FsyncPolicy::Interval(Duration::from_millis(10)),
        ),
        ("fsync_critical_only", FsyncPolicy::CriticalOnly),
    ] {
        let path = dir.path().join(format!("{name}.jsonl"));
        let options = LogOptions {
            fsync,
            ..LogOptions::default()
        };
        let log =
            AuditLog::open_file(&path, AuditKey::from_bytes([1; 32]), "bench", options).unwrap();
        let mut i = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(log.record(event(i)).unwrap());
            });
        });
    }
    let log = AuditLog::in_memory(AuditKey::from_bytes([1; 32]), "bench").unwrap();
    let mut i = 0u64;
    group.bench_function("memory", |b| {
        b.iter(|| {
            i += 1;
            black_box(log.record(event(i)).unwrap());
        });
    });
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
