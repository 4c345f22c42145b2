//! Security scenarios: forged tags, altered handles, corrupted device memory at
//! the edges, and secrets or addresses never reaching output.
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
use vram_residency::{SealRequest, SealSource};
use vram_residency::{VerifyPolicy, VramError};

const LEAF: u64 = 64 * 1024;

fn corrupt_and_expect(offset: u64) {
    let f = fixture(64 * MIB);
    let len = 5 * LEAF as usize + 123;
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(len, 7)),
        )
        .unwrap();
    f.device.flip_bits(f.last_buffer(), offset, 0x80).unwrap();
    let err = f.manager.verify_sealed(&shard).unwrap_err();
    assert!(matches!(err, VramError::IntegrityViolation { .. }), "{err}");
    assert!(err.is_fatal());
    let ranges = err.corrupt_ranges();
    assert_eq!(ranges.len(), 1, "exactly one leaf is corrupt: {ranges:?}");
    let r = &ranges[0];
    assert!(r.start <= offset && offset < r.end, "{offset} not in {r:?}");
    assert_eq!(r.leaf_index, offset / LEAF);
    assert_eq!(f.audit_count("seal_verification_failed"), 1);
    let line = f
        .audit_lines()
        .into_iter()
        .find(|l| l.contains("seal_verification_failed"))
        .unwrap();
    assert!(line.contains(&format!("\"start\":{}", r.start)), "{line}");
    assert_eq!(f.manager.metrics().verifications_failed, 1);
}

#[test]
fn corruption_at_the_first_byte_is_found() {
    corrupt_and_expect(0);
}

#[test]
fn corruption_at_the_last_byte_is_found() {
    corrupt_and_expect(5 * LEAF + 122);
}

#[test]
fn corruption_at_a_leaf_boundary_is_found_on_the_right_side() {
    corrupt_and_expect(2 * LEAF - 1);
    corrupt_and_expect(2 * LEAF);
}

#[test]
fn sampling_every_leaf_finds_corruption_too() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(4 * LEAF as usize, 1)),
        )
        .unwrap();
    f.device
        .flip_bits(f.last_buffer(), 3 * LEAF + 5, 1)
        .unwrap();
    // With many samples over 4 leaves, the corrupt one is drawn (1 - (3/4)^200).
    let err = f
        .manager
        .verify_with(&shard, VerifyPolicy::Sampled { leaves: 200 })
        .unwrap_err();
    assert_eq!(err.corrupt_ranges()[0].leaf_index, 3);
}

#[test]
fn forged_signature_in_a_handle_is_refused() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(10_000, 1)),
        )
        .unwrap();
    let mut h = shard.handle();
    let mut sig: Vec<char> = h.signature.chars().collect();
    sig[10] = if sig[10] == '0' { '1' } else { '0' };
    h.signature = sig.into_iter().collect();
    assert!(matches!(
        f.manager.check_handle(&h),
        Err(VramError::SealInvalid { .. })
    ));
    assert!(f.manager.verify_handle(&h, &shard).is_err());
    f.manager.verify_handle(&shard.handle(), &shard).unwrap();
}

#[test]
fn a_handle_from_another_worker_key_is_refused() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(10_000, 1)),
        )
        .unwrap();
    let other = {
        let device = vram_mock::MockDevice::new(0, 64 * MIB);
        let dynamic: std::sync::Arc<dyn vram_core::Device> = device;
        let secret = vram_secrets::WorkerSecret::generate_ephemeral().unwrap();
        vram_residency::VramManager::new(
            vram_residency::VramConfig::builder(secret)
                .device(dynamic)
                .build(),
        )
        .unwrap()
    };
    assert!(other.check_handle(&shard.handle()).is_err());
    assert!(other.verify_sealed(&shard).is_err());
}

#[test]
fn verification_rereads_device_memory() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(1_000_000, 1)),
        )
        .unwrap();
    let before = f.device.bytes_read();
    f.manager.verify_sealed(&shard).unwrap();
    assert_eq!(f.device.bytes_read() - before, 1_000_000);
}

/// The measured detection rate of sampled verification matches 1 - (1 - f)^k:
/// 8 leaves, 1 corrupt (f = 1/8), k = 1, 4,000 calls. The expected rate is
/// 0.125 with a standard deviation of about 0.0052; the bounds are 6 sigma, so
/// this fails by chance about once in 10^9 runs, while a sampler that never or
/// always hit the corrupt leaf (or hit it uniformly over half the leaves)
/// fails every time. A detection compromises the shard for good, so each one
/// is followed by a fresh, freshly corrupted shard.
#[test]
fn sampled_detection_rate_matches_the_documented_probability() {
    let f = fixture(64 * MIB);
    let corrupt_shard = || {
        let shard = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(8 * LEAF as usize, 3)),
            )
            .unwrap();
        f.device
            .flip_bits(f.last_buffer(), 5 * LEAF + 17, 1)
            .unwrap();
        shard
    };
    let mut shard = corrupt_shard();
    let calls = 4000u32;
    let mut detected = 0u32;
    for _ in 0..calls {
        match f
            .manager
            .verify_with(&shard, VerifyPolicy::Sampled { leaves: 1 })
        {
            Ok(_) => assert!(!shard.is_compromised()),
            Err(e) => {
                assert_eq!(e.corrupt_ranges()[0].leaf_index, 5);
                assert!(shard.is_compromised());
                detected += 1;
                shard = corrupt_shard();
            }
        }
    }
    let rate = f64::from(detected) / f64::from(calls);
    let expected = VerifyPolicy::Sampled { leaves: 1 }.detection_probability(1.0 / 8.0);
    assert!(
        (rate - expected).abs() < 0.032,
        "rate {rate} vs expected {expected}"
    );
}

#[test]
fn a_hostile_shard_id_in_a_handle_is_escaped_in_the_error() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(1000, 1)),
        )
        .unwrap();
    let mut h = shard.handle();
    h.shard_id = "evil\n2026-01-01 INFO forged line\u{202e}\u{0}".into();
    let err = f.manager.check_handle(&h).unwrap_err();
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && !msg.contains('\u{202e}') && !msg.contains('\0'),
        "{msg:?}"
    );
    assert!(matches!(err, VramError::SealInvalid { .. }));
}

/// A failed verification is fatal for the shard: restoring the bytes (as a
/// tamperer covering their tracks would) does not make it verify again, and
/// every later attempt is refused and audited.
#[test]
fn a_shard_that_failed_verification_never_verifies_again() {
    let f = fixture(64 * MIB);
    let data = pattern(4 * LEAF as usize, 9);
    let shard = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
        .unwrap();
    assert!(!shard.is_compromised());
    let id = f.last_buffer();
    f.device.overwrite(id, LEAF + 3, b"evil").unwrap();
    let e = f.manager.verify_sealed(&shard).unwrap_err();
    assert!(matches!(e, VramError::IntegrityViolation { .. }), "{e}");
    assert!(shard.is_compromised());
    assert!(format!("{shard:?}").contains("compromised: true"));

    // The tamperer puts the original bytes back.
    let start = (LEAF + 3) as usize;
    f.device
        .overwrite(id, LEAF + 3, &data[start..start + 4])
        .unwrap();
    for policy in [
        VerifyPolicy::Full,
        VerifyPolicy::FullHostReadback,
        VerifyPolicy::Sampled { leaves: 4 },
    ] {
        let e = f.manager.verify_with(&shard, policy).unwrap_err();
        assert!(matches!(e, VramError::Compromised { .. }), "{e}");
        assert!(e.is_fatal());
        assert!(e.to_string().contains("seal the model again"), "{e}");
    }
    assert_eq!(f.audit_count("seal_verification_failed"), 4);
    assert_eq!(f.manager.metrics().verifications_failed, 4);

    // Other shards are unaffected, and sealing the model again works.
    let again = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
        .unwrap();
    f.manager.verify_sealed(&again).unwrap();
    assert!(!again.is_compromised());
}

/// A shard handed to a manager with another key is refused as a caller's
/// mistake: it is not evidence about the bytes, so the shard stays usable with
/// the manager that sealed it.
#[test]
fn a_shard_verified_by_another_managers_key_is_refused_but_not_compromised() {
    use vram_core::Device;
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 2)),
        )
        .unwrap();
    let device: std::sync::Arc<dyn Device> = f.device.clone();
    let other = vram_residency::VramManager::new(
        vram_residency::VramConfig::builder(
            vram_secrets::WorkerSecret::generate_ephemeral().unwrap(),
        )
        .device(device)
        .build(),
    )
    .unwrap();
    let e = other.verify_sealed(&shard).unwrap_err();
    assert!(matches!(e, VramError::KeyMismatch { .. }), "{e}");
    assert_eq!(e.class(), vram_residency::ErrorClass::InvalidInput);
    assert!(!shard.is_compromised());
    f.manager.verify_sealed(&shard).unwrap();
}

/// The bytes a seal commits to are the bytes the device got: each piece of the
/// source is read once into host memory, then copied and hashed from there. A
/// source that never returns the same bytes twice (a file rewritten during the
/// seal, a hostile reader) cannot make the device hold other bytes than the
/// seal says.
#[cfg(unix)]
#[test]
fn a_source_that_changes_while_read_still_seals_exactly_what_the_device_holds() {
    struct Shifting(u64);
    impl std::io::Read for Shifting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // Every call returns fresh bytes (a counter mixed into each byte).
            self.0 += 1;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (i as u64 ^ self.0.wrapping_mul(0x9E37_79B9)) as u8;
            }
            Ok(buf.len())
        }
    }
    let f = fixture(64 * MIB);
    let req =
        vram_residency::SealRequest::new(vram_validation::ModelRef::new("test:model").unwrap(), 0);
    let len = 3 * MIB + 12_345;
    let s = f
        .manager
        .seal(
            &req,
            SealSource::Reader {
                reader: &mut std::io::Read::take(Shifting(0), len),
                len,
            },
        )
        .unwrap();
    f.manager.verify_sealed(&s).unwrap();

    // A file rewritten by another thread while it is sealed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, pattern(len as usize, 1)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            use std::os::unix::fs::FileExt;
            let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut round = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round = round.wrapping_add(1);
                w.write_all_at(&pattern(len as usize, round), 0).unwrap();
            }
        });
        for _ in 0..5 {
            let s = f.manager.seal(&req, SealSource::file(&file)).unwrap();
            f.manager.verify_sealed(&s).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
