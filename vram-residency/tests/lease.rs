//! Verified leases: the only door to a sealed shard's memory. Granted only
//! after the policy's verification holds, refused (and audited) otherwise,
//! never to a compromised shard; tensors named in what they report.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vram_residency::{
    LeasePolicy, MemoryAccess, ScrubConfig, Scrubber, TensorMemory, VerifyPolicy, VramError,
};
use vram_residency::{SealRequest, SealSource};

const LEAF: u64 = 64 * 1024;

/// A model of three tensors: a small one, a 5-leaf one, and a last one.
fn model() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let small = pattern(4 * 6, 1);
    let big = pattern((5 * LEAF) as usize, 2);
    let last = pattern(2 * 1000, 3);
    let file = safetensors(&[
        ("embeddings.weight", "F32", &[2, 3], small.clone()),
        ("encoder.layer.0.weight", "F16", &[5, LEAF / 2], big.clone()),
        ("pooler.bias", "U8", &[2000], last.clone()),
    ]);
    (file, small, big, last)
}

#[test]
fn a_lease_gives_the_sealed_bytes_after_a_sampled_verification() {
    let f = fixture(64 * MIB);
    let bytes = pattern((8 * LEAF) as usize + 17, 5);
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes))
        .unwrap();
    let lease = f.manager.lease(&shard, LeasePolicy::default()).unwrap();
    assert_eq!(
        lease.verification().policy,
        VerifyPolicy::Sampled { leaves: 4 }
    );
    assert_eq!(lease.verification().leaves_checked, 4);
    assert_eq!(&*lease.host_bytes().unwrap(), &bytes[..]);
    match lease.memory().unwrap() {
        MemoryAccess::Host(b) => assert_eq!(b.len(), bytes.len()),
        other => panic!("the mock's memory is host memory: {other:?}"),
    }
    // Not a safetensors file: no tensors, a clear error.
    let e = lease.tensors().unwrap_err();
    assert!(matches!(e, VramError::NotSafetensors { .. }), "{e}");
    let debug = format!("{lease:?}");
    assert!(debug.contains(shard.shard_id().as_str()), "{debug}");
    drop(lease);
    let m = f.manager.metrics();
    assert_eq!((m.leases_granted, m.leases_refused), (1, 0));
    // Successes are tallied, not audited one by one; the release writes it.
    assert_eq!(f.audit_count("seal_verified"), 0);
    assert_eq!(f.audit_count("leases_granted"), 0);
    shard.release().unwrap();
    let tally = f
        .audit_lines()
        .into_iter()
        .find(|l| l.contains("\"type\":\"leases_granted\""))
        .unwrap();
    assert!(
        tally.contains("\"count\":1,\"leaves_checked\":4"),
        "{tally}"
    );
    f.assert_no_leaks();
}

#[test]
fn a_thousand_leases_make_one_audit_record() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap();
    let before = f.audit_lines().len();
    for _ in 0..1000 {
        let lease = f
            .manager
            .lease(&shard, LeasePolicy::Sampled { leaves: 1 })
            .unwrap();
        assert_eq!(lease.verification().leaves_checked, 1);
    }
    assert_eq!(f.audit_lines().len(), before, "no record per lease");
    drop(shard);
    let lines = f.audit_lines();
    assert_eq!(lines.len(), before + 2, "the tally, then the deallocation");
    assert!(
        lines[before].contains("\"count\":1000,"),
        "{}",
        lines[before]
    );
    assert!(lines[before + 1].contains("vram_deallocated"));
    assert_eq!(f.manager.metrics().leases_granted, 1000);
}

#[test]
fn tensors_are_typed_views_of_the_sealed_memory() {
    let f = fixture(64 * MIB);
    let (file, small, big, last) = model();
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    let lease = f.manager.lease(&shard, LeasePolicy::Full).unwrap();
    assert_eq!(
        lease.tensor_names().unwrap(),
        ["embeddings.weight", "encoder.layer.0.weight", "pooler.bias"]
    );
    let all = lease.tensors().unwrap();
    let t = all.get("embeddings.weight").unwrap();
    assert_eq!(
        (t.name(), t.dtype(), t.shape()),
        ("embeddings.weight", "F32", &[2u64, 3][..])
    );
    assert_eq!(t.host_bytes().unwrap(), &small[..]);
    let t = all.get("encoder.layer.0.weight").unwrap();
    assert_eq!(t.host_bytes().unwrap(), &big[..]);
    assert!(matches!(t.memory(), TensorMemory::Host(_)));
    assert_eq!(
        all.get("pooler.bias").unwrap().host_bytes().unwrap(),
        &last[..]
    );
    assert_eq!(all.names().count(), 3);
    let e = all.get("pooler.weight\u{1b}[2J").unwrap_err();
    assert!(matches!(e, VramError::UnknownTensor { .. }), "{e}");
    assert!(!e.to_string().contains('\u{1b}'), "{e}");
}

/// A flipped bit in a tensor is caught at the next lease, named by its
/// tensor and offset, audited, and every later lease is refused.
#[test]
fn a_corrupt_tensor_is_named_and_the_shard_is_never_leased_again() {
    let f = fixture(64 * MIB);
    let (file, ..) = model();
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    drop(f.manager.lease(&shard, LeasePolicy::Full).unwrap());
    let big_start = file.len() as u64 - 2000 - 5 * LEAF;
    let flip = big_start + 3 * LEAF + 100;
    f.device.flip_bits(f.last_buffer(), flip, 0x10).unwrap();
    let e = f.manager.lease(&shard, LeasePolicy::Full).unwrap_err();
    let VramError::IntegrityViolation { tensors, .. } = &e else {
        panic!("{e}");
    };
    // The corrupt leaf straddles the tensor's bytes: named with its offsets.
    assert!(
        tensors
            .iter()
            .any(|t| t.starts_with("encoder.layer.0.weight, bytes ")
                && t.ends_with(&format!(" of {}", 5 * LEAF))),
        "{tensors:?}"
    );
    let inside = flip - big_start;
    let named = tensors
        .iter()
        .find(|t| t.starts_with("encoder"))
        .unwrap()
        .split("bytes ")
        .nth(1)
        .unwrap()
        .split(" of")
        .next()
        .unwrap()
        .split("..")
        .map(|n| n.parse::<u64>().unwrap())
        .collect::<Vec<_>>();
    assert!(
        named[0] <= inside && inside < named[1],
        "{named:?} {inside}"
    );
    assert!(e.to_string().contains("encoder.layer.0.weight"), "{e}");
    assert!(shard.is_compromised());
    let again = f.manager.lease(&shard, LeasePolicy::Full).unwrap_err();
    assert!(matches!(again, VramError::Compromised { .. }), "{again}");
    assert_eq!(f.audit_count("lease_refused"), 2);
    assert_eq!(f.audit_count("seal_verification_failed"), 1, "found once");
    let failed = f
        .audit_lines()
        .into_iter()
        .find(|l| l.contains("seal_verification_failed"))
        .unwrap();
    assert!(failed.contains("encoder.layer.0.weight"), "{failed}");
    let m = f.manager.metrics();
    assert_eq!((m.leases_granted, m.leases_refused), (1, 2));
}

/// A header altered in memory before the first lease: the header leaves are
/// checked before the table is believed, and the shard is refused.
#[test]
fn an_altered_header_is_caught_before_it_is_parsed() {
    let f = fixture(64 * MIB);
    let (file, ..) = model();
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    // Point the big tensor somewhere else: a digit of its offsets changes.
    let at = file.windows(3).position(|w| w == b"[24").unwrap() as u64 + 1;
    f.device.overwrite(f.last_buffer(), at, b"0").unwrap();
    // One leaf checked at random may miss the header; its own check does not.
    let e = f
        .manager
        .lease(&shard, LeasePolicy::Sampled { leaves: 1 })
        .unwrap_err();
    let VramError::IntegrityViolation { corrupt, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(corrupt[0].leaf_index, 0, "{e}");
    assert!(shard.is_compromised());
}

/// A corrupt length prefix (the header's first 8 bytes) before the first
/// lease: those bytes are checked against the seal before they are
/// believed, so no sampled lease is granted on them, the shard is
/// compromised and the failure audited; nothing is kept from the unchecked
/// bytes, and putting them back does not make the shard leasable again.
#[test]
fn a_corrupt_length_prefix_never_gets_a_lease() {
    let f = fixture(64 * MIB);
    let (file, ..) = model();
    for (round, bad) in [u64::MAX / 2 + 72, 7, 1 << 40, 0]
        .into_iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let shard = f
            .manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
            .unwrap();
        f.device
            .overwrite(f.last_buffer(), 0, &bad.to_le_bytes())
            .unwrap();
        let e = f
            .manager
            .lease(&shard, LeasePolicy::Sampled { leaves: 1 })
            .unwrap_err();
        let VramError::IntegrityViolation { corrupt, .. } = &e else {
            panic!("round {round}: {e}");
        };
        assert_eq!(corrupt.len(), 1, "{e}");
        assert_eq!(corrupt[0].leaf_index, 0, "{e}");
        assert!(shard.is_compromised());
        assert_eq!(f.audit_count("seal_verification_failed"), round + 1);
        assert_eq!(f.audit_count("lease_refused"), 2 * round + 1);
        // The bytes put back: still refused, as compromised, not as a
        // header of 9223372036854775880 bytes.
        f.device.overwrite(f.last_buffer(), 0, &file[..8]).unwrap();
        let again = f.manager.lease(&shard, LeasePolicy::Full).unwrap_err();
        assert!(matches!(again, VramError::Compromised { .. }), "{again}");
        shard.release().unwrap();
    }
    assert_eq!(f.manager.metrics().leases_granted, 0);
}

/// A sample draws leaves with replacement: a corrupt leaf drawn twice is
/// still one corrupt range, in the error and in the audit record, sorted.
#[test]
fn a_sampled_refusal_names_each_corrupt_range_once() {
    let f = fixture_with(64 * MIB, vram_crypto::LeafSize::new(4096).unwrap());
    let bytes = pattern(32 * 4096, 9);
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes))
        .unwrap();
    for leaf in 0..32u64 {
        f.device
            .flip_bits(f.last_buffer(), leaf * 4096 + 7, 0x01)
            .unwrap();
    }
    // 31 draws among 32 leaves: some leaf is drawn twice, all but surely.
    let e = f
        .manager
        .lease(&shard, LeasePolicy::Sampled { leaves: 31 })
        .unwrap_err();
    let VramError::IntegrityViolation { corrupt, .. } = &e else {
        panic!("{e}");
    };
    let indices: Vec<u64> = corrupt.iter().map(|r| r.leaf_index).collect();
    let mut unique = indices.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(indices, unique, "each range once, in order: {e}");
    assert!(e
        .to_string()
        .contains(&format!("{} corrupt range(s)", unique.len())));
    let failed = f
        .audit_lines()
        .into_iter()
        .find(|l| l.contains("\"type\":\"seal_verification_failed\""))
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&failed).unwrap();
    let audited: Vec<u64> = record
        .pointer("/event/corrupt_ranges")
        .or_else(|| record.get("corrupt_ranges"))
        .and_then(|v| v.as_array())
        .unwrap_or_else(|| panic!("no corrupt_ranges in {failed}"))
        .iter()
        .map(|r| r["start"].as_u64().unwrap() / 4096)
        .collect();
    assert_eq!(audited, unique, "{failed}");
}

#[test]
fn a_hostile_header_gives_no_tensors_but_the_bytes_still_lease() {
    let f = fixture(64 * MIB);
    let overlapping = {
        let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(&[0; 24]);
        v
    };
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&overlapping),
        )
        .unwrap();
    let lease = f.manager.lease(&shard, LeasePolicy::Full).unwrap();
    let e = lease.tensors().unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert_eq!(lease.host_bytes().unwrap().len(), overlapping.len());
}

#[test]
fn a_recent_full_verification_is_reused_and_an_old_one_is_not() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern((16 * LEAF) as usize, 3)),
        )
        .unwrap();
    let recent = LeasePolicy::RecentFull {
        max_age: Duration::from_secs(3600),
        leaves: 2,
    };
    // Never fully verified: this lease runs the full verification.
    let first = f.manager.lease(&shard, recent).unwrap();
    assert_eq!(first.verification().policy, VerifyPolicy::Full);
    drop(first);
    let next = f.manager.lease(&shard, recent).unwrap();
    assert_eq!(
        next.verification().policy,
        VerifyPolicy::Sampled { leaves: 2 }
    );
    drop(next);
    // An explicit full verification counts too; a zero age never does.
    f.manager.verify_with(&shard, VerifyPolicy::Full).unwrap();
    let stale = LeasePolicy::RecentFull {
        max_age: Duration::ZERO,
        leaves: 2,
    };
    std::thread::sleep(Duration::from_millis(2));
    let l = f.manager.lease(&shard, stale).unwrap();
    assert_eq!(l.verification().policy, VerifyPolicy::Full);
}

#[test]
fn a_scrubber_sweep_counts_as_a_full_verification() {
    let f = fixture(64 * MIB);
    let shard = Arc::new(
        f.manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern((8 * LEAF) as usize, 3)),
            )
            .unwrap(),
    );
    let scrubber =
        Scrubber::start(&f.manager, &[Arc::clone(&shard)], ScrubConfig::new(1 << 30)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scrubber.stats().sweeps == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    scrubber.stop();
    let l = f
        .manager
        .lease(
            &shard,
            LeasePolicy::RecentFull {
                max_age: Duration::from_secs(3600),
                leaves: 1,
            },
        )
        .unwrap();
    assert_eq!(l.verification().policy, VerifyPolicy::Sampled { leaves: 1 });
}

/// Eight threads lease and read one shard while a scrubber sweeps it; a bit
/// flipped meanwhile stops every later lease.
#[test]
fn eight_threads_lease_while_the_scrubber_runs() {
    let f = fixture(64 * MIB);
    let (file, _, big, _) = model();
    let shard = Arc::new(
        f.manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
            .unwrap(),
    );
    let scrubber =
        Scrubber::start(&f.manager, &[Arc::clone(&shard)], ScrubConfig::new(1 << 30)).unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (m, shard, big, served, refused) = (&f.manager, &shard, &big, &served, &refused);
            s.spawn(move || {
                while !refused.load(Ordering::Acquire) {
                    match m.lease(shard, LeasePolicy::Sampled { leaves: 2 }) {
                        Ok(lease) => {
                            let all = lease.tensors().unwrap();
                            let t = all.get("encoder.layer.0.weight").unwrap();
                            // A lease's view is the sealed bytes, or the
                            // corruption was flipped after it was granted.
                            let _ = t.host_bytes().unwrap() == &big[..];
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e,
                                    VramError::IntegrityViolation { .. }
                                        | VramError::Compromised { .. }
                                ),
                                "{e}"
                            );
                            refused.store(true, Ordering::Release);
                        }
                    }
                }
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while served.load(Ordering::Relaxed) < 200 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(
            served.load(Ordering::Relaxed) >= 200,
            "the threads stopped serving"
        );
        let buffer = f.last_buffer();
        f.device
            .flip_bits(buffer, file.len() as u64 - 3000, 1)
            .unwrap();
    });
    scrubber.stop();
    assert!(shard.is_compromised());
    let e = f.manager.lease(&shard, LeasePolicy::Full).unwrap_err();
    assert!(matches!(e, VramError::Compromised { .. }), "{e}");
    assert!(f.manager.metrics().leases_refused >= 1);
}

/// Shards too short for a safetensors length prefix, or holding one that
/// is not a header, are leased (their bytes are sealed bytes) and say why
/// they have no tensors.
#[test]
fn short_and_headerless_shards_lease_without_tensors() {
    let f = fixture(64 * MIB);
    let short = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&[1, 2, 3, 4, 5]),
        )
        .unwrap();
    let lease = f.manager.lease(&short, LeasePolicy::Full).unwrap();
    assert_eq!(&*lease.host_bytes().unwrap(), &[1, 2, 3, 4, 5]);
    let e = lease.tensors().unwrap_err().to_string();
    assert!(
        e.contains("shorter than a safetensors length prefix"),
        "{e}"
    );
    // Exactly the prefix: a header of 0 bytes, which is no JSON object.
    let prefix = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&[0; 8]))
        .unwrap();
    let lease = f.manager.lease(&prefix, LeasePolicy::Full).unwrap();
    let e = lease.tensors().unwrap_err().to_string();
    assert!(!e.contains("shorter than"), "{e}");
    assert!(e.contains("JSON"), "{e}");
}

#[test]
fn a_full_verification_detects_any_corruption_and_nothing_else() {
    assert_eq!(VerifyPolicy::Full.detection_probability(0.0), 0.0);
    assert_eq!(VerifyPolicy::Full.detection_probability(1e-9), 1.0);
    assert_eq!(
        VerifyPolicy::FullHostReadback.detection_probability(0.0),
        0.0
    );
    assert_eq!(
        VerifyPolicy::Sampled { leaves: 4 }.detection_probability(0.0),
        0.0
    );
}
