//! The fault suite: every fault the mock and the audit log can inject, across
//! seal, verify and release, in 1,000 randomized (and reproducible) cases.
//! After each case: no leaked capacity, no leaked device allocation, every
//! corruption detected by full verification, every failure audited or
//! reported, no panic.
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
use vram_audit::{AuditSink, FailurePolicy, LogOptions};
use vram_crypto::LeafSize;
use vram_residency::SealSource;
use vram_residency::{ErrorClass, SealRequest, VerifyPolicy, VramError};
use vram_validation::ModelRef;

const CASES: u64 = 1000;
const LEAF: u64 = 4096;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    Alloc,
    WriteAt(u64),
    AuditWrite,
    ReaderError(u64),
    Corrupt(u32),
    ReadFailure,
}

/// A reader that fails after `fail_at` bytes.
struct FailingReader<'a> {
    data: &'a [u8],
    pos: usize,
    fail_at: usize,
}
impl std::io::Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(std::io::Error::other("injected read failure"));
        }
        let n = buf
            .len()
            .min(self.fail_at - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn run_case(seed: u64) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = 1 + rng.below(200_000);
    let fault = match rng.below(7) {
        0 => Fault::None,
        1 => Fault::Alloc,
        2 => Fault::WriteAt(rng.below(len)),
        3 => Fault::AuditWrite,
        4 => Fault::ReaderError(rng.below(len)),
        5 => Fault::Corrupt(1 + rng.below(3) as u32),
        _ => Fault::ReadFailure,
    };
    let fail_closed = rng.below(2) == 0;
    let options = if fail_closed {
        LogOptions {
            failure: FailurePolicy::fail_closed(std::time::Duration::from_millis(1)),
            ..LogOptions::default()
        }
    } else {
        LogOptions::default()
    };
    let f = fixture_opts(64 * MIB, LeafSize::new(LEAF).unwrap(), options);
    let data = pattern(len as usize, seed as u8);
    let req = SealRequest::new(ModelRef::new("fault:suite").unwrap(), 0);
    let ctx = format!("seed {seed}, len {len}, {fault:?}, fail_closed {fail_closed}");

    match fault {
        Fault::Alloc => f.device.fail_next_allocs(1),
        Fault::WriteAt(at) => f.device.fail_write_at(at),
        Fault::AuditWrite => f.audit.fail_next_writes(1 + rng.below(3) as u32),
        _ => {}
    }
    let sealed = match fault {
        Fault::ReaderError(at) => {
            let mut r = FailingReader {
                data: &data,
                pos: 0,
                fail_at: at as usize,
            };
            f.manager.seal(
                &req,
                SealSource::Reader {
                    reader: &mut r,
                    len,
                },
            )
        }
        _ if rng.below(2) == 0 => f.manager.seal(&req, SealSource::Bytes(&data)),
        _ => f.manager.seal(
            &req,
            SealSource::Reader {
                reader: &mut &data[..],
                len,
            },
        ),
    };

    let shard = match (fault, sealed) {
        (Fault::Alloc, Err(e)) => {
            assert!(
                matches!(e, VramError::AllocationFailed { .. }),
                "{ctx}: {e}"
            );
            assert!(e.is_retriable(), "{ctx}");
            assert_eq!(f.audit_count("vram_allocation_failed"), 1, "{ctx}");
            assert_eq!(f.audit_count("seal_failed"), 1, "{ctx}");
            None
        }
        (Fault::WriteAt(_), Err(e)) => {
            assert!(matches!(e, VramError::Device { .. }), "{ctx}: {e}");
            assert_eq!(f.audit_count("seal_failed"), 1, "{ctx}");
            None
        }
        (Fault::ReaderError(_), Err(e)) => {
            assert!(matches!(e, VramError::Io { .. }), "{ctx}: {e}");
            assert_eq!(e.class(), ErrorClass::Environment, "{ctx}");
            assert_eq!(f.audit_count("seal_failed"), 1, "{ctx}");
            None
        }
        (Fault::AuditWrite, Err(e)) => {
            // Refused only under fail-closed, and the failure is reported.
            assert!(fail_closed, "{ctx}: best-effort must not refuse: {e}");
            assert!(matches!(e, VramError::Audit(_)), "{ctx}: {e}");
            assert!(
                f.audit.stats().failures > 0 || f.audit.stats().last_error.is_some(),
                "{ctx}"
            );
            None
        }
        (Fault::AuditWrite, Ok(s)) => {
            // Best effort (or retries that outlasted the fault): counted, not lost.
            assert!(
                !fail_closed || f.audit.stats().failures == 0,
                "{ctx}: a fail-closed failure must refuse the seal"
            );
            if !fail_closed {
                assert!(
                    f.audit.stats().failures > 0,
                    "{ctx}: best-effort failures are counted"
                );
            }
            Some(s)
        }
        (Fault::None | Fault::Corrupt(_) | Fault::ReadFailure, Ok(s)) => Some(s),
        (_, Ok(s)) => panic!("{ctx}: seal succeeded despite the fault: {s:?}"),
        (_, Err(e)) => panic!("{ctx}: unexpected seal error: {e}"),
    };

    if let Some(shard) = shard {
        f.manager
            .verify_with(&shard, VerifyPolicy::Full)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        match fault {
            Fault::Corrupt(n) => {
                let id = f.last_buffer();
                let mut offsets = Vec::new();
                for _ in 0..n {
                    let off = rng.below(len);
                    f.device.flip_bits(id, off, 1 << rng.below(8)).unwrap();
                    offsets.push(off);
                }
                let e = f
                    .manager
                    .verify_with(&shard, VerifyPolicy::Full)
                    .unwrap_err();
                // Two flips of the same bit cancel out; otherwise every
                // corrupted offset lies in a reported range.
                if let VramError::IntegrityViolation { corrupt, .. } = &e {
                    for off in &offsets {
                        let leaf = off / LEAF;
                        let flipped_back = offsets.iter().filter(|o| **o == *off).count() % 2 == 0;
                        if !flipped_back {
                            assert!(
                                corrupt.iter().any(|r| r.leaf_index == leaf),
                                "{ctx}: leaf {leaf} not reported"
                            );
                        }
                    }
                    assert_eq!(f.audit_count("seal_verification_failed"), 1, "{ctx}");
                    assert_eq!(f.manager.metrics().verifications_failed, 1, "{ctx}");
                } else {
                    panic!("{ctx}: expected an integrity violation, got {e}");
                }
            }
            Fault::ReadFailure => {
                f.device.fail_next_reads(1);
                let e = f
                    .manager
                    .verify_with(&shard, VerifyPolicy::Full)
                    .unwrap_err();
                assert!(matches!(e, VramError::Device { .. }), "{ctx}: {e}");
                assert!(!e.is_retriable(), "{ctx}");
                // A read failure is not evidence of corruption.
                assert_eq!(f.audit_count("seal_verification_failed"), 0, "{ctx}");
                // But it proved nothing, and the trail says so.
                assert_eq!(f.audit_count("verification_incomplete"), 1, "{ctx}");
                assert_eq!(f.manager.metrics().verifications_incomplete, 1, "{ctx}");
                f.manager.verify_with(&shard, VerifyPolicy::Full).unwrap();
                assert_eq!(f.audit_count("verification_incomplete"), 1, "{ctx}");
            }
            _ => {}
        }
        drop(shard);
        assert_eq!(f.audit_count("vram_deallocated"), 1, "{ctx}");
    }
    f.assert_no_leaks();
    assert_eq!(f.device.live_allocations(), 0, "{ctx}");
    match fault {
        Fault::None => 0,
        Fault::Alloc => 1,
        Fault::WriteAt(_) => 2,
        Fault::AuditWrite => 3,
        Fault::ReaderError(_) => 4,
        Fault::Corrupt(_) => 5,
        Fault::ReadFailure => 6,
    }
}

#[test]
fn a_thousand_randomized_fault_cases() {
    let base: u64 = std::env::var("VRAM_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let mut tally = [0u32; 7];
    for i in 0..CASES {
        tally[run_case(base.wrapping_add(i))] += 1;
    }
    eprintln!("fault suite: {CASES} cases; by fault (none, alloc, write, audit, reader, corrupt, read): {tally:?}");
    // Every fault kind was exercised many times.
    assert!(tally.iter().all(|&n| n >= 50), "{tally:?}");
}
