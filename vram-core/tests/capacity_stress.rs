//! Contention test of the capacity tracker: 16 threads × 10,000 random
//! reserve/release operations while a checker thread samples the invariant.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use vram_core::{CapacityError, CapacityTracker, Reservation};

const THREADS: u64 = 16;
const OPS: u64 = 10_000;
const CAPACITY: u64 = 1 << 20;
const HEADROOM: u64 = 1 << 16;
/// Parties at the quiescent point: every worker plus the checker.
const PARTIES: usize = THREADS as usize + 1;

/// xorshift64*: enough randomness for scheduling choices, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn sixteen_threads_of_random_reserves_and_releases_keep_the_invariants() {
    let tracker = CapacityTracker::new(CAPACITY, HEADROOM);
    let limit = tracker.limit();
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(PARTIES));
    // Workers stop at `quiet` still holding what they hold, the checker
    // compares the counter with their exact total, then `release` lets them go.
    let quiet = Arc::new(Barrier::new(PARTIES));
    let release = Arc::new(Barrier::new(PARTIES));
    let held_total = Arc::new(AtomicU64::new(0));

    let checker = {
        let (t, done, barrier) = (
            Arc::clone(&tracker),
            Arc::clone(&done),
            Arc::clone(&barrier),
        );
        let (quiet, release, held_total) = (
            Arc::clone(&quiet),
            Arc::clone(&release),
            Arc::clone(&held_total),
        );
        thread::spawn(move || {
            barrier.wait();
            // How often this loop runs depends on the scheduler (on two cores
            // it may see only idle moments); it is a concurrent observer, the
            // quiescent check below is the exact one.
            let mut samples = 0u64;
            while !done.load(Ordering::Acquire) {
                let used = t.used();
                assert!(used <= limit, "used {used} > limit {limit}");
                samples += 1;
            }
            quiet.wait();
            let (used, held) = (t.used(), held_total.load(Ordering::Acquire));
            release.wait();
            (samples, used, held)
        })
    };

    let workers_left = Arc::new(AtomicU64::new(THREADS));
    let granted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let (t, barrier) = (Arc::clone(&tracker), Arc::clone(&barrier));
            let (granted, refused) = (Arc::clone(&granted), Arc::clone(&refused));
            let (quiet, release, held_total, done, workers_left) = (
                Arc::clone(&quiet),
                Arc::clone(&release),
                Arc::clone(&held_total),
                Arc::clone(&done),
                Arc::clone(&workers_left),
            );
            thread::spawn(move || {
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (i + 1).wrapping_mul(0xD1B5));
                let mut held: Vec<Reservation> = Vec::new();
                let mut held_bytes = 0u64;
                barrier.wait();
                for _ in 0..OPS {
                    if held.is_empty() || rng.below(100) < 55 {
                        // Sizes up to a quarter of the limit: refusals happen often.
                        let bytes = 1 + rng.below(limit / 4);
                        match t.reserve(bytes) {
                            Ok(r) => {
                                assert_eq!(r.bytes(), bytes);
                                held_bytes += bytes;
                                held.push(r);
                                granted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(CapacityError::Insufficient {
                                needed,
                                available,
                                capacity,
                            }) => {
                                assert_eq!((needed, capacity), (bytes, CAPACITY));
                                assert!(available < needed);
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    } else {
                        let k = rng.below(held.len() as u64) as usize;
                        let r = held.swap_remove(k);
                        held_bytes -= r.bytes();
                        drop(r);
                    }
                    // Others only add to the counter: it covers at least what we hold.
                    let used = t.used();
                    assert!(
                        used >= held_bytes,
                        "lost update: used {used} < own {held_bytes}"
                    );
                    assert!(used <= limit, "used {used} > limit {limit}");
                }
                // The last worker to finish stops the concurrent sampler.
                held_total.fetch_add(held_bytes, Ordering::AcqRel);
                if workers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    done.store(true, Ordering::Release);
                }
                quiet.wait();
                release.wait();
                drop(held);
            })
        })
        .collect();

    for w in workers {
        w.join().unwrap();
    }
    let (samples, used_at_rest, held_at_rest) = checker.join().unwrap();
    assert_eq!(
        used_at_rest, held_at_rest,
        "with every thread at rest the counter is exactly what is held"
    );

    assert_eq!(
        tracker.used(),
        0,
        "bytes leaked after every reservation dropped"
    );
    assert_eq!(tracker.available(), limit);
    let (g, r) = (
        granted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(
        g > 0 && r > 0,
        "granted {g}, refused {r}: both paths must be exercised"
    );
    eprintln!("checker: {samples} concurrent samples; at rest {used_at_rest} bytes held");
}
