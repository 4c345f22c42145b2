//! Seals that hash on the device ([`SealHashing::OnDevice`]) and the leaf size
//! a manager picks for its devices, on the mock: its emulated on-device
//! hashing runs the same code paths as the CUDA kernel, and its silent write
//! corruption stands for bytes damaged on their way to the device.
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
use std::io::Write;
use std::sync::Arc;
use vram_audit::{AuditKey, AuditLog, AuditSink};
use vram_core::Device;
use vram_crypto::{tree_digest, LeafSize};
use vram_mock::MockDevice;
use vram_residency::SealSource;
use vram_residency::{
    HashPath, SealHashing, SealRequest, VerifyPolicy, VramConfig, VramError, VramManager,
    CUDA_DEFAULT_LEAF_SIZE,
};
use vram_validation::ModelRef;

const LEAF: u64 = 64 * 1024;

struct Setup {
    manager: VramManager,
    device: Arc<MockDevice>,
    audit: Arc<AuditLog>,
}

fn setup(device_hashes: bool, hashing: SealHashing) -> Setup {
    let device = MockDevice::builder()
        .capacity(256 * MIB)
        .on_device_hashing(device_hashes)
        .build();
    let s = secret();
    let audit = Arc::new(
        AuditLog::in_memory(AuditKey::from_bytes(*s.audit_key().expose_secret()), "t").unwrap(),
    );
    let sink: Arc<dyn AuditSink> = audit.clone();
    let dynamic: Arc<dyn Device> = device.clone();
    let manager = VramManager::new(
        VramConfig::builder(s)
            .device(dynamic)
            .audit(sink)
            .leaf_size(LeafSize::new(LEAF).unwrap())
            .staging_bytes(256 * 1024)
            .seal_hashing(hashing)
            .build(),
    )
    .unwrap();
    Setup {
        manager,
        device,
        audit,
    }
}

fn request() -> SealRequest {
    SealRequest::new(ModelRef::new("test:device-hashing").unwrap(), 0)
}

/// An unlinked temporary file holding `bytes` (a unique name per call: the
/// tests of this binary run in parallel).
fn temp_file(bytes: &[u8]) -> std::fs::File {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("vram-device-hashing-{}-{n}", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(bytes).unwrap();
    drop(f);
    let f = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn a_seal_hashed_on_the_device_commits_to_the_reference_digest() {
    let s = setup(true, SealHashing::ON_DEVICE);
    let leaf = LeafSize::new(LEAF).unwrap();
    for len in [1usize, 4095, 65_536, 65_537, 1_000_000, 3 * 1024 * 1024 + 5] {
        let data = pattern(len, len as u8);
        let expected = tree_digest(&data, leaf);
        let from_slice = s
            .manager
            .seal(&request(), SealSource::Bytes(&data))
            .unwrap();
        assert_eq!(*from_slice.tree_digest(), expected, "slice, {len} bytes");
        let file = temp_file(&data);
        let from_file = s.manager.seal(&request(), SealSource::file(&file)).unwrap();
        assert_eq!(*from_file.tree_digest(), expected, "file, {len} bytes");
        for shard in [&from_slice, &from_file] {
            let report = s.manager.verify_with(shard, VerifyPolicy::Full).unwrap();
            assert_eq!(report.hash_path, HashPath::OnDevice);
        }
    }
    assert_eq!(s.device.live_allocations(), 0);
}

#[test]
fn with_a_plain_sha256_a_seal_hashed_on_the_device_still_checks_it() {
    let s = setup(true, SealHashing::ON_DEVICE);
    let data = pattern(500_000, 3);
    let mut req = request();
    req.compute_sha256 = true;
    let shard = s.manager.seal(&req, SealSource::Bytes(&data)).unwrap();
    assert_eq!(
        shard.plain_sha256().map(ToString::to_string),
        Some(vram_crypto::sha256(&data).to_string())
    );
    let file = temp_file(&data);
    let from_file = s.manager.seal(&req, SealSource::file(&file)).unwrap();
    assert_eq!(from_file.tree_digest(), shard.tree_digest());
}

#[test]
fn bytes_corrupted_on_the_way_to_the_device_fail_the_seal_and_leave_nothing() {
    // Every leaf cross-checked: the corrupted one cannot escape.
    let s = setup(true, SealHashing::OnDevice { cross_check: 1000 });
    let data = pattern(1_000_000, 9);
    for from_file in [false, true] {
        s.device.corrupt_next_writes(1);
        let err = if from_file {
            s.manager
                .seal(&request(), SealSource::file(&temp_file(&data)))
        } else {
            s.manager.seal(&request(), SealSource::Bytes(&data))
        }
        .unwrap_err();
        match &err {
            VramError::UploadMismatch {
                leaf, start, end, ..
            } => {
                assert_eq!(*leaf, 0, "the first write's first byte was flipped");
                assert_eq!((*start, *end), (0, LEAF));
            }
            other => panic!("expected UploadMismatch, got {other}"),
        }
        assert!(err.is_fatal());
        assert_eq!(s.device.live_allocations(), 0, "device memory leaked");
        assert_eq!(s.manager.used_vram(0), 0, "capacity leaked");
    }
    let failed = s
        .audit
        .lines()
        .iter()
        .filter(|l| l.contains("\"type\":\"seal_failed\"") && l.contains("upload_check"))
        .count();
    assert_eq!(failed, 2, "each failed seal is audited with its stage");
}

#[test]
fn a_host_seal_commits_to_the_source_and_the_first_verification_catches_the_damage() {
    let s = setup(true, SealHashing::Host);
    s.device.corrupt_next_writes(1);
    let data = pattern(1_000_000, 4);
    let shard = s
        .manager
        .seal(&request(), SealSource::Bytes(&data))
        .unwrap();
    assert_eq!(
        *shard.tree_digest(),
        tree_digest(&data, LeafSize::new(LEAF).unwrap())
    );
    let err = s
        .manager
        .verify_with(&shard, VerifyPolicy::Full)
        .unwrap_err();
    assert!(matches!(err, VramError::IntegrityViolation { .. }), "{err}");
}

#[test]
fn a_device_that_cannot_hash_falls_back_to_the_host() {
    let s = setup(false, SealHashing::ON_DEVICE);
    let data = pattern(700_000, 5);
    let expected = tree_digest(&data, LeafSize::new(LEAF).unwrap());
    let shard = s
        .manager
        .seal(&request(), SealSource::Bytes(&data))
        .unwrap();
    assert_eq!(*shard.tree_digest(), expected);
    let from_file = s
        .manager
        .seal(&request(), SealSource::file(&temp_file(&data)))
        .unwrap();
    assert_eq!(*from_file.tree_digest(), expected);
    let report = s.manager.verify_with(&shard, VerifyPolicy::Full).unwrap();
    assert_eq!(report.hash_path, HashPath::HostReadback);
}

fn default_leaf(devices: Vec<Arc<dyn Device>>) -> LeafSize {
    VramManager::new(VramConfig::builder(secret()).devices(devices).build())
        .unwrap()
        .leaf_size()
}

#[test]
fn the_default_leaf_is_64_kib_on_cuda_devices_and_1_mib_otherwise() {
    let cuda = || LooksLikeCuda::device(64 * MIB, None);
    let mock = || -> Arc<dyn Device> { MockDevice::new(0, 64 * MIB) };
    assert_eq!(CUDA_DEFAULT_LEAF_SIZE.bytes(), 64 * 1024);
    assert_eq!(default_leaf(vec![cuda()]), CUDA_DEFAULT_LEAF_SIZE);
    assert_eq!(default_leaf(vec![cuda(), cuda()]), CUDA_DEFAULT_LEAF_SIZE);
    assert_eq!(default_leaf(vec![mock()]), LeafSize::DEFAULT);
    assert_eq!(default_leaf(vec![cuda(), mock()]), LeafSize::DEFAULT);
    // An explicit leaf size always wins.
    let explicit = VramManager::new(
        VramConfig::builder(secret())
            .device(cuda())
            .leaf_size(LeafSize::new(1 << 20).unwrap())
            .build(),
    )
    .unwrap();
    assert_eq!(explicit.leaf_size().bytes(), 1 << 20);
}
