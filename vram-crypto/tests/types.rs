//! LeafSize, descriptors, hex and serde of the public types.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
// Helpers outside #[test] functions are test code too.

use vram_crypto::{
    leaf_hashes, sha256, tree_digest, CorruptRange, CryptoError, LeafHashes, LeafSize, SealTag,
    Sha256Digest, TreeDescriptor, TreeDigest, TREE_FORMAT_VERSION,
};

#[test]
fn leaf_size_bounds() {
    for log2 in 12..=30u32 {
        let l = LeafSize::new(1 << log2).unwrap();
        assert_eq!(l.bytes(), 1 << log2);
        assert_eq!(u32::from(l.log2()), log2);
    }
    for bad in [0u64, 1, 2048, 4095, 4097, 3 << 20, 1 << 31, u64::MAX] {
        assert_eq!(
            LeafSize::new(bad),
            Err(CryptoError::InvalidLeafSize { bytes: bad })
        );
    }
    assert_eq!(LeafSize::MIN.to_string(), "4 KiB");
    assert_eq!(LeafSize::new(64 << 10).unwrap().to_string(), "64 KiB");
    assert_eq!(LeafSize::DEFAULT.to_string(), "1 MiB");
    assert_eq!(LeafSize::new(512 << 20).unwrap().to_string(), "512 MiB");
    assert_eq!(LeafSize::MAX.to_string(), "1 GiB");
    assert_eq!(LeafSize::default(), LeafSize::DEFAULT);
}

#[test]
fn leaf_ranges() {
    let d = TreeDescriptor::new(LeafSize::MIN, 4096 * 2 + 10);
    assert_eq!(d.version, TREE_FORMAT_VERSION);
    assert_eq!(d.leaf_count(), 3);
    assert_eq!(d.leaf_range(0), Some(0..4096));
    assert_eq!(d.leaf_range(1), Some(4096..8192));
    assert_eq!(d.leaf_range(2), Some(8192..8202));
    assert_eq!(d.leaf_range(3), None);
    let empty = TreeDescriptor::new(LeafSize::MIN, 0);
    assert_eq!(empty.leaf_count(), 0);
    assert_eq!(empty.leaf_range(0), None);
    let exact = TreeDescriptor::new(LeafSize::MIN, 8192);
    assert_eq!(exact.leaf_count(), 2);
    assert_eq!(exact.leaf_range(1), Some(4096..8192));
    let huge = TreeDescriptor::new(LeafSize::MIN, u64::MAX);
    assert_eq!(huge.leaf_count(), u64::MAX / 4096 + 1);
    assert_eq!(
        huge.leaf_range(huge.leaf_count() - 1).unwrap().end,
        u64::MAX
    );
}

#[test]
fn from_parts_checks_count() {
    let d = TreeDescriptor::new(LeafSize::MIN, 5000);
    assert_eq!(
        LeafHashes::from_parts(d, vec![sha256(b"x")]).unwrap_err(),
        CryptoError::LeafCountMismatch {
            expected: 2,
            actual: 1
        }
    );
    let lh = LeafHashes::from_parts(d, vec![sha256(b"x"), sha256(b"y")]).unwrap();
    assert_eq!(lh.len(), 2);
    assert_eq!(lh.get(1), Some(&sha256(b"y")));
    assert_eq!(lh.get(2), None);
    assert_eq!(lh.descriptor(), &d);
}

#[test]
fn hex_round_trips_and_rejects() {
    let d = sha256(b"abc");
    let s = d.to_string();
    assert_eq!(s.len(), 64);
    assert!(s
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    assert_eq!(s.parse::<Sha256Digest>().unwrap(), d);
    assert_eq!(s.to_uppercase().parse::<Sha256Digest>().unwrap(), d);
    assert_eq!(format!("{d:?}"), format!("Sha256Digest({s})"));
    for bad in [
        "",
        "abc",
        &s[..63],
        &format!("{s}0"),
        &format!("g{}", &s[1..]),
        &format!("{}é", &s[..62]),
    ] {
        assert!(
            matches!(
                bad.parse::<Sha256Digest>(),
                Err(CryptoError::InvalidHex { expected: 64, .. })
            ),
            "{bad}"
        );
        assert!(bad.parse::<SealTag>().is_err());
    }
    let tag = SealTag([0xab; 32]);
    assert_eq!(tag.to_string(), "ab".repeat(32));
    assert_eq!(format!("{tag:?}"), format!("SealTag({})", "ab".repeat(32)));
}

#[test]
fn serde_formats() {
    let t = tree_digest(b"hello", LeafSize::MIN);
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"descriptor":{{"version":1,"leaf_size":4096,"total_len":5}},"root":"{}"}}"#,
            t.root
        )
    );
    assert_eq!(serde_json::from_str::<TreeDigest>(&json).unwrap(), t);
    // Invalid leaf sizes and hex are refused on the way in.
    let bad = json.replace("4096", "4095");
    assert!(serde_json::from_str::<TreeDigest>(&bad).is_err());
    let bad = json.replace(&t.root.to_string(), "zz");
    assert!(serde_json::from_str::<TreeDigest>(&bad).is_err());

    let lh = leaf_hashes(&[7u8; 9000], LeafSize::MIN);
    let json = serde_json::to_string(&lh).unwrap();
    assert_eq!(serde_json::from_str::<LeafHashes>(&json).unwrap(), lh);
    let truncated = json.replacen(&format!(",\"{}\"", lh.hashes()[2]), "", 1);
    assert!(serde_json::from_str::<LeafHashes>(&truncated).is_err());

    let c = CorruptRange {
        leaf_index: 2,
        start: 8192,
        end: 9000,
    };
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        r#"{"leaf_index":2,"start":8192,"end":9000}"#
    );
    let tag = SealTag([1; 32]);
    let js = serde_json::to_string(&tag).unwrap();
    assert_eq!(serde_json::from_str::<SealTag>(&js).unwrap(), tag);
}

#[test]
fn errors_say_what_to_do() {
    let e = LeafSize::new(5000).unwrap_err().to_string();
    assert!(e.contains("5000") && e.contains("power of two"), "{e}");
    let e = CryptoError::KeyTooShort { len: 16, min: 32 }.to_string();
    assert!(e.contains("16") && e.contains("32"), "{e}");
}
