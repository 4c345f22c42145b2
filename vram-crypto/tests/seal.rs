//! Seal encoding and HMAC properties.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
// Helpers outside #[test] functions are test code too.

use proptest::prelude::*;
use vram_crypto::{
    sign_seal, tree_digest, verify_seal, CryptoError, LeafSize, SealMessage, SealTag, Sha256Digest,
    TreeDescriptor, TreeDigest, SEAL_DOMAIN, SEAL_FORMAT_V1,
};
use vram_crypto::{
    SealBinding, SealDeviceKind, SealProvenance, MAX_PROVENANCE_NAME_LEN, SEAL_FORMAT_V2,
    SEAL_FORMAT_V3,
};

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
    provenance: Option<Prov>,
}

/// Owned version 3 fields.
#[derive(Debug, Clone, PartialEq)]
struct Prov {
    key: [u8; 32],
    subject: [u8; 32],
    model: String,
    resource: String,
}

impl Prov {
    fn borrow(&self) -> SealProvenance<'_> {
        SealProvenance {
            publisher_key_sha256: self.key,
            statement_sha256: self.subject,
            model_name: &self.model,
            resource_name: &self.resource,
        }
    }
}

impl Binding {
    fn borrow(&self) -> SealBinding<'_> {
        SealBinding {
            device_kind: self.kind,
            device_uuid: self.uuid,
            worker_id: &self.worker,
            set_id: self.set_id,
            provenance: self.provenance.as_ref().map(Prov::borrow),
        }
    }
}

fn provenance_strategy() -> impl Strategy<Value = Option<Prov>> {
    prop_oneof![
        Just(None),
        (
            prop_oneof![Just([0u8; 32]), any::<[u8; 32]>()],
            prop_oneof![Just([0u8; 32]), any::<[u8; 32]>()],
            "[a-c/.]{0,4}",
            "[a-c/.]{0,4}",
        )
            .prop_map(|(key, subject, model, resource)| Some(Prov {
                key,
                subject,
                model,
                resource,
            })),
    ]
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
            provenance_strategy(),
        )
            .prop_map(|(cuda, uuid, worker, set_id, provenance)| Some(Binding {
                kind: if cuda {
                    SealDeviceKind::Cuda
                } else {
                    SealDeviceKind::Mock
                },
                uuid,
                worker,
                set_id,
                provenance,
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
        provenance: None,
    };
    let default_provenance = || Prov {
        key: [0; 32],
        subject: [0; 32],
        model: String::new(),
        resource: String::new(),
    };
    let provenance = |g: &mut Fields| -> Prov {
        g.binding
            .get_or_insert_with(default_binding)
            .provenance
            .get_or_insert_with(default_provenance)
            .clone()
    };
    match which % 22 {
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
        17 => {
            let b = g.binding.get_or_insert_with(default_binding);
            b.provenance = match b.provenance {
                Some(_) => None,
                None => Some(default_provenance()),
            }
        }
        18..=21 => {
            let mut p = provenance(&mut g);
            match which % 22 {
                18 => p.key[usize::from(flip % 32)] ^= 1 << (flip % 8),
                19 => p.subject[usize::from(flip % 32)] ^= 1 << (flip % 8),
                20 => p.model.push('x'),
                _ => p.resource.push('x'),
            }
            if let Some(b) = g.binding.as_mut() {
                b.provenance = Some(p);
            }
        }
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
        provenance: None,
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

fn v3_tree() -> TreeDigest {
    tree_digest(b"x", LeafSize::MIN)
}

fn v3_message<'a>(tree: &'a TreeDigest, provenance: SealProvenance<'a>) -> SealMessage<'a> {
    SealMessage {
        shard_id: "s",
        model_ref: "m",
        device_index: 0,
        byte_len: 1,
        tree,
        sealed_at_ns: 1,
        shard_index: 0,
        shard_total: 1,
        key_id: [0; 8],
        binding: Some(SealBinding {
            device_kind: SealDeviceKind::Cuda,
            device_uuid: Some([7; 16]),
            worker_id: "worker-1",
            set_id: [9; 16],
            provenance: Some(provenance),
        }),
    }
}

const PROVENANCE: SealProvenance<'static> = SealProvenance {
    publisher_key_sha256: [0x5a; 32],
    statement_sha256: [0xa5; 32],
    model_name: "org/model",
    resource_name: "sub/tokenizer.json",
};

/// Every bit of both digests, and every bit of every byte of both names
/// that keeps them UTF-8 (the low seven of an ASCII byte), changes the tag
/// when flipped alone; so does a name one byte longer or shorter.
#[test]
fn v3_every_provenance_bit_is_bound() {
    let tree = v3_tree();
    let msg = v3_message(&tree, PROVENANCE);
    assert_eq!(msg.version(), SEAL_FORMAT_V3);
    assert_eq!(msg.encode()[SEAL_DOMAIN.len()], SEAL_FORMAT_V3);
    let tag = sign_seal(&KEY, &msg).unwrap();
    verify_seal(&KEY, &msg, &tag).unwrap();
    let refused = |p: SealProvenance<'_>, what: &str| {
        let forged = v3_message(&tree, p);
        assert_ne!(sign_seal(&KEY, &forged).unwrap(), tag, "{what}");
        assert_eq!(
            verify_seal(&KEY, &forged, &tag),
            Err(CryptoError::SealMismatch),
            "{what}"
        );
    };
    let mut checked = 0usize;
    for byte in 0..32 {
        for bit in 0..8 {
            let mut key = PROVENANCE.publisher_key_sha256;
            key[byte] ^= 1 << bit;
            refused(
                SealProvenance {
                    publisher_key_sha256: key,
                    ..PROVENANCE
                },
                &format!("publisher key byte {byte} bit {bit}"),
            );
            let mut subject = PROVENANCE.statement_sha256;
            subject[byte] ^= 1 << bit;
            refused(
                SealProvenance {
                    statement_sha256: subject,
                    ..PROVENANCE
                },
                &format!("subject byte {byte} bit {bit}"),
            );
            checked += 2;
        }
    }
    let flips = |name: &str| -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..name.len() {
            for bit in 0..7 {
                let mut bytes = name.as_bytes().to_vec();
                bytes[i] ^= 1 << bit;
                out.push(String::from_utf8(bytes).unwrap());
            }
        }
        let mut longer = name.to_string();
        longer.push('x');
        out.push(longer);
        out.push(name[..name.len() - 1].to_string());
        out
    };
    for model in flips(PROVENANCE.model_name) {
        refused(
            SealProvenance {
                model_name: &model,
                ..PROVENANCE
            },
            &format!("model name {model:?}"),
        );
        checked += 1;
    }
    for resource in flips(PROVENANCE.resource_name) {
        refused(
            SealProvenance {
                resource_name: &resource,
                ..PROVENANCE
            },
            &format!("resource name {resource:?}"),
        );
        checked += 1;
    }
    // 512 digest bits, 7 bits of 9 + 18 name bytes, 4 length changes.
    assert_eq!(checked, 512 + 7 * (9 + 18) + 4);
    // Swapping the two names (or the two digests) is a different seal too.
    refused(
        SealProvenance {
            model_name: PROVENANCE.resource_name,
            resource_name: PROVENANCE.model_name,
            ..PROVENANCE
        },
        "names swapped",
    );
    refused(
        SealProvenance {
            publisher_key_sha256: PROVENANCE.statement_sha256,
            statement_sha256: PROVENANCE.publisher_key_sha256,
            ..PROVENANCE
        },
        "digests swapped",
    );
}

/// A v3 seal never verifies as the v2 message of the same fields, nor as a
/// v2 message whose worker id carries the provenance block's bytes (the
/// version byte and the length prefix tell them apart), and a v2 tag never
/// verifies a v3 message.
#[test]
fn v3_never_verifies_as_v2() {
    let tree = v3_tree();
    let v3 = v3_message(&tree, PROVENANCE);
    let v3_tag = sign_seal(&KEY, &v3).unwrap();
    let binding = v3.binding.unwrap();
    let v2 = SealMessage {
        binding: Some(SealBinding {
            provenance: None,
            ..binding
        }),
        ..v3
    };
    assert_eq!(v2.version(), SEAL_FORMAT_V2);
    assert_eq!(
        verify_seal(&KEY, &v2, &v3_tag),
        Err(CryptoError::SealMismatch)
    );
    let v2_tag = sign_seal(&KEY, &v2).unwrap();
    assert_eq!(
        verify_seal(&KEY, &v3, &v2_tag),
        Err(CryptoError::SealMismatch)
    );

    // The v3 encoding is the v2 encoding with the version byte changed and
    // the provenance block inserted before key_id.
    let (e2, e3) = (v2.encode(), v3.encode());
    let at = SEAL_DOMAIN.len();
    assert_eq!(e2[at], SEAL_FORMAT_V2);
    assert_eq!(e3[at], SEAL_FORMAT_V3);
    assert_eq!(e2[..at], e3[..at]);
    assert_eq!(e2[at + 1..e2.len() - 8], e3[at + 1..e2.len() - 8]);
    assert_eq!(e2[e2.len() - 8..], e3[e3.len() - 8..]);
    assert_eq!(e3.len() - e2.len(), 32 + 32 + 4 + 9 + 4 + 18);

    // A v2 worker id spelled as "worker-1" followed by the provenance bytes
    // does not reproduce the v3 encoding.
    let block = &e3[e2.len() - 8..e3.len() - 8];
    let mut smuggled = b"worker-1".to_vec();
    smuggled.extend_from_slice(block);
    if let Ok(worker) = String::from_utf8(smuggled) {
        let forged = SealMessage {
            binding: Some(SealBinding {
                worker_id: &worker,
                provenance: None,
                ..binding
            }),
            ..v3
        };
        assert_ne!(forged.encode(), e3);
        assert_eq!(
            verify_seal(&KEY, &forged, &v3_tag),
            Err(CryptoError::SealMismatch)
        );
    }
}

/// Provenance names are bounded by the same check that bounds every other
/// field: 4096 bytes seal, 4097 do not (on signing and on verifying).
#[test]
fn provenance_names_are_bounded() {
    let tree = v3_tree();
    let at_limit = "a".repeat(MAX_PROVENANCE_NAME_LEN);
    let over = "a".repeat(MAX_PROVENANCE_NAME_LEN + 1);
    for field in ["model_name", "resource_name"] {
        let with = |name: &str| {
            let mut p = PROVENANCE;
            if field == "model_name" {
                p.model_name = name;
            } else {
                p.resource_name = name;
            }
            sign_seal(&KEY, &v3_message(&tree, p))
        };
        let tag = with(&at_limit).unwrap();
        assert_eq!(
            with(&over),
            Err(CryptoError::FieldTooLong {
                field,
                len: MAX_PROVENANCE_NAME_LEN + 1,
                max: MAX_PROVENANCE_NAME_LEN,
            })
        );
        let mut p = PROVENANCE;
        if field == "model_name" {
            p.model_name = &over;
        } else {
            p.resource_name = &over;
        }
        assert!(matches!(
            verify_seal(&KEY, &v3_message(&tree, p), &tag),
            Err(CryptoError::FieldTooLong { .. })
        ));
    }
}
