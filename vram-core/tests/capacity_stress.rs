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
    let barrier = Arc::new(Barrier::new(THREADS as usize + 1));

    let checker = {
        let (t, done, barrier) = (
            Arc::clone(&tracker),
            Arc::clone(&done),
            Arc::clone(&barrier),
        );
        thread::spawn(move || {
            barrier.wait();
            let (mut samples, mut max_seen) = (0u64, 0u64);
            while !done.load(Ordering::Acquire) {
                let used = t.used();
                assert!(used <= limit, "used {used} > limit {limit}");
                max_seen = max_seen.max(used);
                samples += 1;
            }
            (samples, max_seen)
        })
    };

    let granted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let (t, barrier) = (Arc::clone(&tracker), Arc::clone(&barrier));
            let (granted, refused) = (Arc::clone(&granted), Arc::clone(&refused));
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
                drop(held);
            })
        })
        .collect();

    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let (samples, max_seen) = checker.join().unwrap();

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
    assert!(
        samples > 0 && max_seen > 0,
        "checker sampled {samples} times, max {max_seen}"
    );
}
