//! Seal encoding and HMAC properties.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use vram_crypto::{
    sign_seal, tree_digest, verify_seal, CryptoError, LeafSize, SealMessage, SealTag, Sha256Digest,
    TreeDescriptor, TreeDigest, SEAL_DOMAIN, SEAL_FORMAT_V1,
};
use vram_crypto::{SealBinding, SealDeviceKind, SEAL_FORMAT_V2};

/// Owned seal fields, so proptest can generate and mutate them.
#[derive(Debug, Clone, PartialEq)]
struct Fields {
    shard_id: String,
    model_ref: String,
    device_index: u32,
    byte_len: u64,
    tree: TreeDigest,
    sealed_at_ns: u64,
    shard_index: u16,
    shard_total: u16,
    key_id: [u8; 8],
    binding: Option<Binding>,
}

/// Owned version 2 fields.
#[derive(Debug, Clone, PartialEq)]
struct Binding {
    kind: SealDeviceKind,
    uuid: Option<[u8; 16]>,
    worker: String,
    set_id: [u8; 16],
}

impl Binding {
    fn borrow(&self) -> SealBinding<'_> {
        SealBinding {
            device_kind: self.kind,
            device_uuid: self.uuid,
            worker_id: &self.worker,
            set_id: self.set_id,
        }
    }
}

fn binding_strategy() -> impl Strategy<Value = Option<Binding>> {
    prop_oneof![
        Just(None),
        (
            any::<bool>(),
            prop_oneof![
                Just(None),
                Just(Some([0u8; 16])),
                any::<[u8; 16]>().prop_map(Some)
            ],
            "[a-c]{0,4}",
            prop_oneof![Just([0u8; 16]), any::<[u8; 16]>()],
        )
            .prop_map(|(cuda, uuid, worker, set_id)| Some(Binding {
                kind: if cuda {
                    SealDeviceKind::Cuda
                } else {
                    SealDeviceKind::Mock
                },
                uuid,
                worker,
                set_id,
            })),
    ]
}

impl Fields {
    fn msg(&self) -> SealMessage<'_> {
        SealMessage {
            shard_id: &self.shard_id,
            model_ref: &self.model_ref,
            device_index: self.device_index,
            byte_len: self.byte_len,
            tree: &self.tree,
            sealed_at_ns: self.sealed_at_ns,
            shard_index: self.shard_index,
            shard_total: self.shard_total,
            key_id: self.key_id,
            binding: self.binding.as_ref().map(Binding::borrow),
        }
    }
}

fn tree_strategy() -> impl Strategy<Value = TreeDigest> {
    (1u8..3, 12u8..=30, any::<u64>(), any::<[u8; 32]>()).prop_map(
        |(version, log2, total_len, root)| TreeDigest {
            descriptor: TreeDescriptor {
                version,
                leaf_size: LeafSize::new(1 << log2).unwrap(),
                total_len,
            },
            root: Sha256Digest(root),
        },
    )
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        "[a-c]{0,4}",
        "[a-c/@]{0,4}",
        0u32..3,
        0u64..3,
        tree_strategy(),
        0u64..3,
        0u16..3,
        0u16..3,
        prop_oneof![Just([0u8; 8]), any::<[u8; 8]>()],
        binding_strategy(),
    )
        .prop_map(
            |(
                shard_id,
                model_ref,
                device_index,
                byte_len,
                tree,
                sealed_at_ns,
                shard_index,
                shard_total,
                key_id,
                binding,
            )| {
                Fields {
                    shard_id,
                    model_ref,
                    device_index,
                    byte_len,
                    tree,
                    sealed_at_ns,
                    shard_index,
                    shard_total,
                    key_id,
                    binding,
                }
            },
        )
}

/// One field of `f` changed, chosen by `which`.
fn mutate(f: &Fields, which: u8, flip: u8) -> Fields {
    let mut g = f.clone();
    let bit = 1u64 << (flip % 64);
    let default_binding = || Binding {
        kind: SealDeviceKind::Mock,
        uuid: None,
        worker: String::new(),
        set_id: [0; 16],
    };
    match which % 17 {
        0 => g.shard_id.push('x'),
        1 => g.model_ref.push('x'),
        2 => g.device_index ^= bit as u32 | 1,
        3 => g.byte_len ^= bit,
        4 => g.tree.root.0[usize::from(flip % 32)] ^= 1 << (flip % 8),
        5 => g.tree.descriptor.total_len ^= bit,
        6 => g.tree.descriptor.version ^= 0x80,
        7 => {
            let l = g.tree.descriptor.leaf_size.log2();
            g.tree.descriptor.leaf_size =
                LeafSize::new(1 << if l == 12 { 13 } else { 12 }).unwrap();
        }
        8 => g.sealed_at_ns ^= bit,
        9 => g.shard_index ^= (bit as u16) | 1,
        10 => g.shard_total ^= (bit as u16) | 1,
        12 => {
            g.binding = match g.binding {
                Some(_) => None,
                None => Some(default_binding()),
            }
        }
        13 => {
            let b = g.binding.get_or_insert_with(default_binding);
            b.kind = match b.kind {
                SealDeviceKind::Mock => SealDeviceKind::Cuda,
                SealDeviceKind::Cuda => SealDeviceKind::Mock,
            };
        }
        14 => {
            let b = g.binding.get_or_insert_with(default_binding);
            b.uuid = match b.uuid {
                Some(mut u) if flip.is_multiple_of(2) => {
                    u[usize::from(flip % 16)] ^= 1;
                    Some(u)
                }
                Some(_) => None,
                None => Some([0; 16]),
            };
        }
        15 => g
            .binding
            .get_or_insert_with(default_binding)
            .worker
            .push('x'),
        16 => g.binding.get_or_insert_with(default_binding).set_id[usize::from(flip % 16)] ^= 1,
        _ => g.key_id[usize::from(flip % 8)] ^= 1 << (flip % 8),
    }
    g
}

const KEY: [u8; 32] = [0x42; 32];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Small alphabets and short strings make many near-collisions
    /// ("ab"+"c" vs "a"+"bc"); equal encodings must mean equal fields.
    #[test]
    fn encoding_is_injective(a in fields(), b in fields()) {
        prop_assert_eq!(a.msg().encode() == b.msg().encode(), a == b);
    }

    #[test]
    fn any_altered_field_changes_encoding_and_fails_verification(f in fields(), which in any::<u8>(), flip in any::<u8>()) {
        let g = mutate(&f, which, flip);
        prop_assert_ne!(&f, &g);
        prop_assert_ne!(f.msg().encode(), g.msg().encode());
        let tag = sign_seal(&KEY, &f.msg()).unwrap();
        prop_assert_eq!(verify_seal(&KEY, &g.msg(), &tag), Err(CryptoError::SealMismatch));
        prop_assert_ne!(sign_seal(&KEY, &g.msg()).unwrap(), tag);
    }

    #[test]
    fn sign_is_deterministic_hex_and_verifies(f in fields(), key in prop::collection::vec(any::<u8>(), 32..80)) {
        let t1 = sign_seal(&key, &f.msg()).unwrap();
        let t2 = sign_seal(&key, &f.msg()).unwrap();
        prop_assert_eq!(t1, t2);
        let s = t1.to_string();
        prop_assert_eq!(s.len(), 64);
        prop_assert!(s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        prop_assert_eq!(s.parse::<SealTag>().unwrap(), t1);
        prop_assert_eq!(verify_seal(&key, &f.msg(), &t1), Ok(()));
    }

    #[test]
    fn flipped_tag_bit_fails(f in fields(), byte in 0usize..32, bit in 0u8..8) {
        let mut tag = sign_seal(&KEY, &f.msg()).unwrap();
        tag.0[byte] ^= 1 << bit;
        prop_assert_eq!(verify_seal(&KEY, &f.msg(), &tag), Err(CryptoError::SealMismatch));
    }

    #[test]
    fn different_keys_give_different_tags(f in fields(), byte in 0usize..32, bit in 0u8..8) {
        let mut other = KEY;
        other[byte] ^= 1 << bit;
        let tag = sign_seal(&KEY, &f.msg()).unwrap();
        prop_assert_ne!(sign_seal(&other, &f.msg()).unwrap(), tag);
        prop_assert_eq!(verify_seal(&other, &f.msg(), &tag), Err(CryptoError::SealMismatch));
    }

    /// A single flipped input bit changes about half of the output bits.
    #[test]
    fn avalanche(data in prop::collection::vec(any::<u8>(), 1..2000), pos in any::<usize>(), bit in 0u8..8) {
        let mut flipped = data.clone();
        let i = pos % data.len();
        flipped[i] ^= 1 << bit;
        let l = LeafSize::MIN;
        let (a, b) = (tree_digest(&data, l).root, tree_digest(&flipped, l).root);
        let diff: u32 = a.0.iter().zip(b.0).map(|(x, y)| (x ^ y).count_ones()).sum();
        prop_assert!((64..=192).contains(&diff), "{} bits differ", diff);
        let ta = vram_crypto::hmac_sha256(&KEY, &data).unwrap();
        let tb = vram_crypto::hmac_sha256(&KEY, &flipped).unwrap();
        let diff: u32 = ta.iter().zip(tb).map(|(x, y)| (x ^ y).count_ones()).sum();
        prop_assert!((64..=192).contains(&diff), "{} bits differ", diff);
    }
}

#[test]
fn adversarial_field_boundaries() {
    let tree = tree_digest(b"x", LeafSize::MIN);
    let base = Fields {
        shard_id: "ab".into(),
        model_ref: "c".into(),
        device_index: 0,
        byte_len: 1,
        tree,
        sealed_at_ns: 0,
        shard_index: 0,
        shard_total: 1,
        key_id: [0; 8],
        binding: None,
    };
    let mut moved = base.clone();
    moved.shard_id = "a".into();
    moved.model_ref = "bc".into();
    assert_ne!(base.msg().encode(), moved.msg().encode());
    let mut empty = base.clone();
    empty.shard_id = String::new();
    empty.model_ref = "abc".into();
    assert_ne!(base.msg().encode(), empty.msg().encode());
    assert_ne!(moved.msg().encode(), empty.msg().encode());
    // A length prefix cannot be forged from content: "\0\0\0\x01" inside a field.
    let mut nul = base.clone();
    nul.shard_id = "\0\0\0\u{1}a".into();
    nul.model_ref = String::new();
    assert_ne!(base.msg().encode(), nul.msg().encode());

    let enc = base.msg().encode();
    assert!(enc.starts_with(SEAL_DOMAIN));
    assert_eq!(enc[SEAL_DOMAIN.len()], SEAL_FORMAT_V1);
    assert_eq!(
        enc.len(),
        19 + 1 + 4 + 2 + 4 + 1 + 4 + 8 + 19 + 32 + 8 + 2 + 2 + 8
    );
}

#[test]
fn short_keys_are_refused() {
    let tree = tree_digest(b"x", LeafSize::MIN);
    let f = Fields {
        shard_id: "s".into(),
        model_ref: "m".into(),
        device_index: 0,
        byte_len: 1,
        tree,
        sealed_at_ns: 0,
        shard_index: 0,
        shard_total: 1,
        key_id: [0; 8],
        binding: None,
    };
    let short = [1u8; 31];
    assert_eq!(
        sign_seal(&short, &f.msg()),
        Err(CryptoError::KeyTooShort { len: 31, min: 32 })
    );
    assert_eq!(
        sign_seal(&[], &f.msg()),
        Err(CryptoError::KeyTooShort { len: 0, min: 32 })
    );
    let tag = sign_seal(&KEY, &f.msg()).unwrap();
    assert_eq!(
        verify_seal(&short, &f.msg(), &tag),
        Err(CryptoError::KeyTooShort { len: 31, min: 32 })
    );
    assert!(vram_crypto::hmac_sha256(&short, b"x").is_err());
    let mac = vram_crypto::hmac_sha256(&KEY, b"x").unwrap();
    assert_eq!(
        vram_crypto::hmac_sha256_verify(&KEY, b"y", &mac),
        Err(CryptoError::MacMismatch)
    );
    assert_eq!(vram_crypto::hmac_sha256_verify(&KEY, b"x", &mac), Ok(()));
}

/// A version 2 seal binds the device kind, the device UUID, the worker and
/// the set: changing any of them, or dropping them (a v1 message of the same
/// fields), fails verification. Before version 2, a seal made on the mock
/// verified as one made on a CUDA device.
#[test]
fn v2_binds_device_kind_uuid_worker_and_set() {
    let tree = tree_digest(b"x", LeafSize::MIN);
    let binding = SealBinding {
        device_kind: SealDeviceKind::Cuda,
        device_uuid: Some([7; 16]),
        worker_id: "worker-1",
        set_id: [9; 16],
    };
    let msg = SealMessage {
        shard_id: "s",
        model_ref: "m",
        device_index: 0,
        byte_len: 1,
        tree: &tree,
        sealed_at_ns: 1,
        shard_index: 0,
        shard_total: 1,
        key_id: [0; 8],
        binding: Some(binding),
    };
    assert_eq!(msg.version(), SEAL_FORMAT_V2);
    assert_eq!(msg.encode()[SEAL_DOMAIN.len()], SEAL_FORMAT_V2);
    let tag = sign_seal(&KEY, &msg).unwrap();
    verify_seal(&KEY, &msg, &tag).unwrap();
    let variants = [
        SealBinding {
            device_kind: SealDeviceKind::Mock,
            ..binding
        },
        SealBinding {
            device_uuid: None,
            ..binding
        },
        SealBinding {
            device_uuid: Some([8; 16]),
            ..binding
        },
        SealBinding {
            worker_id: "worker-2",
            ..binding
        },
        SealBinding {
            set_id: [10; 16],
            ..binding
        },
    ];
    for other in variants {
        let forged = SealMessage {
            binding: Some(other),
            ..msg
        };
        assert_eq!(
            verify_seal(&KEY, &forged, &tag),
            Err(CryptoError::SealMismatch),
            "{other:?}"
        );
    }
    let v1 = SealMessage {
        binding: None,
        ..msg
    };
    assert_eq!(v1.version(), SEAL_FORMAT_V1);
    assert_eq!(verify_seal(&KEY, &v1, &tag), Err(CryptoError::SealMismatch));
    // The one-off and the built-once key agree.
    let built = vram_crypto::HmacKey::new(&KEY).unwrap();
    assert_eq!(vram_crypto::sign_seal_with(&built, &msg).unwrap(), tag);
    vram_crypto::verify_seal_with(&built, &msg, &tag).unwrap();
    assert_eq!(format!("{built:?}"), "HmacKey(..)");
}
