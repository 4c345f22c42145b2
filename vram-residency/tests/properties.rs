//! Properties: seal then verify always succeeds; altering any handle field or
//! any tag byte always fails; digests are deterministic and content-bound.
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
use proptest::prelude::*;
use vram_crypto::LeafSize;
use vram_residency::{SealRequest, SealSource, ShardSet, VramError};

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn seal_verify_round_trip(data in proptest::collection::vec(any::<u8>(), 1..300_000)) {
        let f = fixture(16 * MIB);
        let s = f.manager.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data)).unwrap();
        prop_assert_eq!(s.vram_bytes(), data.len() as u64);
        f.manager.verify_sealed(&s).unwrap();
        let again = f.manager.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data)).unwrap();
        prop_assert_eq!(s.tree_digest().root, again.tree_digest().root);
    }

    #[test]
    fn any_altered_handle_field_fails(field in 0usize..16, delta in 1u64..1000) {
        let f = fixture(16 * MIB);
        let s = f.manager.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&pattern(100_000, 3))).unwrap();
        let mut h = s.handle();
        match field {
            0 => h.shard_id.push('x'),
            1 => h.gpu_device = h.gpu_device.wrapping_add(delta as u32),
            2 => h.vram_bytes = h.vram_bytes.wrapping_add(delta),
            3 => h.digest = format!("{:064x}", delta),
            4 => h.sealed_at = h.sealed_at.wrapping_add(delta),
            5 => h.model_ref.push('x'),
            6 => h.shard_index = h.shard_index.wrapping_add(delta as u16),
            7 => h.shard_total = h.shard_total.wrapping_add(delta as u16),
            8 => h.leaf_size *= 2,
            9 => h.key_id = "0000000000000000".into(),
            // Seal format v2's fields.
            10 => h.device_kind = Some("cuda".into()),
            11 => h.device_uuid = Some(format!("{:032x}", delta)),
            12 => h.worker_id = h.worker_id.map(|w| format!("{w}x")),
            13 => h.set_id = Some(format!("{:032x}", delta)),
            // Seal format v3's provenance, added to a v2 handle.
            14 => {
                h.provenance = Some(
                    vram_residency::Provenance::new([1; 32], [2; 32], "org/model", ".").unwrap(),
                )
            }
            _ => h.seal_version = 1,
        }
        prop_assert!(f.manager.check_handle(&h).is_err());
        prop_assert!(f.manager.verify_handle(&h, &s).is_err());
    }

    #[test]
    fn any_flipped_signature_byte_fails(pos in 0usize..64, bit in 0u8..4) {
        let f = fixture(16 * MIB);
        let s = f.manager.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&pattern(10_000, 4))).unwrap();
        let mut h = s.handle();
        let mut chars: Vec<u8> = h.signature.into_bytes();
        let v = u8::from_str_radix(std::str::from_utf8(&chars[pos..pos + 1]).unwrap(), 16).unwrap();
        chars[pos] = format!("{:x}", v ^ (1 << bit)).as_bytes()[0];
        h.signature = String::from_utf8(chars).unwrap();
        prop_assert!(f.manager.check_handle(&h).is_err());
    }

    /// Every sealing path (slice, reader, file; with and without the plain
    /// SHA-256) gives the reference digests for any length, leaf size and
    /// staging size, whether or not the staging holds a whole leaf.
    #[test]
    fn every_sealing_path_gives_the_reference_digests(
        len in 1usize..600_000,
        leaf_log2 in 12u8..=18,
        staging_kib in 64usize..=2048,
        source in 0u8..3,
        plain in any::<bool>(),
    ) {
        use vram_core::Device;
        let leaf = LeafSize::new(1 << leaf_log2).unwrap();
        let device = vram_mock::MockDevice::new(0, 16 * MIB);
        let dynamic: std::sync::Arc<dyn Device> = device.clone();
        let m = vram_residency::VramManager::new(
            vram_residency::VramConfig::builder(secret())
                .device(dynamic)
                .leaf_size(leaf)
                .staging_bytes(staging_kib * 1024)
                .build(),
        )
        .unwrap();
        let data = pattern(len, len as u8);
        let mut req = vram_residency::SealRequest::new(
            vram_validation::ModelRef::new("test:model").unwrap(),
            0,
        );
        req.compute_sha256 = plain;
        let s = match source {
            0 => m.seal(&req, SealSource::Bytes(&data)).unwrap(),
            1 => m.seal(&req, SealSource::Reader { reader: &mut &data[..], len: len as u64 }).unwrap(),
            _ => {
                let mut file = tempfile::tempfile().unwrap();
                std::io::Write::write_all(&mut file, &data).unwrap();
                m.seal(&req, SealSource::file(&file)).unwrap()
            }
        };
        prop_assert_eq!(*s.tree_digest(), vram_crypto::tree_digest(&data, leaf));
        prop_assert_eq!(
            s.plain_sha256().copied(),
            plain.then(|| vram_crypto::sha256(&data))
        );
        m.verify_sealed(&s).unwrap();
        drop(s);
        prop_assert_eq!(device.live_allocations(), 0);
        prop_assert_eq!(m.used_vram(0), 0);
    }

    #[test]
    fn any_single_bit_flip_in_device_memory_is_detected(len in 1usize..400_000, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let f = fixture(16 * MIB);
        let s = f.manager.seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&pattern(len, 9))).unwrap();
        let offset = pos.index(len) as u64;
        f.device.flip_bits(f.last_buffer(), offset, 1 << bit).unwrap();
        let err = f.manager.verify_sealed(&s).unwrap_err();
        prop_assert!(err.corrupt_ranges().iter().any(|r| r.start <= offset && offset < r.end));
    }
}

#[test]
fn shard_sets_verify_together_and_one_bad_shard_fails_the_set() {
    use vram_core::Device;
    use vram_mock::MockDevice;
    let devices: Vec<_> = (0..3).map(|i| MockDevice::new(i, 64 * MIB)).collect();
    let dynamic: Vec<std::sync::Arc<dyn Device>> = devices.iter().map(|d| d.clone() as _).collect();
    let m = vram_residency::VramManager::new(
        vram_residency::VramConfig::builder(secret())
            .devices(dynamic)
            .build(),
    )
    .unwrap();
    let parts: Vec<Vec<u8>> = (0..3).map(|i| pattern(200_000, i)).collect();
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let model = vram_validation::ModelRef::new("hf:org/model@main/weights").unwrap();
    let seal_set = || -> Result<ShardSet, VramError> {
        SealRequest::for_set(&model, &[0, 1, 2])?
            .iter()
            .zip(&slices)
            .map(|(r, p)| m.seal(r, SealSource::Bytes(p)))
            .collect()
    };
    let set = seal_set().unwrap();
    assert_eq!(set.shards().len(), 3);
    for (i, s) in set.shards().iter().enumerate() {
        assert_eq!(s.gpu_device(), i as u32);
        assert_eq!(usize::from(s.position().index()), i);
        assert_eq!(s.position().total(), 3);
    }
    m.verify_set(&set).unwrap();
    let id = *devices[1].live_buffers().last().unwrap();
    devices[1].flip_bits(id, 1234, 4).unwrap();
    let err = m.verify_set(&set).unwrap_err();
    assert!(err.is_fatal(), "{err}");
    drop(set);
    for d in &devices {
        assert_eq!(d.live_allocations(), 0);
    }
    // A failing part releases the parts already sealed.
    devices[2].fail_next_allocs(1);
    assert!(seal_set().is_err());
    for d in &devices {
        assert_eq!(d.live_allocations(), 0);
    }
}

#[test]
fn sampled_detection_probability_is_documented_correctly() {
    use vram_residency::VerifyPolicy;
    let p = VerifyPolicy::Sampled { leaves: 16 }.detection_probability(0.1);
    assert!((p - (1.0 - 0.9f64.powi(16))).abs() < 1e-12);
    assert_eq!(VerifyPolicy::Full.detection_probability(0.001), 1.0);
}
