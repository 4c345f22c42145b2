//! Small public accessors and conversions, each checked for the value it must
//! give (a mutation that returns a constant or drops a case fails here).

use std::collections::HashSet;
use vram_crypto::{leaf_hashes, sha256, LeafSize, SealDeviceKind, SealTag, Sha256Digest};

#[test]
fn digests_hash_and_borrow_as_their_bytes() {
    let a = sha256(b"a");
    let b = sha256(b"b");
    assert_eq!(AsRef::<[u8]>::as_ref(&a), a.as_bytes());
    assert_eq!(AsRef::<[u8]>::as_ref(&a).len(), 32);
    // Equal digests hash alike and different ones are told apart by a
    // hashed set (a hash that ignored the bytes would still pass `==`, so
    // compare the hashes themselves).
    let set: HashSet<Sha256Digest> = [a, b, sha256(b"a")].into_iter().collect();
    assert_eq!(set.len(), 2);
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    assert_eq!(state.hash_one(a), state.hash_one(sha256(b"a")));
    assert_ne!(state.hash_one(a), state.hash_one(b));
}

#[test]
fn seal_device_kinds_round_trip_through_their_names() {
    for (kind, name, code) in [
        (SealDeviceKind::Mock, "mock", 1),
        (SealDeviceKind::Cuda, "cuda", 2),
    ] {
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.code(), code);
        assert_eq!(SealDeviceKind::from_name(name), Some(kind));
    }
    for other in ["", "Mock", "CUDA", "gpu", "mock "] {
        assert_eq!(SealDeviceKind::from_name(other), None, "{other:?}");
    }
}

#[test]
fn a_seal_tag_gives_back_its_bytes() {
    let bytes: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0).wrapping_mul(7));
    assert_eq!(SealTag(bytes).as_bytes(), &bytes);
}

#[test]
fn leaf_sizes_from_log2_cover_exactly_min_to_max() {
    let (min, max) = (LeafSize::MIN.log2(), LeafSize::MAX.log2());
    assert_eq!(LeafSize::from_log2(min), Some(LeafSize::MIN));
    assert_eq!(LeafSize::from_log2(max), Some(LeafSize::MAX));
    assert_eq!(LeafSize::from_log2(20).map(LeafSize::bytes), Some(1 << 20));
    assert_eq!(LeafSize::from_log2(min - 1), None);
    assert_eq!(LeafSize::from_log2(max + 1), None);
    assert_eq!(LeafSize::from_log2(0), None);
    assert_eq!(LeafSize::from_log2(u8::MAX), None);
    for log2 in min..=max {
        assert_eq!(
            LeafSize::from_log2(log2),
            Some(LeafSize::new(1u64 << log2).unwrap())
        );
    }
}

#[test]
fn leaf_hashes_are_empty_only_for_empty_input() {
    let empty = leaf_hashes(b"", LeafSize::MIN);
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    let one = leaf_hashes(b"x", LeafSize::MIN);
    assert!(!one.is_empty());
    assert_eq!(one.len(), 1);
}
