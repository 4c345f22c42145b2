//! Seal format v2: a seal says what it is for (device kind, device UUID,
//! worker, set), and v1 handles still verify, as version 1.
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
use vram_crypto::{sign_seal, LeafSize, SealMessage, SEAL_FORMAT_V1};
use vram_residency::{ModelShardHandle, VramConfig, VramError, VramManager};
use vram_residency::{SealRequest, SealSource, ShardSet};
use vram_validation::ModelRef;

fn cuda_manager(uuid: [u8; 16]) -> VramManager {
    let device = LooksLikeCuda::device(64 * MIB, Some(uuid));
    VramManager::new(
        VramConfig::builder(secret())
            .device(device)
            .leaf_size(LeafSize::new(64 * 1024).unwrap())
            .build(),
    )
    .unwrap()
}

/// Before v2, a handle sealed on the mock passed `check_handle` on a worker
/// whose device 0 is a GPU (same secret): nothing in the seal said "mock".
#[test]
fn a_mock_seal_does_not_pass_for_one_made_in_vram() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap();
    let handle = shard.handle();
    assert_eq!(handle.seal_version, 2);
    assert_eq!(handle.device_kind.as_deref(), Some("mock"));
    assert_eq!(handle.device_uuid, None, "the mock has no UUID");
    assert!(handle.worker_id.is_some());
    assert_eq!(handle.set_id.as_ref().map(String::len), Some(32));
    assert_eq!(f.manager.check_handle(&handle).unwrap(), 2);

    let gpu = cuda_manager([0x42; 16]);
    assert!(
        matches!(
            gpu.check_handle(&handle),
            Err(VramError::WrongDevice { device: 0, .. })
        ),
        "{:?}",
        gpu.check_handle(&handle)
    );
    // Relabelling the handle breaks its tag.
    let mut relabelled = handle.clone();
    relabelled.device_kind = Some("cuda".into());
    assert!(matches!(
        gpu.check_handle(&relabelled),
        Err(VramError::SealInvalid { .. })
    ));
    relabelled.device_uuid = Some("42".repeat(16));
    assert!(matches!(
        gpu.check_handle(&relabelled),
        Err(VramError::SealInvalid { .. })
    ));
}

/// A handle names its GPU by UUID: another GPU at the same index refuses it.
#[test]
fn a_cuda_seal_names_its_device_uuid() {
    let a = cuda_manager([0xaa; 16]);
    let shard = a
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 2)),
        )
        .unwrap();
    let handle = shard.handle();
    assert_eq!(handle.device_kind.as_deref(), Some("cuda"));
    assert_eq!(handle.device_uuid, Some("aa".repeat(16)));
    assert_eq!(a.check_handle(&handle).unwrap(), 2);
    a.verify_handle(&handle, &shard).unwrap();
    let b = cuda_manager([0xbb; 16]);
    assert!(matches!(
        b.check_handle(&handle),
        Err(VramError::WrongDevice { .. })
    ));
    // Every v2 field is covered by the tag, and must be in canonical form.
    let edits: [fn(&mut ModelShardHandle); 6] = [
        |h| h.worker_id = Some("other".into()),
        |h| h.set_id = Some("00".repeat(16)),
        |h| h.set_id = h.set_id.as_ref().map(|s| s.to_uppercase()),
        |h| h.device_uuid = None,
        |h| h.seal_version = 1,
        |h| h.seal_version = 3,
    ];
    for edit in edits {
        let mut h = handle.clone();
        edit(&mut h);
        assert!(
            matches!(a.check_handle(&h), Err(VramError::SealInvalid { .. })),
            "{h:?}"
        );
    }
    let json = serde_json::to_string(&handle).unwrap();
    let back: ModelShardHandle = serde_json::from_str(&json).unwrap();
    assert_eq!(back, handle);
}

/// A handle written before v2 (no version, none of the new fields) still
/// verifies, and says it is version 1.
#[test]
fn v1_handles_still_verify_as_v1() {
    let f = fixture(64 * MIB);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 3)),
        )
        .unwrap();
    let tree = shard.tree_digest();
    let msg = SealMessage {
        shard_id: shard.shard_id().as_str(),
        model_ref: shard.model_ref().as_str(),
        device_index: 0,
        byte_len: shard.vram_bytes(),
        tree,
        sealed_at_ns: shard.sealed_at_ns(),
        shard_index: 0,
        shard_total: 1,
        key_id: *shard.key_id().as_bytes(),
        binding: None,
    };
    let tag = sign_seal(secret().seal_key().expose_secret(), &msg).unwrap();
    let json = format!(
        r#"{{"shard_id":"{}","gpu_device":0,"vram_bytes":{},"digest":"{}","leaf_size":{},"sealed_at":"{}","model_ref":"{}","shard_index":0,"shard_total":1,"key_id":"{}","signature":"{}"}}"#,
        shard.shard_id(),
        shard.vram_bytes(),
        tree.root,
        tree.descriptor.leaf_size.bytes(),
        shard.sealed_at_ns(),
        shard.model_ref(),
        shard.key_id(),
        tag
    );
    let v1: ModelShardHandle = serde_json::from_str(&json).unwrap();
    assert_eq!(v1.seal_version, SEAL_FORMAT_V1);
    // It binds no device, worker or set: refused unless the caller asks.
    assert!(
        matches!(
            f.manager.check_handle(&v1),
            Err(VramError::UnboundHandle { .. })
        ),
        "{:?}",
        f.manager.check_handle(&v1)
    );
    assert!(matches!(
        f.manager.check_handle_set(std::slice::from_ref(&v1)),
        Err(VramError::UnboundHandle { .. })
    ));
    assert!(f.manager.verify_handle(&v1, &shard).is_err());
    assert_eq!(f.manager.check_handle_allow_v1(&v1).unwrap(), 1);
    // Written back, a v1 handle stays v1 (no new fields appear).
    let again = serde_json::to_string(&v1).unwrap();
    assert!(
        !again.contains("set_id") && !again.contains("device_kind"),
        "{again}"
    );
    // v2 fields added to a v1 handle are refused, not ignored.
    let mut mixed = v1.clone();
    mixed.worker_id = Some("w".into());
    assert!(matches!(
        f.manager.check_handle_allow_v1(&mixed),
        Err(VramError::SealInvalid { .. })
    ));
    // Even accepted, a v1 handle must name a device this worker has.
    let mut elsewhere = v1.clone();
    elsewhere.gpu_device = 1;
    let msg = SealMessage {
        device_index: 1,
        ..msg
    };
    elsewhere.signature = sign_seal(secret().seal_key().expose_secret(), &msg)
        .unwrap()
        .to_string();
    assert!(matches!(
        f.manager.check_handle_allow_v1(&elsewhere),
        Err(VramError::UnknownDevice { index: 1, .. })
    ));
}

/// Two sealings of one model are two sets: their shards never pass as one,
/// in memory (`verify_set`) or as handles (`check_handle_set`). Before v2,
/// handles of different sealings with matching positions passed as one set.
#[test]
fn shards_of_different_sets_do_not_mix() {
    let f = fixture(64 * MIB);
    let model = ModelRef::new("org/model@v1").unwrap();
    let (p0, p1) = (pattern(70_000, 4), pattern(70_000, 5));
    let parts: [&[u8]; 2] = [&p0, &p1];
    let seal_set = || -> ShardSet {
        SealRequest::for_set(&model, &[0, 0])
            .unwrap()
            .iter()
            .zip(parts)
            .map(|(r, p)| f.manager.seal(r, SealSource::Bytes(p)))
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let a = seal_set();
    let b = seal_set();
    let (a0, a1) = (&a.shards()[0], &a.shards()[1]);
    let b1 = &b.shards()[1];
    assert_eq!(a0.set_id(), a1.set_id());
    assert_ne!(a0.set_id(), b1.set_id());
    f.manager.verify_set(&a).unwrap();

    assert_eq!(
        f.manager
            .check_handle_set(&[a0.handle(), a1.handle()])
            .unwrap(),
        2
    );
    let mixed = [a0.handle(), b1.handle()];
    // Each handle is authentic on its own...
    for h in &mixed {
        f.manager.check_handle(h).unwrap();
    }
    // ...but not as one set.
    assert!(matches!(
        f.manager.check_handle_set(&mixed),
        Err(VramError::InvalidShardSet { .. })
    ));
    assert!(matches!(
        f.manager.check_handle_set(&[]),
        Err(VramError::InvalidShardSet { .. })
    ));
    // Lone shards each get a set of their own.
    let x = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&p0))
        .unwrap();
    let y = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&p0))
        .unwrap();
    assert_ne!(x.set_id(), y.set_id());
}

fn mock_manager(devices: u32, worker: &str) -> VramManager {
    let devices = (0..devices)
        .map(|i| {
            let d: std::sync::Arc<dyn vram_core::Device> = vram_mock::MockDevice::new(i, 64 * MIB);
            d
        })
        .collect();
    VramManager::new(
        VramConfig::builder(secret())
            .devices(devices)
            .worker_id(worker)
            .leaf_size(LeafSize::new(64 * 1024).unwrap())
            .build(),
    )
    .unwrap()
}

/// A handle sealed on device 1 of a two-device worker, shown to a worker
/// with one device under the same secret: the index it names is not there,
/// so it is refused (it was accepted, as version 2, when the device check
/// ran only where the worker had a device of that index).
#[test]
fn a_handle_naming_a_device_the_worker_lacks_is_refused() {
    let two = mock_manager(2, "w");
    let shard = two
        .seal(
            &SealRequest::inline(1).unwrap(),
            SealSource::Bytes(&pattern(100_000, 6)),
        )
        .unwrap();
    let handle = shard.handle();
    assert_eq!(two.check_handle(&handle).unwrap(), 2);
    let one = mock_manager(1, "w");
    let e = one.check_handle(&handle).unwrap_err();
    assert!(
        matches!(e, VramError::UnknownDevice { index: 1, count: 1 }),
        "{e}"
    );
    assert!(one.check_handle_allow_v1(&handle).is_err());
    assert!(one.check_handle_set(std::slice::from_ref(&handle)).is_err());
}

/// The worker id a v2 handle binds is compared: another worker under the
/// same secret, on the same kind of device, refuses it.
#[test]
fn a_handle_sealed_by_another_worker_is_refused() {
    let a = mock_manager(1, "worker-a");
    let shard = a
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 7)),
        )
        .unwrap();
    let handle = shard.handle();
    assert_eq!(a.check_handle(&handle).unwrap(), 2);
    a.verify_handle(&handle, &shard).unwrap();
    let b = mock_manager(1, "worker-b");
    for result in [
        b.check_handle(&handle),
        b.check_handle_allow_v1(&handle),
        b.check_handle_set(std::slice::from_ref(&handle)),
    ] {
        assert!(
            matches!(result, Err(VramError::WrongWorker { .. })),
            "{result:?}"
        );
    }
    assert!(matches!(
        b.verify_handle(&handle, &shard),
        Err(VramError::WrongWorker { .. })
    ));
}
