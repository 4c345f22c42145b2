//! Model checks of the capacity tracker over every interleaving of small cases
//! (up to the preemption bound). Run with `cargo xtask loom`, i.e.
//! `RUSTFLAGS="--cfg loom" cargo test -p vram-core --release --test loom_capacity`.
#![cfg(loom)]
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
// The explored-interleaving counts are printed for `cargo xtask loom` to show.
#![allow(clippy::print_stdout)]

use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vram_core::{CapacityError, CapacityTracker};

/// Runs `f` under loom with a preemption bound (`LOOM_MAX_PREEMPTIONS`, default
/// 3) and prints how many interleavings were explored.
fn check(name: &str, f: impl Fn() + Sync + Send + 'static) {
    // Counted outside loom: a plain std atomic, bumped once per explored execution.
    let iterations = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&iterations);
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let n = iterations.load(Ordering::Relaxed);
    println!(
        "loom {name}: {n} interleavings explored (preemption bound {bound}) in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        n > 1,
        "loom explored a single interleaving: the model is vacuous"
    );
}

/// Limit 10 (capacity 12, headroom 2); three threads reserve 4 bytes each and
/// hold them. At most two can succeed, `used` never exceeds the limit as seen
/// from any thread, and everything is released at the end.
#[test]
fn concurrent_reserves_never_over_commit() {
    check("concurrent_reserves_never_over_commit", || {
        let tracker = CapacityTracker::new(12, 2);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let t = Arc::clone(&tracker);
                thread::spawn(move || {
                    let r = t.reserve(4);
                    let used = t.used();
                    assert!(used <= 10, "used {used} exceeds the limit of 10");
                    match &r {
                        Ok(_) => assert!(used >= 4, "own reservation not counted"),
                        Err(CapacityError::Insufficient {
                            needed, available, ..
                        }) => {
                            assert_eq!(*needed, 4);
                            assert!(*available < 4, "refused with {available} available");
                        }
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                    r.ok()
                })
            })
            .collect();
        let held: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert!(
            (1..=2).contains(&held.len()),
            "{} reservations succeeded",
            held.len()
        );
        assert_eq!(tracker.used(), 4 * held.len() as u64, "lost update");
        drop(held);
        assert_eq!(tracker.used(), 0);
    });
}

/// Two threads each reserve and release twice while the main thread watches:
/// no update is lost and the counter ends at zero.
#[test]
fn reserve_release_interleavings_end_at_zero() {
    check("reserve_release_interleavings_end_at_zero", || {
        let tracker = CapacityTracker::new(5, 0);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&tracker);
                thread::spawn(move || {
                    let mut granted = 0;
                    for _ in 0..2 {
                        if let Ok(r) = t.reserve(3) {
                            granted += 1;
                            assert!(t.used() >= 3 && t.used() <= 5);
                            drop(r);
                        }
                    }
                    granted
                })
            })
            .collect();
        let seen = tracker.used();
        assert!(seen == 0 || seen == 3, "observed used = {seen}");
        let granted: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(granted >= 1, "no reservation ever succeeded");
        assert_eq!(tracker.used(), 0);
    });
}

/// Limit 5. A reserves 4, B reserves 3, C reserves 1. A and B cannot both hold
/// their bytes, but C always fits (4 + 1 and 3 + 1 are within the limit): if a
/// failed reserve left anything behind, C would be refused in some interleaving.
#[test]
fn a_failed_reserve_changes_nothing() {
    check("a_failed_reserve_changes_nothing", || {
        let tracker = CapacityTracker::new(5, 0);
        let spawn = |bytes: u64| {
            let t = Arc::clone(&tracker);
            thread::spawn(move || {
                let r = t.reserve(bytes);
                assert!(t.used() <= 5);
                r.ok()
            })
        };
        let a = spawn(4);
        let b = spawn(3);
        let c = tracker.reserve(1);
        assert!(c.is_ok(), "C refused: {c:?}");
        let a = a.join().unwrap();
        let b = b.join().unwrap();
        assert!(
            a.is_some() || b.is_some(),
            "both A and B refused with only 1 byte reserved by C"
        );
        assert!(!(a.is_some() && b.is_some()), "A and B both hold: 8 > 5");
        let expected =
            1 + a.as_ref().map_or(0, |r| r.bytes()) + b.as_ref().map_or(0, |r| r.bytes());
        assert_eq!(tracker.used(), expected);
        drop((a, b, c));
        assert_eq!(tracker.used(), 0);
    });
}
