//! The background scrubber sweeps every leaf, reports corruption through the
//! callback and the audit log, and stops cleanly on drop.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vram_residency::{ScrubConfig, Scrubber};
use vram_residency::{SealRequest, SealSource};

/// Polls `cond` for up to 60 s (a liveness bound, not a performance assertion).
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn scrubber_sweeps_and_finds_corruption() {
    let f = fixture(64 * MIB);
    let a = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(600_000, 1)),
            )
            .unwrap(),
    );
    let b = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(300_000, 2)),
            )
            .unwrap(),
    );
    let b_buffer = f.last_buffer();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let mut cfg = ScrubConfig::new(1 << 30);
    cfg.on_failure = Some(Box::new(move |e| sink.lock().unwrap().push(e.to_string())));
    let scrubber = Scrubber::start(&f.manager, &[a.clone(), b.clone()], cfg).unwrap();
    assert!(
        eventually(|| scrubber.stats().sweeps >= 2),
        "no sweep completed"
    );
    assert_eq!(scrubber.stats().failures, 0);
    assert!(scrubber.stats().bytes_scrubbed >= 900_000);
    // Every leaf of both shards at least once per sweep (plus samples), and
    // the seal of each shard checked once per sweep.
    let stats = scrubber.stats();
    let leaves = (a.leaf_hashes().len() + b.leaf_hashes().len()) as u64;
    assert!(stats.leaves_checked >= 2 * leaves, "{stats:?}");
    assert!(stats.seal_checks >= 4, "{stats:?}");
    // The end of the last sweep is a wall-clock time, for operators' alerts.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let last = stats.last_sweep_unix_ms.expect("a sweep ended");
    assert!(last <= now_ms && now_ms - last < 600_000, "{stats:?}");

    f.device.flip_bits(b_buffer, 299_999, 2).unwrap();
    assert!(
        eventually(|| scrubber.stats().failures >= 1),
        "corruption not found"
    );
    let stats = scrubber.stop();
    assert_eq!(stats.failures, 1, "a failed shard is reported once");
    let messages = seen.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains(b.shard_id().as_str()));
    assert_eq!(f.audit_count("seal_verification_failed"), 1);
    // Audited under the scrubber's own policy name, not as a caller's sample.
    let failed: Vec<String> = f
        .audit_lines()
        .into_iter()
        .filter(|l| l.contains("seal_verification_failed"))
        .collect();
    assert!(
        failed[0].contains("\"policy\":\"scrub:4\""),
        "{}",
        failed[0]
    );
    // Scrub steps that pass are not audited one by one.
    assert_eq!(f.audit_count("seal_verified"), 0);
}

#[test]
fn scrubber_stops_on_drop_and_forgets_dropped_shards() {
    let f = fixture(64 * MIB);
    let a = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(100_000, 1)),
            )
            .unwrap(),
    );
    let scrubber = Scrubber::start(
        &f.manager,
        std::slice::from_ref(&a),
        ScrubConfig::new(1 << 20),
    )
    .unwrap();
    drop(a);
    // The scrubber may hold the shard for the length of one step at most.
    assert!(eventually(|| f.device.live_allocations() == 0));
    drop(scrubber);
    f.assert_no_leaks();
}

#[test]
fn scrubber_rejects_silly_rates() {
    let f = fixture(64 * MIB);
    assert!(Scrubber::start(&f.manager, &[], ScrubConfig::new(10)).is_err());
}

#[test]
fn scrubber_refuses_a_compromised_shard_even_with_its_bytes_restored() {
    let f = fixture(64 * MIB);
    let a = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(300_000, 4)),
            )
            .unwrap(),
    );
    let id = f.last_buffer();
    f.device.flip_bits(id, 1234, 1).unwrap();
    assert!(f.manager.verify_sealed(&a).is_err());
    assert!(a.is_compromised());
    // The tamperer restores the byte before the scrubber looks.
    f.device.flip_bits(id, 1234, 1).unwrap();
    let scrubber = Scrubber::start(
        &f.manager,
        std::slice::from_ref(&a),
        ScrubConfig::new(1 << 30),
    )
    .unwrap();
    assert!(eventually(|| scrubber.stats().failures >= 1));
    assert!(eventually(|| scrubber.stats().sweeps >= 3));
    let stats = scrubber.stop();
    assert_eq!(stats.failures, 1, "refused once, then left alone");
    assert_eq!(stats.bytes_scrubbed, 0, "nothing of it was trusted");
    // The verification that caught it, and the scrubber's refusal.
    assert_eq!(f.audit_count("seal_verification_failed"), 2);
}

#[test]
fn a_device_read_error_does_not_stop_scrubbing_a_shard() {
    let f = fixture(64 * MIB);
    let a = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(300_000, 5)),
            )
            .unwrap(),
    );
    f.device.fail_next_reads(1);
    let scrubber = Scrubber::start(
        &f.manager,
        std::slice::from_ref(&a),
        ScrubConfig::new(1 << 30),
    )
    .unwrap();
    assert!(eventually(|| scrubber.stats().failures >= 1));
    // Later sweeps read the shard again, in full.
    assert!(eventually(|| scrubber.stats().bytes_scrubbed >= 300_000));
    let stats = scrubber.stop();
    assert_eq!(stats.failures, 1);
    assert!(!a.is_compromised());
    assert_eq!(f.audit_count("verification_incomplete"), 1);
    assert_eq!(f.audit_count("seal_verification_failed"), 0);
}

/// `scrub:K` is the scrubber's own policy: a caller cannot run it through
/// `verify_with` or make it the default.
#[test]
fn the_scrub_policy_is_the_scrubbers_alone() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap();
    let policy = vram_residency::VerifyPolicy::Scrub { leaves: 4 };
    assert!(matches!(
        f.manager.verify_with(&shard, policy),
        Err(vram_residency::VramError::InvalidPolicy { .. })
    ));
    assert!(!shard.is_compromised());
    let config = vram_residency::VramConfig::builder(secret())
        .device(f.device.clone())
        .verify_policy(policy)
        .build();
    assert!(matches!(
        vram_residency::VramManager::new(config),
        Err(vram_residency::VramError::InvalidConfig { .. })
    ));
}
