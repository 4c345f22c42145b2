//! Stress: exhaustion, rapid cycles, large and tiny models, repeated
//! verification, edge-case contents, leak detection. Never timed.
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
use vram_residency::SealRequest;
use vram_residency::SealSource;
use vram_validation::ModelRef;

#[test]
fn seal_until_vram_exhausted_then_recover() {
    let f = fixture(8 * MIB);
    let mut shards = Vec::new();
    let err = loop {
        match f.manager.seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(MIB as usize, shards.len() as u8)),
        ) {
            Ok(s) => shards.push(s),
            Err(e) => break e,
        }
        assert!(shards.len() <= 8, "sealed more than the capacity allows");
    };
    assert!(err.is_retriable(), "exhaustion must be retriable: {err}");
    let msg = err.to_string();
    assert!(
        msg.contains("needed") && msg.contains("available"),
        "not actionable: {msg}"
    );
    assert_eq!(shards.len(), 8);
    shards.pop();
    f.manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(MIB as usize, 99)),
        )
        .unwrap();
    drop(shards);
    f.assert_no_leaks();
}

#[test]
fn rapid_seal_release_cycles() {
    let f = fixture(16 * MIB);
    for i in 0..100u8 {
        let s = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(64 * 1024 + usize::from(i), i)),
            )
            .unwrap();
        f.manager.verify_sealed(&s).unwrap();
    }
    f.assert_no_leaks();
    assert_eq!(f.manager.metrics().seals, 100);
}

#[test]
fn ten_megabyte_model() {
    let f = fixture(64 * MIB);
    let data = pattern(10 * 1024 * 1024, 5);
    let s = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
        .unwrap();
    assert_eq!(s.vram_bytes(), data.len() as u64);
    f.manager.verify_sealed(&s).unwrap();
}

#[test]
fn a_thousand_tiny_models() {
    let f = fixture(64 * MIB);
    let shards: Vec<_> = (0..1000u32)
        .map(|i| {
            f.manager
                .seal(
                    &SealRequest::inline(0).unwrap(),
                    SealSource::Bytes(&[(i % 251) as u8; 7]),
                )
                .unwrap()
        })
        .collect();
    assert_eq!(f.device.live_allocations(), 1000);
    for s in shards.iter().step_by(37) {
        f.manager.verify_sealed(s).unwrap();
    }
    drop(shards);
    f.assert_no_leaks();
}

#[test]
fn a_thousand_verifications() {
    let f = fixture(16 * MIB);
    let s = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(256 * 1024, 9)),
        )
        .unwrap();
    let read_before = f.device.bytes_read();
    for _ in 0..1000 {
        f.manager.verify_sealed(&s).unwrap();
    }
    // Every verification re-read the device.
    assert!(f.device.bytes_read() - read_before >= 1000 * 256 * 1024);
    assert_eq!(f.manager.metrics().verifications_passed, 1000);
}

#[test]
fn sizes_from_one_byte_to_one_mebibyte() {
    let f = fixture(16 * MIB);
    let mut size = 1usize;
    while size <= MIB as usize {
        for len in [size - 1, size, size + 1] {
            if len == 0 {
                continue;
            }
            let s = f
                .manager
                .seal(
                    &SealRequest::inline(0).unwrap(),
                    SealSource::Bytes(&pattern(len, len as u8)),
                )
                .unwrap();
            assert_eq!(s.vram_bytes(), len as u64);
            f.manager.verify_sealed(&s).unwrap();
        }
        size *= 4;
    }
    f.assert_no_leaks();
}

#[test]
fn all_zero_and_all_one_models() {
    let f = fixture(16 * MIB);
    let zeros = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&vec![0u8; 300_000]),
        )
        .unwrap();
    let ones = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&vec![0xFFu8; 300_000]),
        )
        .unwrap();
    assert_ne!(zeros.tree_digest().root, ones.tree_digest().root);
    f.manager.verify_sealed(&zeros).unwrap();
    f.manager.verify_sealed(&ones).unwrap();
}

#[test]
fn empty_model_is_rejected_as_invalid_input() {
    let f = fixture(16 * MIB);
    let err = f
        .manager
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&[]))
        .unwrap_err();
    assert_eq!(err.class(), vram_residency::ErrorClass::InvalidInput);
    f.assert_no_leaks();
}

#[test]
fn no_leaks_after_mixed_workload() {
    let f = fixture(32 * MIB);
    for round in 0..10u8 {
        let a = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(1_000_000, round)),
            )
            .unwrap();
        let b = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(10, round)),
            )
            .unwrap();
        let _ = f
            .manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(40 * MIB as usize, round)),
            )
            .unwrap_err();
        f.manager.verify_sealed(&a).unwrap();
        drop(b);
    }
    f.assert_no_leaks();
}

#[test]
fn leaves_larger_than_the_staging_buffer_verify_and_locate_corruption() {
    // 1 MiB leaves, 256 KiB staging: each leaf is read back in pieces.
    let f = fixture_with(64 * MIB, vram_crypto::LeafSize::new(MIB).unwrap());
    let len = 3 * MIB as usize + MIB as usize / 2;
    let s = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(len, 8)),
        )
        .unwrap();
    f.manager.verify_sealed(&s).unwrap();
    f.device
        .flip_bits(f.last_buffer(), 2 * MIB + MIB / 2, 4)
        .unwrap();
    let e = f.manager.verify_sealed(&s).unwrap_err();
    assert_eq!(e.corrupt_ranges().len(), 1);
    assert_eq!(e.corrupt_ranges()[0].leaf_index, 2);
}

#[test]
fn sealed_digest_equals_the_reference_tree_digest_for_any_length() {
    let f = fixture(64 * MIB);
    let leaf = f.manager.leaf_size();
    for len in [
        1usize,
        65_535,
        65_536,
        65_537,
        256 * 1024,
        256 * 1024 + 1,
        1_000_003,
        3 * MIB as usize,
    ] {
        let data = pattern(len, len as u8);
        let s = f
            .manager
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
            .unwrap();
        assert_eq!(
            *s.tree_digest(),
            vram_crypto::tree_digest(&data, leaf),
            "len {len}"
        );
        f.manager.verify_sealed(&s).unwrap();
    }
}

#[test]
fn streamed_seals_equal_the_reference_for_any_length_with_and_without_a_plain_digest() {
    // 4 KiB leaves and 256 KiB staging: many whole-leaf chunks, partial tails.
    let leaf = vram_crypto::LeafSize::new(4096).unwrap();
    let f = fixture_with(64 * MIB, leaf);
    for len in [
        1usize,
        4095,
        4096,
        4097,
        256 * 1024 - 1,
        256 * 1024,
        256 * 1024 + 1,
        1_000_003,
        3 * MIB as usize,
    ] {
        let data = pattern(len, len as u8);
        let reference = vram_crypto::tree_digest(&data, leaf);
        for compute_sha256 in [false, true] {
            let mut req = SealRequest::new(ModelRef::new("test:model").unwrap(), 0);
            req.compute_sha256 = compute_sha256;
            let s = f
                .manager
                .seal(
                    &req,
                    SealSource::Reader {
                        reader: &mut &data[..],
                        len: len as u64,
                    },
                )
                .unwrap();
            assert_eq!(
                *s.tree_digest(),
                reference,
                "len {len} plain {compute_sha256}"
            );
            f.manager.verify_sealed(&s).unwrap();
            // The same bytes from a slice.
            let t = f.manager.seal(&req, SealSource::Bytes(&data)).unwrap();
            assert_eq!(*t.tree_digest(), reference, "slice len {len}");
            let plain = vram_crypto::sha256(&data);
            for sealed in [&s, &t] {
                assert_eq!(
                    sealed.plain_sha256().copied(),
                    compute_sha256.then_some(plain),
                    "len {len}"
                );
            }
        }
    }
    f.assert_no_leaks();
}

#[test]
fn file_seals_equal_the_reference_whatever_the_cursor_and_report_progress() {
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let leaf = vram_crypto::LeafSize::new(4096).unwrap();
    let f = fixture_with(64 * MIB, leaf);
    for len in [1usize, 4095, 4096, 4097, 1_000_003, 3 * MIB as usize + 5] {
        let data = pattern(len, len as u8 ^ 0x5a);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        // The caller's cursor is wherever it is: the whole file is sealed.
        file.seek(SeekFrom::Start(len as u64 / 2)).unwrap();
        let reference = vram_crypto::tree_digest(&data, leaf);
        for compute_sha256 in [false, true] {
            let mut req = SealRequest::new(ModelRef::new("test:model").unwrap(), 0);
            req.compute_sha256 = compute_sha256;
            let seen = AtomicU64::new(0);
            let s = f
                .manager
                .seal(
                    &req,
                    SealSource::File {
                        file: &file,
                        progress: Some(&|n| {
                            seen.fetch_add(n, Ordering::Relaxed);
                        }),
                    },
                )
                .unwrap();
            assert_eq!(
                *s.tree_digest(),
                reference,
                "len {len} plain {compute_sha256}"
            );
            assert_eq!(seen.load(Ordering::Relaxed), len as u64, "len {len}");
            if compute_sha256 {
                assert_eq!(*s.plain_sha256().unwrap(), vram_crypto::sha256(&data));
            }
            f.manager.verify_sealed(&s).unwrap();
        }
    }
    f.assert_no_leaks();
}

#[test]
fn file_seal_failures_release_everything() {
    let leaf = vram_crypto::LeafSize::new(4096).unwrap();
    let f = fixture_with(64 * MIB, leaf);
    let req = SealRequest::new(ModelRef::new("test:model").unwrap(), 0);
    // A directory is not a regular file.
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::File::open(dir.path()).unwrap();
    let e = f.manager.seal(&req, SealSource::file(&d)).unwrap_err();
    assert!(matches!(e, vram_residency::VramError::Io { .. }), "{e}");
    // The device fails in the middle of the copy.
    let data = pattern(2 * MIB as usize, 3);
    let path = dir.path().join("model.bin");
    std::fs::write(&path, &data).unwrap();
    f.device.fail_write_at(MIB + 17);
    let file = std::fs::File::open(&path).unwrap();
    let e = f.manager.seal(&req, SealSource::file(&file)).unwrap_err();
    assert!(matches!(e, vram_residency::VramError::Device { .. }), "{e}");
    f.assert_no_leaks();
    // And the same file seals once the device behaves.
    let s = f.manager.seal(&req, SealSource::file(&file)).unwrap();
    f.manager.verify_sealed(&s).unwrap();
}
