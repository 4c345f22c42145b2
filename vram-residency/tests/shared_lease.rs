//! Leases that own what they lease (`lease_shared`, `lease_model_shared`):
//! the same verification and refusal as a borrowed lease, and no read
//! through a handle once the lease has ended.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

mod common;
use common::*;
use std::sync::Arc;
use vram_residency::{
    LeasePolicy, ModelRef, SealRequest, SealSource, SnapshotRequest, TensorMemory, VramError,
};

const LEAF: u64 = 64 * 1024;

fn file() -> (Vec<u8>, Vec<u8>) {
    let big = pattern((3 * LEAF) as usize, 2);
    let file = safetensors(&[
        ("a.weight", "F32", &[2, 3], pattern(24, 1)),
        ("b.weight", "U8", &[3 * LEAF], big.clone()),
    ]);
    (file, big)
}

#[test]
fn a_handle_reads_the_sealed_bytes_while_its_lease_is_open_and_never_after() {
    let f = fixture(64 * MIB);
    let (bytes, big) = file();
    let shard = Arc::new(
        f.manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes))
            .unwrap(),
    );
    let lease = f.manager.lease_shared(&shard, LeasePolicy::Full).unwrap();
    assert_eq!(lease.verification().bytes_checked, bytes.len() as u64);
    let handle = lease.handle();
    assert!(handle.is_open());
    assert_eq!(handle.with_host_bytes(<[u8]>::to_vec).unwrap(), bytes);
    let b = handle
        .with_tensors(|t| match t.get("b.weight").unwrap().memory() {
            TensorMemory::Host(b) => b.to_vec(),
            other => panic!("the mock's memory is host memory: {other:?}"),
        })
        .unwrap();
    assert_eq!(b, big);

    // A handle kept past its lease (a model kept past its request) reads nothing.
    let kept = handle.clone();
    drop(lease);
    assert!(!kept.is_open());
    let e = kept.with_host_bytes(|b| b.len()).unwrap_err();
    assert!(matches!(e, VramError::LeaseEnded { .. }), "{e}");
    assert!(e.to_string().contains(shard.shard_id().as_str()), "{e}");
    let e = kept.with_tensors(|t| t.names().count()).unwrap_err();
    assert!(matches!(e, VramError::LeaseEnded { .. }), "{e}");
    // The shard is still alive and trusted: a new lease reads it again.
    let again = f.manager.lease_shared(&shard, LeasePolicy::Full).unwrap();
    assert_eq!(
        again.handle().with_host_bytes(|b| b.len()).unwrap(),
        bytes.len()
    );
}

#[test]
fn a_shared_lease_is_refused_with_the_tensor_named_like_a_borrowed_one() {
    let f = fixture(64 * MIB);
    let (bytes, _) = file();
    let shard = Arc::new(
        f.manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&bytes))
            .unwrap(),
    );
    let open = f.manager.lease_shared(&shard, LeasePolicy::Full).unwrap();
    let flip = bytes.len() as u64 - LEAF - 10;
    drop(open);
    f.device.flip_bits(f.last_buffer(), flip, 0x01).unwrap();
    let e = f
        .manager
        .lease_shared(&shard, LeasePolicy::Full)
        .unwrap_err();
    assert!(matches!(e, VramError::IntegrityViolation { .. }), "{e}");
    assert!(e.to_string().contains("b.weight"), "{e}");
    assert!(shard.is_compromised());
}

#[test]
fn a_shared_model_lease_finds_each_tensor_in_its_shard_and_ends_all_of_them() {
    let f = fixture(64 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let one = safetensors(&[("x.weight", "F32", &[4], pattern(16, 1))]);
    let two = safetensors(&[("y.weight", "U8", &[LEAF], pattern(LEAF as usize, 2))]);
    std::fs::write(dir.path().join("model-00001-of-00002.safetensors"), &one).unwrap();
    std::fs::write(dir.path().join("model-00002-of-00002.safetensors"), &two).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        br#"{"metadata":{},"weight_map":{"x.weight":"model-00001-of-00002.safetensors","y.weight":"model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let request = SnapshotRequest::new(dir.path(), ModelRef::new("test/two").unwrap(), 0);
    let model = Arc::new(f.manager.seal_model(&request).unwrap());
    let lease = f
        .manager
        .lease_model_shared(&model, LeasePolicy::Sampled { leaves: 2 })
        .unwrap();
    assert_eq!(lease.handles().len(), 2);
    let (leaves, _, _) = lease.verification_cost();
    assert!(leaves >= 2, "{leaves}");
    let y = lease.handle_of("y.weight").unwrap().clone();
    assert_eq!(y.shard().shard_id(), model.shards()[1].shard_id());
    assert_eq!(y.with_host_bytes(<[u8]>::to_vec).unwrap(), two);
    let e = lease.handle_of("z.weight").unwrap_err();
    assert!(matches!(e, VramError::UnknownTensor { .. }), "{e}");
    lease.end();
    let e = y.with_host_bytes(|b| b.len()).unwrap_err();
    assert!(matches!(e, VramError::LeaseEnded { .. }), "{e}");
    drop(lease);
    drop(y);
    Arc::try_unwrap(model).unwrap().release().unwrap();
}
