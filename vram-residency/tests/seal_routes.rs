//! The seal route is chosen from what a device reports it can do
//! (`Device::capabilities`), and every route seals the same bytes under the
//! same digest. Mock devices built with different abilities stand for the
//! backends: memory lent in place (the mock), a pipeline of its own (CUDA),
//! plain writes, each with or without on-device hashing.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use std::io::Write;
use std::sync::Arc;
use vram_core::Device;
use vram_crypto::{tree_digest, LeafSize};
use vram_mock::{MockDevice, UploadCalls};
use vram_residency::{
    HashPath, LeasePolicy, SealHashing, SealRequest, SealSource, SealedShard, VerifyPolicy,
    VramConfig, VramManager,
};
use vram_validation::ModelRef;

const LEAF: u64 = 64 * 1024;

/// Which upload method a device with these abilities must see.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    InPlace,
    Stream,
    Writes,
}

fn manager(device: &Arc<MockDevice>, hashing: SealHashing) -> VramManager {
    let dynamic: Arc<dyn Device> = device.clone();
    VramManager::new(
        VramConfig::builder(secret())
            .device(dynamic)
            .leaf_size(LeafSize::new(LEAF).unwrap())
            .staging_bytes(256 * 1024)
            .seal_hashing(hashing)
            .build(),
    )
    .unwrap()
}

fn temp_file(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

/// The bytes a shard holds, read through a full lease (the mock lends host
/// memory).
fn held(m: &VramManager, shard: &SealedShard) -> Vec<u8> {
    let lease = m.lease(shard, LeasePolicy::Full).unwrap();
    let bytes = lease.host_bytes().unwrap().to_vec();
    bytes
}

fn used(calls: UploadCalls, before: UploadCalls) -> Expect {
    let d = (
        calls.fill_in_place - before.fill_in_place,
        calls.stream_from - before.stream_from,
        calls.write_at - before.write_at,
    );
    match d {
        (f, 0, 0) if f > 0 => Expect::InPlace,
        (0, s, 0) if s > 0 => Expect::Stream,
        (0, 0, w) if w > 0 => Expect::Writes,
        other => panic!("more than one upload route in one seal: {other:?}"),
    }
}

#[test]
fn each_route_is_chosen_from_the_capabilities_and_seals_the_same_bytes() {
    let data = pattern(1_000_003, 11);
    let reference = tree_digest(&data, LeafSize::new(LEAF).unwrap());
    let plain = vram_crypto::sha256(&data).to_string();
    let devices: [(&str, Arc<MockDevice>, Expect); 3] = [
        (
            "in place",
            MockDevice::builder()
                .capacity(64 * MIB)
                .on_device_hashing(true)
                .build(),
            Expect::InPlace,
        ),
        (
            "pipeline",
            MockDevice::builder()
                .capacity(64 * MIB)
                .fill_in_place(false)
                .stream_from(true)
                .on_device_hashing(true)
                .build(),
            Expect::Stream,
        ),
        (
            "writes",
            MockDevice::builder()
                .capacity(64 * MIB)
                .fill_in_place(false)
                .on_device_hashing(true)
                .build(),
            Expect::Writes,
        ),
    ];
    let mut seals = 0;
    for (name, device, upload) in &devices {
        for hashing in [
            SealHashing::Host,
            SealHashing::OnDevice { cross_check: 1000 },
        ] {
            let m = manager(device, hashing);
            for want_plain in [false, true] {
                let mut req = SealRequest::new(ModelRef::new("test:routes").unwrap(), 0);
                req.compute_sha256 = want_plain;
                let file = temp_file(&data);
                for source_name in ["bytes", "file", "reader"] {
                    let mut reader: &[u8] = &data;
                    let source = match source_name {
                        "bytes" => SealSource::Bytes(&data),
                        "file" => SealSource::file(&file),
                        _ => SealSource::Reader {
                            reader: &mut reader,
                            len: data.len() as u64,
                        },
                    };
                    let at = format!("{name}, {hashing:?}, plain {want_plain}, {source_name}");
                    let before = device.upload_calls();
                    let shard = m.seal(&req, source).unwrap();
                    assert_eq!(used(device.upload_calls(), before), *upload, "{at}");
                    assert_eq!(*shard.tree_digest(), reference, "{at}");
                    assert_eq!(
                        shard.plain_sha256().map(ToString::to_string),
                        want_plain.then(|| plain.clone()),
                        "{at}"
                    );
                    // Every device here reports on-device hashing: a full
                    // verification asks the device.
                    let report = m.verify_with(&shard, VerifyPolicy::Full).unwrap();
                    assert_eq!(report.hash_path, HashPath::OnDevice, "{at}");
                    assert!(
                        held(&m, &shard) == data,
                        "{at}: the device holds other bytes"
                    );
                    seals += 1;
                }
            }
        }
        assert_eq!(device.live_allocations(), 0, "{name}");
    }
    assert_eq!(seals, 3 * 2 * 2 * 3);
}

/// On-device hashing is taken when, and only when, the device reports it:
/// with every leaf cross-checked, a byte corrupted on the way to the device
/// fails a seal hashed on the device, while a seal hashed on the host (the
/// device cannot hash) commits to the source and leaves the corruption to
/// the first verification.
#[test]
fn hashing_on_the_device_follows_its_capability() {
    let data = pattern(700_000, 3);
    for can_hash in [true, false] {
        let device = MockDevice::builder()
            .capacity(64 * MIB)
            .on_device_hashing(can_hash)
            .build();
        let m = manager(&device, SealHashing::OnDevice { cross_check: 1000 });
        let req = SealRequest::new(ModelRef::new("test:routes").unwrap(), 0);
        device.corrupt_next_writes(1);
        let sealed = m.seal(&req, SealSource::Bytes(&data));
        if can_hash {
            assert!(
                matches!(
                    sealed,
                    Err(vram_residency::VramError::UploadMismatch { .. })
                ),
                "{sealed:?}"
            );
        } else {
            let shard = sealed.unwrap();
            assert_eq!(
                *shard.tree_digest(),
                tree_digest(&data, LeafSize::new(LEAF).unwrap())
            );
            assert!(m.verify_with(&shard, VerifyPolicy::Full).is_err());
        }
        assert_eq!(device.upload_calls().stream_from, 0);
    }
}
