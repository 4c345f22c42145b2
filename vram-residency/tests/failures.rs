//! Failure injection: every failure leaves zero capacity used, zero live device
//! allocations, and an audit record (or a reported audit failure).
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
use vram_audit::AuditSink;
use vram_residency::SealSource;
use vram_residency::{ErrorClass, SealRequest, VramError};
use vram_validation::{ModelRef, Sha256Hex};

fn request() -> SealRequest {
    SealRequest::new(ModelRef::new("test:model").unwrap(), 0)
}

#[test]
fn allocation_failure_is_retriable_audited_and_leaves_nothing() {
    let f = fixture(64 * MIB);
    f.device.fail_next_allocs(1);
    let err = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap_err();
    assert!(matches!(err, VramError::AllocationFailed { .. }), "{err}");
    assert!(err.is_retriable());
    f.assert_no_leaks();
    assert_eq!(f.audit_count("vram_allocation_failed"), 1);
    assert_eq!(f.audit_count("seal_failed"), 1);
    // The next attempt succeeds.
    f.manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap();
}

#[test]
fn write_failure_mid_seal_releases_everything() {
    let f = fixture(64 * MIB);
    f.device.fail_write_at(300_000);
    let err = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(1_000_000, 2)),
        )
        .unwrap_err();
    assert!(matches!(err, VramError::Device { .. }), "{err}");
    f.assert_no_leaks();
    assert_eq!(f.audit_count("seal_failed"), 1);
}

#[test]
fn expected_sha256_mismatch_is_fatal_and_leaves_nothing() {
    let f = fixture(64 * MIB);
    let mut req = request();
    req.expected_sha256 = Some(Sha256Hex::new(&"ab".repeat(32)).unwrap());
    let err = f
        .manager
        .seal(&req, SealSource::Bytes(&pattern(50_000, 3)))
        .unwrap_err();
    assert!(matches!(err, VramError::DigestMismatch { .. }), "{err}");
    assert!(err.is_fatal());
    f.assert_no_leaks();
    assert_eq!(f.audit_count("seal_failed"), 1);
}

#[test]
fn expected_sha256_match_seals() {
    let f = fixture(64 * MIB);
    let data = pattern(70_000, 4);
    let hex = vram_crypto::sha256(&data).to_string();
    let mut req = request();
    req.expected_sha256 = Some(Sha256Hex::new(&hex.to_uppercase()).unwrap());
    let s = f.manager.seal(&req, SealSource::Bytes(&data)).unwrap();
    assert_eq!(s.plain_sha256().unwrap().to_string(), hex);
}

#[test]
fn audit_failure_under_fail_closed_refuses_the_seal() {
    let f = fixture_fail_closed(64 * MIB);
    f.audit.set_failing(true);
    let err = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 5)),
        )
        .unwrap_err();
    assert!(matches!(err, VramError::Audit(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Environment);
    f.audit.set_failing(false);
    f.assert_no_leaks();
    // A verification whose success cannot be recorded is refused as well.
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 5)),
        )
        .unwrap();
    f.audit.set_failing(true);
    assert!(matches!(
        f.manager.verify_sealed(&shard),
        Err(VramError::Audit(_))
    ));
    f.audit.set_failing(false);
    drop(shard);
    f.assert_no_leaks();
}

#[test]
fn audit_failure_under_best_effort_is_counted_and_the_seal_proceeds() {
    let f = fixture(64 * MIB);
    f.audit.set_failing(true);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 5)),
        )
        .unwrap();
    f.audit.set_failing(false);
    assert!(
        f.audit.stats().failures > 0,
        "best-effort failures must be counted"
    );
    drop(shard);
    f.assert_no_leaks();
}

#[test]
fn short_and_long_readers_are_refused() {
    let f = fixture(64 * MIB);
    let data = pattern(10_000, 6);
    let err = f
        .manager
        .seal(
            &request(),
            SealSource::Reader {
                reader: &mut &data[..],
                len: 20_000,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VramError::LengthMismatch {
                announced: 20_000,
                read: 10_000
            }
        ),
        "{err}"
    );
    let err = f
        .manager
        .seal(
            &request(),
            SealSource::Reader {
                reader: &mut &data[..],
                len: 5_000,
            },
        )
        .unwrap_err();
    assert!(matches!(err, VramError::LengthMismatch { .. }), "{err}");
    f.assert_no_leaks();
}

#[test]
fn reader_io_error_is_an_environment_error() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let f = fixture(64 * MIB);
    let err = f
        .manager
        .seal(
            &request(),
            SealSource::Reader {
                reader: &mut Broken,
                len: 1000,
            },
        )
        .unwrap_err();
    assert!(matches!(err, VramError::Io { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Environment);
    f.assert_no_leaks();
}

#[test]
fn unknown_device_and_oversized_model_are_invalid_input() {
    let f = fixture(64 * MIB);
    let err = f
        .manager
        .seal(
            &SealRequest::inline(7).unwrap(),
            SealSource::Bytes(&[1, 2, 3]),
        )
        .unwrap_err();
    assert!(
        matches!(err, VramError::UnknownDevice { index: 7, count: 1 }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::InvalidInput);
    f.assert_no_leaks();
}

#[test]
fn policy_violation_refuses_the_device() {
    use std::sync::Arc;
    use vram_core::{Device, DeviceAttributes};
    let device = vram_mock::MockDevice::builder()
        .capacity(64 * MIB)
        .attributes(DeviceAttributes {
            integrated: true,
            ..DeviceAttributes::default()
        })
        .build();
    let dynamic: Arc<dyn Device> = device;
    let cfg = vram_residency::VramConfig::builder(secret())
        .device(dynamic)
        .build();
    let err = vram_residency::VramManager::new(cfg).unwrap_err();
    assert!(matches!(err, VramError::PolicyViolation(_)), "{err}");
    assert!(err.is_fatal());
    assert!(err.to_string().contains("integrated"), "{err}");
}

#[test]
fn invalid_configuration_fails_fast() {
    use vram_residency::{VerifyPolicy, VramConfig, VramManager};
    let bad = [
        VramConfig::builder(secret()).max_model_bytes(0).build(),
        VramConfig::builder(secret()).worker_id("bad id\n").build(),
        VramConfig::builder(secret()).staging_bytes(10).build(),
        VramConfig::builder(secret())
            .verify_policy(VerifyPolicy::Sampled { leaves: 0 })
            .build(),
        VramConfig::builder(secret()).devices(Vec::new()).build(),
    ];
    for cfg in bad {
        let err = VramManager::new(cfg).unwrap_err();
        assert!(matches!(err, VramError::InvalidConfig { .. }), "{err}");
    }
}
