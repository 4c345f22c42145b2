//! The seed's scenarios as Gherkin feature files (`tests/features/*.feature`),
//! readable without reading Rust, run by cucumber as part of the plain test
//! run (`harness = false`). Steps drive the facade's public API on the mock
//! device, through the same fixture as the other suites.
//!
//! A failing scenario prints its steps, the failed one marked, and the run
//! exits non-zero; so does a step without a definition (`fail_on_skipped`).
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

use common::{fixture_with, pattern, Fixture, MIB};
use cucumber::gherkin::Step;
use cucumber::{given, then, when, World as _};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use vram_audit::{verify_lines, AuditKey};
use vram_residency::LeafSize;
use vram_residency::SealSource;
use vram_residency::{ErrorClass, SealRequest, SealedShard, VramError};
use vram_residency::{ModelRef, ShardId};

/// One scenario's state: a manager over a mock device, the shards sealed so
/// far, and the outcome of the last operation that could fail.
#[derive(cucumber::World, Default)]
struct Residency {
    fixture: Option<Fixture>,
    shards: Vec<SealedShard>,
    last_error: Option<VramError>,
    /// `used_vram` just before the last seal that was attempted.
    used_before_refusal: u64,
    /// Seals refused under contention, and whether capacity was ever over-committed.
    refusals: Vec<VramError>,
    over_committed: bool,
    /// A copy of the audit log's lines with one record changed.
    tampered: Option<Vec<String>>,
}

impl std::fmt::Debug for Residency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Residency")
            .field("shards", &self.shards.len())
            .field(
                "last_error",
                &self.last_error.as_ref().map(ToString::to_string),
            )
            .finish_non_exhaustive()
    }
}

impl Residency {
    fn f(&self) -> &Fixture {
        self.fixture
            .as_ref()
            .expect("a `Given a manager over a mock device` step first")
    }

    fn shard(&self) -> &SealedShard {
        self.shards.last().expect("a sealed shard")
    }

    fn seal(&mut self, bytes: &[u8]) {
        self.used_before_refusal = self.f().manager.used_vram(0);
        match self
            .f()
            .manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(bytes))
        {
            Ok(s) => self.shards.push(s),
            Err(e) => self.last_error = Some(e),
        }
    }

    fn take_error(&mut self) -> VramError {
        self.last_error
            .take()
            .expect("the last operation to have failed")
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n * MIB).unwrap()
}

// ---- the manager -----------------------------------------------------------

#[given(expr = "a manager over a mock device of {int} MiB with {int} KiB leaves")]
fn manager(w: &mut Residency, capacity_mib: u64, leaf_kib: u64) {
    let leaf = LeafSize::new(leaf_kib * 1024).unwrap();
    w.fixture = Some(fixture_with(capacity_mib * MIB, leaf));
}

#[given("the device fails its next allocation")]
fn fail_next_alloc(w: &mut Residency) {
    w.f().device.fail_next_allocs(1);
}

// ---- sealing ---------------------------------------------------------------

#[given(expr = "a model of {int} bytes is sealed")]
#[when(expr = "a model of {int} bytes is sealed")]
fn seal_bytes(w: &mut Residency, len: usize) {
    w.seal(&pattern(len, 7));
}

#[when(expr = "a model of {int} MiB is sealed")]
fn seal_mib(w: &mut Residency, n: u64) {
    w.seal(&vec![0u8; mib(n)]);
}

#[when(expr = "a model of {int} bytes of {word} is sealed")]
#[when(expr = "a model of {int} bytes of a {word} is sealed")]
fn seal_filled(w: &mut Residency, len: usize, fill: String) {
    let bytes = match fill.as_str() {
        "zeros" => vec![0u8; len],
        "ones" => vec![0xffu8; len],
        "pattern" => pattern(len, 3),
        other => panic!("no fill called {other:?}"),
    };
    w.seal(&bytes);
    assert!(w.last_error.is_none(), "{:?}", w.last_error);
}

#[when(expr = "models of {int} MiB are sealed until one is refused")]
fn seal_until_refused(w: &mut Residency, n: u64) {
    let bytes = vec![0x5au8; mib(n)];
    for _ in 0..1000 {
        w.seal(&bytes);
        if w.last_error.is_some() {
            return;
        }
    }
    panic!("no seal was refused");
}

#[when(expr = "{int} times a model of {int} bytes is sealed, verified and dropped")]
fn cycles(w: &mut Residency, times: u32, len: usize) {
    let bytes = pattern(len, 5);
    for _ in 0..times {
        let shard = w
            .f()
            .manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes))
            .unwrap();
        w.f().manager.verify_sealed(&shard).unwrap();
        drop(shard);
    }
}

#[when("the shards are dropped")]
fn drop_shards(w: &mut Residency) {
    w.shards.clear();
}

// ---- shard ids -------------------------------------------------------------

fn seal_under(w: &mut Residency, id: &str) {
    let f = w.f();
    let result = ShardId::new(id).map_err(VramError::from).and_then(|id| {
        let mut request = SealRequest::new(ModelRef::new("inline:bytes")?, 0);
        request.shard_id = Some(id);
        f.manager
            .seal(&request, SealSource::Bytes(&pattern(1000, 1)))
    });
    match result {
        Ok(s) => w.shards.push(s),
        Err(e) => w.last_error = Some(e),
    }
}

#[when(expr = "a model is sealed under the shard id {string}")]
fn seal_under_id(w: &mut Residency, id: String) {
    seal_under(w, &id);
}

#[when(expr = "a model is sealed under a shard id of {int} characters")]
fn seal_under_long_id(w: &mut Residency, len: usize) {
    seal_under(w, &"a".repeat(len));
}

#[then("the shard id is refused as invalid input")]
fn refused_as_invalid_input(w: &mut Residency) {
    let e = w.take_error();
    assert!(matches!(e, VramError::InvalidInput(_)), "{e}");
    assert_eq!(e.class(), ErrorClass::InvalidInput);
    assert!(w.shards.is_empty());
}

#[then(expr = "the shard's id is {string}")]
fn shard_id_is(w: &mut Residency, id: String) {
    assert_eq!(w.shard().shard_id().as_str(), id);
}

#[when("its handle's shard id is changed to a forged log line")]
fn forge_handle(w: &mut Residency) {
    let mut h = w.shard().handle();
    h.shard_id = "evil\n2026-01-01 INFO forged line\u{202e}\u{0}".into();
    w.last_error = w.f().manager.check_handle(&h).err();
}

#[then("the handle is refused as an invalid seal")]
fn handle_refused(w: &mut Residency) {
    let e = w.last_error.as_ref().expect("the handle to be refused");
    assert!(matches!(e, VramError::SealInvalid { .. }), "{e}");
}

#[then("the error is one printable line")]
fn error_is_one_line(w: &mut Residency) {
    let msg = w.take_error().to_string();
    assert!(
        msg.chars().all(|c| (' '..='~').contains(&c) || c == '…'),
        "{msg:?}"
    );
}

// ---- verification ----------------------------------------------------------

#[given("the seal verifies")]
#[then("the seal verifies")]
fn seal_verifies(w: &mut Residency) {
    let report = w.f().manager.verify_sealed(w.shard());
    assert!(report.is_ok(), "{:?}", report.err().map(|e| e.to_string()));
}

#[then("every shard verifies")]
fn every_shard_verifies(w: &mut Residency) {
    for s in &w.shards {
        w.f().manager.verify_sealed(s).unwrap();
    }
}

#[when(expr = "byte {int} of its device memory is flipped")]
fn flip(w: &mut Residency, offset: u64) {
    let f = w.f();
    f.device.flip_bits(f.last_buffer(), offset, 1).unwrap();
}

#[when("verification fails with an integrity violation")]
#[then("verification fails with an integrity violation")]
fn fails_integrity(w: &mut Residency) {
    let e = w.f().manager.verify_sealed(w.shard()).unwrap_err();
    assert!(matches!(e, VramError::IntegrityViolation { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Fatal);
    w.last_error = Some(e);
}

#[then(expr = "the corrupt range is bytes {int} to {int} of leaf {int}")]
fn corrupt_range(w: &mut Residency, start: u64, end: u64, leaf: u64) {
    let Some(VramError::IntegrityViolation { corrupt, .. }) = &w.last_error else {
        panic!("no integrity violation: {:?}", w.last_error);
    };
    assert!(
        corrupt
            .iter()
            .any(|r| r.start == start && r.end == end && r.leaf_index == leaf),
        "{corrupt:?}"
    );
}

#[then("verification fails because the shard is compromised")]
fn fails_compromised(w: &mut Residency) {
    let e = w.f().manager.verify_sealed(w.shard()).unwrap_err();
    assert!(matches!(e, VramError::Compromised { .. }), "{e}");
}

#[then("the shard is compromised")]
fn is_compromised(w: &mut Residency) {
    assert!(w.shard().is_compromised());
}

#[then(expr = "{int} verifications have passed")]
fn verifications_passed(w: &mut Residency, n: u64) {
    assert_eq!(w.f().manager.metrics().verifications_passed, n);
}

// ---- capacity --------------------------------------------------------------

#[then(expr = "{int} bytes of device capacity are in use")]
fn capacity_in_use(w: &mut Residency, bytes: u64) {
    assert_eq!(w.f().manager.used_vram(0), bytes);
}

#[then("no capacity is reserved and no device memory is live")]
fn nothing_reserved(w: &mut Residency) {
    assert!(w.shards.is_empty(), "{} shards still held", w.shards.len());
    w.f().assert_no_leaks();
}

#[then(expr = "{int} device allocations are live")]
fn allocations_live(w: &mut Residency, n: usize) {
    assert_eq!(w.f().device.live_allocations(), n);
}

#[then("the refusal is insufficient VRAM, and retriable")]
fn refusal_is_insufficient(w: &mut Residency) {
    let e = w.last_error.as_ref().expect("a refusal");
    assert!(matches!(e, VramError::InsufficientVram { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Retriable);
}

#[then("the seal fails with insufficient VRAM")]
fn seal_fails_insufficient(w: &mut Residency) {
    let e = w.take_error();
    assert!(matches!(e, VramError::InsufficientVram { .. }), "{e}");
}

#[then("the refused seal reserved nothing")]
fn refusal_reserved_nothing(w: &mut Residency) {
    assert_eq!(w.f().manager.used_vram(0), w.used_before_refusal);
    assert_eq!(
        w.f().device.live_allocations(),
        w.shards.len(),
        "a device allocation outlived its refused seal"
    );
}

#[then("the seal fails with an allocation failure, and retriable")]
fn seal_fails_allocation(w: &mut Residency) {
    let e = w.take_error();
    assert!(matches!(e, VramError::AllocationFailed { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Retriable);
}

// ---- concurrency -----------------------------------------------------------

#[when(expr = "{int} threads each seal a model of {int} bytes")]
fn threads_seal(w: &mut Residency, threads: u8, len: usize) {
    let m = &w.f().manager;
    let sealed: Vec<SealedShard> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    m.seal(
                        &SealRequest::inline(0).unwrap(),
                        SealSource::Bytes(&pattern(len, t)),
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    w.shards.extend(sealed);
}

#[then(expr = "there are {int} shards with distinct shard ids")]
fn distinct_ids(w: &mut Residency, n: usize) {
    assert_eq!(w.shards.len(), n);
    let ids: HashSet<String> = w.shards.iter().map(|s| s.shard_id().to_string()).collect();
    assert_eq!(ids.len(), n, "shard ids must be unique");
}

#[when(expr = "{int} threads each verify the shard {int} times")]
fn threads_verify(w: &mut Residency, threads: u32, times: u32) {
    let (m, shard) = (&w.f().manager, w.shard());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(move || {
                for _ in 0..times {
                    m.verify_sealed(shard).unwrap();
                }
            });
        }
    });
}

#[when(
    expr = "{int} threads seal {int} models of {int} bytes each while {int} threads verify the shard"
)]
fn seal_while_verifying(w: &mut Residency, sealers: u8, each: u32, len: usize, verifiers: u32) {
    let (m, shard) = (&w.f().manager, w.shard());
    let done = AtomicBool::new(false);
    let sealed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let verifying: Vec<_> = (0..verifiers)
            .map(|_| {
                s.spawn(|| {
                    // At least one verification, however the threads are scheduled.
                    loop {
                        m.verify_sealed(shard).unwrap();
                        if done.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                })
            })
            .collect();
        let sealing: Vec<_> = (0..sealers)
            .map(|t| {
                let sealed = &sealed;
                s.spawn(move || {
                    for _ in 0..each {
                        let shard = m
                            .seal(
                                &SealRequest::inline(0).unwrap(),
                                SealSource::Bytes(&pattern(len, t)),
                            )
                            .unwrap();
                        sealed.lock().unwrap().push(shard);
                    }
                })
            })
            .collect();
        for h in sealing {
            h.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for h in verifying {
            h.join().unwrap();
        }
    });
    w.shards.extend(sealed.into_inner().unwrap());
}

#[when(expr = "{int} threads each try to seal {int} models of {int} MiB while capacity is watched")]
fn contended_seals(w: &mut Residency, threads: u32, each: u32, size_mib: u64) {
    let m = &w.f().manager;
    let limit = m.total_vram(0);
    let bytes = vec![0x33u8; mib(size_mib)];
    let stop = AtomicBool::new(false);
    let max_seen = AtomicU64::new(0);
    let sealed = Mutex::new(Vec::new());
    let refused = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let watcher = s.spawn(|| loop {
            max_seen.fetch_max(m.used_vram(0), Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::yield_now();
        });
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..each {
                        match m.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes)) {
                            Ok(shard) => sealed.lock().unwrap().push(shard),
                            Err(e) => refused.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        for h in workers {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
    });
    w.over_committed = max_seen.into_inner() > limit;
    w.shards.extend(sealed.into_inner().unwrap());
    w.refusals = refused.into_inner().unwrap();
    assert!(!w.refusals.is_empty(), "the device never filled up");
}

#[then("used capacity never exceeded the total")]
fn never_over_committed(w: &mut Residency) {
    assert!(!w.over_committed);
    assert!(w.f().manager.used_vram(0) <= w.f().manager.total_vram(0));
}

#[then("every refusal was for insufficient VRAM")]
fn refusals_insufficient(w: &mut Residency) {
    for e in &w.refusals {
        assert!(matches!(e, VramError::InsufficientVram { .. }), "{e}");
    }
}

// ---- the audit log ---------------------------------------------------------

/// The `"type"` of every record but the log's own genesis record.
fn event_types(w: &Residency) -> Vec<String> {
    w.f()
        .audit_lines()
        .iter()
        .filter_map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let kind = record["event"]["type"].as_str()?.to_string();
            (kind != "log_created").then_some(kind)
        })
        .collect()
}

#[then(expr = "the audit log holds {int} {string} event(s)")]
fn audit_count(w: &mut Residency, n: usize, kind: String) {
    let types = event_types(w);
    assert_eq!(
        types.iter().filter(|t| **t == kind).count(),
        n,
        "events: {types:?}"
    );
}

#[then("the audit log holds these events in this order:")]
fn audit_sequence(w: &mut Residency, step: &Step) {
    let table = step.table.as_ref().expect("a table of events");
    let want: Vec<String> = table.rows.iter().skip(1).map(|r| r[0].clone()).collect();
    assert_eq!(event_types(w), want);
}

fn audit_key() -> AuditKey {
    AuditKey::from_secret(&common::secret().audit_key())
}

#[then("the audit chain verifies intact")]
fn chain_intact(w: &mut Residency) {
    let report = verify_lines(&w.f().audit_lines(), &audit_key(), None);
    assert!(report.is_intact(), "{:?}", report.findings);
    assert!(report.records >= 2);
}

#[when(expr = "the text of audit record {int} is changed")]
fn tamper_record(w: &mut Residency, n: usize) {
    let mut lines = w.f().audit_lines();
    let line = &mut lines[n - 1];
    *line = line.replacen(
        "\"worker\":\"test-worker\"",
        "\"worker\":\"test-workes\"",
        1,
    );
    assert_ne!(*line, w.f().audit_lines()[n - 1], "nothing was changed");
    w.tampered = Some(lines);
}

#[then(expr = "the audit chain does not verify intact, naming line {int}")]
fn chain_broken(w: &mut Residency, n: u64) {
    let lines = w.tampered.as_ref().expect("a changed copy of the log");
    let report = verify_lines(lines, &audit_key(), None);
    assert!(!report.is_intact());
    assert!(
        report.findings.iter().any(|f| f.line == n),
        "{:?}",
        report.findings
    );
}

fn main() {
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/features");
    futures::executor::block_on(
        Residency::cucumber()
            // Steps block (threads, hashing): one scenario at a time keeps
            // their threads from competing and the run short.
            .max_concurrent_scenarios(1)
            .fail_on_skipped()
            // Arguments are cargo's (`cargo test -q ...`), not cucumber's.
            .with_default_cli()
            .run_and_exit(features),
    );
}
