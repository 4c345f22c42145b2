//! Concurrency: many threads seal and verify at once, capacity is never
//! over-committed, nothing leaks, and verification does not wait on sealing.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use vram_residency::SealSource;
use vram_residency::{SealRequest, VramError};
use vram_validation::ModelRef;

#[test]
fn ten_threads_seal_at_once() {
    let f = fixture(256 * MIB);
    let shards: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10u8)
            .map(|t| {
                let m = &f.manager;
                s.spawn(move || {
                    m.seal(
                        &SealRequest::inline(0).unwrap(),
                        SealSource::Bytes(&pattern(300_000 + usize::from(t) * 1000, t)),
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: std::collections::HashSet<_> =
        shards.iter().map(|s| s.shard_id().to_string()).collect();
    assert_eq!(ids.len(), 10, "shard ids must be unique");
    for s in &shards {
        f.manager.verify_sealed(s).unwrap();
    }
    assert_eq!(f.device.live_allocations(), 10);
    drop(shards);
    f.assert_no_leaks();
    assert_eq!(f.audit_count("vram_deallocated"), 10);
}

#[test]
fn many_threads_verify_one_shard() {
    let f = fixture(64 * MIB);
    let shard = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(2_000_000, 1)),
            )
            .unwrap(),
    );
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (m, sh) = (&f.manager, &shard);
            s.spawn(move || {
                for _ in 0..5 {
                    m.verify_sealed(sh).unwrap();
                }
            });
        }
    });
    assert_eq!(f.manager.metrics().verifications_passed, 40);
}

#[test]
fn capacity_limit_is_never_over_committed_under_contention() {
    let f = fixture(10 * MIB);
    let limit = f.manager.total_vram(0);
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(13);
    std::thread::scope(|s| {
        // A watcher samples used <= limit continuously.
        let watcher = s.spawn(|| {
            barrier.wait();
            // At least one sample, however the scheduler orders the threads.
            let mut samples = 0u64;
            loop {
                let used = f.manager.used_vram(0);
                assert!(used <= limit, "over-commit: {used} > {limit}");
                samples += 1;
                if stop.load(Ordering::Relaxed) {
                    break samples;
                }
            }
        });
        let workers: Vec<_> = (0..12u8)
            .map(|t| {
                let (m, b) = (&f.manager, &barrier);
                s.spawn(move || {
                    b.wait();
                    let mut ok = 0;
                    for i in 0..6u8 {
                        match m.seal(
                            &SealRequest::inline(0).unwrap(),
                            SealSource::Bytes(&pattern(MIB as usize + 1, t ^ i)),
                        ) {
                            Ok(shard) => {
                                ok += 1;
                                m.verify_sealed(&shard).unwrap();
                            }
                            Err(e) => assert!(e.is_retriable(), "unexpected error: {e}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        let sealed: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        assert!(watcher.join().unwrap() > 0);
        assert!(sealed > 0);
    });
    f.assert_no_leaks();
}

#[test]
fn capacity_queries_under_load_stay_consistent() {
    let f = fixture(32 * MIB);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let c = f.manager.capacity(0).unwrap();
                    assert!(c.used <= c.total);
                    assert!(c.available <= c.total);
                }
            });
        }
        for i in 0..30u8 {
            let shard = f
                .manager
                .seal(
                    &SealRequest::inline(0).unwrap(),
                    SealSource::Bytes(&pattern(500_000, i)),
                )
                .unwrap();
            assert!(f.manager.used_vram(0) >= 500_000);
            drop(shard);
        }
        stop.store(true, Ordering::Relaxed);
    });
    f.assert_no_leaks();
}

#[test]
fn interleaved_seal_verify_release() {
    let f = fixture(128 * MIB);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let m = &f.manager;
            s.spawn(move || {
                let mut kept = Vec::new();
                for i in 0..15u8 {
                    let shard = m
                        .seal(
                            &SealRequest::inline(0).unwrap(),
                            SealSource::Bytes(&pattern(100_000 + usize::from(i) * 977, t ^ i)),
                        )
                        .unwrap();
                    m.verify_sealed(&shard).unwrap();
                    if i % 3 == 0 {
                        kept.push(shard);
                    }
                    if let Some(old) = kept.first() {
                        m.verify_sealed(old).unwrap();
                    }
                }
            });
        }
    });
    f.assert_no_leaks();
}

/// A reader that hands out bytes only when the test says so, so a seal can be
/// held open mid-stream.
struct GatedReader {
    gate: mpsc::Receiver<()>,
    left: usize,
}

impl std::io::Read for GatedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        // Block until released (or the sender is gone).
        let _ = self.gate.recv();
        let n = buf.len().min(self.left).min(4096);
        buf[..n].fill(0xA5);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn verify_of_one_shard_never_waits_on_the_seal_of_another() {
    let f = fixture(64 * MIB);
    let sealed = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(1_000_000, 3)),
        )
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let m = &f.manager;
        let pending = s.spawn(move || {
            let req = SealRequest::new(ModelRef::new("test:gated").unwrap(), 0);
            m.seal(
                &req,
                SealSource::Reader {
                    reader: &mut GatedReader {
                        gate: rx,
                        left: 8192,
                    },
                    len: 8192,
                },
            )
        });
        // Let the seal start and block in its reader.
        tx.send(()).unwrap();
        // The other shard verifies to completion while that seal is stuck.
        for _ in 0..3 {
            f.manager.verify_sealed(&sealed).unwrap();
        }
        tx.send(()).unwrap();
        drop(tx);
        let shard = pending.join().unwrap().unwrap();
        f.manager.verify_sealed(&shard).unwrap();
    });
}

#[test]
fn manager_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<vram_residency::VramManager>();
    assert_send_sync::<vram_residency::SealedShard>();
    let _: Option<VramError> = None;
}
