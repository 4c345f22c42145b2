//! Known-answer tests: NIST SHA-256, RFC 4231 HMAC-SHA256, and the tree and
//! seal vectors printed in docs/formats.md.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
// Helpers outside #[test] functions are test code too.

use vram_crypto::{
    hmac_sha256, leaf_hashes, sha256, sign_seal, tree_digest, verify_seal, CryptoError, LeafSize,
    SealMessage, SealTag, Sha256Digest, Sha256Stream, TreeDescriptor, TreeHasher, LEAF_PREFIX,
    ROOT_PREFIX,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The docs' input formula: byte i = i mod 251.
fn formula(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn nist_sha256_vectors() {
    let cases: [(&[u8], &str); 4] = [
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
        (
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
        ),
    ];
    for (msg, want) in cases {
        assert_eq!(sha256(msg).to_string(), want);
        let mut s = Sha256Stream::new();
        for b in msg.chunks(7) {
            s.update(b);
        }
        assert_eq!(s.finish().to_string(), want);
    }
    let million = vec![b'a'; 1_000_000];
    let want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    assert_eq!(sha256(&million).to_string(), want);
    let mut s = Sha256Stream::new();
    for b in million.chunks(4099) {
        s.update(b);
    }
    assert_eq!(s.finish().to_string(), want);
    // The same through TreeHasher's plain stream.
    let mut h = TreeHasher::new(LeafSize::MIN).with_plain_sha256();
    h.update(&million);
    assert_eq!(h.finish().plain_sha256.unwrap().to_string(), want);
}

#[test]
fn rfc4231_hmac_sha256() {
    // (key, data, tag) for test cases 1, 2, 3, 4, 6, 7.
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (
            (1u8..=25).collect(),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (key, data, want) in &cases {
        // ring directly: the RFC keys of cases 1-4 are shorter than this
        // crate's 32-byte minimum.
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        assert_eq!(hex(ring::hmac::sign(&k, data).as_ref()), *want);
        match hmac_sha256(key, data) {
            Ok(tag) => {
                assert!(key.len() >= 32);
                assert_eq!(hex(&tag), *want);
                vram_crypto::hmac_sha256_verify(key, data, &tag).unwrap();
            }
            Err(e) => assert_eq!(
                e,
                CryptoError::KeyTooShort {
                    len: key.len(),
                    min: 32
                }
            ),
        }
    }
}

#[test]
fn prefixes_are_documented_bytes() {
    let mut leaf = b"vram-residency tree v1 leaf".to_vec();
    leaf.resize(64, 0);
    let mut root = b"vram-residency tree v1 root".to_vec();
    root.resize(64, 0);
    assert_eq!(LEAF_PREFIX, leaf.as_slice());
    assert_eq!(ROOT_PREFIX, root.as_slice());
}

/// (leaf size, input length, descriptor hex, root hex): docs/formats.md.
const TREE_VECTORS: [(u64, usize, &str, &str); 6] = [
    (
        4096,
        0,
        "01010c00000000000000000000000000000000",
        "fc0297e642b5805b90b96ad6b75adc05f50cc041048083fafc01e9270808c36a",
    ),
    (
        4096,
        1,
        "01010c00000000000000010000000000000001",
        "92bad2db39e27bc94ccefc868294ba8b0f0f829f0fcd8f71c2697dc63d8d2461",
    ),
    (
        4096,
        4096,
        "01010c00000000000010000000000000000001",
        "2b2ae21dccd528248c1c942e192dd771e387ebaee427aa948835f80ba6bbfc20",
    ),
    (
        4096,
        4097,
        "01010c00000000000010010000000000000002",
        "5ab2641c01bfbae1cc90104001dd10987567adc65e8388bd5f8cd3e26c9b4d0f",
    ),
    (
        4096,
        20580,
        "01010c00000000000050640000000000000006",
        "7f87961a1babbcc407925fb9552ae745519e9b03d80eb8e89493b0d4ed5810ba",
    ),
    (
        1 << 20,
        2 * 1048576 + 5,
        "01011400000000002000050000000000000003",
        "3b87570d8baf690b644079c4e5ff66d74c3c79ce91f128080491545c57452344",
    ),
];

#[test]
fn tree_vectors_match_docs() {
    for (leaf, n, desc, root) in TREE_VECTORS {
        let l = LeafSize::new(leaf).unwrap();
        let data = formula(n);
        let t = tree_digest(&data, l);
        assert_eq!(hex(&t.descriptor.encode()), desc, "descriptor, n={n}");
        assert_eq!(t.root.to_string(), root, "root, n={n}");
        assert_eq!(t.to_string(), root);
        assert_eq!(t.descriptor, TreeDescriptor::new(l, n as u64));
        // Streaming gives the same tree.
        let mut h = TreeHasher::new(l);
        for c in data.chunks(1000) {
            h.update(c);
        }
        assert_eq!(h.finish().leaves.root(), t);
    }
}

#[test]
fn leaf_vectors_match_docs() {
    let l = LeafSize::new(4096).unwrap();
    let one = leaf_hashes(&formula(1), l);
    assert_eq!(
        one.hashes()[0].to_string(),
        "89a9e526843f4c0d30559dd1d4ec423088e14b8ad90d8838dbbe53e053de243c"
    );
    let two = leaf_hashes(&formula(4097), l);
    assert_eq!(
        two.hashes()[0].to_string(),
        "08befdb1cc91ca7ca49f968032b0ff0e425e631e080532a58360adf7b07cd9ca"
    );
    assert_eq!(
        two.hashes()[1].to_string(),
        "169073e3e2433ccbe874b94c902df40bdd5ba14bb7ed14286cfc0b3276464daf"
    );
    // Leaf hashes are SHA-256(LEAF_PREFIX || bytes), independent of the index.
    let mut m = LEAF_PREFIX.to_vec();
    m.extend_from_slice(&formula(4096));
    assert_eq!(two.hashes()[0], sha256(&m));
    let empty = leaf_hashes(&[], l);
    assert!(empty.is_empty());
    assert_eq!(empty.descriptor().leaf_count(), 0);
}

#[test]
fn seal_vector_matches_docs() {
    let tree = tree_digest(b"abc", LeafSize::new(4096).unwrap());
    assert_eq!(
        tree.root.to_string(),
        "e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de0"
    );
    let msg = SealMessage {
        shard_id: "shard-0",
        model_ref: "org/model@v1",
        device_index: 0,
        byte_len: 3,
        tree: &tree,
        sealed_at_ns: 1_700_000_000_000_000_000,
        shard_index: 0,
        shard_total: 1,
        key_id: [1, 2, 3, 4, 5, 6, 7, 8],
        binding: None,
    };
    let want = "7672616d2d7265736964656e6379207365616c010000000773686172642d300000000c6f72672f6d6f64656c40763100000000000000000000000301010c00000000000000030000000000000001e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de017979cfe362a0000000000010102030405060708";
    assert_eq!(hex(&msg.encode()), want);
    assert_eq!(msg.encode(), unhex(want));
    let key: Vec<u8> = (0u8..32).collect();
    let tag = sign_seal(&key, &msg).unwrap();
    assert_eq!(
        tag.to_string(),
        "0fc39c3eee7e3d7050675cccb5c29af02b0e1b9236fa70a04b51d13bb97c3bd0"
    );
    verify_seal(&key, &msg, &tag).unwrap();
    let parsed: SealTag = "0FC39C3EEE7E3D7050675CCCB5C29AF02B0E1B9236FA70A04B51D13BB97C3BD0"
        .parse()
        .unwrap();
    assert_eq!(parsed, tag);
}

/// The version 2 vectors of docs/formats.md: the v1 vector's fields plus a
/// CUDA device with a UUID, and the mock without one.
const SEAL_V2_VECTORS: [(bool, &str, &str); 2] = [
    (
        true,
        "7672616d2d7265736964656e6379207365616c020000000773686172642d300000000c6f72672f6d6f64656c4076310201101112131415161718191a1b1c1d1e1f00000000000000000000000301010c00000000000000030000000000000001e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de017979cfe362a000000000001a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000008776f726b65722d310102030405060708",
        "fe6600a4c7ebfa24d0ee26b54d559359c28d36b5201c7c3b095ebb4ff65195e4",
    ),
    (
        false,
        "7672616d2d7265736964656e6379207365616c020000000773686172642d300000000c6f72672f6d6f64656c40763101000000000000000000000000000000000000000000000000000000000301010c00000000000000030000000000000001e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de017979cfe362a000000000001a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000008776f726b65722d310102030405060708",
        "448c1ce390ba838f0b4f711b9a0acaf0824976db1bb303b719ee7242cd7d78ab",
    ),
];

fn v2_message(tree: &vram_crypto::TreeDigest, cuda: bool) -> SealMessage<'_> {
    let uuid: [u8; 16] = std::array::from_fn(|i| 0x10 + i as u8);
    let set_id: [u8; 16] = std::array::from_fn(|i| 0xa0 + i as u8);
    SealMessage {
        shard_id: "shard-0",
        model_ref: "org/model@v1",
        device_index: 0,
        byte_len: 3,
        tree,
        sealed_at_ns: 1_700_000_000_000_000_000,
        shard_index: 0,
        shard_total: 1,
        key_id: [1, 2, 3, 4, 5, 6, 7, 8],
        binding: Some(vram_crypto::SealBinding {
            device_kind: if cuda {
                vram_crypto::SealDeviceKind::Cuda
            } else {
                vram_crypto::SealDeviceKind::Mock
            },
            device_uuid: cuda.then_some(uuid),
            worker_id: "worker-1",
            set_id,
            provenance: None,
        }),
    }
}

#[test]
fn seal_v2_vectors_match_docs() {
    let tree = tree_digest(b"abc", LeafSize::new(4096).unwrap());
    let key: Vec<u8> = (0u8..32).collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/formats.md"))
        .unwrap();
    let squashed: String = doc.split_whitespace().collect();
    for (cuda, encoding, tag) in SEAL_V2_VECTORS {
        let msg = v2_message(&tree, cuda);
        assert_eq!(hex(&msg.encode()), encoding);
        let signed = sign_seal(&key, &msg).unwrap();
        assert_eq!(signed.to_string(), tag);
        verify_seal(&key, &msg, &signed).unwrap();
        assert!(squashed.contains(encoding), "docs lack the v2 encoding");
        assert!(doc.contains(tag), "docs lack {tag}");
    }
}

/// The signed statement whose SHA-256 the version 3 vectors bind.
const V3_PAYLOAD: &[u8] = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;

/// The version 3 vectors of docs/formats.md: the v2 vectors plus a
/// provenance (publisher key fingerprint `c0 c1 ... df`, the SHA-256 of the
/// statement payload [`V3_PAYLOAD`], model `org/model`), for one file of a
/// directory model on CUDA and for a single-file model (`.`) on the mock.
const SEAL_V3_VECTORS: [(bool, &str, &str, &str); 2] = [
    (
        true,
        "sub/tokenizer.json",
        "7672616d2d7265736964656e6379207365616c030000000773686172642d300000000c6f72672f6d6f64656c4076310201101112131415161718191a1b1c1d1e1f00000000000000000000000301010c00000000000000030000000000000001e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de017979cfe362a000000000001a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000008776f726b65722d31c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfefd35cf5b72b5b9eeee4ee292f5d6b079191324b19ee9231892fb391c82c1d51000000096f72672f6d6f64656c000000127375622f746f6b656e697a65722e6a736f6e0102030405060708",
        "33333807ade24cd65b0252045852510b68f307695ca837520cc52eca8130367d",
    ),
    (
        false,
        ".",
        "7672616d2d7265736964656e6379207365616c030000000773686172642d300000000c6f72672f6d6f64656c40763101000000000000000000000000000000000000000000000000000000000301010c00000000000000030000000000000001e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de017979cfe362a000000000001a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000008776f726b65722d31c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfefd35cf5b72b5b9eeee4ee292f5d6b079191324b19ee9231892fb391c82c1d51000000096f72672f6d6f64656c000000012e0102030405060708",
        "b5e1662f7b2e328a1fb89ed271bda96c5bf9e0eedec3c1bbc9e4236d45e3441e",
    ),
];

#[test]
fn seal_v3_vectors_match_docs() {
    let tree = tree_digest(b"abc", LeafSize::new(4096).unwrap());
    let key: Vec<u8> = (0u8..32).collect();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/formats.md"))
        .unwrap();
    let squashed: String = doc.split_whitespace().collect();
    for (cuda, resource_name, encoding, tag) in SEAL_V3_VECTORS {
        let v2 = v2_message(&tree, cuda);
        let mut binding = v2.binding.unwrap();
        binding.provenance = Some(vram_crypto::SealProvenance {
            publisher_key_sha256: std::array::from_fn(|i| 0xc0 + i as u8),
            statement_sha256: *sha256(V3_PAYLOAD).as_bytes(),
            model_name: "org/model",
            resource_name,
        });
        let msg = SealMessage {
            binding: Some(binding),
            ..v2
        };
        assert_eq!(msg.version(), vram_crypto::SEAL_FORMAT_V3);
        assert_eq!(hex(&msg.encode()), encoding);
        let signed = sign_seal(&key, &msg).unwrap();
        assert_eq!(signed.to_string(), tag);
        verify_seal(&key, &msg, &signed).unwrap();
        // The same fields without the provenance are the v2 vector, which
        // this tag does not verify.
        assert_eq!(
            verify_seal(&key, &v2, &signed),
            Err(CryptoError::SealMismatch)
        );
        assert!(squashed.contains(encoding), "docs lack the v3 encoding");
        assert!(doc.contains(tag), "docs lack {tag}");
    }
}

#[test]
fn self_test_passes_and_backend_is_named() {
    vram_crypto::self_test().unwrap();
    assert!(
        vram_crypto::backend().starts_with("tape-sha256/"),
        "{}",
        vram_crypto::backend()
    );
    let d: Sha256Digest = sha256(b"abc");
    assert!(d.ct_eq(
        &"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
            .parse()
            .unwrap()
    ));
}

/// docs/formats.md prints the same vectors these tests check.
#[test]
fn formats_doc_carries_the_vectors() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/formats.md"))
        .unwrap();
    let squashed: String = doc.split_whitespace().collect();
    for (_, _, desc, root) in TREE_VECTORS {
        assert!(doc.contains(desc) && doc.contains(root), "{root}");
    }
    for v in [
        "89a9e526843f4c0d30559dd1d4ec423088e14b8ad90d8838dbbe53e053de243c",
        "0fc39c3eee7e3d7050675cccb5c29af02b0e1b9236fa70a04b51d13bb97c3bd0",
        "e48e658530df1f81eddb0539c5b262f52897865715e7586a36c9d0fde1010de0",
    ] {
        assert!(doc.contains(v), "{v}");
    }
    // The seal encoding block, with its spacing removed.
    let tree = tree_digest(b"abc", LeafSize::new(4096).unwrap());
    let msg = SealMessage {
        shard_id: "shard-0",
        model_ref: "org/model@v1",
        device_index: 0,
        byte_len: 3,
        tree: &tree,
        sealed_at_ns: 1_700_000_000_000_000_000,
        shard_index: 0,
        shard_total: 1,
        key_id: [1, 2, 3, 4, 5, 6, 7, 8],
        binding: None,
    };
    assert!(squashed.contains(&format!("encoding={}", hex(&msg.encode()))));
    assert!(squashed.contains(&format!("LEAF_PREFIX={}", hex(LEAF_PREFIX))));
    assert!(squashed.contains(&format!("ROOT_PREFIX={}", hex(ROOT_PREFIX))));
}

/// The model binding vector of docs/formats.md ("Model binding"), computed
/// with Python's `hmac`/`hashlib` from the description there.
#[test]
fn model_binding_vector_matches_docs() {
    use vram_crypto::{
        sign_model_binding, verify_model_binding, BoundFile, BoundShard, HmacKey, ModelBinding,
        SealTag,
    };
    let key = HmacKey::new(&(0u8..32).collect::<Vec<u8>>()).unwrap();
    let tag = |start: u8| {
        let mut t = [0u8; 32];
        for (i, b) in t.iter_mut().enumerate() {
            *b = start + i as u8;
        }
        SealTag(t)
    };
    let shards = [
        BoundShard {
            name: "model-00001-of-00002.safetensors",
            seal_tag: tag(0x40),
        },
        BoundShard {
            name: "model-00002-of-00002.safetensors",
            seal_tag: tag(0x60),
        },
    ];
    let files = [
        BoundFile {
            name: "config.json",
            len: 2,
            sha256: sha256(b"{}").0,
        },
        BoundFile {
            name: "1_Pooling/config.json",
            len: 13,
            sha256: sha256(br#"{"x": "mean"}"#).0,
        },
    ];
    let binding = ModelBinding {
        model_ref: "hf://org/model@0123456789abcdef0123456789abcdef01234567",
        shards: &shards,
        files: &files,
        key_id: [1, 2, 3, 4, 5, 6, 7, 8],
    };
    let encoding = concat!(
        "7672616d2d7265736964656e6379206d6f64656c01",
        "00000037",
        "68663a2f2f6f72672f6d6f64656c403031323334353637383961626364656630313233343536373839616263646566303132333435363700000002",
        "000000206d6f64656c2d30303030312d6f662d30303030322e7361666574656e736f7273",
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
        "000000206d6f64656c2d30303030322d6f662d30303030322e7361666574656e736f7273",
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f",
        "00000002",
        "0000000b636f6e6669672e6a736f6e0000000000000002",
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "00000015315f506f6f6c696e672f636f6e6669672e6a736f6e000000000000000d",
        "e6328ae573537e12a778c70f96d8fceb5859fa9cd047c7fe3d0571da9f8dd1fb",
        "0102030405060708",
    );
    assert_eq!(hex(&binding.encode()), encoding);
    let signed = sign_model_binding(&key, &binding).unwrap();
    assert_eq!(
        signed.to_string(),
        "5ae8eb33d57b72e85d812eb8fdae6628828541691a2752797c2dfd12242b063a"
    );
    verify_model_binding(&key, &binding, &signed).unwrap();
}
